"""Reads the golden vectors of docs/protocol.md (MicroPython and CPython)."""

import os
import json


def vectors(block="golden"):
    """{name: (bytes, fields)} from the ```golden block (or another, e.g. "golden-serial")."""
    out = {}
    inside = False
    with open(os.getenv("WEARS_REPO") + "/docs/protocol.md") as f:
        for line in f:
            line = line.strip()
            if line == "```" + block:
                inside = True
            elif inside and line.startswith("```"):
                break
            elif inside and line:
                name, hexed, fields = line.split(" ", 2)
                out[name] = (bytes.fromhex(hexed), json.loads(fields))
    return out

"""Reads the golden vectors of docs/protocol.md (MicroPython and CPython)."""

import os
import json


def vectors():
    """{name: (bytes, fields)} from the ```golden block."""
    out = {}
    inside = False
    with open(os.getenv("WEARS_REPO") + "/docs/protocol.md") as f:
        for line in f:
            line = line.strip()
            if line == "```golden":
                inside = True
            elif inside and line.startswith("```"):
                break
            elif inside and line:
                name, hexed, fields = line.split(" ", 2)
                out[name] = (bytes.fromhex(hexed), json.loads(fields))
    return out

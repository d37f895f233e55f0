"""Helpers for the firmware's model tests: a folder playing the watch's flash, blob signing."""

import hashlib
import os
import struct
from binascii import crc32

from watch import blob
from watch.hmac_sha256 import hmac_sha256


class FlashDir:
    """A fresh folder playing the watch's flash; removed with everything in it (the models
    `load` loaded from it are closed first: a model reads its file at every prediction)."""

    def __init__(self):
        self.path = (os.getenv("TMPDIR") or "/tmp") + "/wears-mp-model-" + "".join(
            "%02x" % b for b in os.urandom(6))
        os.mkdir(self.path)
        self.models = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for m in self.models:
            m.close()
        for name in os.listdir(self.path):
            os.remove(self.path + "/" + name)
        os.rmdir(self.path)

    def load(self, data, key, spec, n_features, **kw):
        """watch.loader.load of `data` written to a file of its own here."""
        from watch import loader

        m = loader.load(self.write("m%d.wbl" % len(self.models), data), key, spec, n_features, **kw)
        self.models.append(m)
        return m

    def file(self, name):
        return self.path + "/" + name

    def write(self, name, data):
        with open(self.file(name), "wb") as f:
            f.write(data)
        return self.file(name)

    def read(self, name):
        with open(self.file(name), "rb") as f:
            return f.read()

    def exists(self, name):
        return name in os.listdir(self.path)


_CURRENT = []


def in_flash(test):
    """The test run with a FlashDir that `flash()` returns, removed when it ends."""

    def run():
        with FlashDir() as d:
            _CURRENT.append(d)
            try:
                test()
            finally:
                _CURRENT.pop()

    return run


def flash():
    """The FlashDir of the running `in_flash` test."""
    return _CURRENT[-1]


def sign(body, key):
    """A blob from its bytes before the trailer: model id, CRC32 and HMAC made consistent."""
    body = bytearray(body)
    struct.pack_into("<I", body, 16, struct.unpack("<I", hashlib.sha256(body[blob.HEADER_SIZE:]).digest()[:4])[0])
    body += struct.pack("<I", crc32(body) & 0xFFFFFFFF)
    return bytes(body) + hmac_sha256(key, body)


def documented_example(block="blob-example"):
    """(key, blob, [(x, label, proba, extra words)]) from a ```block of docs/model-blob.md;
    the key line is optional (None)."""
    key = data = None
    cases = []
    inside = False
    with open(os.getenv("WEARS_REPO") + "/docs/model-blob.md") as f:
        for line in f:
            line = line.strip()
            if line == "```" + block:
                inside = True
            elif inside and line.startswith("```"):
                break
            elif inside and line.startswith("key "):
                key = bytes.fromhex(line[4:])
            elif inside and line.startswith("blob "):
                data = bytes.fromhex(line[5:])
            elif inside and line.startswith("predict "):
                x, out = line[8:].split(" -> ")
                words = out.split()
                cases.append(([int(v) for v in x.split(",")], int(words[0]), [int(v) for v in words[1].split(",")],
                              words[2:]))
    return key, data, cases

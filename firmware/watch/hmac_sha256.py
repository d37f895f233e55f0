"""HMAC-SHA256 (RFC 2104) on hashlib.sha256, streaming: MicroPython has no hmac module.

Equal to CPython's `hmac.new(key, msg, "sha256").digest()`; fed in chunks, so a model blob is
hashed straight from flash and never held whole in RAM.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host tests this module against the standard library
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import hashlib

_BLOCK = const(64)  # SHA-256 block size: the HMAC key is padded (or hashed) to this
_IPAD = const(0x36)  # RFC 2104 inner pad byte
_OPAD = const(0x5C)  # RFC 2104 outer pad byte
DIGEST_SIZE = const(32)


class HmacSha256:
    """Incremental HMAC-SHA256: `update(chunk)` any number of times, then `digest()` once."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        pad = bytearray(_BLOCK)
        pad[:len(key)] = key
        for i in range(_BLOCK):
            pad[i] ^= _IPAD
        self._inner = hashlib.sha256(pad)
        for i in range(_BLOCK):
            pad[i] ^= _IPAD ^ _OPAD
        self._outer_pad = pad

    def update(self, data):
        self._inner.update(data)

    def digest(self):
        outer = hashlib.sha256(self._outer_pad)
        outer.update(self._inner.digest())
        return outer.digest()


def hmac_sha256(key, msg):
    """The 32-byte HMAC-SHA256 of `msg` (bytes-like, or an iterable of bytes-like chunks)."""
    h = HmacSha256(key)
    if isinstance(msg, (bytes, bytearray, memoryview)):
        h.update(msg)
    else:
        for chunk in msg:
            h.update(chunk)
    return h.digest()


def equal(a, b):
    """Compare two digests in time independent of where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0

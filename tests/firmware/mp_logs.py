"""Helpers for the flash log's tests: a folder playing the watch's flash, packets whose bytes
say which record they are, reading a range back."""

import os
import struct

from wire import protocol as P

SEG = 512  # small segments: many of them in a short test


def folder(name):
    path = "/tmp/wears-mp-flashlog-%s-%d" % (name, struct.unpack("<I", os.urandom(4))[0])
    os.mkdir(path)
    return path


def wipe(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)


def packet(lsn, n=40):
    """A stream packet whose bytes say which record it is."""
    buf = bytearray(n)
    struct.pack_into("<BBHI", buf, 0, P.VERSION, P.SAMPLES, lsn & 0xFFFF, lsn * 10)
    for i in range(8, n):
        buf[i] = (lsn + i) & 0xFF
    return buf


def read_all(log, lo, hi):
    out = bytearray(300)
    got = []
    log.seek(lo, hi)
    while True:
        n = log.read(out, 0)
        if not n:
            return got
        assert out[:n] == packet(log.lsn), (log.lsn, bytes(out[:n]))
        got.append((log.lsn, log.record_boot))

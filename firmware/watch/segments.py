"""Segments: WEARS packets over a link whose notifications and writes carry 20 bytes.

MicroPython's `ubluepy` (nRF port) keeps the ATT MTU at 23 and attribute values at 20 bytes,
too small for most WEARS packets. There a packet longer than the link carries travels as
segments: the first starts with 0xC0 | the number of segments, each next one with
0x80 | its position; the rest of each segment is the packet's next bytes. A whole packet
always starts with the protocol version (1), so one look at the first byte tells them
apart. Links with a large MTU never segment. Shared by the watch and the host.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host reassembles with the same code
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

SEGMENT = const(0x80)
FIRST = const(0x40)
MAX_SEGMENTS = const(63)


def count(n, room):
    """Segments for an n-byte packet when a notification carries `room` bytes (0: fits whole)."""
    if n <= room:
        return 0
    return (n + room - 2) // (room - 1)


def write_segment(out, buf, n, room, i, off=0):
    """Segment i of the n-byte packet at buf[off:] into `out`; returns its length."""
    total = count(n, room)
    out[0] = SEGMENT | (FIRST | total if i == 0 else i)
    start = off + i * (room - 1)
    k = off + n - start
    if k > room - 1:
        k = room - 1
    for j in range(k):
        out[1 + j] = buf[start + j]
    return 1 + k


class Reassembler:
    """Puts one characteristic's segments back together into `buf`.

    `feed(data)` returns the packet's length once its last segment arrived, 0 while it waits
    for more, -1 when a segment came out of order (the packet is dropped and counted).
    """

    def __init__(self, size):
        self.buf = bytearray(size)
        self._n = 0
        self._next = 0
        self._total = 0
        self.dropped = 0

    def feed(self, data):
        head = data[0]
        if head & FIRST:
            if self._total:
                self.dropped += 1  # the one before never finished
            self._total = head & MAX_SEGMENTS
            self._next = 1
            self._n = 0
        elif not self._total or head & MAX_SEGMENTS != self._next:
            self._total = 0
            self.dropped += 1
            return -1
        else:
            self._next += 1
        k = len(data) - 1
        if self._n + k > len(self.buf):
            self._total = 0
            self.dropped += 1
            return -1
        buf = self.buf
        for j in range(k):
            buf[self._n + j] = data[1 + j]
        self._n += k
        if self._next == self._total:
            self._total = 0
            return self._n
        return 0

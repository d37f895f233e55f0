"""The outbox queues, drops the oldest when full (counted) and sends without allocating."""

import micropython

from watch.outbox import Outbox


def _packet(k, n):
    buf = bytearray(n)
    for i in range(n):
        buf[i] = (k + i) & 0xFF
    return buf


def _push(box, buf, n):  # a packet built elsewhere, copied into the next slot
    slot = box.open_buf()
    for i in range(n):
        slot[i] = buf[i]
    box.seal(n)


def test_open_seal_and_flush_allocate_nothing():
    box = Outbox(4, 64)
    packets = [_packet(k, 20 + k) for k in range(6)]
    lens = bytearray(8)
    count = bytearray(1)

    def radio(buf, n):  # notes each length the radio got, without allocating
        lens[count[0]] = n
        count[0] += 1
        return True

    _push(box, packets[0], 20)
    box.flush(radio, 4)
    count[0] = 0
    micropython.heap_lock()
    try:
        for k in range(6):
            _push(box, packets[k], 20 + k)  # the last two push the oldest out
        buf = box.open_buf()
        buf[0] = 7
        box.seal(1)
        n = box.flush(radio, 8)
    finally:
        micropython.heap_unlock()
    assert n == 4 and box.dropped == 3 and len(box) == 0
    assert list(lens[:4]) == [23, 24, 25, 1], list(lens)


def test_flush_hands_the_slot_and_its_length_and_stops_when_refused():
    box = Outbox(3, 32)
    for k in range(3):
        _push(box, _packet(k, 10 + k), 10 + k)
    got = []
    assert box.flush(lambda buf, n: got.append(bytes(buf[:n])) or len(got) < 2, 5) == 1
    assert got == [bytes(_packet(0, 10)), bytes(_packet(1, 11))] and len(box) == 2
    assert box.flush(lambda buf, n: got.append(bytes(buf[:n])) or True, 5) == 2
    assert got[2:] == [bytes(_packet(1, 11)), bytes(_packet(2, 12))] and len(box) == 0

"""Preallocated queue of outgoing packets for one characteristic.

Packets wait here until the radio accepts them (not connected, or the link is congested);
when the queue is full the oldest packet is dropped and counted, and its sequence number
leaves a gap the host sees. The slot being filled is `open_buf()`; `seal(n)` queues it.
"""

from array import array


class Outbox:
    """Packets wait here for the radio. Fill `open_buf()` and `seal(n)` it before opening
    another."""

    def __init__(self, slots, slot_size):
        # One block for every slot, a view per slot: a bytearray per slot would add its own
        # object header and heap block to each (over 1 KB for the watch's outboxes).
        self._buf = bytearray(slots * slot_size)  # kept as itself too (wears.sim.heap counts buffers)
        whole = memoryview(self._buf)
        self._views = [whole[i * slot_size:(i + 1) * slot_size] for i in range(slots)]
        self._lens = array("H", bytes(2 * slots))
        self._slots = slots
        self.slot_size = slot_size
        self._head = 0  # oldest queued
        self._count = 0
        self.seq = 0
        self.dropped = 0

    def __len__(self):
        return self._count

    def open_buf(self):
        """The buffer of the next slot; write a packet into it, then `seal` it."""
        if self._count == self._slots:  # full: make room by dropping the oldest
            self._head = (self._head + 1) % self._slots
            self._count -= 1
            self.dropped += 1
        return self._views[(self._head + self._count) % self._slots]

    def next_seq(self):
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        return seq

    def seal(self, n):
        self._lens[(self._head + self._count) % self._slots] = n
        self._count += 1

    def flush(self, send, budget):
        """Send up to `budget` queued packets with `send(buffer, length) -> bool` (a slot and
        its packet's length: no slice made here); stops when it refuses."""
        sent = 0
        while self._count and sent < budget:
            i = self._head
            if not send(self._views[i], self._lens[i]):
                break
            self._head = (i + 1) % self._slots
            self._count -= 1
            sent += 1
        return sent

"""Preallocated queue of outgoing packets for one characteristic.

Packets wait here until the radio accepts them (not connected, or the link is congested);
when the queue is full the oldest packet is dropped and counted, and its sequence number
leaves a gap the host sees. The packet being built is `open_buf()`; `seal(n)` queues it.
"""

from array import array


class Outbox:
    """Packets wait here for the radio. Fill `open_buf()` and `seal(n)` it before opening
    another."""

    def __init__(self, slots, slot_size):
        # The queued packets in one block. A packet is built in `_open` and copied into its
        # slot when sealed, and copied back there to be sent: a view per slot would be an
        # object each (a bytearray per slot an object and a heap block), and nothing can be
        # queued between open_buf and seal, nor while flush runs.
        self._buf = bytearray(slots * slot_size)  # kept as itself too (wears.sim.heap counts buffers)
        self._open = bytearray(slot_size)
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
        """The buffer of the next packet; write it there, then `seal` it."""
        if self._count == self._slots:  # full: make room by dropping the oldest
            self._head = (self._head + 1) % self._slots
            self._count -= 1
            self.dropped += 1
        return self._open

    def next_seq(self):
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        return seq

    def seal(self, n):
        i = (self._head + self._count) % self._slots
        buf, packet = self._buf, self._open
        at = i * self.slot_size
        for k in range(n):
            buf[at + k] = packet[k]
        self._lens[i] = n
        self._count += 1

    def flush(self, send, budget):
        """Send up to `budget` queued packets with `send(buffer, length) -> bool` (the packet
        copied into a buffer of the outbox's and its length: no slice made here); stops when
        it refuses."""
        sent = 0
        buf, packet = self._buf, self._open
        while self._count and sent < budget:
            i = self._head
            n = self._lens[i]
            at = i * self.slot_size
            for k in range(n):
                packet[k] = buf[at + k]
            if not send(packet, n):
                break
            self._head = (i + 1) % self._slots
            self._count -= 1
            sent += 1
        return sent

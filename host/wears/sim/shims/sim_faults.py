"""Radio faults for the virtual watch, from `WEARS_SIM_FAULTS`, e.g.
"disconnect_s=30,drop=0.01,dup=0.02,reorder=0.02,seed=1": the link breaks every
`disconnect_s` virtual seconds of a connection (no goodbye, as a supervision timeout), and
each notification is dropped, sent twice, or held back to follow the next one with the
given probabilities. Deterministic for a seed. Not part of any watch.
"""

import time

_ONE = 65536  # probabilities are kept in 1/65536


class Faults:
    def __init__(self, spec):
        cfg = {}
        for part in spec.split(","):
            if "=" in part:
                key, value = part.split("=")
                cfg[key.strip()] = float(value)
        self.disconnect_us = int(cfg.get("disconnect_s", 0) * 1000000)
        self.drop = int(cfg.get("drop", 0) * _ONE)
        self.dup = int(cfg.get("dup", 0) * _ONE)
        self.reorder = int(cfg.get("reorder", 0) * _ONE)
        self._state = int(cfg.get("seed", 1)) & 0x7FFFFFFF or 1
        self._held = bytearray(520)
        self._held_n = -1
        self._held_op = self._held_handle = 0
        self._since = 0
        self.dropped = self.doubled = self.reordered = self.cuts = 0

    def _chance(self, p):
        self._state = (self._state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self._state >> 15) & 0xFFFF < p

    def connected(self):
        self._since = time.virtual_us()
        self._held_n = -1  # what was held back went down with the old link

    def cut_due(self):
        """True once per `disconnect_s` of a connection: the caller drops the link."""
        if self.disconnect_us and time.virtual_us() - self._since >= self.disconnect_us:
            self.cuts += 1
            self._since = time.virtual_us()
            return True
        return False

    def notify(self, put, op, handle, data):
        """Hand a notification to `put(op, handle, -1, data)`: dropped, doubled or held back."""
        if self._chance(self.drop):
            self.dropped += 1
            return
        if self._held_n < 0 and len(data) <= len(self._held) and self._chance(self.reorder):
            self._held[0:len(data)] = data
            self._held_n = len(data)
            self._held_op, self._held_handle = op, handle
            self.reordered += 1
            return
        put(op, handle, -1, data)
        if self._chance(self.dup):
            self.doubled += 1
            put(op, handle, -1, data)
        if self._held_n >= 0:
            n, self._held_n = self._held_n, -1
            put(self._held_op, self._held_handle, -1, memoryview(self._held)[:n])

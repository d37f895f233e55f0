"""Model A/B slots: two model files, a one-file pointer switched by rename, rollback at boot.

Slot A is `model.wbl` (what `wears flash firmware` writes), slot B `model_b.wbl`. The pointer
file `model.slot` holds 4 bytes: active slot (0 = A, 1 = B), state, previous slot (NONE when
there is nothing to roll back to) and their checksum. It is written to `model.slot.new` and
renamed over the old one, so a power cut leaves either the old or the new pointer, never a
mix. No pointer (or a damaged one) means slot A, confirmed.

States: CONFIRMED, a model that ran; PENDING, a model just uploaded and not yet booted;
TRYING, a run with the pending model is under way, until the watch has been up for
boot.STABLE_MS (`confirm`). A boot that finds TRYING: the run with the new model ended early
(crash, watchdog, power cut), so it rolls back to the previous slot. A pending model that
fails to load at boot rolls back at once. Safe mode keeps the previous model (`safe`).
docs/model-blob.md.
"""

import os

A = 0
B = 1
NONE = 255
CONFIRMED = 0
PENDING = 1
TRYING = 2


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


class ModelSlots:
    """The two slots next to `path` (slot A's file, default `model.wbl`)."""

    def __init__(self, path="model.wbl"):
        dot = path.rfind(".")
        stem = path[:dot] if dot > path.rfind("/") else path
        self.paths = (path, stem + "_b.wbl")
        self.pointer = stem + ".slot"

    def read(self):
        """(active, state, previous) from the pointer; (A, CONFIRMED, NONE) without a valid one."""
        try:
            with open(self.pointer, "rb") as f:
                raw = f.read(4)
        except OSError:
            return A, CONFIRMED, NONE
        if (len(raw) != 4 or raw[0] > B or raw[1] > TRYING or (raw[2] > B and raw[2] != NONE)
                or raw[3] != (raw[0] + raw[1] + raw[2] + 0x5A) & 0xFF):
            return A, CONFIRMED, NONE
        return raw[0], raw[1], raw[2]

    def write(self, active, state, previous=NONE):
        """Switch the pointer atomically (write a new file, rename it over the old one)."""
        tmp = self.pointer + ".new"
        with open(tmp, "wb") as f:
            f.write(bytes((active, state, previous, (active + state + previous + 0x5A) & 0xFF)))
        try:
            os.rename(tmp, self.pointer)
        except OSError:  # VfsFat does not rename over an existing file
            _remove(self.pointer)
            os.rename(tmp, self.pointer)

    def active_path(self):
        return self.paths[self.read()[0]]

    def inactive(self):
        """The slot an upload may write: never the active one. Confirms the running model
        first, since the upload overwrites what a rollback would return to."""
        active, state, _ = self.read()
        if state != CONFIRMED:
            self.write(active, CONFIRMED)
        return 1 - active

    def switch(self, slot):
        """Make `slot` the active one, pending its first boot, with a way back."""
        active, _, _ = self.read()
        self.write(slot, PENDING, active if active != slot else NONE)

    def boot(self, load):
        """(model or None, rolled_back, reason) at boot. `load(path)` returns a model or raises
        (ModelError with .reason, MemoryError, OSError); a pending model is tried once (TRYING
        until `confirm`), and the previous slot restored when it does not load."""
        active, state, previous = self.read()
        rolled = False
        reason = 0
        if state == TRYING and previous != NONE:
            active, state, previous, rolled = previous, CONFIRMED, NONE, True
            self.write(active, state)
        elif state == PENDING:
            self.write(active, TRYING, previous)
        try:
            model = load(self.paths[active])
        except (MemoryError, OSError, Exception) as e:  # noqa: B902 - any failure of a new model rolls back
            reason = getattr(e, "reason", 0)
            if state == CONFIRMED or previous == NONE:
                if state != CONFIRMED:
                    self.write(active, CONFIRMED)
                return None, rolled, reason
            self.write(previous, CONFIRMED)
            try:
                return load(self.paths[previous]), True, reason
            except (MemoryError, OSError, Exception):  # noqa: B902
                return None, True, reason
        return model, rolled, reason

    def confirm(self):
        """The model being tried ran long enough (boot.STABLE_MS): it stays, with no way back."""
        active, state, _ = self.read()
        if state == TRYING:
            self.write(active, CONFIRMED)

    def safe(self):
        """Safe mode: a model not yet confirmed gives way to the previous one (the crashes may be
        its doing); True when it rolled back. Loads nothing."""
        active, state, previous = self.read()
        if state == CONFIRMED or previous == NONE:
            return False
        self.write(previous, CONFIRMED)
        return True

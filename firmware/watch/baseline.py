"""A participant's resting baseline, learnt in a calibration phase and subtracted from later windows."""

from array import array
from watch.buffers import zeros

from watch.features import NORMALISED, UNTRUSTED


class Baseline:
    """A participant's resting baseline, learnt in a calibration phase and subtracted afterwards.

    The first `windows` trusted windows (no UNTRUSTED flag) after `reset()` are averaged
    (rounded integer means); from then on `apply(out)` subtracts that mean from the NORMALISED
    features in place. The host does the same (wears.features.baseline_normalise).
    """

    def __init__(self, names, windows=12):
        self.windows = windows
        self.mask = bytearray(len(names))
        for i in range(len(names)):
            self.mask[i] = names[i] in NORMALISED
        self.sums = zeros("i", len(names))
        self.mean = zeros("i", len(names))
        self.count = 0

    def reset(self):
        self.count = 0
        for i in range(len(self.sums)):
            self.sums[i] = self.mean[i] = 0

    def ready(self):
        return self.count >= self.windows

    def add(self, out, flags):
        """Count a calibration window; True once the baseline is complete."""
        if self.count < self.windows and not flags & UNTRUSTED:
            self.count += 1
            c = self.count
            for i in range(len(self.sums)):
                self.sums[i] += out[i]
                self.mean[i] = (self.sums[i] + (c >> 1)) // c
        return self.count >= self.windows

    def apply(self, out):
        for i in range(len(self.mask)):
            if self.mask[i]:
                out[i] -= self.mean[i]

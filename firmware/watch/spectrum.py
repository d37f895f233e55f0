"""Frequency-domain heart-rate variability of a window's valid intervals, in integers (docs/features.md),
and the cosine table the heart rate's spectrum shares (watch.heart_rate)."""

import math

from watch.buffers import zeros

from watch.feature_loops import SUM_LIMIT, isqrt_round

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

_VALID = const(1)  # watch.features' beat flag


def _quarter():
    # cos(2 pi m / 1024) * 1024 for m = 0..256, rounded (array 'h'); the rest is its mirror.
    t = zeros("h", 257)
    for m in range(257):
        t[m] = int(round(1024 * math.cos(2 * math.pi * m / 1024)))
    return t


def cos_q10(m):
    """cos(2 pi m / 1024) * 1024, rounded, from the quarter wave COS_Q10."""
    q = m & 511
    c = COS_Q10[q] if q <= 256 else -COS_Q10[512 - q]
    return -c if m & 512 else c


def freq_bin(window_s, hz_x100):
    """The first bin at or above hz_x100 / 100 Hz; bin k is at k / window_s Hz. LF: bins
    freq_bin(w, 4) .. freq_bin(w, 15) - 1 (0.04-0.15 Hz), HF: freq_bin(w, 15) .. freq_bin(w, 40) - 1."""
    return (hz_x100 * window_s + 99) // 100


def spectrum(ppg, j0, j1, lo, n, mean, w, out):
    """HF amplitude and LF/HF amplitude ratio of the valid intervals ppg.bm/bibi/bflag[j0:j1] of a window
    starting at detector index lo (an unevenly sampled DFT around their mean) into out[11:13]."""
    cap = ppg.cap
    span = 1000 * w
    k1 = freq_bin(w, 15)
    lf = hf = 0
    for k in range(freq_bin(w, 4), freq_bin(w, 40)):
        c = s = 0
        for j in range(j0, j1):
            if ppg.bflag[j % cap] & _VALID:
                d = ppg.bibi[j % cap] - mean
                i = (k * (((ppg.bm[j % cap] - lo) * 1000) // ppg.rate) * 256 // span) & 255
                c += d * cos_q10(i << 2)
                s += d * cos_q10(((i + 192) & 255) << 2)
        c = max(-16383, min(16383, ((c // n) * 10) // 512))  # amplitude 2 |sum| / n in 0.1 ms
        s = max(-16383, min(16383, ((s // n) * 10) // 512))
        if k < k1:
            lf = min(lf + c * c + s * s, SUM_LIMIT)
        else:
            hf = min(hf + c * c + s * s, SUM_LIMIT)
    out[11] = isqrt_round(hf)
    if out[11]:
        out[12] = min(10000, 100 * isqrt_round(lf) // out[11])


COS_Q10 = _quarter()  # one quarter wave for every spectrum: these (256 steps a turn) and the heart rate's (1024)

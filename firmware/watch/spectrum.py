"""Frequency-domain heart-rate variability of a window's valid intervals, in integers (docs/features.md)."""

from watch.feature_loops import SUM_LIMIT, isqrt_round

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

_IBI = const(0x1FFF)  # watch.features' beat ring: the interval in ms
_VALID_BIT = const(0x2000)  # and its valid flag
_WRAP = const(0xFFFF)  # detector indices modulo 2^16

# cos(2 pi i / 256) * 1024 for i = 0..64, rounded: the quarter wave of the spectrum's table.
COS_QUARTER = (1024, 1024, 1023, 1021, 1019, 1016, 1013, 1009, 1004, 999, 993, 987, 980, 972, 964, 955, 946, 936,
               926, 915, 903, 891, 878, 865, 851, 837, 822, 807, 792, 775, 759, 742, 724, 706, 688, 669, 650, 630,
               610, 590, 569, 548, 526, 505, 483, 460, 438, 415, 392, 369, 345, 321, 297, 273, 249, 224, 200, 175,
               150, 125, 100, 75, 50, 25, 0)


def cos256(i):
    """cos(2 pi i / 256) * 1024, rounded, from COS_QUARTER by symmetry (no table in RAM, no floats)."""
    i &= 255
    q = i & 127
    c = COS_QUARTER[q] if q <= 64 else -COS_QUARTER[128 - q]
    return -c if i & 128 else c


def freq_bin(window_s, hz_x100):
    """The first bin at or above hz_x100 / 100 Hz; bin k is at k / window_s Hz. LF: bins
    freq_bin(w, 4) .. freq_bin(w, 15) - 1 (0.04-0.15 Hz), HF: freq_bin(w, 15) .. freq_bin(w, 40) - 1."""
    return (hz_x100 * window_s + 99) // 100


def spectrum(ppg, j0, j1, lo, n, mean, w, out):
    """HF amplitude and LF/HF amplitude ratio of the valid intervals of beats j0..j1-1 of ppg's
    ring (watch.features) of a window starting at detector index lo (an unevenly sampled DFT
    around their mean) into out[11:13]."""
    cap = ppg.cap
    span = 1000 * w
    k1 = freq_bin(w, 15)
    lf = hf = 0
    for k in range(freq_bin(w, 4), freq_bin(w, 40)):
        c = s = 0
        for j in range(j0, j1):
            v = ppg.bibi[j % cap]
            if v & _VALID_BIT:
                d = (v & _IBI) - mean
                i = (k * ((((ppg.bm[j % cap] - lo) & _WRAP) * 1000) // ppg.rate) * 256 // span) & 255
                # cos256(i) and cos256(i + 192) (the sine) from the angle within its quadrant
                a = COS_QUARTER[i & 63]
                b = COS_QUARTER[64 - (i & 63)]
                if i & 64:
                    a, b = -b, a
                if i & 128:
                    a = -a
                    b = -b
                c += d * a
                s += d * b
        c = max(-16383, min(16383, ((c // n) * 10) // 512))  # amplitude 2 |sum| / n in 0.1 ms
        s = max(-16383, min(16383, ((s // n) * 10) // 512))
        if k < k1:
            lf = min(lf + c * c + s * s, SUM_LIMIT)
        else:
            hf = min(hf + c * c + s * s, SUM_LIMIT)
    out[11] = isqrt_round(hf)
    if out[11]:
        out[12] = min(10000, 100 * isqrt_round(lf) // out[11])

"""Window features on the host, vectorised: the same integers as the watch's FeatureEngine.

The reference is `firmware/watch/features.py` (docs/features.md): a streaming beat detector
and per-block IMU sums in integer arithmetic. This module computes every intermediate of
that engine for a whole recording at once with numpy (cumulative sums, sliding maxima,
cumulative sums over beats and blocks), so a window's features are the watch's integers,
bit for bit. Constants and parameter helpers come from `watch.features`, never copies.

Example:
    >>> import numpy as np
    >>> from wears.features import extract_features
    >>> fs, n = 100, 100 * 60
    >>> t = np.arange(n) / fs
    >>> ir = (110000 - 600 * np.sin(np.pi * 1.25 * t) ** 8).astype(np.int64)   # 75 bpm
    >>> acc = np.tile(np.array([0, 0, 8192], dtype=np.int16), (52 * 60, 1))       # 1 g, still
    >>> table = extract_features(ir, acc, ppg_rate=fs, imu_rate=52, window_s=30, step_s=5,
    ...                          acc_unit_g=0.122e-3, gyro_unit_dps=0.0)
    >>> table.names[:2], int(table.X[-1, 0]), int(table.X[-1, 8])
    (('hr_mean', 'hr_std'), 750, 999)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from watch import features as F
from watch import spectrum as S

__all__ = ["Beats", "FeatureTable", "extract_features", "window_grid", "heart_rate", "isqrt_round", "baseline_mean",
           "baseline_normalise", "FEATURE_VERSION"]

FEATURE_VERSION = F.FEATURE_VERSION


@dataclass(frozen=True)
class FeatureTable:
    """Features of every window on the grid, in the watch's fixed-point units.

    X: (n_windows, n_features) int64; window_end: the PPG index where each window ends
    (window k ends at (k + 1) * step_s * ppg_rate); quality: the watch's flags per window
    (0 = good; F.FLAG_*); names, units, spec_id: the feature set (watch.features).
    """

    X: np.ndarray
    window_end: np.ndarray
    quality: np.ndarray
    names: tuple[str, ...]
    units: tuple[str, ...]
    spec_id: int

    def __len__(self) -> int:
        return len(self.window_end)

    def column(self, name: str) -> np.ndarray:
        """One feature over all windows."""
        return self.X[:, self.names.index(name)]


@dataclass(frozen=True)
class Beats:
    """The watch's beats of one PPG recording.

    index: detector index of each beat (PPG stream index; the detector lags the pulse by
    `info["delay_samples"]`); time_s: the pulse's time in s since stream index 0, with the
    sub-sample offset and without the lag; ibi_ms: the interval ending at each beat (0 for
    the first); valid: it passed the range and artefact checks; hr_x10: 600000 / ibi in
    0.1 bpm where valid, else 0; info: detector parameters.
    """

    index: np.ndarray
    time_s: np.ndarray
    ibi_ms: np.ndarray
    valid: np.ndarray
    hr_x10: np.ndarray
    info: dict = field(default_factory=dict)
    # Intermediates the windows need.
    pair: np.ndarray = field(kw_only=True, repr=False)
    sd_ms: np.ndarray = field(kw_only=True, repr=False)


def isqrt_round(v: np.ndarray) -> np.ndarray:
    """round(sqrt(v)) of non-negative int64 values, exactly (0 for v <= 0), like the watch's."""
    v = np.asarray(v, dtype=np.int64)
    r = np.floor(np.sqrt(np.maximum(v, 0).astype(np.float64))).astype(np.int64)
    r -= (r * r > v).astype(np.int64)
    r += ((r + 1) * (r + 1) <= v).astype(np.int64)
    r = np.where(v - r * r > r, r + 1, r)
    return np.where(v <= 0, 0, r)


def _as_int(a, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers (sensor counts / LSB), got {a.dtype}")
    if a.ndim != ndim or (ndim == 2 and a.shape[1] != 3):
        raise ValueError(f"{name} must be {'(n,)' if ndim == 1 else '(n, 3)'}, got shape {a.shape}")
    return a.astype(np.int64)


def _upstroke(ir: np.ndarray, ppg_rate: int) -> tuple[np.ndarray, int]:
    """The detector's upstroke signal u[p] = s[p] - s[p - D] for p >= p0 + D, and that first p."""
    s, p0 = _smoothed(ir, ppg_rate)
    dd = F.upstroke_lag(ppg_rate)
    return s[dd:] - s[:-dd] if len(s) > dd else np.zeros(0, dtype=np.int64), p0 + dd


def _smoothed(ir: np.ndarray, ppg_rate: int) -> tuple[np.ndarray, int]:
    """The detector's smoothed signal s[p] for p >= p0 (relative sample numbers), and p0."""
    nd, ns, c, k, r, l = F.detector_params(ppg_rate)
    x = ir & 0x3FFFF
    n = len(x)
    if n < nd + ns - 1:
        return np.zeros(0, dtype=np.int64), nd + ns - 2
    cs = np.concatenate(([0], np.cumsum(x)))
    p = np.arange(nd - 1, n)
    v = (cs[p + 1] - cs[p + 1 - nd] - nd * x[p - c]) >> k  # mean minus sample, times ND
    cv = np.concatenate(([0], np.cumsum(v)))
    s = cv[ns:] - cv[:-ns]  # s[p] for p = nd + ns - 2 ..
    return s, nd + ns - 2


def heart_rate(ppg_ir, ppg_rate: int, *, first_index: int = 0) -> Beats:
    """Beats, intervals and instantaneous heart rate exactly as the watch's detector finds them.

    Parameters: ppg_ir, 18-bit IR counts (integers; IR falls when blood volume rises);
    ppg_rate, Hz; first_index, the stream index of ppg_ir[0].
    Returns a `Beats` table.

    Example:
        >>> t = np.arange(6000) / 100
        >>> beats = heart_rate((110000 - 600 * np.sin(np.pi * t) ** 8).astype(int), 100)
        >>> int(np.median(beats.hr_x10[beats.valid]))
        600
    """
    ir = _as_int(ppg_ir, "ppg_ir", 1)
    nd, ns, c, k, r, l = F.detector_params(ppg_rate)
    dd = F.upstroke_lag(ppg_rate)
    s, p0 = _upstroke(ir, ppg_rate)
    info = {"ND": nd, "NS": ns, "C": c, "K": k, "R": r, "L": l, "D": dd, "delay_samples": c + (ns - 1) / 2 + dd / 2,
            "warmup_samples": p0 + l}
    q = np.zeros(0, dtype=np.int64)
    if len(s) > l + r:
        near = sliding_window_view(s, r).max(axis=1)  # near[j] = max(s[j:j + R])
        wide = sliding_window_view(s, l + r + 1).max(axis=1)  # wide[j] = max(s[j:j + L + R + 1])
        q = np.arange(l, len(s) - r)
        peak = ((s[q] > 0) & (s[q] > near[q - r]) & (s[q] >= near[q + 1])  # the highest within +-R
                & (2 * s[q] >= wide[q - l]))  # and at least half the highest of [q - L, q + R]
        q = q[peak]
    a = s[q - 1] - s[q] if len(q) else q
    b = s[q + 1] - s[q] if len(q) else q
    den = -(a + b)
    d16 = (8 * (b - a) + (den >> 1)) // np.maximum(den, 1)
    m = first_index + p0 + q
    fs = ppg_rate
    if len(m) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Beats(index=m, time_s=empty.astype(float), ibi_ms=empty, valid=empty.astype(bool), hr_x10=empty,
                     info=info, pair=empty.astype(bool), sd_ms=empty)
    j16 = 16 * np.minimum(np.diff(m), 4 * fs) + np.diff(d16)
    ibi = np.concatenate(([0], (j16 * 125 + fs) // (2 * fs)))
    has_prev = np.arange(len(m)) > 0
    in_range = has_prev & (ibi >= F.IBI_MIN_MS) & (ibi <= F.IBI_MAX_MS)
    # Reference: median of the REF_INTERVALS in-range intervals before each interval.
    good = ibi[in_range]
    before = np.cumsum(in_range) - in_range  # in-range intervals before each beat
    ref = np.zeros(len(m), dtype=np.int64)
    if len(good) >= F.REF_INTERVALS:
        med = np.sort(sliding_window_view(good, F.REF_INTERVALS), axis=1)[:, F.REF_INTERVALS // 2]
        has_ref = before >= F.REF_INTERVALS
        ref[has_ref] = med[before[has_ref] - F.REF_INTERVALS]
    before_ibi = np.concatenate(([0], ibi[:-1]))  # the interval before (0 before the second beat)
    valid = in_range & (ref > 0) & (F.ARTEFACT_DIV * np.maximum(np.abs(ibi - ref), np.abs(ibi - before_ibi)) <= ref)
    pair = valid & np.concatenate(([False], valid[:-1]))
    sd = np.where(pair, ibi - before_ibi, 0)
    hr = np.where(valid, (F.HR_X10 + (ibi >> 1)) // np.maximum(ibi, 1), 0)
    time_s = (m - info["delay_samples"] + d16 / 16) / fs
    return Beats(index=m, time_s=time_s, ibi_ms=ibi, valid=valid, hr_x10=hr, info=info, pair=pair, sd_ms=sd)


def _imu_blocks(xyz: np.ndarray, first: int, block: int, micro_per_lsb: int, per_unit: int):
    """First complete block number and per-block sums of the watch: magnitude, squared deviation, jerk."""
    scale, shift = F.unit_scale(micro_per_lsb, per_unit)
    axes = np.clip((xyz * scale + (1 << (shift - 1))) >> shift, -F.AXIS_LIMIT, F.AXIS_LIMIT)
    mag = isqrt_round((axes * axes).sum(axis=1))
    jerk = np.abs(np.diff(mag, prepend=mag[:1]))
    j0 = -(-first // block)
    j1 = (first + len(mag)) // block
    nb = max(0, j1 - j0)
    rel = j0 * block - first
    mags = mag[rel:rel + nb * block].reshape(nb, block)
    sums = mags.sum(axis=1)
    means = (sums + (block >> 1)) // block
    sq = np.minimum(((mags - means[:, None]) ** 2).sum(axis=1), F.SUM_LIMIT)
    jerks = jerk[rel:rel + nb * block].reshape(nb, block).sum(axis=1)
    return j0, sums, sq, jerks


def _motion(blocks, k: np.ndarray, n_blocks: int, block: int) -> np.ndarray:
    """FLAG_MOTION where a block of the window has a magnitude std of MOTION_MG or more."""
    j0, _, sq, _ = blocks
    rows = (k + 1 - n_blocks - j0)[:, None] + np.arange(n_blocks)
    moved = (sq[rows] >= min(F.MOTION_MG * F.MOTION_MG * block, F.SUM_LIMIT)).any(axis=1)
    return np.where(moved, F.FLAG_MOTION, 0)


def _imu_stats(blocks, k: np.ndarray, n_blocks: int, block: int, rate: int, ref: int) -> list[np.ndarray]:
    """Mean, std, jerk and energy (RMS around ref) per window k from blocks k+1-n_blocks .. k, as the watch."""
    j0, sums, sq, jerks = blocks
    first = k + 1 - n_blocks - j0  # row of each window's first block
    nn = block * n_blocks
    lim = F.SUM_LIMIT // (2 * n_blocks)
    rows = first[:, None] + np.arange(n_blocks)
    tot = sums[rows].sum(axis=1)
    jerk = jerks[rows].sum(axis=1)
    mean = (tot + (nn >> 1)) // nn
    dm = (sums[rows] + (block >> 1)) // block - mean[:, None]
    var = (np.minimum(sq[rows] // block, lim) + np.minimum(dm * dm, lim)).sum(axis=1) // n_blocks
    energy = isqrt_round(np.minimum(var + np.minimum((mean - ref) ** 2, F.SUM_LIMIT), F.SUM_LIMIT))
    jerk = (jerk // nn) * rate + (2 * (jerk % nn) * rate + nn) // (2 * nn)
    return [mean, isqrt_round(var), jerk, energy]


def _hr_stats(beats: Beats, lo: np.ndarray, hi: np.ndarray, window_ms: int,
              fs: int) -> tuple[np.ndarray, np.ndarray]:
    """HR features (columns 0..HR_COLUMNS-1) and flags of the beats with detector index in [lo, hi) per window."""
    m = beats.index
    i0 = np.searchsorted(m, lo, side="left")
    i1 = np.searchsorted(m, hi, side="left")
    v = beats.valid
    ibi = np.where(v, beats.ibi_ms, 0)
    h = beats.hr_x10

    def window_sum(x):
        c = np.concatenate(([0], np.cumsum(x)))
        return c[i1] - c[i0]

    n = window_sum(v.astype(np.int64))
    tot = window_sum(ibi)
    toth = window_sum(h)
    npair = window_sum(beats.pair.astype(np.int64))
    sd2 = window_sum(beats.sd_ms ** 2)

    big = window_sum(beats.pair & (np.abs(beats.sd_ms) > F.PNN_MS))
    win, idx = _pairs(i0, i1)
    hmin, hmax, nb, totb, tothb, y2b, g2b = _robust_spread(win, idx, v, beats.ibi_ms, h, n, len(lo))
    slope = _hr_slope(m, v, h, lo, win, idx, n, toth, fs)

    ok = n > 0
    n1 = np.maximum(n, 1)
    p1 = np.maximum(npair, 1)
    # The spread over the intervals inside the band around the window's median (nb of them).
    nb1 = np.maximum(nb, 1)
    d = (totb + (nb >> 1)) // nb1 - 1000
    d2i = y2b + nb * d * d - 2 * d * (totb - 1000 * nb)
    d = (tothb + (nb >> 1)) // nb1 - 1000
    d2h = g2b + nb * d * d - 2 * d * (tothb - 1000 * nb)
    X = np.zeros((len(lo), F.HR_COLUMNS), dtype=np.int64)
    X[:, 0] = (F.HR_X10 * n + (tot >> 1)) // np.maximum(tot, 1)
    X[:, 1] = isqrt_round(d2h // nb1)
    X[:, 2] = hmin
    X[:, 3] = hmax
    X[:, 4] = np.where(npair > 0, isqrt_round(100 * (sd2 // p1) + 100 * (sd2 % p1) // p1), 0)
    X[:, 5] = isqrt_round(100 * (d2i // nb1) + 100 * (d2i % nb1) // nb1)
    X[:, 6] = n
    X[:, 7] = np.minimum(100, 100 * tot // window_ms)
    X[:, 8] = slope
    X[:, 9] = (tot + (n >> 1)) // n1
    X[:, 10] = np.where(npair > 0, (1000 * big + (npair >> 1)) // p1, 0)
    if window_ms >= 1000 * F.FREQ_MIN_S:
        X[:, 11:13] = _spectrum(m, v, beats.ibi_ms, lo, win, idx, n, X[:, 9], window_ms // 1000, fs)
        X[X[:, 7] < F.FREQ_QUALITY, 11:13] = 0
    X[~ok] = 0
    flags = (np.where(X[:, 7] < F.QUALITY_MIN, F.FLAG_LOW_QUALITY, 0)
             | np.where(n < F.MIN_BEATS, F.FLAG_FEW_BEATS, 0))
    flags[~ok] = F.FLAG_LOW_QUALITY | F.FLAG_FEW_BEATS
    return X, flags


def _robust_spread(win, idx, v, ibi, h, n, n_windows):
    """The watch's robust beat-to-beat spread per window (docs/features.md, "Robust spread").

    hr_min / hr_max: the heart rates of the valid intervals of rank n - 1 - n // TRIM_DIV and
    n // TRIM_DIV in ascending order; then the count and the sums (intervals, heart rates, their
    squares around 1000) of the valid intervals inside the band of the window's median interval.
    """
    keep = v[idx]
    win, x = win[keep], ibi[idx][keep]
    hx = h[idx][keep]
    ibs = x[np.lexsort((x, win))]  # each window's valid intervals, ascending (win is sorted)
    start = np.cumsum(n) - n
    trim = n // F.TRIM_DIV
    if len(ibs) == 0:
        zero = np.zeros(n_windows, dtype=np.int64)
        return zero, zero, zero, zero, zero, zero, zero

    def rank(r):  # the interval of rank r of each window (windows without beats: any, they are zeroed)
        return ibs[np.clip(start + r, 0, len(ibs) - 1)]

    slow, fast, med = rank(n - 1 - trim), rank(trim), rank((n - 1) // 2)
    band = F.ARTEFACT_DIV * np.abs(x - med[win]) <= med[win]
    wb, xb, hb = win[band], x[band], hx[band]

    def band_sum(w):
        return np.bincount(wb, weights=w, minlength=n_windows).astype(np.int64)

    return ((F.HR_X10 + (slow >> 1)) // slow, (F.HR_X10 + (fast >> 1)) // fast, band_sum(np.ones(len(wb))),
            band_sum(xb), band_sum(hb), band_sum((xb - 1000) ** 2), band_sum((hb - 1000) ** 2))


def _pairs(i0: np.ndarray, i1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (window, beat) pair once, beats i0[w] .. i1[w]-1 of window w: fine for windows of <= 206 beats."""
    counts = i1 - i0
    win = np.repeat(np.arange(len(i0)), counts)
    idx = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(i0, counts)
    return win, idx


_COS = np.asarray([S.cos256(i) for i in range(256)], dtype=np.int64)


def _spectrum(m, v, ibi, lo, win, idx, n, mean, w, fs):
    """The watch's HF amplitude and LF/HF ratio per window (columns 11, 12), before the quality gate."""
    out = np.zeros((len(lo), 2), dtype=np.int64)
    if len(idx) == 0:
        return out
    valid = v[idx]
    d = np.where(valid, ibi[idx] - mean[win], 0)
    t = ((m[idx] - lo[win]) * 1000) // fs
    n1 = np.maximum(n, 1)
    k1 = S.freq_bin(w, 15)
    lf = np.zeros(len(lo), dtype=np.int64)
    hf = np.zeros(len(lo), dtype=np.int64)
    for k in range(S.freq_bin(w, 4), S.freq_bin(w, 40)):
        i = (k * t * 256 // (1000 * w)) & 255
        c = np.bincount(win, weights=d * _COS[i], minlength=len(lo)).astype(np.int64)
        s = np.bincount(win, weights=d * _COS[(i + 192) & 255], minlength=len(lo)).astype(np.int64)
        c = np.clip(((c // n1) * 10) // 512, -16383, 16383)
        s = np.clip(((s // n1) * 10) // 512, -16383, 16383)
        if k < k1:
            lf = np.minimum(lf + c * c + s * s, F.SUM_LIMIT)
        else:
            hf = np.minimum(hf + c * c + s * s, F.SUM_LIMIT)
    out[:, 0] = isqrt_round(hf)
    out[:, 1] = np.where(out[:, 0] > 0, np.minimum(10000, 100 * isqrt_round(lf) // np.maximum(out[:, 0], 1)), 0)
    return out


def _hr_slope(m, v, h, lo, win, idx, n, toth, fs):
    """The watch's least-squares HR slope (0.1 bpm/min) per window, from per-beat terms gathered per window."""
    out = np.zeros(len(lo), dtype=np.int64)
    if len(idx) == 0:
        return out
    valid = v[idx]
    t = (4 * (m[idx] - lo[win])) // fs
    n1 = np.maximum(n, 1)
    tsum = np.bincount(win, weights=np.where(valid, t, 0), minlength=len(lo)).astype(np.int64)
    tm = (tsum + (n >> 1)) // n1
    hm = (toth + (n >> 1)) // n1
    dt = np.where(valid, t - tm[win], 0)
    sth = np.bincount(win, weights=dt * (h[idx] - hm[win]), minlength=len(lo)).astype(np.int64)
    stt = np.bincount(win, weights=dt * dt, minlength=len(lo)).astype(np.int64)
    s1 = np.maximum(stt, 1)
    q = sth // s1
    r = (sth - q * s1) * 24
    return np.where(stt > 0, 240 * q + 10 * (r // s1) + (10 * (r % s1)) // s1, 0)


def baseline_mean(X: np.ndarray, trusted: np.ndarray, windows: int = 12) -> np.ndarray:
    """The watch's Baseline: rounded mean of the first `windows` trusted rows of X (zeros where masked off).

    X holds one participant's calibration windows in time order; trusted marks the rows with
    no UNTRUSTED flag. Returns the vector that `baseline_normalise` subtracts.
    """
    X = np.asarray(X, dtype=np.int64)
    rows = X[np.asarray(trusted, dtype=bool)][:windows]
    mean = np.zeros(X.shape[1], dtype=np.int64)
    if len(rows):
        c = len(rows)
        mean = (rows.sum(axis=0) + (c >> 1)) // c
    return mean


def baseline_normalise(X: np.ndarray, mean: np.ndarray, names) -> np.ndarray:
    """X minus the baseline mean on the NORMALISED features, as Baseline.apply does on the watch."""
    mask = np.array([name in F.NORMALISED for name in names])
    return np.asarray(X, dtype=np.int64) - np.where(mask, mean, 0)


def window_grid(ppg_span: tuple[int, int], imu_spans: list[tuple[int, int]], *, ppg_rate: int, imu_rate: int,
                window_s: int, step_s: int) -> np.ndarray:
    """The windows k lying wholly inside a PPG index span [first, end) and every IMU span
    [first, end): window k covers PPG indices [(k+1)*step - window, (k+1)*step) (times the
    rate) and IMU blocks k+1-window/step .. k, as on the watch."""
    n_blocks, step, block = window_s // step_s, step_s * ppg_rate, step_s * imu_rate
    k_first = -(-(ppg_span[0] + window_s * ppg_rate) // step)
    k_last = ppg_span[1] // step
    for first, end in imu_spans:
        k_first = max(k_first, n_blocks - (-first // block))
        k_last = min(k_last, end // block)
    return np.arange(k_first - 1, k_last, dtype=np.int64)


def extract_features(ppg_ir, acc, gyro=None, *, ppg_rate: int, imu_rate: int, window_s: int, step_s: int,
                     acc_unit_g: float, gyro_unit_dps: float = 0.0, first_ppg_index: int = 0,
                     first_imu_index: int = 0, first_gyro_index: int | None = None) -> FeatureTable:
    """Features of every complete window, equal to the watch's FeatureEngine on each.

    Parameters:
        ppg_ir: (n,) 18-bit IR counts; acc, gyro: (n, 3) int16 LSB (gyro None on a board
        without one: the smaller feature set, spec FEATURE_SPEC_ID_NO_GYRO); ppg_rate,
        imu_rate: Hz; window_s, step_s: s (integers, window a multiple of step);
        acc_unit_g, gyro_unit_dps: the sensor units per LSB (STREAM_INFO); first_ppg_index,
        first_imu_index: stream indices of the first samples (first_gyro_index: the gyroscope's,
        when it differs from the accelerometer's first_imu_index).
    Returns: a FeatureTable with one row per window k lying wholly inside the recording:
        window k covers PPG indices [(k+1)*step - window, (k+1)*step) (times the rate), and
        the same seconds of IMU samples. Windows that would start before a stream's first
        sample are not produced, as on the watch.
    """
    if window_s <= 0 or window_s % step_s or window_s > F.MAX_WINDOW_S:
        raise ValueError(f"window_s must be a multiple of step_s, at most {F.MAX_WINDOW_S}")
    ir = _as_int(ppg_ir, "ppg_ir", 1)
    acc = _as_int(acc, "acc", 2)
    has_gyro = gyro is not None
    if has_gyro:
        gyro = _as_int(gyro, "gyro", 2)
        if not gyro_unit_dps or gyro_unit_dps <= 0:
            raise ValueError("gyro_unit_dps must be the gyroscope's dps per LSB when gyro is given")
    names = F.feature_names(has_gyro)
    spec_id, n_features = F.spec_for(has_gyro)
    n_blocks = window_s // step_s
    step = step_s * ppg_rate
    win = window_s * ppg_rate
    block = step_s * imu_rate

    first_gyro = first_imu_index if first_gyro_index is None else first_gyro_index
    imu_spans = [(first_imu_index, first_imu_index + len(acc))]
    if gyro is not None:
        imu_spans.append((first_gyro, first_gyro + len(gyro)))
    k = window_grid((first_ppg_index, first_ppg_index + len(ir)), imu_spans, ppg_rate=ppg_rate, imu_rate=imu_rate,
                    window_s=window_s, step_s=step_s)
    X = np.zeros((len(k), n_features), dtype=np.int64)
    end = (k + 1) * step
    if len(k) == 0:
        return FeatureTable(X, end, np.zeros(0, dtype=np.int64), names, F.FEATURE_UNITS[:n_features], spec_id)

    beats = heart_rate(ir, ppg_rate, first_index=first_ppg_index)
    r = beats.info["R"]
    X[:, :F.HR_COLUMNS], flags = _hr_stats(beats, end - win - r, end - r, 1000 * window_s, ppg_rate)
    flags |= np.where(end - win < first_ppg_index + beats.info["warmup_samples"], F.FLAG_WARMUP, 0)
    acc_blocks = _imu_blocks(acc, first_imu_index, block, F.micro_units(acc_unit_g), 1000)
    flags |= _motion(acc_blocks, k, n_blocks, block)
    a = F.ACC_COLUMN
    X[:, a:a + 4] = np.stack(_imu_stats(acc_blocks, k, n_blocks, block, imu_rate, F.G_MG), axis=1)
    X[:, a + 4] = np.searchsorted(np.asarray(F.ACTIVITY_MG), X[:, a + 1], side="right")
    if gyro is not None:
        gyro_blocks = _imu_blocks(gyro, first_gyro, block, F.micro_units(gyro_unit_dps), 100000)
        X[:, F.GYRO_COLUMN:F.GYRO_COLUMN + 4] = np.stack(
            _imu_stats(gyro_blocks, k, n_blocks, block, imu_rate, 0), axis=1)
    return FeatureTable(X, end, flags.astype(np.int64), names, F.FEATURE_UNITS[:n_features], spec_id)

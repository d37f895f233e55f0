"""Heart beats and window features in integer arithmetic: the reference (docs/features.md).

host/wears/features.py computes the same integers with numpy and imports the constants
and parameter helpers from here. The per-sample loops are in watch.feature_loops.
"""

import sys as _sys

from watch.buffers import zeros

from watch import feature_loops as _loops  # its names stay out of this module's dictionary
from watch.spectrum import spectrum

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

# watch.feature_loops' state layout and limits, folded here as `_` constants (names that module
# exported would be a dictionary entry each there; tests/host/test_feature_parity.py checks
# that the copies are equal).
_OFF = const(0x20000000)
_SUM_LIMIT = const(0x3FFFFFFF)
_D_VSUM = const(2)
_D_BEAT = const(10)
_D_ND = const(11)
_D_NS = const(12)
_D_C = const(13)
_D_K = const(14)
_D_R = const(15)
_D_L = const(16)
_D_RING = const(17)
_D_D = const(18)
_D_SIZE = const(20)
_I_SUM = const(0)
_I_JERK = const(1)
_I_POS = const(3)
_I_BN = const(4)
_I_SCALE = const(5)
_I_SHIFT = const(6)
_I_QLO = const(7)
_I_QHI = const(8)
_I_SIZE = const(9)

_FEATURE_VERSION = const(2)  # feature set v2 (docs/features.md)
# Spec ids name a feature set's values, not only its columns: a blob made for a retired id is
# refused (ids 1-2: the 13/11-feature draft; 3-6: feature set v1, whose hr_std, hr_min, hr_max and
# sdnn differ, in the order of 7-10; wears.feature_specs keeps that history).
_FEATURE_SPEC_ID = const(7)  # feature set v2 with the gyroscope
FEATURE_SPEC_ID_NO_GYRO = const(8)  # the same set without the gyroscope features
_FEATURE_SPEC_ID_BASELINE = const(9)  # spec 7 minus the wearer's baseline (watch.baseline)
_FEATURE_SPEC_ID_NO_GYRO_BASELINE = const(10)  # spec 8 minus the wearer's baseline
FEATURE_NAMES = ("hr_mean", "hr_std", "hr_min", "hr_max", "rmssd", "sdnn", "beats", "ppg_quality",
                 "hr_slope", "ibi_mean", "pnn50", "hf_amp", "lf_hf",
                 "acc_mean", "acc_std", "acc_jerk", "acc_energy", "activity",
                 "gyro_mean", "gyro_std", "gyro_jerk", "gyro_energy")
FEATURE_UNITS = ("0.1 bpm", "0.1 bpm", "0.1 bpm", "0.1 bpm", "0.1 ms", "0.1 ms", "count", "%",
                 "0.1 bpm/min", "ms", "0.1 %", "0.1 ms", "0.01",
                 "mg", "mg", "mg/s", "mg", "level 0..3",
                 "0.1 dps", "0.1 dps", "0.1 dps/s", "0.1 dps")
GYRO_FEATURES = ("gyro_mean", "gyro_std", "gyro_jerk", "gyro_energy")  # the last names; absent without a gyroscope
_HR_COLUMNS = const(13)  # out[0:13] come from the beats
ACC_COLUMN = const(13)  # out[13:18] from the accelerometer
_GYRO_COLUMN = const(18)  # out[18:22] from the gyroscope
# Features a per-participant baseline is subtracted from (Baseline, docs/features.md).
NORMALISED = ("hr_mean", "hr_std", "hr_min", "hr_max", "rmssd", "sdnn", "ibi_mean", "pnn50", "hf_amp", "lf_hf",
              "acc_mean", "acc_std", "acc_jerk", "acc_energy", "gyro_mean", "gyro_std", "gyro_jerk", "gyro_energy")

FLAG_LOW_QUALITY = const(1)  # valid intervals cover less than _QUALITY_MIN % of the window
FLAG_FEW_BEATS = const(2)  # fewer than _MIN_BEATS valid intervals
_FLAG_WARMUP = const(4)  # the window starts before the detector's warm-up ended
FLAG_GAP = const(8)  # samples were missing in the window (held at the last value)
_FLAG_MOTION = const(16)  # an accelerometer block of the window moved: magnitude std >= _MOTION_MG
UNTRUSTED = const(31 - 16)  # LOW_QUALITY | FEW_BEATS | WARMUP | GAP: beats not to trust (motion is a feature)

_QUALITY_MIN = const(50)
_MIN_BEATS = const(3)
_IBI_MIN_MS = const(300)  # 200 bpm
_IBI_MAX_MS = const(2000)  # 30 bpm
_ARTEFACT_DIV = const(5)  # artefact: > ref / 5 away from the reference or from the interval before
_TRIM_DIV = const(10)  # hr_min / hr_max leave out the n // 10 slowest / fastest valid intervals of a window
_REF_INTERVALS = const(5)  # the reference: median of the previous 5 in-range intervals
_MOTION_MG = const(300)  # std of the acceleration magnitude over a step block that marks motion
_HR_X10 = const(600000)  # 0.1 bpm = _HR_X10 / interval in ms
_MAX_WINDOW_S = const(60)  # at most 206 intervals of >= 300 ms: the HR sums stay below 2^30
_PNN_MS = const(50)  # pNN50: successive differences above 50 ms
_FREQ_MIN_S = const(30)  # frequency-domain HRV needs windows of 30 s or more
_FREQ_QUALITY = const(80)  # and valid intervals over 80 % of the window
_G_MG = const(1000)  # gravity: the accelerometer's energy is taken around 1 g

# The host (host/wears/features.py) imports these names; on a watch they stay `_` constants,
# folded into the code and kept out of the module's dictionary (a dict entry each).
if _sys.implementation.name != "micropython":
    FEATURE_VERSION = _FEATURE_VERSION
    AXIS_LIMIT = _loops._AXIS_LIMIT
    SUM_LIMIT = _SUM_LIMIT
    VIPER = _loops.VIPER
    FEATURE_SPEC_ID = _FEATURE_SPEC_ID
    FEATURE_SPEC_ID_BASELINE = _FEATURE_SPEC_ID_BASELINE
    FEATURE_SPEC_ID_NO_GYRO_BASELINE = _FEATURE_SPEC_ID_NO_GYRO_BASELINE
    HR_COLUMNS = _HR_COLUMNS
    GYRO_COLUMN = _GYRO_COLUMN
    FLAG_WARMUP = _FLAG_WARMUP
    FLAG_MOTION = _FLAG_MOTION
    QUALITY_MIN = _QUALITY_MIN
    MIN_BEATS = _MIN_BEATS
    IBI_MIN_MS = _IBI_MIN_MS
    IBI_MAX_MS = _IBI_MAX_MS
    ARTEFACT_DIV = _ARTEFACT_DIV
    TRIM_DIV = _TRIM_DIV
    REF_INTERVALS = _REF_INTERVALS
    MOTION_MG = _MOTION_MG
    HR_X10 = _HR_X10
    MAX_WINDOW_S = _MAX_WINDOW_S
    PNN_MS = _PNN_MS
    FREQ_MIN_S = _FREQ_MIN_S
    FREQ_QUALITY = _FREQ_QUALITY
    G_MG = _G_MG
ACTIVITY_MG = (15, 60, 200)  # acc_std thresholds of activity levels 1, 2, 3 (still / light / moderate / vigorous)

_VALID = const(1)  # beat flags: the interval ending at this beat passed the checks
_PAIR = const(2)  # and so did the previous one
# The beat ring's entries (array 'H'): the interval in ms (< 4096: it is at most 4 s) and the
# flags above it; the detector index modulo 2^16 in a second array.
_IBI = const(0x1FFF)
_FLAGS = const(13)  # flags = entry >> _FLAGS
_VALID_BIT = const(0x2000)  # _VALID << _FLAGS
_PAIR_BIT = const(0x4000)  # _PAIR << _FLAGS
_WRAP = const(0xFFFF)  # every beat kept is within this many samples of the newest
_SLACK = const(2)  # steps compute() may fall behind before windows are dropped
_FILL = const(4)  # a gap is fed as runs of this many held samples


def detector_params(ppg_rate):
    """(ND, NS, C, K, R, L) of the beat detector at ppg_rate Hz (docs/features.md).

    ND: detrend window (0.75 s); NS: smoothing window (0.1 s); C: lag of the detrended
    sample (ND // 2); K: right shift keeping |s| < 2^25 for 18-bit input; R: peak half-width
    (0.3 s); L: look-back of the amplitude check (0.9 s).
    """
    nd = max(3, (3 * ppg_rate + 2) // 4)
    ns = max(1, (ppg_rate + 5) // 10)
    r = max(1, (3 * ppg_rate + 5) // 10)
    k = 0
    while ((nd * ns) << 18) >> k >= (1 << 25) - ns - 1:
        k += 1
    return nd, ns, nd // 2, k, r, max(r + 1, (9 * ppg_rate + 5) // 10)


def activity_level(acc_std_mg):
    """0 still, 1 light, 2 moderate, 3 vigorous, from the spread of the acceleration magnitude."""
    level = 0
    for t in ACTIVITY_MG:
        if acc_std_mg >= t:
            level += 1
    return level


def upstroke_lag(ppg_rate):
    """D: the detector looks for the steepest rise of the smoothed pulse, s[p] - s[p - D] (0.15 s)."""
    return max(1, (3 * ppg_rate + 10) // 20)


def unit_scale(micro_per_lsb, per_unit):
    """(scale, shift): (lsb * scale + 2^(shift-1)) >> shift = lsb * micro_per_lsb / per_unit, scale < 2^15."""
    if micro_per_lsb <= 0:
        return 0, 1
    shift = 1
    while shift < 30 and ((micro_per_lsb << (shift + 1)) + per_unit // 2) // per_unit < 32768:
        shift += 1
    return ((micro_per_lsb << shift) + per_unit // 2) // per_unit, shift


def micro_units(unit_per_lsb):
    """g or dps per LSB (a driver's float) in integer micro-units."""
    return int(unit_per_lsb * 1000000 + 0.5) if unit_per_lsb else 0


def feature_names(has_gyro=True):
    """The feature names of a board with or without a gyroscope, in order."""
    return FEATURE_NAMES if has_gyro else FEATURE_NAMES[:-len(GYRO_FEATURES)]


def spec_for(has_gyro=True, baseline=False):
    """(feature spec id, number of features); baseline: the features minus the wearer's baseline."""
    if baseline:
        return (_FEATURE_SPEC_ID_BASELINE if has_gyro else _FEATURE_SPEC_ID_NO_GYRO_BASELINE), len(feature_names(has_gyro))
    return (_FEATURE_SPEC_ID if has_gyro else FEATURE_SPEC_ID_NO_GYRO), len(feature_names(has_gyro))


class _Stream:
    """Index bookkeeping of one stream: overlaps are skipped, gaps hold the last sample."""

    def __init__(self, width):
        self.width = width
        self.fill = zeros("h" if width == 3 else "I", _FILL * width)  # the last sample, repeated
        self.first = -1  # index of the first sample
        self.next = -1  # index of the next expected sample
        self.gap_lo = -1  # the latest run of held samples
        self.gap_hi = -1

    def begin(self):
        pass  # the first sample arrived

    def feed(self, src, off, n):
        raise NotImplementedError

    def add(self, src, n, first_index):
        if self.first < 0:
            self.first = self.next = first_index
            self.begin()
        off = self.next - first_index
        if off < 0:
            self.gap_lo = self.next
            self.gap_hi = first_index
            w = self.width
            for i in range(w, _FILL * w):
                self.fill[i] = self.fill[i % w]
            while off < 0:
                k = min(-off, _FILL)
                self.feed(self.fill, 0, k)
                off += k
        if off < n:
            self.feed(src, off, n - off)
            for i in range(self.width):
                self.fill[i] = src[(n - 1) * self.width + i]  # held over a gap

    def gap_in(self, lo, hi):
        return self.gap_hi > lo and self.gap_lo < hi


class _Imu(_Stream):
    """Accelerometer or gyroscope magnitudes, summed per step block."""

    def __init__(self, block, blocks, micro_per_lsb, per_unit, fast):
        super().__init__(3)
        self.per_unit = per_unit
        self.st = zeros("i", _I_SIZE)
        self.st[_I_BN] = block
        self.set_unit(micro_per_lsb)
        self.cap = blocks
        self.bsum = zeros("i", blocks)  # per block: sum of magnitudes
        self.bsq = zeros("i", blocks)  # sum of (magnitude - rounded block mean)^2, saturated
        self.bjerk = zeros("i", blocks)  # sum of |magnitude change|
        self.done = 0  # blocks completed; block j holds indices [j * block, (j + 1) * block)
        self.run = _loops.imu_run_viper if fast else _loops.imu_run_py

    def set_unit(self, micro_per_lsb):
        self.st[_I_SCALE], self.st[_I_SHIFT] = unit_scale(micro_per_lsb, self.per_unit)

    def begin(self):
        self.done = self.first // self.st[_I_BN]
        self.st[_I_POS] = self.first - self.done * self.st[_I_BN]

    def feed(self, src, off, n):
        st = self.st
        bn = st[_I_BN]
        while n > 0:
            k = self.run(st, src, off, n)  # pyright: ignore[reportArgumentType] (viper takes buffers)
            off += k
            n -= k
            self.next += k
            if st[_I_POS] == bn:
                j = self.done % self.cap
                self.bsum[j] = st[_I_SUM]
                self.bsq[j] = _loops.sq_dev(st)
                self.bjerk[j] = st[_I_JERK]
                st[_I_SUM] = st[_I_JERK] = st[_I_POS] = st[_I_QLO] = st[_I_QHI] = 0
                self.done += 1

    def moving(self, last, blocks):
        limit = min(_MOTION_MG * _MOTION_MG * self.st[_I_BN], _SUM_LIMIT)
        for b in range(last - blocks + 1, last + 1):
            if self.bsq[b % self.cap] >= limit:
                return _FLAG_MOTION
        return 0

    def stats(self, last, blocks, out, i, rate, ref):
        # Mean, std, jerk and energy (RMS around ref) of blocks last-blocks+1..last into out[i:i+4].
        bn = self.st[_I_BN]
        nn = bn * blocks
        lim = _SUM_LIMIT // (2 * blocks)
        tot = jerk = var = 0
        for b in range(last - blocks + 1, last + 1):
            tot += self.bsum[b % self.cap]
            jerk += self.bjerk[b % self.cap]
        mean = (tot + (nn >> 1)) // nn
        # Pooled within-block variance plus the variance of the rounded block means.
        for b in range(last - blocks + 1, last + 1):
            dm = (self.bsum[b % self.cap] + (bn >> 1)) // bn - mean
            var += min(self.bsq[b % self.cap] // bn, lim) + min(dm * dm, lim)
        var //= blocks
        out[i] = mean
        out[i + 1] = _loops.isqrt_round(var)
        out[i + 2] = (jerk // nn) * rate + (2 * (jerk % nn) * rate + nn) // (2 * nn)
        out[i + 3] = _loops.isqrt_round(min(var + min((mean - ref) * (mean - ref), _SUM_LIMIT), _SUM_LIMIT))


class _Ppg(_Stream):
    """The beat detector and a ring of confirmed beats with their intervals."""

    def __init__(self, rate, span, fast):
        super().__init__(1)
        self.rate = rate
        nd, ns, c, k, r, l = detector_params(rate)
        self.r = r
        dd = upstroke_lag(rate)
        self.warmup = nd + ns - 2 + dd + l  # the first sample that can be a beat
        size = l + r + 2  # the smoothed ring and each deque (watch.feature_loops)
        st = self.st = zeros("i", _D_SIZE)
        st[_D_VSUM] = _OFF
        st[_D_ND], st[_D_NS], st[_D_C] = nd, ns, c
        st[_D_K], st[_D_R], st[_D_L] = k, r, l
        st[_D_RING] = size
        st[_D_D] = dd
        self.xr = zeros("i", nd)  # raw ring
        self.vr = zeros("i", ns + dd)  # detrended ring, then the last D smoothed values
        self.sr = zeros("i", size)  # smoothed ring
        for ring in (self.vr, self.sr):
            for i in range(len(ring)):
                ring[i] = _OFF
        self.dq = zeros("H", 2 * size)  # two deques of running maxima: their positions in sr
        self.run = _loops.ppg_run_viper if fast else _loops.ppg_run_py
        cap = self.cap = span // (r + 1) + 4
        # Beat j (0: the first) is in slot j % cap while old <= j < nb. Its detector index is
        # kept modulo 2^16: beats older than 2^16 samples before the newest leave the ring (a
        # window spans far less), so top - ((top - bm) & _WRAP) is exact for every beat kept.
        self.bm = zeros("H", cap)  # detector index modulo 2^16
        self.bibi = zeros("H", cap)  # interval ending at the beat, ms (0: the first beat), | flags << _FLAGS
        self.nb = 0  # beats so far
        self.old = 0  # the oldest beat kept
        self.top = 0  # detector index of the newest beat
        self.lost_ibi = 0  # interval of beat old - 1: the successive difference of beat old needs it
        self.d16 = 0  # sub-sample offset of the last beat
        self.lost = -_SUM_LIMIT  # detector index of the newest beat pushed out of the ring
        self.ref = zeros("h", _REF_INTERVALS)  # the last in-range intervals
        self.srt = zeros("h", _REF_INTERVALS)
        self.nref = 0
        self.rr = zeros("H", 16)  # valid RR intervals in 1/1024 s since the last window
        self.nrr = 0

    def feed(self, src, off, n):
        st = self.st
        while n > 0:
            k = self.run(st, self.xr, self.vr, self.sr, self.dq, src, off, n)  # pyright: ignore[reportArgumentType] (viper takes buffers)
            off += k
            n -= k
            self.next += k
            if st[_D_BEAT]:
                self.beat(st[_D_BEAT] - 1)

    def beat(self, p):
        size = self.st[_D_RING]
        a = self.sr[(p - 1) % size] - self.sr[p % size]  # < 0: the peak is strictly above its left
        b = self.sr[(p + 1) % size] - self.sr[p % size]  # <= 0
        d16 = (8 * (b - a) + (-(a + b) >> 1)) // -(a + b)  # parabola vertex, 1/16 sample
        m = self.first + p
        fs = self.rate
        cap = self.cap
        pv = self.bibi[(self.nb - 1) % cap]  # the previous beat's interval and flags
        ibi = flags = 0
        if self.nb:
            j16 = 16 * min(m - self.top, 4 * fs) + d16 - self.d16
            ibi = (j16 * 125 + fs) // (2 * fs)  # 1/16 sample -> ms
            if _IBI_MIN_MS <= ibi <= _IBI_MAX_MS:
                if self.nref >= _REF_INTERVALS:
                    srt = self.srt
                    for i in range(_REF_INTERVALS):  # insertion sort for the median
                        v = self.ref[i]
                        j = i
                        while j and srt[j - 1] > v:
                            srt[j] = srt[j - 1]
                            j -= 1
                        srt[j] = v
                    ref = srt[_REF_INTERVALS >> 1]
                    if _ARTEFACT_DIV * max(abs(ibi - ref), abs(ibi - (pv & _IBI))) <= ref:
                        flags = _VALID
                if flags and pv & _VALID_BIT:
                    flags |= _PAIR
                self.ref[self.nref % _REF_INTERVALS] = ibi
                self.nref += 1
            if flags and self.nrr < 16:
                self.rr[self.nrr] = (j16 * 64 + (fs >> 1)) // fs
                self.nrr += 1
        top = self.top
        while self.old < self.nb:  # the oldest leaves for a new slot, or when 2^16 samples old
            j = self.old % cap
            old = top - ((top - self.bm[j]) & _WRAP)
            if self.nb - self.old < cap and m - old <= _WRAP:
                break
            self.lost = old
            self.lost_ibi = self.bibi[j] & _IBI
            self.old += 1
        slot = self.nb % cap
        self.bm[slot] = m & _WRAP
        self.bibi[slot] = ibi | flags << _FLAGS
        self.top = m
        self.d16 = d16
        self.nb += 1

    def rank(self, j0, j1, r):
        # The valid interval of rank r (0: the shortest) of beats j0..j1-1: a binary search on its value.
        cap = self.cap
        a = _IBI_MIN_MS
        b = _IBI_MAX_MS
        while a < b:
            mid = (a + b) >> 1
            c = 0
            for j in range(j0, j1):
                v = self.bibi[j % cap]
                if v & _VALID_BIT and v & _IBI <= mid:
                    c += 1
            if c > r:
                b = mid
            else:
                a = mid + 1
        return a

    def hr(self, lo, hi, window_ms, out):
        # HR features of the beats with detector index in [lo, hi) into out[0:_HR_COLUMNS]; their flags.
        cap = self.cap
        top = self.top
        j0 = self.old
        j1 = self.nb
        while j1 > j0 and top - ((top - self.bm[(j1 - 1) % cap]) & _WRAP) >= hi:
            j1 -= 1
        while j0 < j1 and top - ((top - self.bm[j0 % cap]) & _WRAP) < lo:
            j0 += 1
        n = tot = toth = npair = sd2 = big = tsum = 0
        pi = self.bibi[(j0 - 1) % cap] & _IBI if j0 > self.old else self.lost_ibi  # the interval before
        for j in range(j0, j1):
            v = self.bibi[j % cap]
            ibi = v & _IBI
            if v & _VALID_BIT:
                n += 1
                tot += ibi
                toth += (_HR_X10 + (ibi >> 1)) // ibi
                tsum += (4 * ((self.bm[j % cap] - lo) & _WRAP)) // self.rate  # beat time in 1/4 s from the window start
            if v & _PAIR_BIT:
                npair += 1
                sd = ibi - pi
                sd2 += sd * sd
                if sd > _PNN_MS or sd < -_PNN_MS:
                    big += 1
            pi = ibi
        for i in range(_HR_COLUMNS):
            out[i] = 0
        if n == 0:
            return FLAG_LOW_QUALITY | FLAG_FEW_BEATS
        # Robust spread: trimmed extremes, and the spread inside the band around the median interval.
        trim = n // _TRIM_DIV
        slow = self.rank(j0, j1, n - 1 - trim)
        fast = self.rank(j0, j1, trim)
        med = self.rank(j0, j1, (n - 1) >> 1)
        # Least-squares slope of h over the beat times, around the rounded means (sums < 2^30).
        tm = (tsum + (n >> 1)) // n
        hm = (toth + (n >> 1)) // n
        sth = stt = nb = totb = tothb = y2 = g2 = 0
        for j in range(j0, j1):
            v = self.bibi[j % cap]
            if v & _VALID_BIT:
                t = (4 * ((self.bm[j % cap] - lo) & _WRAP)) // self.rate - tm
                ibi = v & _IBI
                h = (_HR_X10 + (ibi >> 1)) // ibi
                sth += t * (h - hm)
                stt += t * t
                if _ARTEFACT_DIV * abs(ibi - med) <= med:
                    nb += 1
                    totb += ibi
                    tothb += h
                    y2 += (ibi - 1000) * (ibi - 1000)  # around 1000: sums of squares stay < 2^28
                    g2 += (h - 1000) * (h - 1000)
        if stt:
            # 0.1 bpm per 1/4 s is 240 (0.1 bpm)/min: floor(240 sth / stt) in pieces below 2^30.
            q = sth // stt
            r = (sth - q * stt) * 24
            out[8] = 240 * q + 10 * (r // stt) + (10 * (r % stt)) // stt
        # sum((x - m)^2) = sum(y^2) + n (m - 1000)^2 - 2 (m - 1000) sum(y), y = x - 1000, exactly.
        # The median is in its own band: nb >= 1.
        d = (totb + (nb >> 1)) // nb - 1000
        d2i = y2 + nb * d * d - 2 * d * (totb - 1000 * nb)
        d = (tothb + (nb >> 1)) // nb - 1000
        d2h = g2 + nb * d * d - 2 * d * (tothb - 1000 * nb)
        out[0] = (_HR_X10 * n + (tot >> 1)) // tot
        out[1] = _loops.isqrt_round(d2h // nb)
        out[2] = (_HR_X10 + (slow >> 1)) // slow
        out[3] = (_HR_X10 + (fast >> 1)) // fast
        if npair:
            out[4] = _loops.isqrt_round(100 * (sd2 // npair) + 100 * (sd2 % npair) // npair)
        out[5] = _loops.isqrt_round(100 * (d2i // nb) + 100 * (d2i % nb) // nb)
        out[6] = n
        out[7] = min(100, 100 * tot // window_ms)
        out[9] = (tot + (n >> 1)) // n
        if npair:
            out[10] = (1000 * big + (npair >> 1)) // npair
        if window_ms >= 1000 * _FREQ_MIN_S and out[7] >= _FREQ_QUALITY:
            spectrum(self, j0, j1, lo, n, out[9], window_ms // 1000, out)
        return (FLAG_LOW_QUALITY if out[7] < _QUALITY_MIN else 0) | (FLAG_FEW_BEATS if n < _MIN_BEATS else 0)


class FeatureEngine:
    """Streaming beat detector and window features of feature set v1 (docs/features.md).

    Rates (Hz), window and step (s) are integers; IMU units are micro-g and micro-dps per LSB
    (or set_units with the driver's floats); fast=False forces the plain loops. Feed add_*
    in any order; while ready(), compute(out) fills out with the oldest completed window and
    returns its flags. Feeding and computing allocate nothing.
    """

    def __init__(self, ppg_rate, imu_rate, window_s, step_s, has_gyro=True, acc_ug_per_lsb=122,
                 gyro_udps_per_lsb=17500, fast=None, has_imu=True):
        if window_s <= 0 or window_s % step_s or window_s > _MAX_WINDOW_S:
            raise ValueError("window_s must be a multiple of step_s and at most _MAX_WINDOW_S s")
        self.ppg_rate = ppg_rate
        self.imu_rate = imu_rate
        self.window_s = window_s
        self.step_s = step_s
        self.has_gyro = has_gyro
        self.has_imu = has_imu  # False: the IMU is missing; windows complete on PPG alone, IMU features 0
        self.fast = _loops.VIPER if fast is None else bool(fast) and _loops.VIPER
        self.spec_id, self.n_features = spec_for(has_gyro)
        self.names = feature_names(has_gyro)
        self._blocks = window_s // step_s
        self._step = step_s * ppg_rate
        self._win = window_s * ppg_rate
        self._ib = step_s * imu_rate
        if self._ib * self._blocks > 32768:
            raise ValueError("at most 32768 IMU samples per window")
        self._ppg = _Ppg(ppg_rate, self._win + _SLACK * self._step, self.fast)
        self._acc = _Imu(self._ib, self._blocks + _SLACK + 1, acc_ug_per_lsb, 1000, self.fast)
        # No gyroscope: no gyroscope blocks either (a watch without one keeps that heap).
        self._gyro = (_Imu(self._ib, self._blocks + _SLACK + 1, gyro_udps_per_lsb, 100000, self.fast)
                      if has_gyro else None)
        self._k = -1  # the next window; -1 until every stream has started
        self.window_end = 0  # PPG index of the end of the last computed window
        self.bpm_x10 = 0  # its mean heart rate, 0.1 bpm
        self.quality = 0  # its PPG quality, 0..100
        self.beats = 0  # its valid intervals
        self.rr_1024 = zeros("H", 16)  # valid RR intervals (1/1024 s) since the window before
        self.n_rr = 0
        self.dropped = 0  # windows skipped because compute() fell behind

    def set_units(self, acc_unit_g, gyro_unit_dps=None):
        """IMU units from the driver: g per LSB and dps per LSB."""
        self._acc.set_unit(micro_units(acc_unit_g))
        if gyro_unit_dps and self._gyro is not None:
            self._gyro.set_unit(micro_units(gyro_unit_dps))

    def add_ppg(self, ir, n, first_index):
        """n IR samples (array with 4-byte items, 'I' or 'i'), the first with stream index first_index."""
        self._ppg.add(ir, n, first_index)

    def add_acc(self, xyz, n, first_index):
        """n accelerometer samples, x y z interleaved int16 (array 'h')."""
        self._acc.add(xyz, n, first_index)

    def add_gyro(self, xyz, n, first_index):
        gyro = self._gyro
        if gyro is not None:
            gyro.add(xyz, n, first_index)

    def ready(self):
        """A window has completed on every stream."""
        ppg, acc, gyro = self._ppg, self._acc, self._gyro
        imu = self.has_imu
        if self._k < 0:
            if ppg.first < 0 or imu and (acc.first < 0 or (gyro is not None and gyro.first < 0)):
                return False
            # The first window lying wholly inside every stream.
            first = max(acc.first, gyro.first) if gyro is not None else acc.first
            self._k = max(-((-(ppg.first + self._win)) // self._step),
                          self._blocks - (-first // self._ib) if imu else 0) - 1
        k1 = self._k + 1
        return ppg.next >= k1 * self._step and (not imu or acc.done >= k1 and (gyro is None or gyro.done >= k1))

    def compute(self, out):
        """The oldest completed window's features into out; its flags, or -1 when none is ready."""
        ppg, acc, gyro = self._ppg, self._acc, self._gyro
        while self.ready():
            k = self._k
            end = (k + 1) * self._step
            b0 = k + 1 - self._blocks
            if (ppg.lost < end - self._win - ppg.r and acc.done - acc.cap <= b0
                    and (gyro is None or gyro.done - gyro.cap <= b0)):
                break
            self._k += 1  # its beats or blocks were overwritten: the caller fell behind
            self.dropped += 1
        else:
            return -1
        start = end - self._win
        flags = ppg.hr(start - ppg.r, end - ppg.r, 1000 * self.window_s, out)
        if start < ppg.first + ppg.warmup:
            flags |= _FLAG_WARMUP
        lo = b0 * self._ib
        hi = (k + 1) * self._ib
        if self.has_imu:
            if ppg.gap_in(start, end) or acc.gap_in(lo, hi) or (gyro is not None and gyro.gap_in(lo, hi)):
                flags |= FLAG_GAP
            flags |= acc.moving(k, self._blocks)
            acc.stats(k, self._blocks, out, ACC_COLUMN, self.imu_rate, _G_MG)
            out[ACC_COLUMN + 4] = activity_level(out[ACC_COLUMN + 1])
            if gyro is not None:
                gyro.stats(k, self._blocks, out, _GYRO_COLUMN, self.imu_rate, 0)
        else:  # no IMU on this watch: its columns stay 0
            if ppg.gap_in(start, end):
                flags |= FLAG_GAP
            for i in range(ACC_COLUMN, self.n_features):
                out[i] = 0
        self.window_end = end
        self.bpm_x10 = out[0]
        self.quality = out[7]
        self.beats = min(255, out[6])
        for i in range(ppg.nrr):
            self.rr_1024[i] = ppg.rr[i]
        self.n_rr = ppg.nrr
        ppg.nrr = 0
        self._k += 1
        return flags


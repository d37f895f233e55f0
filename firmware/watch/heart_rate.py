"""Heart rate robust to wrist motion: PPG spectrum gated by the accelerometer's, tracked (docs/heart-rate.md).

Every 2 s, over the last 8 s: the spectra of the PPG and of the three accelerometer axes
at 25 Hz, PPG power at the frequencies where the wrist moves suppressed, and the peak
picked near the previous heart rate. Integer arithmetic, everything allocated in the
constructor; the DFT loop has a viper fast path and a plain twin giving identical results.
"""

import math
from array import array
from watch.buffers import zeros

try:
    import micropython
    from micropython import const
    VIPER = True
except ImportError:  # CPython
    VIPER = False

    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

RATE = const(25)  # Hz: both streams are averaged down to this rate
WINDOW = const(200)  # samples at RATE: 8 s
STEP = const(50)  # samples at RATE: 2 s
WINDOW_S = const(8)
STEP_S = const(2)
TABLE = const(1024)  # DFT phase table: bin k is k * RATE / TABLE Hz (1.465 bpm apart)
K0 = const(21)  # first bin: 30.8 bpm
NK = const(123)  # bins K0..K0+NK-1: up to 209.5 bpm
INIT_MAX = const(82)  # K0 + INIT_MAX = bin of 149.4 bpm: the first estimate assumes a wrist at rest
SUBHARMONIC_PCT = const(30)  # first estimate: a peak at half the frequency this strong is the fundamental
GATE_SHIFT = const(2)  # gate 1 - A / (maxA / 2^GATE_SHIFT): PPG power is kept where motion is < 25 % of its peak
SIGMA = const(15)  # prior: Gaussian in bins (22 bpm) around the previous estimate
MAX_STEP = const(5)  # bins (7.3 bpm) the estimate may move per step
MOTION_FLOOR_MG = const(50)  # no gate while the strongest motion in the band is smaller (the gate is relative)
MAX_HOLD = const(15)  # steps (30 s) without any usable peak before the tracker starts again

_RING = const(256)  # per channel; a power of two > WINDOW + STEP, so compute may lag a step
_MASK = const(255)
_AMP = const(2047)  # time-domain block scaling: |x| <= 2^11 - 1 before the window
_PPG_BITS = const(9)  # spectral block scaling: |re|, |im| < 2^9, PPG power < 2^19
_ACC_BITS = const(8)  # < 2^8 per axis: acc power of three axes < 2^18
_Q = const(1024)  # fixed point of the gate and the prior
_PEAK = const(51200)  # |DFT| of a sinusoid of amplitude 1 on a bin: 1024 (Q10) x sum(Hann) / 2

BPM_X10_PER_BIN16 = 15000  # bpm x10 of bin k in 1/16 bin: k16 * 15000 // 16384 (RATE * 600 / TABLE / 16)


def _table(n, f):
    # array('h') of round(f(i)), built without a list: a 1024-entry list takes 8 KB at once.
    out = zeros("h", n)
    for i in range(n):
        out[i] = int(round(f(i)))
    return out


def _cos(m):
    return 1024 * math.cos(2 * math.pi * m / TABLE)  # Q10


def _hann(n):
    return 2048 * (1 - math.cos(2 * math.pi * (n + 0.5) / WINDOW))  # Q12


def _gauss(d):
    return _Q * math.exp(-0.5 * d * d / (SIGMA * SIGMA))


def dft_py(x, cos, k0, nk, re, im):
    """re[j], im[j] = sum_n x[n] cos / sin(2 pi (k0 + j) n / TABLE), Q10, over WINDOW samples;
    `cos` holds the quarter wave (TABLE / 4 + 1 entries, all >= 0), the rest is its mirror."""
    for j in range(nk):
        k = k0 + j
        m = 0
        a = b = 0
        for n in range(WINDOW):
            v = x[n]
            q = m & 511
            c = cos[q] if q <= 256 else -cos[512 - q]
            a += v * (-c if m & 512 else c)
            t = (m - 256) & 1023  # cos(t) = sin(m)
            q = t & 511
            c = cos[q] if q <= 256 else -cos[512 - q]
            b += v * (-c if t & 512 else c)
            m = (m + k) & 1023
        re[j] = a
        im[j] = b


if VIPER:
    @micropython.viper
    def dft_viper(x: ptr16, cos: ptr16, k0: int, nk: int, re: ptr32, im: ptr32):
        # ptr16 loads are unsigned: sign-extend x by hand (the quarter wave is >= 0).
        for j in range(nk):
            k = k0 + j
            m = 0
            a = 0
            b = 0
            for n in range(WINDOW):
                v = int(x[n])
                if v >= 32768:
                    v -= 65536
                q = m & 511
                if q <= 256:
                    c = int(cos[q])
                else:
                    c = 0 - int(cos[512 - q])
                if m & 512:
                    c = 0 - c
                t = (m - 256) & 1023
                q = t & 511
                if q <= 256:
                    s = int(cos[q])
                else:
                    s = 0 - int(cos[512 - q])
                if t & 512:
                    s = 0 - s
                a += v * c
                b += v * s
                m = (m + k) & 1023
            re[j] = a
            im[j] = b


class _Decimator:
    """One stream of `width` channels averaged down to RATE into a ring (times `gain`);
    a gap holds the last sample, an overlap is skipped."""

    def __init__(self, rate, width, gain):
        self.rate = rate
        self.width = width
        self.gain = gain
        self.ring = zeros("i" if gain > 1 else "h", _RING * width)  # PPG: 20 bits; IMU: int16 LSB
        self.sum = zeros("i", width)
        self.last = zeros("i", width)
        self.count = 0
        self.first = -1  # the first slot
        self.slot = -1  # the slot being averaged: every slot before it is in the ring
        self.next = -1  # stream index of the next expected sample

    def add(self, src, n, first_index):
        if self.next < 0:
            self.next = first_index
            self.slot = self.first = first_index * RATE // self.rate
        while self.next < first_index:  # lost samples: hold the last one
            self._push(self.last, 0)
        for i in range(self.next - first_index, n):
            self._push(src, i)

    def _push(self, src, i):
        w = self.width
        for c in range(w):
            v = src[i * w + c]
            self.sum[c] += v
            self.last[c] = v
        self.count += 1
        self.next += 1
        s = self.next * RATE // self.rate
        while self.slot < s:  # the slot has all its samples: close it (below RATE some stay empty and hold)
            base = (self.slot & _MASK) * w
            for c in range(w):
                self.ring[base + c] = self.sum[c] * self.gain // self.count if self.count else \
                    self.ring[((self.slot - 1) & _MASK) * w + c]
                self.sum[c] = 0
            self.count = 0
            self.slot += 1


class HeartRate:
    """Motion-robust heart rate every STEP_S seconds over the last WINDOW_S (docs/heart-rate.md).

    Feed add_ppg / add_acc with the bursts the drivers read; while ready(), compute()
    updates `bpm_x10` (0.1 bpm; 0 before the first estimate), `quality` (0..100: the share
    of the PPG's strongest spectral power the chosen peak keeps after motion gating) and
    `window_end` (PPG index of the window's end). Windows end on multiples of STEP_S on the
    PPG's index. fast=False forces the plain DFT loop. Nothing allocates after the constructor.
    """

    def __init__(self, ppg_rate, imu_rate, acc_unit_g=0.122e-3, fast=None):
        if ppg_rate < RATE or imu_rate < 0:
            raise ValueError("the PPG must run at %d Hz or faster" % RATE)
        self.ppg_rate = ppg_rate
        self.fast = VIPER if fast is None else bool(fast) and VIPER
        self._dft = dft_viper if self.fast else dft_py
        self._ppg = _Decimator(ppg_rate, 1, 4)  # IR counts x 4: two more bits from averaging 4
        self._acc = _Decimator(imu_rate, 3, 1) if imu_rate else None  # LSB; None: no accelerometer, no gate
        self._floor = int(MOTION_FLOOR_MG / (1000 * acc_unit_g)) if acc_unit_g else 0  # in LSB (< 2^14)
        self._cos = _table(TABLE // 4 + 1, _cos)  # the quarter wave: the DFT mirrors it
        self._hann = _table(WINDOW, _hann)
        self._prior = _table(NK, _gauss)
        self._x = zeros("h", WINDOW)  # the windowed signal of one channel
        # Three spectra, not four: the accelerometer's is computed first (into _a, with _re
        # and _im as the DFT's output), then the PPG's single channel, whose power replaces
        # its own real part bin by bin (_p is _re).
        self._re = zeros("i", NK)
        self._im = zeros("i", NK)
        self._p = self._re  # PPG power
        self._a = zeros("i", NK)  # acceleration power of the three axes, then the gated PPG power
        self._c = self._a
        self._m = 0  # the mean _centre found
        self._end = -1  # slot at which the next window ends
        self._track = -1  # bin of the last estimate, -1: none
        self._held = 0  # steps since a usable peak
        self.bpm_x10 = 0
        self.quality = 0
        self.window_end = 0

    def add_ppg(self, ir, n, first_index):
        """n IR samples (array with 4-byte items); IR falls as blood volume rises (the sign does not matter)."""
        self._ppg.add(ir, n, first_index)

    def add_acc(self, xyz, n, first_index):
        """n accelerometer samples, x y z interleaved (array 'h'), in the LSB of acc_unit_g."""
        if self._acc:
            self._acc.add(xyz, n, first_index)

    def beats(self):
        """Beats the estimate implies in its window (the HEART_RATE packet's count)."""
        return min(255, (self.bpm_x10 * WINDOW_S + 300) // 600)

    def ready(self):
        """A window has completed on both streams."""
        ppg, acc = self._ppg, self._acc or self._ppg
        if ppg.slot < 0 or acc.slot < 0:
            return False
        if self._end < 0:  # the first window lying wholly after both streams started
            first = max(ppg.first, acc.first) + WINDOW
            self._end = -(-first // STEP) * STEP
        return ppg.slot >= self._end and acc.slot >= self._end

    def compute(self):
        """The oldest completed window's estimate: updates bpm_x10, quality, window_end and
        returns bpm_x10; -1 when no window is ready."""
        if not self.ready():
            return -1
        ppg, acc = self._ppg, self._acc or self._ppg
        while min(ppg.slot, acc.slot) - (self._end - WINDOW) > _RING:  # fell behind: skip what was overwritten
            self._end += STEP
        start = self._end - WINDOW
        p = self._p
        a = self._a
        c = self._c
        shift = -1
        if self._acc:  # first: the PPG's power takes the place of the DFT's real part (_p is _re)
            shift = self._spectrum(acc.ring, 3, 3, start, a, _ACC_BITS, self._floor)
        if shift < 0:  # no accelerometer, or too little motion to look at: no gate
            for j in range(NK):
                a[j] = 0
        self._spectrum(ppg.ring, 1, 1, start, p, _PPG_BITS)
        pmax = amax = 0
        for j in range(NK):
            pmax = max(pmax, p[j])
            amax = max(amax, a[j])
        # The strongest motion in the band as an amplitude, against the floor: a sinusoid of
        # amplitude F (LSB) on a bin has power (F _PEAK)^2 before the spectrum's shifts.
        floor = (self._floor * _PEAK) >> shift if shift >= 0 else 16384
        lim = amax >> GATE_SHIFT if floor < 16384 and amax >= floor * floor else 0
        for j in range(NK):  # c is a's array: the gated power replaces the motion's
            g = _Q - (a[j] << 10) // lim if lim else _Q
            c[j] = p[j] * g if g > 0 else 0
        self._pick(pmax)
        self.window_end = self._end * self.ppg_rate // RATE
        self._end += STEP
        return self.bpm_x10

    def _spectrum(self, ring, w, channels, start, out, bits, least=0):
        # Power at the bins K0.. of the window [start, start + WINDOW), summed over `channels`
        # of the ring. Each channel centred, all scaled by one shift into +-_AMP, Hann-windowed
        # and transformed; the sum is kept with one shift so that |re|, |im| < 2^bits (a
        # channel needing a larger shift rescales what came before). Returns the two shifts'
        # sum: the power is (amplitude in the ring's unit)^2 >> (2 x that); -1 without
        # computing anything when no channel deviates `least` / 2 from its mean (then no
        # component of the window has an amplitude of `least`).
        big = 0
        for ch in range(channels):
            big = max(big, self._centre(ring, w, ch, start))
        if 2 * big < least:
            return -1
        tshift = 0
        while (big >> tshift) > _AMP:
            tshift += 1
        x = self._x
        hann = self._hann
        re = self._re
        im = self._im
        fshift = 0
        for ch in range(channels):
            self._centre(ring, w, ch, start)
            m = self._m
            for n in range(WINDOW):
                x[n] = (((ring[((start + n) & _MASK) * w + ch] - m) >> tshift) * hann[n]) >> 12
            self._dft(x, self._cos, K0, NK, re, im)  # pyright: ignore[reportArgumentType] (viper takes buffers)
            top = 0
            for j in range(NK):
                top = max(top, abs(re[j]), abs(im[j]))
            shift = 0
            while (top >> shift) >= (1 << bits):
                shift += 1
            if ch == 0:
                fshift = shift
            elif shift > fshift:
                for j in range(NK):
                    out[j] >>= 2 * (shift - fshift)
                fshift = shift
            for j in range(NK):
                u = re[j] >> fshift
                v = im[j] >> fshift
                out[j] = (out[j] if ch else 0) + u * u + v * v
        return tshift + fshift

    def _centre(self, ring, w, ch, start):
        # The window's mean of channel ch into self._m; returns the largest deviation from it.
        tot = 0
        for n in range(WINDOW):
            tot += ring[((start + n) & _MASK) * w + ch]
        m = self._m = tot // WINDOW
        big = 0
        for n in range(WINDOW):
            big = max(big, abs(ring[((start + n) & _MASK) * w + ch] - m))
        return big

    def _pick(self, pmax):
        # The tracker. The first estimate is the strongest PPG peak below INIT_MAX, or its
        # subharmonic (a wrist at rest, as TROIKA and JOSS assume too); after it, the strongest
        # motion-gated peak weighted by the prior around the previous estimate, at most
        # MAX_STEP bins away from it.
        p = self._p
        c = self._c
        track = self._track
        best = 0
        k = -1
        if pmax == 0:
            pass  # no pulse at all (a flat signal)
        elif track < 0:
            for j in range(INIT_MAX + 1):
                if p[j] > best:
                    best = p[j]
                    k = j
            h = (K0 + k) // 2 - K0 if k >= 0 else 0  # half the frequency
            if h >= 1:
                if p[h + 1] > p[h]:
                    h += 1
                if p[h - 1] > p[h]:
                    h -= 1
                if 100 * (p[h] >> 7) >= SUBHARMONIC_PCT * (best >> 7):
                    k = h
        else:
            prior = self._prior
            for j in range(NK):
                d = j - track if j > track else track - j
                v = (c[j] >> 10) * prior[d]
                if v > best:
                    best = v
                    k = j
            if k >= 0:
                k = max(track - MAX_STEP, min(track + MAX_STEP, k))
        if k < 0:  # nothing usable: hold the last estimate for a while, then start again
            self.quality = 0
            self._held += 1
            if self._held > MAX_HOLD:
                self._track = -1
                self.bpm_x10 = 0
            return
        self._held = 0
        self._track = k
        d16 = 0
        if 0 < k < NK - 1:  # vertex of the parabola through the gated powers around the peak, 1/16 bin
            lo = c[k - 1] >> 4
            mid = c[k] >> 4
            hi = c[k + 1] >> 4
            den = 2 * mid - lo - hi
            if den > 0 and mid >= lo and mid >= hi:
                d16 = max(-8, min(8, (8 * (hi - lo)) // den))
        self.bpm_x10 = (((K0 + k) * 16 + d16) * BPM_X10_PER_BIN16 + 8192) >> 14
        self.quality = min(100, (c[k] >> 10) * 100 // pmax)

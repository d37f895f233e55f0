"""Heart rate robust to wrist motion: PPG spectrum gated by the accelerometer's, tracked (docs/heart-rate.md).

Every 2 s, over the last 8 s: the spectra of the PPG and of the three accelerometer axes
at 25 Hz, PPG power at the frequencies where the wrist moves suppressed, and the peak
picked near the previous heart rate. Integer arithmetic, everything allocated in the
constructor; the DFT loop has a viper fast path and a plain twin giving identical results.
"""

import math
import sys as _sys

from watch.buffers import zeros

try:
    import micropython
    from micropython import const
    VIPER = True
except ImportError:  # CPython
    VIPER = False

    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

_RATE = const(25)  # Hz: both streams are averaged down to this rate
_WINDOW = const(200)  # samples at _RATE: 8 s
_HALF = const(100)  # the Hann window is symmetric: its first half is kept
_STEP = const(50)  # samples at _RATE: 2 s
WINDOW_S = const(8)
STEP_S = const(2)
_TABLE = const(1024)  # DFT phase table: bin k is k * _RATE / _TABLE Hz (1.465 bpm apart)
_K0 = const(21)  # first bin: 30.8 bpm
_NK = const(123)  # bins _K0.._K0+_NK-1: up to 209.5 bpm
_INIT_MAX = const(82)  # _K0 + _INIT_MAX = bin of 149.4 bpm: the first estimate assumes a wrist at rest
_SUBHARMONIC_PCT = const(30)  # first estimate: a peak at half the frequency this strong is the fundamental
_GATE_SHIFT = const(2)  # gate 1 - A / (maxA / 2^_GATE_SHIFT): PPG power is kept where motion is < 25 % of its peak
_SIGMA = const(15)  # prior: Gaussian in bins (22 bpm) around the previous estimate
_PRIOR = const(59)  # its entries: round(1024 exp(-d^2 / 2 _SIGMA^2)) is 0 from 59 bins on
_MAX_STEP = const(5)  # bins (7.3 bpm) the estimate may move per step
_MOTION_FLOOR_MG = const(50)  # no gate while the strongest motion in the band is smaller (the gate is relative)
_MAX_HOLD = const(15)  # steps (30 s) without any usable peak before the tracker starts again

_RING = const(256)  # per channel; a power of two > _WINDOW + _STEP, so compute may lag a step
_MASK = const(255)
_AMP = const(2047)  # time-domain block scaling: |x| <= 2^11 - 1 before the window
_PPG_BITS = const(9)  # spectral block scaling: |re|, |im| < 2^9, PPG power < 2^19
_ACC_BITS = const(8)  # < 2^8 per axis: acc power of three axes < 2^18
_Q = const(1024)  # fixed point of the gate and the prior
_PEAK = const(51200)  # |DFT| of a sinusoid of amplitude 1 on a bin: 1024 (Q10) x sum(Hann) / 2
_BPM_X10_PER_BIN16 = const(15000)  # bpm x10 of bin k in 1/16 bin: k16 * 15000 // 16384 (_RATE * 600 / _TABLE / 16)
# Decimation state per stream (array 'i', the PPG's at 0, the accelerometer's at _ACC).
_NEXT = const(0)  # stream index of the next expected sample
_SLOT = const(1)  # the slot being averaged: every slot before it is in the ring
_FIRST = const(2)  # the first slot
_COUNT = const(3)  # samples summed into the slot
_HZ = const(4)  # the stream's rate
_ACC = const(5)

# The host and the tests read these; on a watch they stay `_` constants (no dictionary entry).
if _sys.implementation.name != "micropython":
    RATE, WINDOW, STEP, TABLE, K0, NK = _RATE, _WINDOW, _STEP, _TABLE, _K0, _NK


def dft_py(x, cos, k0, nk, re, im, bits):
    """re[j], im[j] = sum_n x[n] cos / sin(2 pi (k0 + j) n / _TABLE), Q10, over _WINDOW samples,
    shifted right by the least shift that brings every one of them below 2^bits, which it
    returns: kept in 16 bits (a shift applied to the earlier bins when a later one needs a
    larger one: floor shifts compose, so the result is the same). `cos` holds the quarter
    wave (_TABLE / 4 + 1 entries, all >= 0), the rest is its mirror."""
    shift = 0
    for j in range(nk):
        k = k0 + j
        m = 0
        a = b = 0
        for n in range(_WINDOW):
            v = x[n]
            q = m & 511
            c = cos[q] if q <= 256 else -cos[512 - q]
            a += v * (-c if m & 512 else c)
            t = (m - 256) & 1023  # cos(t) = sin(m)
            q = t & 511
            c = cos[q] if q <= 256 else -cos[512 - q]
            b += v * (-c if t & 512 else c)
            m = (m + k) & 1023
        top = max(abs(a), abs(b))
        s = shift
        while (top >> s) >= (1 << bits):
            s += 1
        if s > shift:
            for i in range(j):
                re[i] >>= s - shift
                im[i] >>= s - shift
            shift = s
        re[j] = a >> shift
        im[j] = b >> shift
    return shift


if VIPER:
    @micropython.viper
    def dft_viper(x: ptr16, cos: ptr16, k0: int, nk: int, re: ptr16, im: ptr16, bits: int) -> int:
        # ptr16 loads are unsigned: sign-extend by hand (the quarter wave is >= 0).
        shift = 0
        lim = 1 << bits
        for j in range(nk):
            k = k0 + j
            m = 0
            a = 0
            b = 0
            for n in range(_WINDOW):
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
            top = a if a >= 0 else 0 - a
            if b > top or 0 - b > top:
                top = b if b >= 0 else 0 - b
            d = 0
            while (top >> (shift + d)) >= lim:
                d += 1
            if d:
                for i in range(j):
                    v = int(re[i])
                    if v >= 32768:
                        v -= 65536
                    re[i] = v >> d
                    v = int(im[i])
                    if v >= 32768:
                        v -= 65536
                    im[i] = v >> d
                shift += d
            re[j] = a >> shift
            im[j] = b >> shift
        return shift


class HeartRate:
    """Motion-robust heart rate every STEP_S seconds over the last WINDOW_S (docs/heart-rate.md).

    Feed add_ppg / add_acc with the bursts the drivers read; while ready(), compute()
    updates `bpm_x10` (0.1 bpm; 0 before the first estimate), `quality` (0..100: the share
    of the PPG's strongest spectral power the chosen peak keeps after motion gating) and
    `window_end` (PPG index of the window's end). Windows end on multiples of STEP_S on the
    PPG's index. fast=False forces the plain DFT loop. Nothing allocates after the constructor.
    """

    def __init__(self, ppg_rate, imu_rate, acc_unit_g=0.122e-3, fast=None):
        if ppg_rate < _RATE or imu_rate < 0:
            raise ValueError("the PPG must run at %d Hz or faster" % _RATE)
        self._dft = dft_viper if (VIPER if fast is None else bool(fast) and VIPER) else dft_py
        # Both streams averaged down to _RATE into a ring each: the PPG's IR counts x 4 (two
        # more bits from averaging 4; 20 bits), the accelerometer's x y z in LSB; a gap holds
        # the last sample, an overlap is skipped. Channel c of stream s sums at 3 s + c.
        self._ppg = zeros("i", _RING)
        self._acc = zeros("h", 3 * _RING) if imu_rate else None  # None: no accelerometer, no gate
        self._st = zeros("i", 2 * _ACC)
        for o in (0, _ACC):
            self._st[o + _NEXT] = self._st[o + _SLOT] = self._st[o + _FIRST] = -1
        self._st[_HZ] = ppg_rate
        self._st[_ACC + _HZ] = imu_rate
        self._sum = zeros("i", 6)
        self._last = zeros("i", 6)
        self._floor = int(_MOTION_FLOOR_MG / (1000 * acc_unit_g)) if acc_unit_g else 0  # in LSB (< 2^14)
        self._cos = zeros("h", _TABLE // 4 + 1)  # the phase table's quarter wave, Q10: the DFT mirrors it
        for m in range(_TABLE // 4 + 1):
            self._cos[m] = int(round(1024 * math.cos(2 * math.pi * m / _TABLE)))
        self._hann = zeros("h", _HALF)  # Q12
        for n in range(_HALF):
            self._hann[n] = int(round(2048 * (1 - math.cos(2 * math.pi * (n + 0.5) / _WINDOW))))
        self._prior = zeros("h", _PRIOR)  # Q10, by distance in bins
        for d in range(_PRIOR):
            self._prior[d] = int(round(_Q * math.exp(-0.5 * d * d / (_SIGMA * _SIGMA))))
        self._x = zeros("h", _WINDOW)  # the windowed signal of one channel
        # The DFT's output in 16 bits (with its shift): each accelerometer axis's in turn,
        # summed as power into _a; then the PPG's, which stays there as its spectrum (power
        # re^2 + im^2, _power). _a then takes the gated PPG power in place of the motion's.
        self._re = zeros("h", _NK)
        self._im = zeros("h", _NK)
        self._a = zeros("i", _NK)
        self._m = 0  # the mean _centre found
        self._end = -1  # slot at which the next window ends
        self._track = -1  # bin of the last estimate, -1: none
        self._held = 0  # steps since a usable peak
        self.bpm_x10 = 0
        self.quality = 0
        self.window_end = 0

    def add_ppg(self, ir, n, first_index):
        """n IR samples (array with 4-byte items); IR falls as blood volume rises (the sign does not matter)."""
        self._add(0, ir, n, first_index)

    def add_acc(self, xyz, n, first_index):
        """n accelerometer samples, x y z interleaved (array 'h'), in the LSB of acc_unit_g."""
        if self._acc is not None:
            self._add(_ACC, xyz, n, first_index)

    def _add(self, o, src, n, first_index):
        st = self._st
        if st[o + _NEXT] < 0:
            st[o + _NEXT] = first_index
            st[o + _SLOT] = st[o + _FIRST] = first_index * _RATE // st[o + _HZ]
        while st[o + _NEXT] < first_index:  # lost samples: hold the last one
            self._push(o, self._last, o // _ACC)
        for i in range(st[o + _NEXT] - first_index, n):
            self._push(o, src, i)

    def _push(self, o, src, i):
        st = self._st
        w = 1 if o == 0 else 3
        b = 0 if o == 0 else 3
        ring = self._ppg if o == 0 else self._acc
        gain = 4 if o == 0 else 1
        total = self._sum
        for c in range(w):
            v = src[i * w + c]
            total[b + c] += v
            self._last[b + c] = v
        st[o + _COUNT] += 1
        st[o + _NEXT] += 1
        s = st[o + _NEXT] * _RATE // st[o + _HZ]
        while st[o + _SLOT] < s:  # the slot has all its samples: close it (below _RATE some stay empty and hold)
            slot = st[o + _SLOT]
            count = st[o + _COUNT]
            base = (slot & _MASK) * w
            for c in range(w):
                ring[base + c] = total[b + c] * gain // count if count else ring[((slot - 1) & _MASK) * w + c]  # pyright: ignore[reportOptionalSubscript]
                total[b + c] = 0
            st[o + _COUNT] = 0
            st[o + _SLOT] = slot + 1

    def beats(self):
        """Beats the estimate implies in its window (the HEART_RATE packet's count)."""
        return min(255, (self.bpm_x10 * WINDOW_S + 300) // 600)

    def ready(self):
        """A window has completed on both streams."""
        st = self._st
        a = _ACC if self._acc is not None else 0  # no accelerometer: the PPG alone
        if st[_SLOT] < 0 or st[a + _SLOT] < 0:
            return False
        if self._end < 0:  # the first window lying wholly after both streams started
            first = max(st[_FIRST], st[a + _FIRST]) + _WINDOW
            self._end = -(-first // _STEP) * _STEP
        return st[_SLOT] >= self._end and st[a + _SLOT] >= self._end

    def compute(self):
        """The oldest completed window's estimate: updates bpm_x10, quality, window_end and
        returns bpm_x10; -1 when no window is ready."""
        if not self.ready():
            return -1
        st = self._st
        acc = self._acc
        last = min(st[_SLOT], st[_ACC + _SLOT]) if acc is not None else st[_SLOT]
        while last - (self._end - _WINDOW) > _RING:  # fell behind: skip what was overwritten
            self._end += _STEP
        start = self._end - _WINDOW
        a = self._a
        shift = -1
        if acc is not None:  # first, as the PPG's spectrum then takes the DFT's output arrays
            shift = self._spectrum(acc, 3, start, a, _ACC_BITS, self._floor)
        if shift < 0:  # no accelerometer, or too little motion to look at: no gate
            for j in range(_NK):
                a[j] = 0
        self._spectrum(self._ppg, 1, start, None, _PPG_BITS)
        pmax = amax = 0
        for j in range(_NK):
            pmax = max(pmax, self._power(j))
            amax = max(amax, a[j])
        # The strongest motion in the band as an amplitude, against the floor: a sinusoid of
        # amplitude F (LSB) on a bin has power (F _PEAK)^2 before the spectrum's shifts.
        floor = (self._floor * _PEAK) >> shift if shift >= 0 else 16384
        lim = amax >> _GATE_SHIFT if floor < 16384 and amax >= floor * floor else 0
        for j in range(_NK):  # the gated power replaces the motion's
            g = _Q - (a[j] << 10) // lim if lim else _Q
            a[j] = self._power(j) * g if g > 0 else 0
        self._pick(pmax)
        self.window_end = self._end * st[_HZ] // _RATE
        self._end += _STEP
        return self.bpm_x10

    def _power(self, j):
        # The PPG's power at bin _K0 + j (< 2^19), from its spectrum in _re, _im.
        return self._re[j] * self._re[j] + self._im[j] * self._im[j]

    def _spectrum(self, ring, w, start, out, bits, least=0):
        # The spectrum at the bins _K0.. of the window [start, start + _WINDOW) of the ring's w
        # channels. Each channel centred, all scaled by one shift into +-_AMP, Hann-windowed and
        # transformed (the DFT keeps |re|, |im| < 2^bits with its own shift). One channel
        # (out None): its spectrum stays in _re, _im. Several: their power summed into out with
        # one shift (a channel needing a larger shift rescales what came before). Returns the
        # two shifts' sum: the power is (amplitude in the ring's unit)^2 >> (2 x that); -1
        # without computing anything when no channel deviates `least` / 2 from its mean (then
        # no component of the window has an amplitude of `least`).
        big = 0
        for ch in range(w):
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
        for ch in range(w):
            self._centre(ring, w, ch, start)
            m = self._m
            for n in range(_WINDOW):
                x[n] = (((ring[((start + n) & _MASK) * w + ch] - m) >> tshift)
                        * hann[n if n < _HALF else _WINDOW - 1 - n]) >> 12
            shift = self._dft(x, self._cos, _K0, _NK, re, im, bits)  # pyright: ignore[reportArgumentType] (viper takes buffers)
            if out is None:
                return tshift + shift
            if ch == 0:
                fshift = shift
            elif shift > fshift:
                for j in range(_NK):
                    out[j] >>= 2 * (shift - fshift)
                fshift = shift
            d = fshift - shift
            for j in range(_NK):
                u = re[j] >> d
                v = im[j] >> d
                out[j] = (out[j] if ch else 0) + u * u + v * v
        return tshift + fshift

    def _centre(self, ring, w, ch, start):
        # The window's mean of channel ch into self._m; returns the largest deviation from it.
        tot = 0
        for n in range(_WINDOW):
            tot += ring[((start + n) & _MASK) * w + ch]
        m = self._m = tot // _WINDOW
        big = 0
        for n in range(_WINDOW):
            big = max(big, abs(ring[((start + n) & _MASK) * w + ch] - m))
        return big

    def _pick(self, pmax):
        # The tracker. The first estimate is the strongest PPG peak below _INIT_MAX, or its
        # subharmonic (a wrist at rest, as TROIKA and JOSS assume too); after it, the strongest
        # motion-gated peak weighted by the prior around the previous estimate, at most
        # _MAX_STEP bins away from it.
        c = self._a
        track = self._track
        best = 0
        k = -1
        if pmax == 0:
            pass  # no pulse at all (a flat signal)
        elif track < 0:
            for j in range(_INIT_MAX + 1):
                if self._power(j) > best:
                    best = self._power(j)
                    k = j
            h = (_K0 + k) // 2 - _K0 if k >= 0 else 0  # half the frequency
            if h >= 1:
                if self._power(h + 1) > self._power(h):
                    h += 1
                if self._power(h - 1) > self._power(h):
                    h -= 1
                if 100 * (self._power(h) >> 7) >= _SUBHARMONIC_PCT * (best >> 7):
                    k = h
        else:
            prior = self._prior
            for j in range(_NK):
                d = j - track if j > track else track - j
                v = (c[j] >> 10) * prior[d] if d < _PRIOR else 0
                if v > best:
                    best = v
                    k = j
            if k >= 0:
                k = max(track - _MAX_STEP, min(track + _MAX_STEP, k))
        if k < 0:  # nothing usable: hold the last estimate for a while, then start again
            self.quality = 0
            self._held += 1
            if self._held > _MAX_HOLD:
                self._track = -1
                self.bpm_x10 = 0
            return
        self._held = 0
        self._track = k
        d16 = 0
        if 0 < k < _NK - 1:  # vertex of the parabola through the gated powers around the peak, 1/16 bin
            lo = c[k - 1] >> 4
            mid = c[k] >> 4
            hi = c[k + 1] >> 4
            den = 2 * mid - lo - hi
            if den > 0 and mid >= lo and mid >= hi:
                d16 = max(-8, min(8, (8 * (hi - lo)) // den))
        self.bpm_x10 = (((_K0 + k) * 16 + d16) * _BPM_X10_PER_BIN16 + 8192) >> 14
        self.quality = min(100, (c[k] >> 10) * 100 // pmax)

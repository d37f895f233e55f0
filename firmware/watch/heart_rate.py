"""Heart rate robust to wrist motion: PPG spectrum gated by the accelerometer's, tracked (docs/heart-rate.md).

Every 2 s, over the last 8 s: the spectra of the PPG and of the three accelerometer axes
at 25 Hz, PPG power at the frequencies where the wrist moves suppressed, and the peak
picked near the previous heart rate. Integer arithmetic, everything allocated in the
constructor; the DFT loop has a viper fast path and a plain twin giving identical results.
"""

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
_WINDOW_S = const(8)
_STEP_S = const(2)
_TABLE = const(1024)  # DFT phase table: bin k is k * _RATE / _TABLE Hz (1.465 bpm apart)
_K0 = const(21)  # first bin: 30.8 bpm
_NK = const(123)  # bins _K0.._K0+_NK-1: up to 209.5 bpm
_INIT_MAX = const(82)  # _K0 + _INIT_MAX = bin of 149.4 bpm: the first estimate assumes a wrist at rest
_SUBHARMONIC_PCT = const(30)  # first estimate: a peak at half the frequency this strong is the fundamental
_GATE_SHIFT = const(2)  # gate 1 - A / (maxA / 2^_GATE_SHIFT): PPG power is kept where motion is < 25 % of its peak
_SIGMA = const(15)  # prior: Gaussian in bins (22 bpm) around the previous estimate
_PRIOR_N = const(59)  # the prior's entries: round(1024 exp(-d^2 / 2 _SIGMA^2)) is 0 from 59 bins on
_MAX_STEP = const(5)  # bins (7.3 bpm) the estimate may move per step
_MOTION_FLOOR_MG = const(50)  # no gate while the strongest motion in the band is smaller (the gate is relative)
_MAX_HOLD = const(15)  # steps (30 s) without any usable peak before the tracker starts again

# Slots per ring: the window and 16 (0.64 s) more, what may arrive before compute() runs. The app
# computes after every read, every 100 ms; a read catches up at most 3 periods at the part's top
# rate (7.5 slots), and a stream may lead the other by a period. A window either ring has
# overwritten by then (a loop stalled for more than about half a second) is skipped. 8 bytes a slot
# on the PineTime (16-bit PPG, 3 x int16 acceleration), 10 with a PPG ring of int32.
_RING = const(216)
_AMP = const(2047)  # time-domain block scaling: |x| <= 2^11 - 1 before the window
_PPG_BITS = const(9)  # spectral block scaling: |re|, |im| < 2^9, PPG power < 2^19
_ACC_BITS = const(8)  # < 2^8 per axis: acc power of three axes < 2^18
_Q = const(1024)  # fixed point of the gate and the prior
_PEAK = const(51200)  # |DFT| of a sinusoid of amplitude 1 on a bin: 1024 (Q10) x sum(Hann) / 2
_BPM_X10_PER_BIN16 = const(15000)  # bpm x10 of bin k in 1/16 bin: k16 * 15000 // 16384 (_RATE * 600 / _TABLE / 16)
# The state: one array 'i' (an attribute each would grow the instance's dictionary). Decimation
# per stream, the PPG's at 0, the accelerometer's at _ACC:
_NEXT = const(0)  # stream index of the next expected sample
_SLOT = const(1)  # the slot being averaged: every slot before it is in the ring
_COUNT = const(2)  # samples summed into the slot
_HZ = const(3)  # the stream's rate
_ACC = const(4)
_SUM = const(8)  # the slot's sums: PPG at _SUM, x y z at _SUM + 1..3
_LAST = const(12)  # the last sample, held over a gap: PPG at _LAST, x y z at _LAST + 1..3
_MEAN = const(16)  # the mean _centre found
_END = const(17)  # slot at which the next window ends
_TRACK = const(18)  # bin of the last estimate, -1: none
_HELD = const(19)  # steps since a usable peak
_FLOOR = const(20)  # the motion floor in LSB
_GAIN = const(21)  # PPG ring entries x this are IR counts x 4 (4: the ring holds raw 16-bit samples)
_STATE = const(22)

# The tables are literals: a frozen image keeps them in flash, not in the heap
# (tests/host/test_hr_motion.py checks them against their formulas). The phase table's quarter
# wave round(1024 cos(2 pi m / _TABLE)), m = 0.._TABLE / 4, as int16 little-endian (the DFT
# mirrors it); the first half of the Hann window round(2048 (1 - cos(2 pi (n + 0.5) / _WINDOW)))
# (it is symmetric), as int16 little-endian too; the prior round(_Q exp(-d^2 / (2 _SIGMA^2))) by
# distance d in bins (0 from _PRIOR_N on).
_COS_Q10 = (
    b"\x00\x04\x00\x04\x00\x04\x00\x04\x00\x04\x00\x04\xff\x03\xff\x03\xff\x03\xfe\x03\xfe\x03\xfe\x03"
    b"\xfd\x03\xfd\x03\xfc\x03\xfc\x03\xfb\x03\xfa\x03\xfa\x03\xf9\x03\xf8\x03\xf8\x03\xf7\x03\xf6\x03"
    b"\xf5\x03\xf4\x03\xf3\x03\xf2\x03\xf1\x03\xf0\x03\xef\x03\xee\x03\xec\x03\xeb\x03\xea\x03\xe8\x03"
    b"\xe7\x03\xe6\x03\xe4\x03\xe3\x03\xe1\x03\xe0\x03\xde\x03\xdd\x03\xdb\x03\xd9\x03\xd7\x03\xd6\x03"
    b"\xd4\x03\xd2\x03\xd0\x03\xce\x03\xcc\x03\xca\x03\xc8\x03\xc6\x03\xc4\x03\xc2\x03\xc0\x03\xbe\x03"
    b"\xbb\x03\xb9\x03\xb7\x03\xb4\x03\xb2\x03\xb0\x03\xad\x03\xab\x03\xa8\x03\xa6\x03\xa3\x03\xa0\x03"
    b"\x9e\x03\x9b\x03\x98\x03\x95\x03\x93\x03\x90\x03\x8d\x03\x8a\x03\x87\x03\x84\x03\x81\x03\x7e\x03"
    b"\x7b\x03\x78\x03\x75\x03\x72\x03\x6e\x03\x6b\x03\x68\x03\x64\x03\x61\x03\x5e\x03\x5a\x03\x57\x03"
    b"\x53\x03\x50\x03\x4c\x03\x49\x03\x45\x03\x42\x03\x3e\x03\x3a\x03\x36\x03\x33\x03\x2f\x03\x2b\x03"
    b"\x27\x03\x23\x03\x1f\x03\x1c\x03\x18\x03\x14\x03\x10\x03\x0b\x03\x07\x03\x03\x03\xff\x02\xfb\x02"
    b"\xf7\x02\xf3\x02\xee\x02\xea\x02\xe6\x02\xe1\x02\xdd\x02\xd9\x02\xd4\x02\xd0\x02\xcb\x02\xc7\x02"
    b"\xc2\x02\xbe\x02\xb9\x02\xb4\x02\xb0\x02\xab\x02\xa6\x02\xa2\x02\x9d\x02\x98\x02\x93\x02\x8e\x02"
    b"\x8a\x02\x85\x02\x80\x02\x7b\x02\x76\x02\x71\x02\x6c\x02\x67\x02\x62\x02\x5d\x02\x58\x02\x53\x02"
    b"\x4e\x02\x48\x02\x43\x02\x3e\x02\x39\x02\x34\x02\x2e\x02\x29\x02\x24\x02\x1f\x02\x19\x02\x14\x02"
    b"\x0e\x02\x09\x02\x04\x02\xfe\x01\xf9\x01\xf3\x01\xee\x01\xe8\x01\xe3\x01\xdd\x01\xd8\x01\xd2\x01"
    b"\xcc\x01\xc7\x01\xc1\x01\xbb\x01\xb6\x01\xb0\x01\xaa\x01\xa5\x01\x9f\x01\x99\x01\x93\x01\x8e\x01"
    b"\x88\x01\x82\x01\x7c\x01\x76\x01\x71\x01\x6b\x01\x65\x01\x5f\x01\x59\x01\x53\x01\x4d\x01\x47\x01"
    b"\x41\x01\x3b\x01\x35\x01\x2f\x01\x29\x01\x23\x01\x1d\x01\x17\x01\x11\x01\x0b\x01\x05\x01\xff\x00"
    b"\xf9\x00\xf3\x00\xed\x00\xe6\x00\xe0\x00\xda\x00\xd4\x00\xce\x00\xc8\x00\xc2\x00\xbb\x00\xb5\x00"
    b"\xaf\x00\xa9\x00\xa3\x00\x9c\x00\x96\x00\x90\x00\x8a\x00\x84\x00\x7d\x00\x77\x00\x71\x00\x6b\x00"
    b"\x64\x00\x5e\x00\x58\x00\x52\x00\x4b\x00\x45\x00\x3f\x00\x39\x00\x32\x00\x2c\x00\x26\x00\x1f\x00"
    b"\x19\x00\x13\x00\x0d\x00\x06\x00\x00\x00"
)
_HANN = (
    b"\x00\x00\x02\x00\x06\x00\x0c\x00\x14\x00\x1e\x00\x2b\x00\x39\x00\x49\x00\x5b\x00\x6e\x00\x84\x00"
    b"\x9c\x00\xb5\x00\xd1\x00\xee\x00\x0d\x01\x2e\x01\x50\x01\x74\x01\x9a\x01\xc2\x01\xeb\x01\x15\x02"
    b"\x41\x02\x6f\x02\x9e\x02\xce\x02\x00\x03\x32\x03\x66\x03\x9c\x03\xd2\x03\x09\x04\x42\x04\x7b\x04"
    b"\xb5\x04\xf0\x04\x2c\x05\x69\x05\xa6\x05\xe4\x05\x22\x06\x61\x06\xa0\x06\xdf\x06\x1f\x07\x5f\x07"
    b"\xa0\x07\xe0\x07\x20\x08\x60\x08\xa1\x08\xe1\x08\x21\x09\x60\x09\x9f\x09\xde\x09\x1c\x0a\x5a\x0a"
    b"\x97\x0a\xd4\x0a\x10\x0b\x4b\x0b\x85\x0b\xbe\x0b\xf7\x0b\x2e\x0c\x64\x0c\x9a\x0c\xce\x0c\x00\x0d"
    b"\x32\x0d\x62\x0d\x91\x0d\xbf\x0d\xeb\x0d\x15\x0e\x3e\x0e\x66\x0e\x8c\x0e\xb0\x0e\xd2\x0e\xf3\x0e"
    b"\x12\x0f\x2f\x0f\x4b\x0f\x64\x0f\x7c\x0f\x92\x0f\xa5\x0f\xb7\x0f\xc7\x0f\xd5\x0f\xe2\x0f\xec\x0f"
    b"\xf4\x0f\xfa\x0f\xfe\x0f\x00\x10"
)
_PRIOR = (1024, 1022, 1015, 1004, 988, 969, 945, 918, 888, 855, 820, 783, 744, 703, 662, 621, 580,
          539, 498, 459, 421, 384, 349, 316, 285, 255, 228, 203, 179, 158, 139, 121, 105, 91,
          78, 67, 57, 49, 41, 35, 29, 24, 20, 17, 14, 11, 9, 8, 6, 5, 4,
          3, 3, 2, 2, 1, 1, 1, 1)

# The host and the tests read these; on a watch they stay `_` constants (no dictionary entry;
# VIPER is False on CPython only).
if not VIPER:
    RATE, WINDOW, STEP, TABLE, K0, NK, WINDOW_S, STEP_S = _RATE, _WINDOW, _STEP, _TABLE, _K0, _NK, _WINDOW_S, _STEP_S


def dft_py(x, cos, k0, nk, out, bits):
    """out[j], out[nk + j] = sum_n x[n] cos / sin(2 pi (k0 + j) n / _TABLE), Q10, over _WINDOW
    samples (re then im), shifted right by the least shift that brings every one of them below
    2^bits, which it returns: kept in 16 bits (a shift applied to the earlier bins when a later
    one needs a larger one: floor shifts compose, so the result is the same). `cos` holds the
    quarter wave (_TABLE / 4 + 1 entries, all >= 0), the rest is its mirror."""
    shift = 0
    for j in range(nk):
        k = k0 + j
        m = 0
        a = b = 0
        for n in range(_WINDOW):
            v = x[n]
            r = m & 255
            c = v * cos[r]  # v cos(r), r = m mod 256 (a quarter turn)
            t = v * cos[256 - r]  # v sin(r)
            q = m >> 8  # quadrant q: (cos, sin)(m) = (cos r, sin r), (-sin r, cos r), (-cos r, -sin r), (sin r, -cos r)
            if q == 0:
                a += c
                b += t
            elif q == 1:
                a -= t
                b += c
            elif q == 2:
                a -= c
                b -= t
            else:
                a += t
                b -= c
            m = (m + k) & 1023
        top = max(abs(a), abs(b))
        s = shift
        while (top >> s) >= (1 << bits):
            s += 1
        if s > shift:
            for i in range(j):
                out[i] >>= s - shift
                out[nk + i] >>= s - shift
            shift = s
        out[j] = a >> shift
        out[nk + j] = b >> shift
    return shift


if VIPER:
    @micropython.viper
    def dft_viper(ring: ptr16, at: int, w: int, wrap: int, gain: int, mean: int, tshift: int, kind: int,
                  cos: ptr8, hann: ptr8, k0: int, nk: int, out: ptr16, bits: int) -> int:
        # dft_py's spectrum of the window x[n] = ((ring[p] gain - mean) >> tshift) Hann(n) >> 12,
        # p = at + n w modulo wrap: one channel of the ring's w, read and windowed where the DFT
        # needs it (no buffer for the windowed signal; `kind`: the ring's type, 0 'H', 1 'h', 2 'i').
        # ptr16 loads are unsigned: sign-extend by hand (an 'i' entry is two of them). The tables
        # (>= 0) are read a byte at a time: in a frozen image their bytes need not be 2-byte
        # aligned, which some ports' 16-bit loads require.
        shift = 0
        lim = 1 << bits
        for j in range(nk):
            k = k0 + j
            m = 0
            a = 0
            b = 0
            p = at
            for n in range(_WINDOW):
                if kind == 2:
                    v = int(ring[2 * p + 1])
                    if v >= 32768:
                        v -= 65536
                    v = int(ring[2 * p]) | (v << 16)
                else:
                    v = int(ring[p])
                    if kind and v >= 32768:
                        v -= 65536
                p += w
                if p >= wrap:
                    p -= wrap
                q = 2 * n
                if n >= _HALF:
                    q = 2 * (_WINDOW - 1 - n)
                v = (((v * gain - mean) >> tshift) * (int(hann[q]) | (int(hann[q + 1]) << 8))) >> 12
                q = 2 * (m & 255)
                c = v * (int(cos[q]) | (int(cos[q + 1]) << 8))  # v cos(r), r = m mod 256
                s = v * (int(cos[512 - q]) | (int(cos[513 - q]) << 8))  # v sin(r)
                q = m >> 8  # the quadrant: (cos, sin)(m) = (cos r, sin r), (-sin r, cos r), ...
                if q == 0:
                    a += c
                    b += s
                elif q == 1:
                    a -= s
                    b += c
                elif q == 2:
                    a -= c
                    b -= s
                else:
                    a += s
                    b -= c
                m = (m + k) & 1023
            top = a if a >= 0 else 0 - a
            if b > top or 0 - b > top:
                top = b if b >= 0 else 0 - b
            d = 0
            while (top >> (shift + d)) >= lim:
                d += 1
            if d:
                for i in range(j):
                    v = int(out[i])
                    if v >= 32768:
                        v -= 65536
                    out[i] = v >> d
                    v = int(out[nk + i])
                    if v >= 32768:
                        v -= 65536
                    out[nk + i] = v >> d
                shift += d
            out[j] = a >> shift
            out[nk + j] = b >> shift
        return shift


class HeartRate:
    """Motion-robust heart rate every 2 s over the last 8 s (docs/heart-rate.md).

    Feed add_ppg / add_acc with the bursts the drivers read; while ready(), compute()
    updates `bpm_x10` (0.1 bpm; 0 before the first estimate), `quality` (0..100: the share
    of the PPG's strongest spectral power the chosen peak keeps after motion gating) and
    `window_end` (PPG index of the window's end). Windows end on multiples of 2 s on the
    PPG's index. `ppg_bits`: the PPG part's sample width (a 16-bit part at _RATE keeps its
    ring in 16 bits; wider samples saturate there). fast=False forces the plain DFT loop.
    Nothing allocates after the constructor.
    """

    def __init__(self, ppg_rate, imu_rate, acc_unit_g=0.122e-3, fast=None, ppg_bits=18):
        if ppg_rate < _RATE or imu_rate < 0:
            raise ValueError("the PPG must run at %d Hz or faster" % _RATE)
        viper = VIPER if fast is None else bool(fast) and VIPER
        self._dft = dft_viper if viper else self._dft_plain  # (the bound method made once)
        # Both streams averaged down to _RATE into a ring each: the PPG's IR counts x 4 (two
        # more bits from averaging 4; 20 bits), the accelerometer's x y z in LSB; a gap holds
        # the last sample, an overlap is skipped. A PPG of 16 bits at _RATE (a slot per sample)
        # keeps its samples as they are, x 4 where they are read (_GAIN): exact, half the ring.
        narrow = ppg_rate == _RATE and ppg_bits <= 16
        self._ppg = zeros("H" if narrow else "i", _RING)
        self._acc = zeros("h", 3 * _RING) if imu_rate else None  # None: no accelerometer, no gate
        st = self._st = zeros("i", _STATE)
        for o in (0, _ACC):
            st[o + _NEXT] = st[o + _SLOT] = -1
        st[_HZ] = ppg_rate
        st[_ACC + _HZ] = imu_rate
        st[_FLOOR] = int(_MOTION_FLOOR_MG / (1000 * acc_unit_g)) if acc_unit_g else 0  # in LSB (< 2^14)
        st[_GAIN] = 4 if narrow else 1
        st[_END] = st[_TRACK] = -1
        # viper reads the quarter wave's bytes where they are and windows the ring as it reads it;
        # the plain loop reads an array and a windowed copy of the channel
        self._cos = self._x = None
        if not viper:
            cos = self._cos = zeros("h", _TABLE // 4 + 1)
            for i in range(_TABLE // 4 + 1):
                cos[i] = _COS_Q10[2 * i] | _COS_Q10[2 * i + 1] << 8
            self._x = zeros("h", _WINDOW)
        # The DFT's output in 16 bits (with its shift), re at 0.._NK-1 and im after it: each
        # accelerometer axis's in turn, summed as power into _a; then the PPG's, which stays
        # there as its spectrum (power re^2 + im^2, _power). _a then takes the gated PPG power
        # in place of the motion's.
        self._dft_out = zeros("h", 2 * _NK)
        self._a = zeros("i", _NK)
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
        if st[o + _NEXT] < 0:  # the stream's first sample
            first = st[o + _SLOT] = first_index * _RATE // st[o + _HZ]
            st[o + _NEXT] = first_index
            # the first window lies wholly after every stream's first slot and ends on the step grid
            st[_END] = max(st[_END], -(-(first + _WINDOW) // _STEP) * _STEP)
        w = 1 if o == 0 else 3
        while st[o + _NEXT] < first_index:  # lost samples: hold the last one
            self._push(o, st, _LAST if o == 0 else _LAST + 1)
        for i in range(st[o + _NEXT] - first_index, n):
            self._push(o, src, i * w)

    def _push(self, o, src, at):
        # One sample, src[at:at + w], into the slot being averaged.
        st = self._st
        w = 1 if o == 0 else 3
        b = 0 if o == 0 else 1
        ring = self._ppg if o == 0 else self._acc
        gain = 4 // st[_GAIN] if o == 0 else 1
        for c in range(w):
            v = src[at + c]
            st[_SUM + b + c] += v
            st[_LAST + b + c] = v
        st[o + _COUNT] += 1
        st[o + _NEXT] += 1
        s = st[o + _NEXT] * _RATE // st[o + _HZ]
        while st[o + _SLOT] < s:  # the slot has all its samples: close it (below _RATE some stay empty and hold)
            slot = st[o + _SLOT]
            count = st[o + _COUNT]
            base = (slot % _RING) * w
            for c in range(w):
                v = st[_SUM + b + c] * gain // count if count else ring[((slot - 1) % _RING) * w + c]  # pyright: ignore[reportOptionalSubscript]
                ring[base + c] = v if gain != 1 or o else max(0, min(65535, v))  # pyright: ignore[reportOptionalSubscript]
                st[_SUM + b + c] = 0
            st[o + _COUNT] = 0
            st[o + _SLOT] = slot + 1

    def beats(self):
        """Beats the estimate implies in its window (the HEART_RATE packet's count)."""
        return min(255, (self.bpm_x10 * _WINDOW_S + 300) // 600)

    def ready(self):
        """A window has completed on both streams."""
        st = self._st
        a = _ACC if self._acc is not None else 0  # no accelerometer: the PPG alone
        return st[_SLOT] >= 0 and st[a + _SLOT] >= 0 and st[_SLOT] >= st[_END] and st[a + _SLOT] >= st[_END]

    def compute(self):
        """The oldest completed window's estimate: updates bpm_x10, quality, window_end and
        returns bpm_x10; -1 when no window is ready."""
        if not self.ready():
            return -1
        st = self._st
        acc = self._acc
        newest = max(st[_SLOT], st[_ACC + _SLOT]) if acc is not None else st[_SLOT]
        if newest - (st[_END] - _WINDOW) > _RING:  # a ring no longer holds the window's start
            while newest - (st[_END] - _WINDOW) > _RING:  # skip to the first window both rings hold
                st[_END] += _STEP
            if not self.ready():  # (a stream ran ahead of the other: once that one completes it)
                return -1
        start = st[_END] - _WINDOW
        a = self._a
        shift = -1
        if acc is not None:  # first, as the PPG's spectrum then takes the DFT's output array
            shift = self._spectrum(acc, 3, 1, start, a, _ACC_BITS, st[_FLOOR])
        if shift < 0:  # no accelerometer, or too little motion to look at: no gate
            for j in range(_NK):
                a[j] = 0
        self._spectrum(self._ppg, 1, st[_GAIN], start, None, _PPG_BITS)
        pmax = amax = 0
        for j in range(_NK):
            pmax = max(pmax, self._power(j))
            amax = max(amax, a[j])
        # The strongest motion in the band as an amplitude, against the floor: a sinusoid of
        # amplitude F (LSB) on a bin has power (F _PEAK)^2 before the spectrum's shifts.
        floor = (st[_FLOOR] * _PEAK) >> shift if shift >= 0 else 16384
        lim = amax >> _GATE_SHIFT if floor < 16384 and amax >= floor * floor else 0
        for j in range(_NK):  # the gated power replaces the motion's
            g = _Q - (a[j] << 10) // lim if lim else _Q
            a[j] = self._power(j) * g if g > 0 else 0
        self._pick(pmax)
        self.window_end = st[_END] * st[_HZ] // _RATE
        st[_END] += _STEP
        return self.bpm_x10

    def _power(self, j):
        # The PPG's power at bin _K0 + j (< 2^19), from its spectrum in the DFT's output.
        out = self._dft_out
        return out[j] * out[j] + out[_NK + j] * out[_NK + j]

    def _spectrum(self, ring, w, gain, start, out, bits, least=0):
        # The spectrum at the bins _K0.. of the window [start, start + _WINDOW) of the ring's w
        # channels (entries x gain). Each channel centred, all scaled by one shift into +-_AMP,
        # Hann-windowed and transformed (the DFT keeps |re|, |im| < 2^bits with its own shift).
        # One channel (out None): its spectrum stays in the DFT's output. Several: their power
        # summed into out with one shift (a channel needing a larger shift rescales what came
        # before). Returns the two shifts' sum: the power is (amplitude in the ring's unit)^2 >>
        # (2 x that); -1 without computing anything when no channel deviates `least` / 2 from its
        # mean (then no component of the window has an amplitude of `least`).
        big = 0
        for ch in range(w):
            big = max(big, self._centre(ring, w, ch, gain, start))
        if 2 * big < least:
            return -1
        tshift = 0
        while (big >> tshift) > _AMP:
            tshift += 1
        spec = self._dft_out
        st = self._st
        kind = 1 if w > 1 else 0 if gain > 1 else 2  # the ring's type for viper: 'h', 'H' (x 4), 'i'
        cos = self._cos or _COS_Q10
        fshift = 0
        for ch in range(w):
            self._centre(ring, w, ch, gain, start)
            at = (start % _RING) * w + ch  # the channel's first entry in the window
            shift = self._dft(ring, at, w, _RING * w, gain, st[_MEAN], tshift, kind, cos, _HANN, _K0, _NK, spec,  # pyright: ignore[reportArgumentType] (viper takes buffers)
                              bits)
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
                u = spec[j] >> d
                v = spec[_NK + j] >> d
                out[j] = (out[j] if ch else 0) + u * u + v * v
        return tshift + fshift

    def _dft_plain(self, ring, at, w, wrap, gain, mean, tshift, kind, cos, hann, k0, nk, out, bits):
        # dft_viper's twin: the window into the plain loop's own buffer first (windowed in the
        # DFT's loop, the plain one would take 60 % longer), then dft_py.
        x = self._x
        for n in range(_WINDOW):
            q = 2 * n if n < _HALF else 2 * (_WINDOW - 1 - n)
            x[n] = (((ring[at] * gain - mean) >> tshift) * (hann[q] | hann[q + 1] << 8)) >> 12  # pyright: ignore[reportOptionalSubscript]
            at += w
            if at >= wrap:
                at -= wrap
        return dft_py(x, cos, k0, nk, out, bits)

    def _centre(self, ring, w, ch, gain, start):
        # The window's mean of channel ch (entries x gain) into the state's _MEAN; returns the
        # largest deviation from it.
        tot = 0
        for n in range(_WINDOW):
            tot += ring[((start + n) % _RING) * w + ch]
        m = self._st[_MEAN] = tot * gain // _WINDOW
        big = 0
        for n in range(_WINDOW):
            big = max(big, abs(ring[((start + n) % _RING) * w + ch] * gain - m))
        return big

    def _pick(self, pmax):
        # The tracker. The first estimate is the strongest PPG peak below _INIT_MAX, or its
        # subharmonic (a wrist at rest, as TROIKA and JOSS assume too); after it, the strongest
        # motion-gated peak weighted by the prior around the previous estimate, at most
        # _MAX_STEP bins away from it.
        c = self._a
        st = self._st
        track = st[_TRACK]
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
            for j in range(_NK):
                d = j - track if j > track else track - j
                v = (c[j] >> 10) * _PRIOR[d] if d < _PRIOR_N else 0
                if v > best:
                    best = v
                    k = j
            if k >= 0:
                k = max(track - _MAX_STEP, min(track + _MAX_STEP, k))
        if k < 0:  # nothing usable: hold the last estimate for a while, then start again
            self.quality = 0
            st[_HELD] += 1
            if st[_HELD] > _MAX_HOLD:
                st[_TRACK] = -1
                self.bpm_x10 = 0
            return
        st[_HELD] = 0
        st[_TRACK] = k
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

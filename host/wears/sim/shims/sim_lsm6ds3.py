"""Register-level model of the LSM6DS3TR-C for the virtual watch's I2C bus.

Follows the datasheet and AN5130: WHO_AM_I 0x6A, CTRL3_C (SW_RESET, IF_INC, reset value
0x04), ODR and full scale of both sensors, power-down at ODR 0, the 4 KB FIFO (2048 words,
whole sample sets: 341 gyro+accel sets) in bypass, FIFO and continuous mode, FIFO_STATUS1..4
(DIFF_FIFO, OVER_RUN, FIFO_FULL_SMART, FIFO_EMPTY, FIFO_PATTERN), FIFO_DATA_OUT bursts that
wrap from 0x3F back to 0x3E, and the output registers.
Samples are due on the virtual clock at the faster sensor's ODR (k / ODR after it was set);
the FIFO stores every one of them, or every 2nd, 4th... when ODR_FIFO is lower. Scenario
values (mg, 0.1 dps) become LSB at the full scale configured when they are read out.
Not modelled: decimation factors other than "in FIFO or not", trigger-based FIFO modes
(continuous-to-FIFO behaves as continuous, bypass-to-continuous as bypass), embedded
functions, filters and self-test.
"""

import time

from micropython import const

_FIFO_CTRL1 = const(0x06)
_FIFO_CTRL2 = const(0x07)
_FIFO_CTRL3 = const(0x08)
_FIFO_CTRL5 = const(0x0A)
_WHO_AM_I = const(0x0F)
_CTRL1_XL = const(0x10)
_CTRL2_G = const(0x11)
_CTRL3_C = const(0x12)
_CTRL9_XL = const(0x18)
_STATUS_REG = const(0x1E)
_OUT_TEMP_L = const(0x20)
_OUTX_L_G = const(0x22)
_OUTZ_H_XL = const(0x2D)
_FIFO_STATUS1 = const(0x3A)
_FIFO_STATUS2 = const(0x3B)
_FIFO_STATUS3 = const(0x3C)
_FIFO_STATUS4 = const(0x3D)
_FIFO_DATA_OUT_L = const(0x3E)
_FIFO_DATA_OUT_H = const(0x3F)

_IF_INC = const(0x04)
_SW_RESET = const(0x01)
_FIFO_WORDS = const(2048)
_TEMP_LSB = const(1280)  # 30 degC: 25 degC + 5 * 256 LSB/degC
# ODR codes 0..11 in mHz (code 11: accelerometer low-power 1.6 Hz).
_ODR_MHZ = (0, 12500, 26000, 52000, 104000, 208000, 416000, 833000, 1660000, 3330000, 6660000, 1600)
_XL_UG = (61, 488, 122, 244)  # FS_XL 00 2 g, 01 16 g, 10 4 g, 11 8 g: ug per LSB
_G_UDPS = (8750, 17500, 35000, 70000)  # FS_G 250, 500, 1000, 2000 dps: udps per LSB
_G125_UDPS = const(4375)


def _to_lsb(num, den):
    """round(num / den) clamped to int16, without floats."""
    q = (2 * (num if num >= 0 else -num) + den) // (2 * den)
    if num < 0:
        q = -q
    return 32767 if q > 32767 else (-32768 if q < -32768 else q)


class LSM6DS3TRC:
    def __init__(self, scenario):
        self._sc = scenario
        self._regs = bytearray(128)
        self.ptr = 0
        self._reset()

    def _reset(self):
        r = self._regs
        for i in range(128):
            r[i] = 0
        r[_WHO_AM_I] = 0x6A
        r[_CTRL3_C] = _IF_INC
        r[_CTRL9_XL] = 0xE0
        self._k = 0  # next sensor sample index; never goes back
        self._running = 0  # sensor clock in mHz (the faster ODR), 0 when powered down
        # Sample k >= k0 was taken at t0 + (k - k0) / rate; the previous run (p*) covers
        # older samples still in the FIFO.
        self._t0 = self._k0 = self._rate = 0
        self._pt0 = self._pk0 = self._prate = 0
        self._mode = 0
        self._ratio = 1  # sensor samples per FIFO set
        self._words = 0  # words per FIFO set: 3 per sensor stored
        self._gyro_in = False
        self._cap = 0  # FIFO capacity in whole sets
        self._base = 0  # sensor sample index of FIFO set 0
        self._first = 0  # oldest set in the FIFO
        self._end = 0  # next set to be written
        self._word = 0  # words of the oldest set already read
        self._over = 0
        self._stopped = False

    # -- bus side ---------------------------------------------------------------------------
    def read(self, reg, buf):
        self._update()
        r = reg & 0x7F
        inc = self._regs[_CTRL3_C] & _IF_INC
        for i in range(len(buf)):
            buf[i] = self._get(r)
            if inc:
                r = _FIFO_DATA_OUT_L if r == _FIFO_DATA_OUT_H else (r + 1) & 0x7F
        self.ptr = r

    def write(self, reg, buf):
        self._update()
        r = reg & 0x7F
        for i in range(len(buf)):
            self._set(r, buf[i])
            if self._regs[_CTRL3_C] & _IF_INC:
                r = (r + 1) & 0x7F
        self.ptr = r

    def _get(self, r):
        if r >= _FIFO_STATUS1:
            if r == _FIFO_DATA_OUT_L:
                return self._fifo_word() & 0xFF
            if r == _FIFO_DATA_OUT_H:
                v = self._fifo_word() >> 8
                self._pop()
                return v
            words = self._unread()
            if r == _FIFO_STATUS1:
                return words & 0xFF
            if r == _FIFO_STATUS2:
                fth = ((self._regs[_FIFO_CTRL2] & 0x07) << 8) | self._regs[_FIFO_CTRL1]
                v = (words >> 8) & 0x07
                if fth and words >= fth:
                    v |= 0x80  # WaterM
                if self._over:
                    v |= 0x40  # OVER_RUN
                if self._words and self._end - self._first + 1 >= self._cap:
                    v |= 0x20  # FIFO_FULL_SMART: the next set fills it
                if words == 0:
                    v |= 0x10  # FIFO_EMPTY
                return v
            if r == _FIFO_STATUS3:
                return self._word if words else 0
            return 0  # FIFO_STATUS4: pattern bits 9:8, always 0 with 3- or 6-word patterns
        if _OUTX_L_G <= r <= _OUTZ_H_XL:
            if self._k == 0:
                return 0
            v = self._value(self._k - 1, (r - _OUTX_L_G) >> 1)
            return (v >> 8) & 0xFF if r & 1 else v & 0xFF
        if r == _STATUS_REG:
            regs = self._regs
            return 0x04 | (0x02 if regs[_CTRL2_G] >> 4 else 0) | (0x01 if regs[_CTRL1_XL] >> 4 else 0)
        if r == _OUT_TEMP_L:
            return _TEMP_LSB & 0xFF
        if r == _OUT_TEMP_L + 1:
            return _TEMP_LSB >> 8
        return self._regs[r]

    def _set(self, r, v):
        regs = self._regs
        if r == _CTRL3_C:
            if v & _SW_RESET:
                self._reset()  # SW_RESET reads back 0 at once: the reset is instant here
                return
            regs[r] = v & 0x7E  # BOOT (bit 7) clears itself
        elif r == _WHO_AM_I or r == _STATUS_REG or r >= _FIFO_STATUS1 or _OUT_TEMP_L <= r <= _OUTZ_H_XL:
            return  # read-only
        else:
            regs[r] = v
            if r == _CTRL1_XL or r == _CTRL2_G or r == _FIFO_CTRL3 or r == _FIFO_CTRL5:
                self._configure()

    # -- conversions and FIFO -----------------------------------------------------------------
    def _configure(self):
        regs = self._regs
        xl = _ODR_MHZ[min(regs[_CTRL1_XL] >> 4, 11)]
        g = _ODR_MHZ[min(regs[_CTRL2_G] >> 4, 10)]
        rate = xl if xl > g else g
        if rate != self._running:
            if rate:
                if self._rate:
                    self._pt0, self._pk0, self._prate = self._t0, self._k0, self._rate
                self._t0 = time.virtual_us()
                self._k0 = self._k
                self._rate = rate
            self._running = rate
        fifo_rate = _ODR_MHZ[min((regs[_FIFO_CTRL5] >> 3) & 0x0F, 10)]
        mode = regs[_FIFO_CTRL5] & 0x07
        if mode == 3:
            mode = 6  # continuous-to-FIFO without a trigger event: continuous
        elif mode == 4 or not fifo_rate:
            mode = 0  # bypass-to-continuous without a trigger event, or no FIFO ODR: bypass
        gyro_in = bool(regs[_FIFO_CTRL3] & 0x38)
        words = 3 * (gyro_in + bool(regs[_FIFO_CTRL3] & 0x07))
        ratio = 1
        while fifo_rate and self._rate // (ratio * 2) >= fifo_rate:
            ratio *= 2
        if mode == 0 or mode != self._mode or words != self._words or ratio != self._ratio:
            # A new FIFO configuration starts from an empty FIFO (AN5130 8.3.1).
            self._mode = mode
            self._words = words
            self._gyro_in = gyro_in
            self._ratio = ratio
            self._cap = _FIFO_WORDS // words if words else 0
            self._first = self._end = self._word = 0
            self._over = 0
            self._stopped = False
            self._base = (self._k + ratio - 1) // ratio * ratio

    def _time(self, k):
        if k >= self._k0:
            return self._t0 + (k - self._k0) * 1000000000 // self._rate
        return self._pt0 + (k - self._pk0) * 1000000000 // self._prate

    def _update(self):
        if not self._running:
            return
        due = self._k0 + (time.virtual_us() - self._t0) * self._rate // 1000000000 + 1
        if due <= self._k:
            return
        self._k = due
        self._sc.imu_index(self._time(due - 1))  # powers the watch off once the scenario is over
        if not self._words or self._mode == 0 or self._stopped:
            return
        # FIFO sets j with base + j * ratio < due have been written.
        end = (due - self._base + self._ratio - 1) // self._ratio
        if end <= self._end:
            return
        if self._mode == 1:  # FIFO mode: stop when full
            if end - self._first >= self._cap:
                end = self._first + self._cap
                self._stopped = True
        elif end - self._first > self._cap:
            self._first = end - self._cap
            self._word = 0
            self._over = 1
        self._end = end

    def _unread(self):
        return (self._end - self._first) * self._words - self._word

    def _fifo_word(self):
        if self._end == self._first:
            return 0
        c = self._word if self._gyro_in else self._word + 3
        return self._value(self._base + self._first * self._ratio, c) & 0xFFFF

    def _pop(self):
        if self._end == self._first:
            return
        self._over = 0  # no longer completely filled
        self._word += 1
        if self._word >= self._words:
            self._word = 0
            self._first += 1

    def _value(self, k, c):
        """Component c (0-2 gyro x, y, z; 3-5 accel x, y, z) of sensor sample k, in LSB."""
        sc = self._sc
        i = sc.imu_index(self._time(k))
        regs = self._regs
        if c < 3:
            fs = regs[_CTRL2_G]
            sens = _G125_UDPS if fs & 0x02 else _G_UDPS[(fs >> 2) & 0x03]
            return _to_lsb(sc.imu(i, c + 3) * 100000, sens)
        fs = regs[_CTRL1_XL]
        return _to_lsb(sc.imu(i, c - 3) * 1000, _XL_UG[(fs >> 2) & 0x03])

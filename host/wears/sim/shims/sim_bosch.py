"""Register-level models of the Bosch BMA421 and BMI160 for the virtual watch's I2C bus.

Both keep a 1 KB FIFO of header-mode frames (watch/drivers/bosch_fifo.py describes the
format): a regular frame per ODR period while the sensor is on and the FIFO enabled for it;
when the next frame does not fit, the oldest frames go and the next read-out starts with a
skip frame counting them (saturating at 255); reading past the end gives 0x80; a frame
read only in part is not popped and comes again, whole, at the next burst. Sample k of a
run started at t0 is taken at t0 + k / ODR from the scenario record nearest that time.
Only header mode is modelled (headerless reads give over-read bytes), with the ODRs of
the accelerometer and gyroscope equal. CMD soft reset and FIFO flush act at once.
"""

import time
from array import array

from micropython import const

_FIFO_BYTES = const(1024)
_OVER_READ = const(0x80)
_SKIP = const(0x40)
_CMD = const(0x7E)
_SOFTRESET = const(0xB6)
_FIFO_FLUSH = const(0xB0)


def _lsb(num, den, bits):
    """round(num / den) clamped to int16, then only the part's `bits` most significant."""
    q = (2 * (num if num >= 0 else -num) + den) // (2 * den)
    if num < 0:
        q = -q
    q = 32767 if q > 32767 else (-32768 if q < -32768 else q)
    return q & (0xFFFF << (16 - bits)) & 0xFFFF


class _Bosch:
    _CHIP = 0
    _FIFO_LENGTH = 0
    _FIFO_DATA = 0
    _BITS = 16

    def __init__(self, scenario):
        self._sc = scenario
        self._regs = bytearray(128)
        self.ptr = 0
        # Virtual time (us) of each frame, oldest at _head, in two halves: reading an
        # array('q') item allocates, reading array('i') items does not.
        self._ring_hi = array("i", [0] * (_FIFO_BYTES // 7))
        self._ring = array("i", [0] * (_FIFO_BYTES // 7))
        self._frame_buf = bytearray(13)
        self._reset()

    def _reset(self):
        r = self._regs
        for i in range(128):
            r[i] = 0
        r[0] = self._CHIP
        self._defaults(r)
        self._head = self._n = 0
        self._skip = 0  # frames dropped since the last read-out; >0: a skip frame leads
        self._rate_mhz = 0
        self._t0 = 0
        self._k = 0  # next sample index of this run
        self._acc_on = self._gyr_on = False
        self._configure()

    # -- bus side -------------------------------------------------------------------------
    def read(self, reg, buf):
        self._update()
        r = reg & 0x7F
        if r == self._FIFO_DATA:
            self._read_fifo(buf)
            self.ptr = r
            return
        for i in range(len(buf)):
            buf[i] = self._get(r)
            r = (r + 1) & 0x7F
        self.ptr = r

    def write(self, reg, buf):
        self._update()
        r = reg & 0x7F
        for i in range(len(buf)):
            self._set(r, buf[i])
            r = (r + 1) & 0x7F
        self.ptr = r

    def _get(self, r):
        if r == self._FIFO_LENGTH or r == self._FIFO_LENGTH + 1:
            n = self._length()
            return n & 0xFF if r == self._FIFO_LENGTH else n >> 8
        return self._regs[r]

    def _set(self, r, v):
        if r == _CMD:
            if v == _SOFTRESET:
                self._reset()
            elif v == _FIFO_FLUSH:
                self._head = self._n = 0
                self._skip = 0
            else:
                self._command(v)
            self._configure()
            return
        if r == 0 or r == self._FIFO_LENGTH or r == self._FIFO_LENGTH + 1 or r == self._FIFO_DATA:
            return  # read-only
        self._regs[r] = v
        self._configure()

    # -- FIFO ---------------------------------------------------------------------------------
    def _frame_bytes(self):
        return 1 + 6 * (self._fifo_acc() + self._fifo_gyr())

    def _length(self):
        return (2 if self._skip else 0) + self._n * self._frame_bytes()

    def _configure(self):
        rate = self._odr_mhz() if self._acc_on else 0
        if rate != self._rate_mhz:
            self._rate_mhz = rate
            self._t0 = time.virtual_us()
            self._k = 0

    def _update(self):
        rate = self._rate_mhz
        if not rate:
            return
        due = (time.virtual_us() - self._t0) * rate // 1000000000 + 1
        if due <= self._k:
            return
        self._sc.imu_index(self._time(due - 1))  # powers the watch off once the scenario is over
        if not (self._fifo_acc() or self._fifo_gyr()) or not self._header_mode():
            self._k = due
            return
        cap = _FIFO_BYTES // self._frame_bytes() - 1  # room kept for the skip frame
        ring = self._ring
        size = len(ring)
        k = self._k
        if due - k > cap:  # more than fits: only the newest stay
            self._skip += self._n + due - k - cap
            self._head = self._n = 0
            k = due - cap
        while k < due:
            if self._n >= cap:
                self._head = (self._head + 1) % size
                self._n -= 1
                self._skip += 1
            t = self._time(k)
            j = (self._head + self._n) % size
            ring[j] = t & 0xFFFFF
            self._ring_hi[j] = t >> 20
            self._n += 1
            k += 1
        self._k = due

    def _time(self, k):
        return self._t0 + k * 1000000000 // self._rate_mhz

    def _read_fifo(self, buf):
        n = len(buf)
        i = 0
        if self._skip:
            if n >= 2:
                buf[0] = _SKIP
                buf[1] = self._skip if self._skip < 255 else 255
                self._skip = 0
                i = 2
            else:
                buf[0] = _SKIP  # a partial skip frame: not popped
                return
        size = self._frame_bytes()
        ring = self._ring
        f = self._frame_buf
        while self._n and i < n:
            self._frame((self._ring_hi[self._head] << 20) | ring[self._head], f)
            take = size if i + size <= n else n - i
            for j in range(take):
                buf[i + j] = f[j]
            i += take
            if take < size:
                return  # a partial frame: not popped, comes again whole
            self._head = (self._head + 1) % len(ring)
            self._n -= 1
        while i < n:
            buf[i] = _OVER_READ
            i += 1

    def _frame(self, t, f):
        sc = self._sc
        i = sc.imu_index(t)
        gyr = self._fifo_gyr()
        acc = self._fifo_acc()
        f[0] = 0x80 | (0x08 if gyr else 0) | (0x04 if acc else 0)
        o = 1
        if gyr:
            dps = self._gyro_range()
            for c in range(3):
                v = _lsb(sc.imu(i, 3 + c) * 32768, dps * 10, 16)
                f[o] = v & 0xFF
                f[o + 1] = v >> 8
                o += 2
        if acc:
            g = self._accel_range()
            for c in range(3):
                v = _lsb(sc.imu(i, c) * 32768, g * 1000, self._BITS)
                f[o] = v & 0xFF
                f[o + 1] = v >> 8
                o += 2


_BMI160_RANGE_G = {0x03: 2, 0x05: 4, 0x08: 8, 0x0C: 16}
_ODR_MHZ = {6: 25000, 7: 50000, 8: 100000, 9: 200000, 10: 400000, 11: 800000, 12: 1600000}


class BMA421(_Bosch):
    """BMA421 at 0x18: ACC_CONF 0x40, ACC_RANGE 0x41, FIFO_CONFIG_0/1 0x48/0x49, PWR_CTRL 0x7D."""

    _CHIP = 0x11
    _FIFO_LENGTH = 0x24
    _FIFO_DATA = 0x26
    _BITS = 12

    def _defaults(self, r):
        r[0x40] = 0xA8  # ACC_CONF: 100 Hz, normal filter, performance mode
        r[0x48] = 0x02  # FIFO_CONFIG_0: sensor time frames on
        r[0x49] = 0x10  # FIFO_CONFIG_1: header mode, no sensor in the FIFO
        r[0x7C] = 0x03  # PWR_CONF: advanced power save

    def _configure(self):
        self._acc_on = bool(self._regs[0x7D] & 0x04)
        _Bosch._configure(self)

    def _command(self, v):
        pass

    def _odr_mhz(self):
        return _ODR_MHZ.get(self._regs[0x40] & 0x0F, 0)

    def _fifo_acc(self):
        return 1 if self._regs[0x49] & 0x40 else 0

    def _fifo_gyr(self):
        return 0

    def _header_mode(self):
        return bool(self._regs[0x49] & 0x10)

    def _accel_range(self):
        return 2 << (self._regs[0x41] & 0x03)

    def _gyro_range(self):
        return 0


class BMI160(_Bosch):
    """BMI160 at 0x68: ACC_CONF 0x40, ACC_RANGE 0x41, GYR_CONF 0x42, GYR_RANGE 0x43,
    FIFO_CONFIG_1 0x47, power modes by CMD (PMU_STATUS 0x03 tells them)."""

    _CHIP = 0xD1
    _FIFO_LENGTH = 0x22
    _FIFO_DATA = 0x24

    def _defaults(self, r):
        r[0x40] = 0x28  # ACC_CONF: 100 Hz, normal filter
        r[0x41] = 0x03  # 2 g
        r[0x42] = 0x28  # GYR_CONF: 100 Hz, normal filter
        r[0x47] = 0x10  # FIFO_CONFIG_1: header mode, no sensor in the FIFO

    def _command(self, v):
        if v == 0x11 or v == 0x10:
            self._acc_on = v == 0x11
        elif v == 0x15 or v == 0x14:
            self._gyr_on = v == 0x15
        r = self._regs
        r[0x03] = (0x10 if self._acc_on else 0) | (0x04 if self._gyr_on else 0)

    def _odr_mhz(self):
        return _ODR_MHZ.get(self._regs[0x40] & 0x0F, 0)

    def _fifo_acc(self):
        return 1 if self._regs[0x47] & 0x40 and self._acc_on else 0

    def _fifo_gyr(self):
        return 1 if self._regs[0x47] & 0x80 and self._gyr_on else 0

    def _header_mode(self):
        return bool(self._regs[0x47] & 0x10)

    def _accel_range(self):
        return _BMI160_RANGE_G.get(self._regs[0x41], 2)

    def _gyro_range(self):
        return 2000 >> (self._regs[0x43] & 0x07)

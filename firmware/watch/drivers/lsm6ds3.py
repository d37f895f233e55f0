"""ST LSM6DS3TR-C: 3-axis accelerometer and 3-axis gyroscope with a 4 KB FIFO."""

import errno
import time

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

from watch.drivers.registers import Registers

_FIFO_CTRL1 = const(0x06)  # FTH[7:0], then FIFO_CTRL2 FTH[10:8]: watermark in 16-bit words
_FIFO_CTRL3 = const(0x08)
_FIFO_DEC_GYRO_1 = const(0x08)  # DEC_FIFO_GYRO = 001: gyro in the FIFO, no decimation
_FIFO_DEC_XL_1 = const(0x01)  # DEC_FIFO_XL = 001: accelerometer in the FIFO, no decimation
_FIFO_CTRL5 = const(0x0A)
_FIFO_ODR_SHIFT = const(3)  # ODR_FIFO[3:0] uses the same codes as ODR_XL
_FIFO_MODE_BYPASS = const(0x00)  # FIFO off and emptied
_FIFO_MODE_CONTINUOUS = const(0x06)  # newest data kept, oldest overwritten when full
_WHO_AM_I = const(0x0F)
_WHO_AM_I_TRC = const(0x6A)
_CTRL1_XL = const(0x10)  # ODR_XL[7:4], FS_XL[3:2]
_CTRL2_G = const(0x11)  # ODR_G[7:4], FS_G[3:2], FS_125[1]
_ODR_SHIFT = const(4)
_CTRL3_C = const(0x12)
_CTRL3_BDU = const(0x40)  # output registers not updated between reading LSB and MSB
_CTRL3_IF_INC = const(0x04)  # register address auto-increment on multi-byte access (reset value)
_CTRL3_SW_RESET = const(0x01)  # resets the control registers; clears itself (~50 us)
_FIFO_STATUS1 = const(0x3A)  # DIFF_FIFO[7:0]; STATUS2..4 follow: one 4-byte burst
_FIFO_OVER_RUN = const(0x40)  # FIFO_STATUS2: full and at least one sample overwritten
_FIFO_DATA_OUT_L = const(0x3E)  # a burst here wraps 0x3F -> 0x3E: consecutive FIFO words

_WORDS = const(6)  # pattern: gyro x, y, z, then accelerometer x, y, z (AN5130 8.5)
_SET_BYTES = const(12)
_RESET_POLLS = const(10)

# ODR codes 1..10 (CTRL1_XL, CTRL2_G, FIFO_CTRL5), in mHz.
_ODR_MHZ = (12500, 26000, 52000, 104000, 208000, 416000, 833000, 1660000, 3330000, 6660000)
# Full scale -> (FS_XL bits, g per LSB) from the datasheet's sensitivity table.
_ACCEL = {2: (0x00, 0.061e-3), 4: (0x08, 0.122e-3), 8: (0x0C, 0.244e-3), 16: (0x04, 0.488e-3)}
# Full scale -> (FS_G and FS_125 bits, dps per LSB).
_GYRO = {125: (0x02, 4.375e-3), 250: (0x00, 8.75e-3), 500: (0x04, 17.5e-3), 1000: (0x08, 35e-3),
         2000: (0x0C, 70e-3)}


def _unpack_py(buf, n, acc, gyro, o):
    """Sample sets of a FIFO burst (little-endian int16 words) into acc[3*o:] and gyro[3*o:]."""
    j = 0
    for i in range(3 * o, 3 * (o + n), 3):
        for axis in range(3):
            v = buf[j] | (buf[j + 1] << 8)
            gyro[i + axis] = v - 0x10000 if v & 0x8000 else v
            v = buf[j + 6] | (buf[j + 7] << 8)
            acc[i + axis] = v - 0x10000 if v & 0x8000 else v
            j += 2
        j += 6


try:
    import micropython

    @micropython.viper
    def _unpack(buf: ptr8, n: int, acc: ptr16, gyro: ptr16, o: int):
        j = 0
        i = 3 * o
        end = 3 * (o + n)
        while i < end:
            gyro[i] = buf[j] | (buf[j + 1] << 8)
            gyro[i + 1] = buf[j + 2] | (buf[j + 3] << 8)
            gyro[i + 2] = buf[j + 4] | (buf[j + 5] << 8)
            acc[i] = buf[j + 6] | (buf[j + 7] << 8)
            acc[i + 1] = buf[j + 8] | (buf[j + 9] << 8)
            acc[i + 2] = buf[j + 10] | (buf[j + 11] << 8)
            j += 12
            i += 3
except (ImportError, AttributeError, NameError):
    _unpack = _unpack_py


class LSM6DS3(Registers):
    """The IMU on `i2c`; `read` moves at most `max_samples` sample sets per call.

    `accel_unit` (g per LSB) and `gyro_unit` (dps per LSB) follow the configured ranges.
    `lost` counts sample sets lost to FIFO overrun (an estimate from the elapsed time: the
    part does not count them) or to a transfer that failed midway.
    """

    def __init__(self, i2c, address=0x6A, max_samples=64):
        Registers.__init__(self, i2c, address)
        self.max_samples = max_samples
        self.rate_hz = 0
        self.accel_unit = 0.0
        self.gyro_unit = 0.0
        self.lost = 0
        self._rate_mhz = 0
        self._odr = 0
        self._pending = 0
        self._last_ms = 0
        self._streaming = False
        self._two = bytearray(2)
        self._status = bytearray(4)
        top = 0
        while (2 << top) <= max_samples:
            top += 1
        self._top = top
        buf = bytearray(_SET_BYTES << top)
        self._buf = buf
        mv = memoryview(buf)
        # One view per power of two of sample sets: any count is read in a few bursts.
        self._views = tuple(mv[:_SET_BYTES << b] for b in range(top + 1))

    def init(self, rate_hz=52, accel_range_g=4, gyro_range_dps=500):
        """Check the part, reset it and stream both sensors through the FIFO at `rate_hz`."""
        odr = 0
        for code in range(len(_ODR_MHZ)):
            if _ODR_MHZ[code] == int(rate_hz * 1000):
                odr = code + 1
        if not odr:
            raise ValueError("LSM6DS3 rate_hz must be one of 12.5, 26, 52, 104, 208, 416, 833, 1660, 3330, 6660")
        self._streaming = False
        if accel_range_g not in _ACCEL:
            raise ValueError("LSM6DS3 accel_range_g must be 2, 4, 8 or 16")
        if gyro_range_dps not in _GYRO:
            raise ValueError("LSM6DS3 gyro_range_dps must be 125, 250, 500, 1000 or 2000")
        if self._read_reg(_WHO_AM_I) != _WHO_AM_I_TRC:
            raise OSError(errno.ENODEV)
        self._write(_CTRL3_C, _CTRL3_SW_RESET | _CTRL3_IF_INC)
        for _ in range(_RESET_POLLS):
            if not self._read_reg(_CTRL3_C) & _CTRL3_SW_RESET:
                break
            time.sleep_ms(1)
        else:
            raise OSError(errno.EIO)
        self._write(_CTRL3_C, _CTRL3_BDU | _CTRL3_IF_INC)
        fs_xl, self.accel_unit = _ACCEL[accel_range_g]
        fs_g, self.gyro_unit = _GYRO[gyro_range_dps]
        # AN5130 8.3.1: FIFO in bypass, then ODRs, FIFO ODR and decimation, then the mode.
        self._write(_FIFO_CTRL5, _FIFO_MODE_BYPASS)
        self._write(_CTRL1_XL, (odr << _ODR_SHIFT) | fs_xl)
        self._write(_CTRL2_G, (odr << _ODR_SHIFT) | fs_g)
        watermark = _WORDS * self.max_samples  # FIFO_STATUS2 WaterM: one full read is waiting
        if watermark > 0x7FF:
            watermark = 0x7FF
        self._two[0] = watermark & 0xFF
        self._two[1] = watermark >> 8
        self._i2c.writeto_mem(self._address, _FIFO_CTRL1, self._two)
        self._write(_FIFO_CTRL3, _FIFO_DEC_GYRO_1 | _FIFO_DEC_XL_1)
        self._odr = odr
        self.rate_hz = rate_hz
        self._rate_mhz = _ODR_MHZ[odr - 1]
        self._restart()
        self._pending = 0

    def _restart(self):
        self._write(_FIFO_CTRL5, _FIFO_MODE_BYPASS)
        self._write(_FIFO_CTRL5, (self._odr << _FIFO_ODR_SHIFT) | _FIFO_MODE_CONTINUOUS)
        self._streaming = True
        self._last_ms = time.ticks_ms()

    def disable(self):
        """Power-down: both ODRs to 0 (the FIFO keeps what it holds)."""
        self._write(_CTRL1_XL, self._read_reg(_CTRL1_XL) & 0x0F)
        self._write(_CTRL2_G, self._read_reg(_CTRL2_G) & 0x0F)

    def enable(self):
        odr = self._odr << _ODR_SHIFT
        self._write(_CTRL1_XL, (self._read_reg(_CTRL1_XL) & 0x0F) | odr)
        self._write(_CTRL2_G, (self._read_reg(_CTRL2_G) & 0x0F) | odr)
        self._last_ms = time.ticks_ms()

    def read(self, acc, gyro):
        """Move waiting sample sets into `acc` and `gyro` (array('h'), x, y, z per set).

        Returns the number of sets; at most `max_samples` and what the arrays hold, the rest
        waits for the next call. Allocates nothing. An OSError from the bus propagates; the
        driver stays usable.
        """
        i2c = self._i2c
        address = self._address
        st = self._status
        i2c.readfrom_mem_into(address, _FIFO_STATUS1, st)
        now = time.ticks_ms()
        if st[1] & _FIFO_OVER_RUN or not self._streaming:
            # Everything since the last read is gone or out of sequence: count it, start over.
            made = (time.ticks_diff(now, self._last_ms) * self._rate_mhz + 500000) // 1000000
            self._streaming = False
            self._restart()  # if this fails, the next read tries again and counts then
            self.lost += self._pending + made
            self._pending = 0
            return 0
        words = ((st[1] & 0x07) << 8) | st[0]
        pattern = ((st[3] & 0x03) << 8) | st[2]
        if pattern:
            # A set was left half read (a transfer failed midway): drop its remaining words.
            if words < _WORDS - pattern:
                return 0
            for _ in range(_WORDS - pattern):
                i2c.readfrom_mem_into(address, _FIFO_DATA_OUT_L, self._two)
            words -= _WORDS - pattern
            self.lost += 1
        n = words // _WORDS
        cap = self.max_samples
        if len(acc) // 3 < cap:
            cap = len(acc) // 3
        if len(gyro) // 3 < cap:
            cap = len(gyro) // 3
        take = n if n <= cap else cap
        views = self._views
        buf = self._buf
        done = 0
        try:
            b = self._top
            while b >= 0:
                if take & (1 << b):
                    i2c.readfrom_mem_into(address, _FIFO_DATA_OUT_L, views[b])
                    _unpack(buf, 1 << b, acc, gyro, done)  # pyright: ignore[reportArgumentType] (viper takes buffers)
                    done += 1 << b
                b -= 1
        except OSError:
            if done:
                # What the good bursts popped never reaches the caller.
                self.lost += done
                self._pending = n - done
                self._last_ms = now
            raise
        self._pending = n - take
        self._last_ms = now
        return take

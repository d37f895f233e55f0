"""Bosch BMI160: 3-axis accelerometer and 3-axis gyroscope with a 1 KB FIFO (alternative IMU)."""

import errno
import time

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

from watch.drivers.bosch_fifo import BoschFifo

_CHIP_ID = const(0x00)
_CHIP_ID_BMI160 = const(0xD1)
_PMU_STATUS = const(0x03)
_PMU_NORMAL = const(0x14)  # acc_pmu_status = 01, gyr_pmu_status = 01: both in normal mode
_FIFO_LENGTH_0 = const(0x22)  # FIFO_LENGTH_1 follows: bytes waiting, 11 bits
_FIFO_DATA_REG = const(0x24)
_ACC_CONF = const(0x40)
_ACC_CONF_BWP_NORMAL = const(0x20)  # acc_bwp = 2, acc_us = 0: normal filter, no undersampling
_ACC_RANGE = const(0x41)
_GYR_CONF = const(0x42)
_GYR_CONF_BWP_NORMAL = const(0x20)  # gyr_bwp = 2: normal filter
_GYR_RANGE = const(0x43)
_FIFO_CONFIG_1 = const(0x47)
_FIFO_CONFIG_1_GYR_ACC_HEADER = const(0xD0)  # gyr_en | acc_en | header_en; no sensor time frame
_CMD = const(0x7E)
_CMD_ACC_NORMAL = const(0x11)
_CMD_ACC_SUSPEND = const(0x10)
_CMD_GYR_NORMAL = const(0x15)
_CMD_GYR_SUSPEND = const(0x14)
_CMD_FIFO_FLUSH = const(0xB0)
_CMD_SOFTRESET = const(0xB6)
_ACC_START_MS = const(4)  # accelerometer: 3.8 ms from suspend to normal
_GYR_START_MS = const(81)  # gyroscope: 80 ms from suspend to normal
_RESET_MS = const(2)

# acc_odr and gyr_odr codes (ODR = 100 / 2^(8 - code) Hz).
_ODR = {25: 6, 50: 7, 100: 8, 200: 9}
# Full scale -> (ACC_RANGE code, g per LSB).
_ACCEL = {2: (0x03, 2 / 32768), 4: (0x05, 4 / 32768), 8: (0x08, 8 / 32768), 16: (0x0C, 16 / 32768)}
# Full scale -> (GYR_RANGE code, dps per LSB).
_GYRO = {125: (4, 125 / 32768), 250: (3, 250 / 32768), 500: (2, 500 / 32768), 1000: (1, 1000 / 32768),
         2000: (0, 2000 / 32768)}


class BMI160(BoschFifo):
    """The IMU on `i2c` (0x68 with SDO low, 0x69 high); both sensors through the FIFO."""

    _FIFO_LENGTH = _FIFO_LENGTH_0
    _FIFO_DATA = _FIFO_DATA_REG
    _LENGTH_MASK = 0x07

    polled = False

    def __init__(self, i2c, address=0x68, max_samples=64):
        self._fifo_init(i2c, address, True, max_samples)
        self.rate_hz = 0
        self.accel_unit = 0.0
        self.gyro_unit = 0.0

    def init(self, rate_hz=50, accel_range_g=4, gyro_range_dps=500):
        """Check the part, reset it and stream both sensors through the FIFO at `rate_hz`."""
        if rate_hz not in _ODR:
            raise ValueError("BMI160 rate_hz must be 25, 50, 100 or 200")
        if accel_range_g not in _ACCEL:
            raise ValueError("BMI160 accel_range_g must be 2, 4, 8 or 16")
        if gyro_range_dps not in _GYRO:
            raise ValueError("BMI160 gyro_range_dps must be 125, 250, 500, 1000 or 2000")
        if self._read_reg(_CHIP_ID) != _CHIP_ID_BMI160:
            raise OSError(errno.ENODEV)
        self._write(_CMD, _CMD_SOFTRESET)
        time.sleep_ms(_RESET_MS)
        acc_range, self.accel_unit = _ACCEL[accel_range_g]
        gyr_range, self.gyro_unit = _GYRO[gyro_range_dps]
        self._write(_ACC_CONF, _ACC_CONF_BWP_NORMAL | _ODR[rate_hz])
        self._write(_ACC_RANGE, acc_range)
        self._write(_GYR_CONF, _GYR_CONF_BWP_NORMAL | _ODR[rate_hz])
        self._write(_GYR_RANGE, gyr_range)
        self.enable()
        if self._read_reg(_PMU_STATUS) & 0x3C != _PMU_NORMAL:
            raise OSError(errno.EIO)
        self._write(_FIFO_CONFIG_1, _FIFO_CONFIG_1_GYR_ACC_HEADER)
        self._write(_CMD, _CMD_FIFO_FLUSH)
        self.rate_hz = rate_hz

    def enable(self):
        self._write(_CMD, _CMD_ACC_NORMAL)
        time.sleep_ms(_ACC_START_MS)
        self._write(_CMD, _CMD_GYR_NORMAL)
        time.sleep_ms(_GYR_START_MS)

    def disable(self):
        """Power-down: both sensors suspended (about 6 uA); the FIFO keeps its frames."""
        self._write(_CMD, _CMD_ACC_SUSPEND)
        self._write(_CMD, _CMD_GYR_SUSPEND)

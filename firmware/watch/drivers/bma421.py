"""Bosch BMA421: 3-axis 12-bit accelerometer with a 1 KB FIFO (the PineTime's)."""

import errno
import time

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

from watch.drivers.bosch_fifo import BoschFifo

_CHIP_ID = const(0x00)
_CHIP_ID_BMA421 = const(0x11)
_FIFO_LENGTH_0 = const(0x24)  # FIFO_LENGTH_1 follows: bytes waiting, 14 bits
_FIFO_DATA_REG = const(0x26)
_ACC_CONF = const(0x40)
_ACC_CONF_PERF = const(0x80)  # acc_perf_mode: continuous filtering, every ODR period sampled
_ACC_CONF_BWP_NORMAL = const(0x20)  # acc_bwp = 2: normal filter (3 dB at ODR / 4.4)
_ACC_RANGE = const(0x41)
_FIFO_CONFIG_0 = const(0x48)
_FIFO_CONFIG_0_STREAM = const(0x00)  # stream mode (oldest frames go when full), no sensor time frame
_FIFO_CONFIG_1 = const(0x49)
_FIFO_CONFIG_1_ACC_HEADER = const(0x50)  # fifo_acc_en | fifo_header_en: frames with headers, skip counts
_PWR_CONF = const(0x7C)
_PWR_CONF_ON = const(0x00)  # adv_power_save off: the FIFO fills at the full ODR
_PWR_CTRL = const(0x7D)
_PWR_CTRL_ACC_EN = const(0x04)
_CMD = const(0x7E)
_CMD_SOFTRESET = const(0xB6)
_CMD_FIFO_FLUSH = const(0xB0)
_RESET_MS = const(2)  # the datasheet's 1 ms start-up after a soft reset, with margin

# acc_odr codes (ODR = 100 / 2^(8 - code) Hz): 6 = 25 Hz, 7 = 50 Hz, 8 = 100 Hz, 9 = 200 Hz.
_ODR = {25: 6, 50: 7, 100: 8, 200: 9}
_RANGE = {2: 0, 4: 1, 8: 2, 16: 3}


class BMA421(BoschFifo):
    """The accelerometer on `i2c`. Samples are the 12-bit values left-justified in int16
    (the part's own register layout), so `accel_unit` is range / 32768 g per LSB.

    The feature engine of the BMA4 (step counter, gestures) needs a 6 KB configuration file
    uploaded first; raw data and the FIFO do not, so this driver does without it.
    """

    _FIFO_LENGTH = _FIFO_LENGTH_0
    _FIFO_DATA = _FIFO_DATA_REG
    _LENGTH_MASK = 0x3F

    polled = False

    def __init__(self, i2c, address=0x18, max_samples=64):
        self._fifo_init(i2c, address, False, max_samples)
        self.rate_hz = 0
        self.accel_unit = 0.0
        self.gyro_unit = 0.0
        self._conf = 0

    def init(self, rate_hz=25, accel_range_g=4, gyro_range_dps=None):
        """Check the part, reset it and stream the accelerometer through the FIFO at `rate_hz`."""
        if rate_hz not in _ODR:
            raise ValueError("BMA421 rate_hz must be 25, 50, 100 or 200")
        if accel_range_g not in _RANGE:
            raise ValueError("BMA421 accel_range_g must be 2, 4, 8 or 16")
        if self._read_reg(_CHIP_ID) != _CHIP_ID_BMA421:
            raise OSError(errno.ENODEV)
        self._write(_CMD, _CMD_SOFTRESET)
        time.sleep_ms(_RESET_MS)
        if self._read_reg(_CHIP_ID) != _CHIP_ID_BMA421:
            raise OSError(errno.EIO)
        self._write(_PWR_CONF, _PWR_CONF_ON)
        self._conf = _ACC_CONF_PERF | _ACC_CONF_BWP_NORMAL | _ODR[rate_hz]
        self._write(_ACC_CONF, self._conf)
        self._write(_ACC_RANGE, _RANGE[accel_range_g])
        self._write(_FIFO_CONFIG_0, _FIFO_CONFIG_0_STREAM)
        self._write(_FIFO_CONFIG_1, _FIFO_CONFIG_1_ACC_HEADER)
        self._write(_PWR_CTRL, _PWR_CTRL_ACC_EN)
        self._write(_CMD, _CMD_FIFO_FLUSH)
        self.rate_hz = rate_hz
        self.accel_unit = accel_range_g / 32768

    def enable(self):
        self._write(_PWR_CTRL, _PWR_CTRL_ACC_EN)

    def disable(self):
        """Power-down: the accelerometer off (suspend, about 3 uA); the FIFO keeps its frames."""
        self._write(_PWR_CTRL, 0)

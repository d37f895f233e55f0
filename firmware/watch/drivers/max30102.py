"""Maxim MAX30102: pulse oximeter and heart-rate sensor, red and IR LEDs, 18-bit ADC, 32-sample FIFO."""

import errno
import time

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

from watch.drivers.registers import Registers

_INT_STATUS_1 = const(0x00)
_INT_ENABLE_1 = const(0x02)
_INT_A_FULL_EN = const(0x80)  # interrupt pin when the FIFO is almost full (FIFO_A_FULL)
_FIFO_WR_PTR = const(0x04)  # FIFO_WR_PTR, OVF_COUNTER, FIFO_RD_PTR follow each other: one burst
_OVF_COUNTER = const(0x05)
_OVF_MAX = const(0x1F)  # OVF_COUNTER saturates here
_FIFO_RD_PTR = const(0x06)
_FIFO_DATA = const(0x07)  # the pointer does not auto-increment here: a burst pops consecutive bytes
_FIFO_CONFIG = const(0x08)
_FIFO_SMP_AVE_1 = const(0x00)  # no averaging: every conversion reaches the FIFO
_FIFO_SMP_AVE_2 = const(0x20)  # two conversions averaged per FIFO sample: 25 Hz from the 50 Hz rate
_FIFO_ROLLOVER_EN = const(0x10)  # when full, overwrite the oldest sample and count it in OVF_COUNTER
_FIFO_A_FULL_17 = const(0x0F)  # A_FULL with 15 slots free: 17 samples unread (170 ms at 100 Hz)
_MODE_CONFIG = const(0x09)
_MODE_SHDN = const(0x80)  # power-save: registers kept, no conversions
_MODE_RESET = const(0x40)  # power-on reset of every register; clears itself when done
_MODE_SPO2 = const(0x03)  # red (LED1) and IR (LED2) each sample, in that order in the FIFO
_SPO2_CONFIG = const(0x0A)
_SPO2_ADC_RGE_4096 = const(0x20)  # 4096 nA full scale, 15.63 pA/LSB: the range wrist PPG DC fits
_SPO2_SR_SHIFT = const(2)
_SPO2_LED_PW_411 = const(0x03)  # 411 us pulses: 18-bit ADC resolution
_LED1_PA = const(0x0C)  # red
_LED2_PA = const(0x0D)  # IR
_LED_PA_7MA = const(0x24)  # 7.2 mA (0.2 mA/LSB), Maxim's reference design value for the wrist
_PART_ID = const(0xFF)
_PART_ID_MAX30102 = const(0x15)

_FIFO_DEPTH = const(32)
_SAMPLE_BYTES = const(6)  # SpO2 mode: 3 bytes red, 3 bytes IR
_DATA_MASK = const(0x3FFFF)  # 18-bit samples; the 6 bits above are don't-care
_RESET_POLLS = const(10)

# SPO2_SR codes 0..3. Faster rates do not fit two 411 us pulses per period (datasheet Table 11).
_RATES = (50, 100, 200, 400)
_AVERAGED = const(25)  # the one rate below 50 Hz: 50 Hz conversions, averaged in pairs


def _unpack_py(buf, n, red, ir, o):
    """Samples of a FIFO burst (3 bytes red, 3 bytes IR, big-endian) into red[o:] and ir[o:]."""
    j = 0
    for i in range(o, o + n):
        red[i] = ((buf[j] << 16) | (buf[j + 1] << 8) | buf[j + 2]) & _DATA_MASK
        ir[i] = ((buf[j + 3] << 16) | (buf[j + 4] << 8) | buf[j + 5]) & _DATA_MASK
        j += _SAMPLE_BYTES


try:
    import micropython

    @micropython.viper
    def _unpack(buf: ptr8, n: int, red: ptr32, ir: ptr32, o: int):
        j = 0
        i = o
        end = o + n
        while i < end:
            red[i] = ((buf[j] << 16) | (buf[j + 1] << 8) | buf[j + 2]) & 0x3FFFF
            ir[i] = ((buf[j + 3] << 16) | (buf[j + 4] << 8) | buf[j + 5]) & 0x3FFFF
            j += 6
            i += 1
except (ImportError, AttributeError, NameError):
    _unpack = _unpack_py


class MAX30102(Registers):
    """The sensor on `i2c`. `lost` counts samples the FIFO dropped because it was read too late."""

    polled = False

    def __init__(self, i2c, address=0x57):
        Registers.__init__(self, i2c, address)
        self.rate_hz = 0
        self.lost = 0
        self._pending = 0
        self._last_ms = 0
        self._mode = _MODE_SPO2
        self._ptrs = bytearray(3)
        buf = bytearray(_FIFO_DEPTH * _SAMPLE_BYTES)
        self._buf = buf
        mv = memoryview(buf)
        # One view per power of two of samples: any count is read in at most 6 bursts.
        self._views = tuple(mv[:_SAMPLE_BYTES << b] for b in range(6))

    def init(self, rate_hz=100):
        """Check the part, reset it and start SpO2 conversions at `rate_hz` (25, 50, 100, 200, 400)."""
        average = _FIFO_SMP_AVE_1
        sample_rate = rate_hz
        if rate_hz == _AVERAGED:
            average = _FIFO_SMP_AVE_2
            sample_rate = 50
        if sample_rate not in _RATES:
            raise ValueError("MAX30102 rate_hz must be one of 25, 50, 100, 200, 400")
        if self._read_reg(_PART_ID) != _PART_ID_MAX30102:
            raise OSError(errno.ENODEV)
        self._write(_MODE_CONFIG, _MODE_RESET)
        for _ in range(_RESET_POLLS):
            if not self._read_reg(_MODE_CONFIG) & _MODE_RESET:
                break
            time.sleep_ms(1)
        else:
            raise OSError(errno.EIO)
        self._write(_INT_ENABLE_1, _INT_A_FULL_EN)
        self._write(_FIFO_CONFIG, average | _FIFO_ROLLOVER_EN | _FIFO_A_FULL_17)
        self._write(_SPO2_CONFIG, _SPO2_ADC_RGE_4096 | (_RATES.index(sample_rate) << _SPO2_SR_SHIFT) | _SPO2_LED_PW_411)
        self._write(_LED1_PA, _LED_PA_7MA)
        self._write(_LED2_PA, _LED_PA_7MA)
        self._clear_fifo()
        self.rate_hz = rate_hz
        self._mode = _MODE_SPO2
        self._write(_MODE_CONFIG, _MODE_SPO2)
        self._pending = 0
        self._last_ms = time.ticks_ms()

    def _clear_fifo(self):
        # The datasheet asks for all three cleared before a new conversion run.
        p = self._ptrs
        p[0] = p[1] = p[2] = 0
        self._i2c.writeto_mem(self._address, _FIFO_WR_PTR, p)

    def enable(self):
        self._write(_MODE_CONFIG, self._mode)
        self._last_ms = time.ticks_ms()

    def disable(self):
        self._write(_MODE_CONFIG, _MODE_SHDN | self._mode)

    def read(self, ir, red):
        """Move every waiting sample into `ir` and `red` (arrays of 'I' or 'i'); return the count.

        Reads at most min(len(ir), len(red)) samples; the rest stays in the FIFO for the next
        call. Samples the FIFO overwrote are added to `self.lost`. Allocates nothing.
        """
        i2c = self._i2c
        address = self._address
        p = self._ptrs
        i2c.readfrom_mem_into(address, _FIFO_WR_PTR, p)
        now = time.ticks_ms()
        ovf = p[1] & _OVF_MAX
        n = (p[0] - p[2]) & (_FIFO_DEPTH - 1)
        lost = ovf
        if ovf:
            if n == 0:
                n = _FIFO_DEPTH  # equal pointers after an overflow: full, not empty
            if ovf == _OVF_MAX:
                # The counter saturated: the elapsed time tells how many really went.
                made = (time.ticks_diff(now, self._last_ms) * self.rate_hz + 500) // 1000
                estimate = made + self._pending - n
                if estimate > lost:
                    lost = estimate
        cap = len(ir)
        if len(red) < cap:
            cap = len(red)
        take = n if n <= cap else cap
        views = self._views
        buf = self._buf
        done = 0
        try:
            for b in range(5, -1, -1):
                if take & (1 << b):
                    i2c.readfrom_mem_into(address, _FIFO_DATA, views[b])
                    _unpack(buf, 1 << b, red, ir, done)  # pyright: ignore[reportArgumentType] (viper takes buffers)
                    done += 1 << b
        except OSError:
            if done:
                # The first pop cleared OVF_COUNTER; what the good bursts popped is lost too.
                self.lost += lost + done
                self._pending = n - done
                self._last_ms = now
            raise
        self.lost += lost
        self._pending = n - take
        self._last_ms = now
        return take

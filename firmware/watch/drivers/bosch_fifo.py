"""The FIFO of Bosch Sensortec's BMI160 and BMA4 family (BMA421): header-mode frames.

Both parts frame their 1 KB FIFO the same way: a regular frame is a header
0b10 + which sensors (mag 0x10, gyro 0x08, accel 0x04) followed by their data, x, y, z as
little-endian int16; control frames start with 0b01: skip (0x40, one byte: frames lost to
overflow), sensor time (0x44, three bytes) and input config (0x48, one byte); 0x80 marks
reading past the end. A frame only partly read comes again, whole, at the next burst, so a
burst may end anywhere.
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

from watch.drivers.registers import Registers

_HDR_MASK = const(0xFC)  # the two low header bits are reserved
_HDR_ACC = const(0x84)
_HDR_GYR_ACC = const(0x8C)
_HDR_OVER_READ = const(0x80)
_HDR_SKIP = const(0x40)
_HDR_TIME = const(0x44)
_HDR_CONFIG = const(0x48)
_HDR_DROP = const(0x50)  # BMA4: a frame dropped while the configuration changed
_SKIP_MAX = const(0xFF)  # the skip count saturates here


def _s16(lo, hi):
    v = lo | (hi << 8)
    return v - 0x10000 if v & 0x8000 else v


class BoschFifo(Registers):
    """FIFO reading shared by the BMI160 and BMA421 drivers.

    A subclass sets `_FIFO_LENGTH`, `_FIFO_DATA`, `_LENGTH_MASK` (bits of FIFO_LENGTH_1),
    calls `_fifo_init(gyro)` and implements `init`. `lost` counts frames lost to overflow
    (from skip frames; time-based when the count saturated) or to a failed transfer.
    """

    _FIFO_LENGTH = 0
    _FIFO_DATA = 0
    _LENGTH_MASK = 0x07

    def _fifo_init(self, i2c, address, gyro, max_samples):
        Registers.__init__(self, i2c, address)
        self.max_samples = max_samples
        self.has_gyro = gyro
        self._frame = 13 if gyro else 7
        self._header = _HDR_GYR_ACC if gyro else _HDR_ACC
        self.lost = 0
        self.saturations = 0  # skip frames that said 255: more may have gone
        self._used = 0
        self._stop = False
        self._two = bytearray(2)
        top = 0
        while (2 << top) <= max_samples * self._frame:
            top += 1
        buf = bytearray(1 << top)
        self._buf = buf
        mv = memoryview(buf)
        # One view per power of two: any length is read in a few bursts, no slicing.
        self._views = tuple(mv[:1 << b] for b in range(top + 1))
        self._top = top

    def read(self, acc, gyro):
        """Move waiting samples into `acc` (and `gyro` when the part has one), x y z per
        sample in array('h'); returns the count. At most `max_samples` and what the arrays
        hold; the rest waits. Allocates nothing; bus errors propagate (the FIFO keeps the
        frame that was being read)."""
        i2c = self._i2c
        two = self._two
        i2c.readfrom_mem_into(self._address, self._FIFO_LENGTH, two)
        length = ((two[1] & self._LENGTH_MASK) << 8) | two[0]
        cap = self.max_samples
        if len(acc) // 3 < cap:
            cap = len(acc) // 3
        if self.has_gyro and len(gyro) // 3 < cap:
            cap = len(gyro) // 3
        n = 0
        b = self._top
        while length > 0 and n < cap and b >= 0:
            size = 1 << b
            if size > length or size > (cap - n) * self._frame:
                b -= 1
                continue
            i2c.readfrom_mem_into(self._address, self._FIFO_DATA, self._views[b])
            n += self._parse(size, acc, gyro, n, cap)
            length -= self._used
            if self._stop or self._used == 0:  # the end, a gap, or not one whole frame fits
                break
        return n

    def _parse(self, size, acc, gyro, n, cap):
        """Samples stored from the frames in the burst; `_used`: bytes of whole frames
        consumed, `_stop`: the end of the data or a gap reached."""
        self._stop = False
        buf = self._buf
        header = self._header
        frame = self._frame
        i = 0
        got = 0
        while i < size:
            h = buf[i] & _HDR_MASK
            if h == header:
                if i + frame > size or n + got >= cap:
                    break
                j = i + 1
                k = 3 * (n + got)
                if frame == 13:
                    gyro[k] = _s16(buf[j], buf[j + 1])
                    gyro[k + 1] = _s16(buf[j + 2], buf[j + 3])
                    gyro[k + 2] = _s16(buf[j + 4], buf[j + 5])
                    j += 6
                acc[k] = _s16(buf[j], buf[j + 1])
                acc[k + 1] = _s16(buf[j + 2], buf[j + 3])
                acc[k + 2] = _s16(buf[j + 4], buf[j + 5])
                got += 1
                i += frame
            elif h == _HDR_SKIP:
                if i + 2 > size:
                    break
                if n + got:  # the samples before the gap go first; the gap is counted next read
                    self._stop = True
                    break
                skipped = buf[i + 1]
                if skipped == _SKIP_MAX:
                    self.saturations += 1  # 255 or more: `lost` is a lower bound from here
                self.lost += skipped
                i += 2
            elif h == _HDR_TIME or h == _HDR_CONFIG or h == _HDR_DROP:
                step = 4 if h == _HDR_TIME else 2
                if i + step > size:
                    break
                i += step
            else:  # 0x80: read past the end (or a frame this driver did not configure)
                self._stop = True
                break
        self._used = i
        return got

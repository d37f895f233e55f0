"""TianYiHeXin HRS3300: green-LED PPG heart-rate sensor with ambient light, no FIFO (polled)."""

import errno
import time
from array import array

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

from watch.drivers.registers import Registers

_ID = const(0x00)
_ID_HRS3300 = const(0x21)
_ENABLE = const(0x01)
_ENABLE_HEN = const(0x80)  # heart-rate conversions on
_ENABLE_HWT_0MS = const(0x70)  # HWT = 7: no wait between conversions (the part converts back to back)
_ENABLE_PDRIVE1 = const(0x08)  # LED current bit 1 (bit 0 is PDRIVER.PDRIVE0)
_C1DATAM = const(0x08)  # ALS bits 10:3
_C0DATAM = const(0x09)  # HRS bits 15:8
_C0DATAH = const(0x0A)  # HRS bits 7:4 in bits 3:0
_PDRIVER = const(0x0C)
_PDRIVER_PDRIVE0 = const(0x40)  # LED current bit 0: with PDRIVE1, 40 mA (the wrist needs the most)
_PDRIVER_PON = const(0x20)  # oscillator on; off in power-down
_PDRIVER_RESERVED = const(0x0F)  # reads 0xF; written back unchanged, as InfiniTime found it must be
_C1DATAH = const(0x0D)  # ALS bits 16:11 in bits 5:0
_C1DATAL = const(0x0E)  # ALS bits 2:0
_C0DATAL = const(0x0F)  # HRS bits 3:0 in bits 3:0, bits 17:16 in bits 5:4
_RES = const(0x16)
_RES_16BIT = const(0x88)  # HRS and ALS both 16-bit conversions (wasp-os's setting)
_HGAIN = const(0x17)
_HGAIN_64X = const(0x10)  # HGAIN[4:2] = 4: 64x, the gain wrist PPG needs with the 16-bit ADC

_RING = const(32)  # samples polled but not yet read: 1.28 s at 25 Hz
_RATES = (25, 50)  # polled rates this driver keeps: slower than the part's conversion cycle


class HRS3300(Registers):
    """The sensor on `i2c`. It has no FIFO: `poll()` samples it when a period is due, into a
    small ring that `read` drains like any FIFO driver. Polls that came too late leave their
    samples out and count them in `lost`, so the stream shows a gap, never a shifted timeline.

    `read(ppg, ambient)` fills the PPG stream's two channels: green PPG and ambient light.
    """

    polled = True

    def __init__(self, i2c, address=0x44):
        Registers.__init__(self, i2c, address)
        self.ppg_bits = 16  # _RES_16BIT: every sample fits 16 bits (the heart-rate ring keeps them so)
        self.rate_hz = 0
        self.lost = 0
        self._ppg = array("I", bytes(4 * _RING))
        self._als = array("I", bytes(4 * _RING))
        self._gap_pos = -1  # ring position of a gap of `_gap_n` missed periods; -1: none
        self._head = 0
        self._count = 0
        self._gap_n = 0
        self._period_us = 0
        self._due = time.ticks_us()
        self._on = False

    def init(self, rate_hz=25):
        """Check the part and start conversions; `poll()` samples them at `rate_hz`."""
        if rate_hz not in _RATES:
            raise ValueError("HRS3300 rate_hz must be 25 or 50")
        if self._read_reg(_ID) != _ID_HRS3300:
            raise OSError(errno.ENODEV)
        self._write(_RES, _RES_16BIT)
        self._write(_HGAIN, _HGAIN_64X)
        self._write(_PDRIVER, _PDRIVER_PDRIVE0 | _PDRIVER_PON | _PDRIVER_RESERVED)
        self._write(_ENABLE, _ENABLE_HEN | _ENABLE_HWT_0MS | _ENABLE_PDRIVE1)
        self.rate_hz = rate_hz
        self._period_us = 1000000 // rate_hz
        self._head = self._count = self._gap_n = 0
        self._gap_pos = -1
        self._due = time.ticks_add(time.ticks_us(), self._period_us)
        self._on = True

    def enable(self):
        self._write(_PDRIVER, _PDRIVER_PDRIVE0 | _PDRIVER_PON | _PDRIVER_RESERVED)
        self._write(_ENABLE, _ENABLE_HEN | _ENABLE_HWT_0MS | _ENABLE_PDRIVE1)
        self._due = time.ticks_add(time.ticks_us(), self._period_us)
        self._on = True

    def disable(self):
        """Power-down: conversions, LED and oscillator off (the datasheet's 5 uA state)."""
        self._on = False
        self._write(_ENABLE, _ENABLE_HWT_0MS)
        self._write(_PDRIVER, _PDRIVER_RESERVED)

    def until_due_us(self):
        """Microseconds until the next sample is due (<= 0: poll now)."""
        return time.ticks_diff(self._due, time.ticks_us())

    def poll(self):
        """Take the sample that is due, if any; returns True when one was taken.

        A poll more than one period late takes the newest value for the latest period and
        counts the periods it missed in `lost`. A full ring drops the oldest, also counted.
        """
        if not self._on:
            return False
        late = time.ticks_diff(time.ticks_us(), self._due)
        if late < 0:
            return False
        missed = late // self._period_us
        i2c = self._i2c
        a = self._address
        one = self._one
        i2c.readfrom_mem_into(a, _C0DATAM, one)
        m = one[0]
        i2c.readfrom_mem_into(a, _C0DATAH, one)
        h = one[0]
        i2c.readfrom_mem_into(a, _C0DATAL, one)
        low = one[0]
        ppg = (m << 8) | ((h & 0x0F) << 4) | (low & 0x0F) | ((low & 0x30) << 12)
        i2c.readfrom_mem_into(a, _C1DATAM, one)
        m = one[0]
        i2c.readfrom_mem_into(a, _C1DATAH, one)
        h = one[0]
        i2c.readfrom_mem_into(a, _C1DATAL, one)
        als = (m << 3) | ((h & 0x3F) << 11) | (one[0] & 0x07)
        # Only a complete sample moves the schedule: a bus error retries at the next poll.
        self._due = time.ticks_add(self._due, (missed + 1) * self._period_us)
        if missed:
            if self._gap_pos >= 0:  # a second gap before the first was read: they merge
                self._gap_n += self._count - self._gap_pos
                self._count = self._gap_pos
            else:
                self._gap_pos = self._count
            self._gap_n += missed
        if self._count == _RING:  # the app fell behind: the oldest goes
            self._head = (self._head + 1) % _RING
            self._count -= 1
            if self._gap_pos > 0:
                self._gap_pos -= 1
                self.lost += 1
            elif self._gap_pos == 0:
                self._gap_n += 1
            else:
                self.lost += 1
        i = (self._head + self._count) % _RING
        self._ppg[i] = ppg
        self._als[i] = als
        self._count += 1
        return True

    def read(self, ppg, ambient):
        """Move the polled samples into `ppg` and `ambient` (arrays of 'I'); returns the count."""
        if self._gap_pos == 0:  # the samples the late poll missed come first now
            self.lost += self._gap_n
            self._gap_pos = -1
            self._gap_n = 0
        take = self._count if self._gap_pos < 0 else self._gap_pos
        cap = len(ppg) if len(ppg) < len(ambient) else len(ambient)
        if take > cap:
            take = cap
        head = self._head
        for k in range(take):
            ppg[k] = self._ppg[head]
            ambient[k] = self._als[head]
            head = (head + 1) % _RING
        self._head = head
        self._count -= take
        if self._gap_pos > 0:
            self._gap_pos -= take
        return take

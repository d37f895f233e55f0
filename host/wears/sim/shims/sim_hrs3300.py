"""Register-level model of the HRS3300 for the virtual watch's I2C bus.

ID 0x21; ENABLE (HEN, HWT wait time, PDRIVE1), PDRIVER (PDRIVE0, PON), RES (HRS resolution),
HGAIN (gain). The part has no FIFO: while HEN and PON are set it converts back to back,
one conversion every HWT wait plus the 12.5 ms conversion time, and the data registers hold
the latest (sample and hold). The scenario's IR counts are what the part gives at 64x gain,
16-bit resolution and 40 mA, divided by 4 (18 to 16 bits); other settings scale them. The
ambient light channel reads a constant room light.
"""

import time

from micropython import const

_ID = const(0x00)
_ENABLE = const(0x01)
_C1DATAM = const(0x08)
_C0DATAM = const(0x09)
_C0DATAH = const(0x0A)
_PDRIVER = const(0x0C)
_C1DATAH = const(0x0D)
_C1DATAL = const(0x0E)
_C0DATAL = const(0x0F)
_RES = const(0x16)
_HGAIN = const(0x17)

_CONVERSION_US = const(12500)
_HWT_US = (800000, 400000, 200000, 100000, 75000, 50000, 12500, 0)
_GAIN = (1, 2, 4, 8, 64, 64, 64, 64)
_DRIVE_MA10 = (125, 200, 300, 400)  # PDRIVE 0..3: 12.5, 20, 30, 40 mA
_AMBIENT = const(300)


class HRS3300:
    def __init__(self, scenario):
        self._sc = scenario
        self._regs = bytearray(256)
        self.ptr = 0
        r = self._regs
        r[_ID] = 0x21
        r[_ENABLE] = 0x68  # reset values: HEN off, 800 ms wait
        r[_PDRIVER] = 0x68
        r[_RES] = 0x66
        r[_HGAIN] = 0x10
        self._t0 = 0
        self._on = False
        self._hrs = 0
        self._als = 0
        self._latest = -1

    def read(self, reg, buf):
        self._update()
        r = reg & 0xFF
        for i in range(len(buf)):
            buf[i] = self._get(r)
            r = (r + 1) & 0xFF
        self.ptr = r

    def write(self, reg, buf):
        self._update()
        r = reg & 0xFF
        for i in range(len(buf)):
            if r != _ID and not _C1DATAM <= r <= _C0DATAL or r == _PDRIVER:
                self._regs[r] = buf[i]
            r = (r + 1) & 0xFF
        self.ptr = r
        on = bool(self._regs[_ENABLE] & 0x80 and self._regs[_PDRIVER] & 0x20)
        if on and not self._on:
            self._t0 = time.virtual_us()
            self._latest = -1
        self._on = on

    def _cycle_us(self):
        return _HWT_US[(self._regs[_ENABLE] >> 4) & 0x07] + _CONVERSION_US

    def _update(self):
        if not self._on:
            return
        now = time.virtual_us()
        cycle = self._cycle_us()
        k = (now - self._t0) // cycle - 1  # the last conversion that has completed
        if k < 0 or k == self._latest:
            return
        self._latest = k
        sc = self._sc
        t = self._t0 + k * cycle + _CONVERSION_US // 2
        i = sc.ppg_index(t)
        regs = self._regs
        drive = (2 if regs[_ENABLE] & 0x08 else 0) | (1 if regs[_PDRIVER] & 0x40 else 0)
        gain = _GAIN[(regs[_HGAIN] >> 2) & 0x07]
        bits = 8 + (regs[_RES] & 0x0F) if (regs[_RES] & 0x0F) <= 10 else 18
        v = sc.ppg(i, 0) * gain * _DRIVE_MA10[drive] // (64 * 400 * 4)
        v = v << (bits - 16) if bits >= 16 else v >> (16 - bits)
        top = (1 << bits) - 1
        self._hrs = v if v < top else top
        self._als = _AMBIENT

    def _get(self, r):
        h = self._hrs
        a = self._als
        if r == _C0DATAM:
            return (h >> 8) & 0xFF
        if r == _C0DATAH:
            return (h >> 4) & 0x0F
        if r == _C0DATAL:
            return (h & 0x0F) | ((h >> 12) & 0x30)
        if r == _C1DATAM:
            return (a >> 3) & 0xFF
        if r == _C1DATAH:
            return (a >> 11) & 0x3F
        if r == _C1DATAL:
            return a & 0x07
        return self._regs[r]

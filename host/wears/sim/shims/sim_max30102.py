"""Register-level model of the MAX30102 for the virtual watch's I2C bus.

Follows the datasheet's register map: reset values, PART_ID 0x15, mode, sample rate,
averaging, ADC range, pulse width (resolution) and LED currents change what comes out; a
32-sample FIFO with write/read pointers, rollover and OVF_COUNTER saturating at 0x1F;
FIFO_DATA pops bytes without moving the register pointer; reading INT_STATUS clears it.
Samples become due on the virtual clock: sample k of a run started at t0 is taken at
t0 + k / rate, from the scenario record nearest to that time. The scenario's counts are
what the part gives at 4096 nA full scale, 411 us pulses and 7.2 mA (0x24) per LED; other
settings scale them (LED current linearly, ADC range inversely). Heart-rate mode (red only)
and SpO2 mode (red then IR per sample) are modelled; multi-LED mode gives no samples.
"""

import time

from micropython import const

_INT_STATUS_1 = const(0x00)
_INT_STATUS_2 = const(0x01)
_INT_ENABLE_1 = const(0x02)
_FIFO_WR_PTR = const(0x04)
_OVF_COUNTER = const(0x05)
_FIFO_RD_PTR = const(0x06)
_FIFO_DATA = const(0x07)
_FIFO_CONFIG = const(0x08)
_MODE_CONFIG = const(0x09)
_SPO2_CONFIG = const(0x0A)
_LED1_PA = const(0x0C)
_LED2_PA = const(0x0D)
_DIE_TINT = const(0x1F)
_DIE_TFRAC = const(0x20)
_DIE_TEMP_CONFIG = const(0x21)
_REV_ID = const(0xFE)
_PART_ID = const(0xFF)

_A_FULL = const(0x80)
_PPG_RDY = const(0x40)
_PWR_RDY = const(0x01)
_DIE_TEMP_RDY = const(0x02)
_SHDN = const(0x80)
_RESET = const(0x40)
_ROLLOVER = const(0x10)

_DEPTH = const(32)
_STRIDE = const(6)  # bytes per FIFO slot: red and IR, 3 bytes each
_SR_HZ = (50, 100, 200, 400, 800, 1000, 1600, 3200)
_RANGE_NA = (2048, 4096, 8192, 16384)
_RES_MASK = (0x3FFF8, 0x3FFFC, 0x3FFFE, 0x3FFFF)  # 15..18 bits, left-justified in 18
_REF_PA = const(0x24)
_REF_RANGE = const(4096)


class MAX30102:
    def __init__(self, scenario):
        self._sc = scenario
        self._regs = bytearray(256)
        self._fifo = bytearray(_DEPTH * _STRIDE)
        self.ptr = 0
        self._power_on()
        self._regs[_INT_STATUS_1] = _PWR_RDY

    def _power_on(self):
        r = self._regs
        for i in range(256):
            r[i] = 0
        r[_REV_ID] = 0x03
        r[_PART_ID] = 0x15
        self._wr = self._rd = self._ovf = self._count = self._byte = 0
        self._running = False
        self._rate_mhz = 0
        self._nch = 0
        self._bps = 0
        self._t0 = 0
        self._k = 0

    # -- bus side ---------------------------------------------------------------------------
    def read(self, reg, buf):
        self._update()
        r = reg & 0xFF
        for i in range(len(buf)):
            buf[i] = self._get(r)
            if r != _FIFO_DATA:
                r = (r + 1) & 0xFF
        self.ptr = r

    def write(self, reg, buf):
        self._update()
        r = reg & 0xFF
        for i in range(len(buf)):
            self._set(r, buf[i])
            if r != _FIFO_DATA:
                r = (r + 1) & 0xFF
        self.ptr = r

    def _get(self, r):
        regs = self._regs
        if r == _FIFO_DATA:
            return self._pop()
        if r == _FIFO_WR_PTR:
            return self._wr
        if r == _OVF_COUNTER:
            return self._ovf
        if r == _FIFO_RD_PTR:
            return self._rd
        v = regs[r]
        if r == _INT_STATUS_1 or r == _INT_STATUS_2:
            regs[r] = 0  # interrupt flags clear when read
        return v

    def _set(self, r, v):
        regs = self._regs
        if r == _FIFO_WR_PTR:
            self._wr = v & 0x1F
            self._repoint()
        elif r == _OVF_COUNTER:
            self._ovf = v & 0x1F
        elif r == _FIFO_RD_PTR:
            self._rd = v & 0x1F
            self._repoint()
        elif r == _MODE_CONFIG:
            if v & _RESET:
                self._power_on()  # the RESET bit reads back 0 at once: reset is instant here
            else:
                regs[r] = v & 0x87
                self._configure()
        elif r == _DIE_TEMP_CONFIG:
            if v & 1:
                regs[_DIE_TINT] = 31  # a die on a wrist: 31.25 degC
                regs[_DIE_TFRAC] = 4
                regs[_INT_STATUS_2] |= _DIE_TEMP_RDY
        elif r in (_INT_STATUS_1, _INT_STATUS_2, _FIFO_DATA, _DIE_TINT, _DIE_TFRAC, _REV_ID, _PART_ID):
            pass  # read-only
        else:
            regs[r] = v
            if r == _SPO2_CONFIG or r == _FIFO_CONFIG:
                self._configure()

    def _repoint(self):
        self._count = (self._wr - self._rd) & 0x1F
        self._byte = 0

    # -- conversions ------------------------------------------------------------------------
    def _configure(self):
        regs = self._regs
        mode = regs[_MODE_CONFIG]
        m = mode & 0x07
        nch = 1 if m == 2 else (2 if m == 3 else 0)  # heart rate: red; SpO2: red, IR
        running = nch > 0 and not mode & _SHDN
        avg = 1 << min((regs[_FIFO_CONFIG] >> 5) & 0x07, 5)
        rate = _SR_HZ[(regs[_SPO2_CONFIG] >> 2) & 0x07] * 1000 // avg
        if running != self._running or rate != self._rate_mhz or nch != self._nch:
            if nch != self._nch:
                self._wr = self._rd = self._count = self._byte = 0
            self._running = running
            self._rate_mhz = rate
            self._nch = nch
            self._bps = 3 * nch
            self._t0 = time.virtual_us()
            self._k = 0
        if mode & _SHDN:
            regs[_INT_STATUS_1] = 0  # shutdown clears every interrupt
            regs[_INT_STATUS_2] = 0

    def _update(self):
        if not self._running:
            return
        due = (time.virtual_us() - self._t0) * self._rate_mhz // 1000000000 + 1
        m = due - self._k
        if m <= 0:
            return
        regs = self._regs
        cnt = self._count
        if regs[_FIFO_CONFIG] & _ROLLOVER:
            over = cnt + m - _DEPTH if cnt + m > _DEPTH else 0
            keep = m if m < _DEPTH else _DEPTH
            wr = (self._wr + m - keep) & 0x1F
            s = self._k + m - keep
            for _ in range(keep):
                self._store(wr, s)
                wr = (wr + 1) & 0x1F
                s += 1
            cnt = cnt + m if cnt + m < _DEPTH else _DEPTH
            self._wr = wr
            self._rd = (wr - cnt) & 0x1F
            if over:
                self._byte = 0  # a half-read oldest sample was overwritten
        else:
            accept = _DEPTH - cnt if m > _DEPTH - cnt else m
            over = m - accept
            wr = self._wr
            s = self._k
            for _ in range(accept):
                self._store(wr, s)
                wr = (wr + 1) & 0x1F
                s += 1
            self._wr = wr
            cnt += accept
        self._count = cnt
        self._k = due
        if over:
            ovf = self._ovf + over
            self._ovf = ovf if ovf < 0x1F else 0x1F
        enable = regs[_INT_ENABLE_1]
        flags = regs[_INT_STATUS_1] | (enable & _PPG_RDY)
        if enable & _A_FULL and cnt >= _DEPTH - (regs[_FIFO_CONFIG] & 0x0F):
            flags |= _A_FULL
        regs[_INT_STATUS_1] = flags

    def _store(self, slot, k):
        regs = self._regs
        sc = self._sc
        i = sc.ppg_index(self._t0 + k * 1000000000 // self._rate_mhz)
        spo2 = regs[_SPO2_CONFIG]
        rng = _RANGE_NA[(spo2 >> 5) & 0x03]
        mask = _RES_MASK[spo2 & 0x03]
        fifo = self._fifo
        o = slot * _STRIDE
        for c in range(self._nch):
            # LED1 (red, scenario channel 1) first, then LED2 (IR, scenario channel 0)
            v = sc.ppg(i, 1 - c) * regs[_LED1_PA + c] * _REF_RANGE // (_REF_PA * rng)
            if v > 0x3FFFF:
                v = 0x3FFFF  # ADC saturated
            v &= mask
            fifo[o] = v >> 16
            fifo[o + 1] = (v >> 8) & 0xFF
            fifo[o + 2] = v & 0xFF
            o += 3

    def _pop(self):
        if self._count == 0:
            return 0  # reading an empty FIFO: no data, pointers stay
        v = self._fifo[self._rd * _STRIDE + self._byte]
        self._byte += 1
        if self._byte >= self._bps:
            self._byte = 0
            self._rd = (self._rd + 1) & 0x1F
            self._count -= 1
            self._ovf = 0  # OVF_COUNTER clears when a complete sample is popped
            self._regs[_INT_STATUS_1] &= ~(_A_FULL | _PPG_RDY) & 0xFF
        return v

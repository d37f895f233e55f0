"""The virtual watch's world: the scenario file (docs/scenario.md) read in small chunks, and power-off.

Sensor models ask for the scenario sample nearest to a virtual time (`ppg_index`,
`imu_index`) and then for its values (`ppg`, `imu`); nothing here allocates after opening.
When a model asks for a time past the end of the recording, the watch powers off: the
registered hooks run (the radio says goodbye), then the process exits with status 0.
Without a scenario file the world is a still wrist with a flat pulse signal that never ends.
"""

import json
import sys

from micropython import const

_CHUNK = const(32)  # records per cached chunk and stream
_PPG_DEFAULT = (110000, 90000)  # IR, red counts of a still wrist without a scenario
_IMU_DEFAULT = (0, 0, 1000, 0, 0, 0)  # 1 g on z, no rotation

_hooks = []
_off = False


def on_power_off(fn):
    """Register `fn()` to run when the watch powers off (scenario over, reset)."""
    _hooks.append(fn)


def run_hooks():
    global _off
    if _off:
        return
    _off = True
    for fn in _hooks:
        try:
            fn()
        except Exception as e:  # a hook failing must not keep the watch on
            sys.print_exception(e)


def power_off(status=0):
    run_hooks()
    sys.exit(status)


def powered_on():
    """Forget an earlier power-off (tests that reset the virtual world)."""
    global _off
    _off = False


class ScenarioError(ValueError):
    pass


class Scenario:
    """A scenario file, or the still default world when `path` is empty."""

    def __init__(self, path=None, origin_us=0):
        self.origin_us = origin_us
        self.ppg_rate = 100
        self.imu_rate = 52
        self.n_ppg = -1  # -1: no data, defaults forever
        self.n_imu = -1
        self.ppg_end_us = 0
        self.imu_end_us = 0
        self.has_gyro = True
        self._f = None
        self._pbuf = bytearray(8 * _CHUNK)
        self._ibuf = bytearray(12 * _CHUNK)
        self._p0 = self._p1 = 0
        self._i0 = self._i1 = 0
        if path:
            self._open(path)

    def _open(self, path):
        f = open(path, "rb")
        try:
            line = b""
            while len(line) < 4096 and not line.endswith(b"\n"):  # in small reads: no 4 KB block at boot
                part = f.readline(256)
                if not part:
                    break
                line += part
            if not line.endswith(b"\n"):
                raise ScenarioError("not a WEARS scenario (no header line): " + path)
            try:
                h = json.loads(line)
            except ValueError:
                raise ScenarioError("not a WEARS scenario (bad header): " + path)
            if h.get("version") != 1:
                raise ScenarioError("unsupported scenario version " + str(h.get("version")))
            self.ppg_rate = int(h["ppg_rate"])
            self.imu_rate = int(h["imu_rate"])
            self.n_ppg = int(h["n_ppg"])
            self.n_imu = int(h["n_imu"])
            self._poff = int(h["ppg_offset"])
            self._ioff = int(h["imu_offset"])
            self.has_gyro = bool(h.get("has_gyro", True))
            size = f.seek(0, 2)
            if self._poff + 8 * self.n_ppg > size or self._ioff + 12 * self.n_imu > size:
                raise ScenarioError("scenario truncated: " + path)
        except (KeyError, TypeError) as e:
            f.close()
            raise ScenarioError("scenario header lacks " + str(e))
        except BaseException:
            f.close()
            raise
        self.ppg_end_us = self.n_ppg * 1000000 // self.ppg_rate if self.ppg_rate > 0 else 0
        self.imu_end_us = self.n_imu * 1000000 // self.imu_rate if self.imu_rate > 0 else 0
        self._f = f

    def close(self):
        if self._f:
            self._f.close()
            self._f = None

    def check_end(self, t_us):
        """Power off once the scenario is over, for callers that read no sensor (idle, battery)."""
        t = t_us - self.origin_us
        if (self.n_ppg > 0 and t >= self.ppg_end_us) or (self.n_imu > 0 and t >= self.imu_end_us):
            power_off()

    def ppg_index(self, t_us):
        """Index of the PPG record nearest to virtual time `t_us`; powers off past the end."""
        n = self.n_ppg
        if n <= 0:
            return -1
        t = t_us - self.origin_us
        i = (t * self.ppg_rate + 500000) // 1000000
        if i >= n:
            if t >= self.ppg_end_us:
                power_off()
            i = n - 1
        return i if i > 0 else 0

    def imu_index(self, t_us):
        n = self.n_imu
        if n <= 0:
            return -1
        t = t_us - self.origin_us
        i = (t * self.imu_rate + 500000) // 1000000
        if i >= n:
            if t >= self.imu_end_us:
                power_off()
            i = n - 1
        return i if i > 0 else 0

    def ppg(self, i, ch):
        """Channel `ch` (0 IR, 1 red) of PPG record `i`, in 18-bit counts."""
        if i < 0:
            return _PPG_DEFAULT[ch]
        if i < self._p0 or i >= self._p1:
            f = self._f
            f.seek(self._poff + 8 * i)
            self._p0 = i
            self._p1 = i + f.readinto(self._pbuf) // 8
        b = self._pbuf
        j = (i - self._p0) * 8 + 4 * ch
        return b[j] | (b[j + 1] << 8) | (b[j + 2] << 16) | (b[j + 3] << 24)

    def imu(self, i, ch):
        """Channel `ch` of IMU record `i`: 0-2 accel in mg, 3-5 gyro in 0.1 dps."""
        if i < 0:
            return _IMU_DEFAULT[ch]
        if i < self._i0 or i >= self._i1:
            f = self._f
            f.seek(self._ioff + 12 * i)
            self._i0 = i
            self._i1 = i + f.readinto(self._ibuf) // 12
        b = self._ibuf
        j = (i - self._i0) * 12 + 2 * ch
        v = b[j] | (b[j + 1] << 8)
        return v - 0x10000 if v & 0x8000 else v

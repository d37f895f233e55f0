"""Virtual watch hardware: stands in for MicroPython's `machine` module.

The I2C bus holds register-level models of the parts named in `board.json` (the sim's flash
folder is the working directory; without it: MAX30102 at 0x57 and LSM6DS3TR-C at 0x6A),
fed by the scenario file `WEARS_SIM_SCENARIO` (docs/scenario.md). Environment:
- `WEARS_SIM_MISSING`: comma list of sensor roles (`ppg`, `imu`) left off the bus.
- `WEARS_SIM_I2C_ERROR_RATE`: probability that a transaction fails with EIO (fixed seed).
- `WEARS_SIM_BATTERY_MV`: battery voltage at boot (default 4100); it falls 100 mV per hour.
When the scenario runs out the watch powers off: hooks from `on_power_off` run, then the
process exits with status 0. `reset()` runs the same hooks and exits with status 3.
The port follows the profile's `port`: "esp32" has `WDT` and `ADC.read_uv`; "nrf" (MicroPython's
nRF port) has neither, and `mem32` holds a model of the nRF52's WDT registers instead. A
watchdog that is not fed in time resets the watch (status 3) at the next sleep: virtual time
passes only while the firmware sleeps, so a loop that never sleeps is not caught here.
Functions named `sim_*` are not MicroPython API: tests use them to rebuild or disturb the bus.
"""

import errno
import json
import os
import sys
import time

import sim_scenario
from micropython import const

_PARTS = {"MAX30102": ("sim_max30102", "MAX30102"), "LSM6DS3TR-C": ("sim_lsm6ds3", "LSM6DS3TRC"),
          "HRS3300": ("sim_hrs3300", "HRS3300"), "BMA421": ("sim_bosch", "BMA421"), "BMI160": ("sim_bosch", "BMI160")}
_DEFAULT_SENSORS = {"ppg": {"part": "MAX30102", "address": 0x57}, "imu": {"part": "LSM6DS3TR-C", "address": 0x6A}}
_RESET_STATUS = const(3)
_NRF_WDT = const(0x40010000)  # the nRF52's WDT peripheral
_FULL_SCALE_UV = const(3100000)  # ESP32-S3 ADC at 11 dB attenuation (a profile's adc_full_scale_mv)

_devices = None  # {address: model}, built by the first I2C()
_profile = None
_scenario = None
_threshold = 0  # EIO when the 16-bit random draw is below this
_rng = 0x2545F491
_fail_skip = 0
_fail_count = 0
_freq = 240000000


def _board():
    """The board profile in the virtual flash (read once)."""
    global _profile
    if _profile is None:
        try:
            with open("board.json") as f:
                _profile = json.load(f)
        except (OSError, ValueError):
            _profile = {}
    return _profile


def _env(name, default):
    v = os.getenv(name)
    return default if v is None or v == "" else v


def sim_reset(scenario=None, missing=None, error_rate=None, origin_us=None, sensors=None):
    """Build a fresh bus: new parts at power-on state, the scenario from its start.

    Arguments left None come from the environment. `origin_us` is the virtual time at which
    the scenario starts (default: now; 0 for the bus the firmware builds at boot).
    `sensors` ({role: {"part", "address"}}) replaces the board profile's parts.
    """
    global _devices, _scenario, _threshold, _rng, _fail_skip, _fail_count
    if scenario is None:
        scenario = _env("WEARS_SIM_SCENARIO", "")
    if missing is None:
        missing = _env("WEARS_SIM_MISSING", "")
    if error_rate is None:
        error_rate = float(_env("WEARS_SIM_I2C_ERROR_RATE", "0"))
    if origin_us is None:
        origin_us = time.virtual_us()
    if _scenario:
        _scenario.close()
    _scenario = sim_scenario.Scenario(scenario, origin_us)
    sim_scenario.powered_on()
    gone = [m.strip() for m in missing.split(",") if m.strip()]
    sensors = sensors or _board().get("sensors") or _DEFAULT_SENSORS
    devices = {}
    for role in sensors:
        info = sensors[role]
        model = _PARTS.get(info.get("part"))
        if role in gone or model is None:
            continue
        devices[int(info["address"])] = getattr(__import__(model[0]), model[1])(_scenario)
    _devices = devices
    _threshold = int(error_rate * 65536)
    _rng = 0x2545F491
    _fail_skip = _fail_count = 0


def sim_fail_next(count=1, after=0):
    """Let `after` transactions pass, then fail the next `count` with EIO."""
    global _fail_skip, _fail_count
    _fail_skip = after
    _fail_count = count


def _device(addr):
    global _rng, _fail_skip, _fail_count
    dev = _devices.get(addr)
    if dev is None:
        raise OSError(errno.ENODEV)  # nobody acknowledged the address
    if _fail_count:
        if _fail_skip:
            _fail_skip -= 1
        else:
            _fail_count -= 1
            raise OSError(errno.EIO)
    if _threshold:
        _rng = (_rng * 1103515245 + 12345) & 0x7FFFFFFF
        if (_rng >> 15) < _threshold:
            raise OSError(errno.EIO)
    return dev


def _check_end():
    if _devices is None:
        sim_reset(origin_us=0)
    _scenario.check_end(time.virtual_us())


def on_power_off(fn):
    """Register `fn()` to run when the virtual watch powers off (not MicroPython API)."""
    sim_scenario.on_power_off(fn)


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        if _devices is None:
            sim_reset(origin_us=0)
        self.id = id
        self.freq = freq

    def scan(self):
        return sorted(_devices)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        _device(addr).read(memaddr, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        _device(addr).read(memaddr, buf)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        _device(addr).write(memaddr, buf)

    def readfrom_into(self, addr, buf, stop=True):
        dev = _device(addr)
        dev.read(dev.ptr, buf)

    def writeto(self, addr, buf, stop=True):
        """First byte: register address; the rest is written from there. Returns the ACK count."""
        dev = _device(addr)
        if len(buf):
            dev.ptr = buf[0]
            if len(buf) > 1:
                dev.write(buf[0], memoryview(buf)[1:])
        return len(buf)


SoftI2C = I2C


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        # interrupt lines idle high (pull-up): nothing pulls them low here
        self._value = (1 if value else 0) if value is not None else (1 if pull == 1 else 0)

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = 1 if v else 0

    def irq(self, handler=None, trigger=3, *, priority=1, wake=None, hard=False):
        return None  # the virtual watch has no interrupt lines: drivers poll the FIFOs


class ADC:
    """Battery sense: the LiPo voltage through the board's divider, falling 100 mV per hour."""

    ATTN_11DB = 3

    def __init__(self, pin, *, atten=3):
        if _devices is None:
            sim_reset(origin_us=0)
        self.pin = pin
        battery = _board().get("battery") or {}
        self._divider = float(battery.get("divider", 2.0))
        self._start_uv = int(_env("WEARS_SIM_BATTERY_MV", "4100")) * 1000
        self._empty_uv = int(battery.get("empty_mv", 3300)) * 1000
        self._full_scale_uv = int(battery.get("adc_full_scale_mv", _FULL_SCALE_UV // 1000)) * 1000

    def _uv(self):
        _check_end()
        uv = self._start_uv - time.virtual_us() // 36000  # 100 mV per hour
        if uv < self._empty_uv:
            uv = self._empty_uv
        return int(uv / self._divider)

    def read_u16(self):
        v = self._uv() * 65535 // self._full_scale_uv
        return v if v < 65535 else 65535

    read_uv = _uv


class _Watchdog:
    """The one watchdog of the virtual watch, started by WDT() or the nRF registers."""

    def __init__(self, timeout_ms):
        self.timeout_us = int(timeout_ms) * 1000
        self.fed_us = time.virtual_us()
        if hasattr(time, "add_alarm"):
            time.add_alarm(self._check)

    def feed(self):
        self.fed_us = time.virtual_us()

    def _check(self):
        if time.virtual_us() - self.fed_us > self.timeout_us:
            print("watchdog reset: not fed for %d ms" % ((time.virtual_us() - self.fed_us) // 1000), file=sys.stderr)
            reset()


def UART(id, baudrate=115200, **kwargs):
    """The board's UART; in the virtual watch its wires end in the host's pseudo-terminal."""
    import sim_uart  # only a watch on the serial link pays for it
    return sim_uart.UART(id, baudrate, **kwargs)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self._dog = _Watchdog(timeout)

    def feed(self):
        self._dog.feed()


class _Mem32:
    """`machine.mem32` of the nRF port: plain words, except the nRF52's WDT registers."""

    def __init__(self):
        self._words = {}
        self._dog = None

    def __getitem__(self, addr):
        return self._words.get(addr, 0)

    def __setitem__(self, addr, value):
        self._words[addr] = value & 0xFFFFFFFF
        if addr == _NRF_WDT and value & 1 and self._dog is None:  # TASKS_START
            crv = self._words.get(_NRF_WDT + 0x504, 0xFFFFFFFF)
            self._dog = _Watchdog((crv + 1) * 1000 // 32768)
        elif addr == _NRF_WDT + 0x600 and value == 0x6E524635 and self._dog:  # RR[0] with the reload value
            self._dog.feed()


class Timer:
    """Minimal: keeps its settings; callbacks never fire on the virtual watch."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kwargs):
        self.id = id
        self.init(**kwargs)

    def init(self, *, mode=1, period=-1, freq=None, callback=None):
        self.mode = mode
        self.period = period
        self.callback = callback

    def deinit(self):
        self.callback = None


if _board().get("port") == "nrf":
    del WDT  # the nRF port has no machine.WDT ...
    del ADC.read_uv  # ... and its ADC reads raw counts only
    mem32 = _Mem32()


def unique_id():
    return b"\x24\x6f\x28\x57\x45\x41"


def freq(hz=None):
    global _freq
    if hz is None:
        return _freq
    _freq = hz


def idle():
    time.sleep_ms(1)  # wait for "the next interrupt": the 1 ms tick
    _check_end()


def reset():
    sim_scenario.run_hooks()
    sys.exit(_RESET_STATUS)

"""Virtual clock of the virtual watch: stands in for MicroPython's built-in `time`.

Virtual time advances only when the firmware sleeps, so a session is deterministic and
never loses samples to a busy host. `WEARS_SIM_SPEED` sets how many virtual seconds pass
per real second (0: as fast as the CPU allows). Shim modules that need to do I/O while the
firmware sleeps (the radio bridge) register a poller: `poller(timeout_ms)`.
"""

import utime
import os

TICKS_PERIOD = 1 << 30
_EPOCH = 1767225600  # 2026-01-01T00:00:00Z: the virtual watch's wall clock at boot

_now_us = 0
_speed = float(os.getenv("WEARS_SIM_SPEED") or "0")
_pollers = []
_alarms = []
_real_anchor = utime.ticks_us()
_virtual_anchor = 0


def add_poller(poller):
    _pollers.append(poller)


def add_alarm(alarm):
    """Run `alarm()` after every sleep, once the clock has moved (the machine shim's watchdog)."""
    _alarms.append(alarm)


def hold():
    """Re-anchor real time to virtual time (after the clock was held, e.g. waiting to connect)."""
    global _real_anchor, _virtual_anchor
    _real_anchor = utime.ticks_us()
    _virtual_anchor = _now_us
    _log_anchor("hold")


def _log_anchor(kind):
    """The true clock, for tests that check the host's timeline: "boot" (at start) or "hold",
    virtual us, real us (CLOCK_MONOTONIC mod 2^30) and speed, appended to WEARS_SIM_CLOCK_LOG."""
    path = os.getenv("WEARS_SIM_CLOCK_LOG")
    if path:
        with open(path, "a") as f:
            f.write("%s %d %d %r\n" % (kind, _virtual_anchor, _real_anchor % (1 << 30), _speed))


def _advance(us):
    global _now_us
    target = _now_us + us
    if _speed > 0:
        # Sleep until real time catches up with the scaled virtual target.
        while True:
            real_due = int((target - _virtual_anchor) / _speed)
            left_us = real_due - utime.ticks_diff(utime.ticks_us(), _real_anchor)
            if left_us <= 0:
                break
            _poll(left_us // 1000 + 1 if left_us > 1000 else 0)
            if left_us < 1000:
                utime.sleep_us(left_us)
    else:
        _poll(0)
    _now_us = target
    for alarm in _alarms:
        alarm()


def _poll(timeout_ms):
    for poller in _pollers:
        poller(timeout_ms)
    if not _pollers and timeout_ms:
        utime.sleep_ms(timeout_ms)


def virtual_us():
    """Microseconds since boot on the virtual clock, without wrap-around (for sensor models)."""
    return _now_us


def ticks_us():
    return _now_us % TICKS_PERIOD


def ticks_ms():
    return (_now_us // 1000) % TICKS_PERIOD


def ticks_cpu():
    return ticks_us()


def ticks_diff(a, b):
    # The shim's own period (a watch's 2^30), not the 64-bit unix binary's: utime's would
    # get ticks_us differences wrong after 18 virtual minutes.
    return ((a - b + (TICKS_PERIOD >> 1)) & (TICKS_PERIOD - 1)) - (TICKS_PERIOD >> 1)


def ticks_add(a, b):
    return (a + b) & (TICKS_PERIOD - 1)


def sleep_ms(ms):
    _advance(int(ms) * 1000)


def sleep_us(us):
    _advance(int(us))


def sleep(s):
    _advance(int(s * 1000000))


def time():
    return _EPOCH + _now_us // 1000000


def time_ns():
    return (_EPOCH * 1000000 + _now_us) * 1000


def gmtime(secs=None):
    return utime.gmtime(time() if secs is None else secs)


localtime = gmtime
mktime = utime.mktime

_log_anchor("boot")

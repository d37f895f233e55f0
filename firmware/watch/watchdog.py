"""The hardware watchdog: resets the watch when the main loop stops feeding it.

`machine.WDT` where the port has it (ESP32); MicroPython's nRF port has none, so there the
nRF52's WDT peripheral is programmed through `machine.mem32` (nRF52832/nRF52840 product
specification, WDT chapter). Once started, neither can be stopped until a reset.
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import machine

_NRF_WDT = const(0x40010000)
_TASKS_START = const(0x000)
_CRV = const(0x504)  # counter reload value, in 32.768 kHz ticks
_RREN = const(0x508)
_CONFIG = const(0x50C)
_CONFIG_RUN_IN_SLEEP = const(0x01)  # keep counting while the CPU sleeps between periods
_RR0 = const(0x600)
_RELOAD = const(0x6E524635)  # the magic value RR[n] wants
_LFCLK_HZ = const(32768)


class Watchdog:
    """`feed()` at least every `timeout_ms`, or the watch resets."""

    def __init__(self, timeout_ms, port=machine):
        wdt = getattr(port, "WDT", None)
        self._mem = None
        self._wdt = None
        if wdt is not None:
            self._wdt = wdt(timeout=timeout_ms)
            return
        mem = port.mem32  # the nRF port
        mem[_NRF_WDT + _CONFIG] = _CONFIG_RUN_IN_SLEEP
        mem[_NRF_WDT + _CRV] = timeout_ms * _LFCLK_HZ // 1000 - 1
        mem[_NRF_WDT + _RREN] = 1  # only RR[0] reloads
        mem[_NRF_WDT + _TASKS_START] = 1
        self._mem = mem

    def feed(self):
        if self._wdt is not None:
            self._wdt.feed()
        else:
            self._mem[_NRF_WDT + _RR0] = _RELOAD  # pyright: ignore[reportOptionalSubscript]

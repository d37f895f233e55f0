"""The board profile: which MCU, buses, sensors and radio this watch has (hardware/*.json)."""

import json

try:
    import machine
except ImportError:  # CPython: the host reads profiles, it measures no battery
    machine = None  # pyright: ignore[reportAssignmentType]


# What the firmware reads; the rest of a profile (descriptions, the host's heap figures)
# would only take heap for the whole run.
_USED = ("id", "name", "port", "radio", "i2c", "sensors", "battery", "features", "watchdog_ms", "outbox_slots",
         "model_budget_bytes", "flash_budget_bytes", "flash_log_bytes", "log_segment_bytes", "link", "serial")


def load(path="board.json"):
    with open(path) as f:
        profile = json.load(f)
    for key in list(profile):
        if key not in _USED:
            del profile[key]
    return profile


def battery_mv(b):
    """The battery's voltage through the divider of `b` (the profile's `battery`): `read_uv`
    where the port has it (ESP32, calibrated), else `read_u16` over the ADC's full scale (nRF:
    3.6 V, gain 1/6)."""
    if machine is None:
        raise OSError(19)  # ENODEV: no ADC on the host
    if "enable_pin" in b:  # the divider is switched on by pulling this pin low (XIAO Sense)
        machine.Pin(b["enable_pin"], machine.Pin.OUT, value=0)
    adc = machine.ADC(machine.Pin(b["adc_pin"]))
    read_uv = getattr(adc, "read_uv", None)
    uv = read_uv() if read_uv else adc.read_u16() * b.get("adc_full_scale_mv", 3600) * 1000 // 65535
    return int(uv * b["divider"]) // 1000


def battery_percent(b, millivolts):
    """Linear between the empty and full voltages of `b` (the profile's `battery`), clamped to 0..100."""
    pct = (millivolts - b["empty_mv"]) * 100 // (b["full_mv"] - b["empty_mv"])
    return 0 if pct < 0 else 100 if pct > 100 else pct

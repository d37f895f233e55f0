"""The board profile: which MCU, buses, sensors and radio this watch has (hardware/*.json)."""

import json


# What the firmware reads; the rest of a profile (descriptions, the host's heap figures)
# would only take heap for the whole run.
_USED = ("id", "name", "radio", "i2c", "sensors", "battery", "features", "watchdog_ms", "outbox_slots",
         "model_budget_bytes", "flash_budget_bytes")


def load(path="board.json"):
    with open(path) as f:
        profile = json.load(f)
    for key in list(profile):
        if key not in _USED:
            del profile[key]
    return profile


def battery_percent(board, millivolts):
    """Linear between the profile's empty and full voltages, clamped to 0..100."""
    b = board["battery"]
    pct = (millivolts - b["empty_mv"]) * 100 // (b["full_mv"] - b["empty_mv"])
    return 0 if pct < 0 else 100 if pct > 100 else pct

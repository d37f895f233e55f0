"""The board profile: which MCU, buses, sensors and radio this watch has (hardware/*.json)."""

import json


def load(path="board.json"):
    with open(path) as f:
        return json.load(f)


def battery_percent(board, millivolts):
    """Linear between the profile's empty and full voltages, clamped to 0..100."""
    b = board["battery"]
    pct = (millivolts - b["empty_mv"]) * 100 // (b["full_mv"] - b["empty_mv"])
    return 0 if pct < 0 else 100 if pct > 100 else pct

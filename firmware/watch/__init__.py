"""WEARS watch firmware (MicroPython; valid CPython so the host can import the contracts)."""

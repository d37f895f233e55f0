"""The virtual watch's boot: the shims first, then the firmware's `main` (not MicroPython API).

On a watch the hardware and the C modules the shims stand for take no heap. Loaded before
the firmware, as wears.sim.heap measures them (imported, the sensor bus built, the radio
stack made), their blocks sit together at the bottom of the heap instead of among the
firmware's, where they would split its free heap into pieces a real watch would not have.
"""

import gc
import os

# A frozen board: the modules it imports after boot, compiled first (sim_frozen); the shims'
# many small blocks then fill the holes their compilation leaves.
if os.getenv("WEARS_SIM_FROZEN"):
    import sim_frozen

    sim_frozen.install(os.getenv("WEARS_SIM_FROZEN"))

import bluetooth  # noqa: E402
import machine  # noqa: E402
import sim_scenario  # noqa: E402, F401
import time  # noqa: E402, F401

if machine._board().get("radio") == "ubluepy":
    import ubluepy  # noqa: F401
if machine._board().get("link") == "serial":
    import sim_uart  # noqa: F401 (the firmware's UART comes from it)
machine.I2C(0)  # the bus with the board's sensor models, as the firmware's first I2C would build it
bluetooth.BLE()
gc.collect()

import main  # noqa: E402, F401 (runs the watch)

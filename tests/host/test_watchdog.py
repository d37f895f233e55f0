"""The watchdog on both ports: fed, the watch runs on; starved, the virtual watch resets."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_micropython
from wears.paths import SHIMS
from wears.sim.runner import compiled_tree

SCRIPT = """
import time
from watch.watchdog import Watchdog
dog = Watchdog(500)
for _ in range(20):  # two seconds, fed every 100 ms
    time.sleep_ms(100)
    dog.feed()
print("fed for 2 s")
time.sleep_ms(400)
time.sleep_ms(400)  # 800 ms without a feed
print("still running")
"""


@pytest.mark.parametrize("port", ["esp32", "nrf"])
def test_a_fed_watchdog_keeps_the_watch_running_and_a_starved_one_resets_it(tmp_path, port):
    (tmp_path / "board.json").write_text(json.dumps({"port": port, "sensors": {}}))
    (tmp_path / "dog.py").write_text(SCRIPT)
    shims = compiled_tree(SHIMS)
    proc = run_micropython([str(tmp_path / "dog.py")], heapsize=200000, cwd=tmp_path,
                           extra_path=[shims] if shims else [])
    assert "fed for 2 s" in proc.stdout and "still running" not in proc.stdout
    assert proc.returncode == 3 and "watchdog reset" in proc.stderr, proc.stderr


def test_the_nrf_port_has_no_wdt_so_the_firmware_programs_the_nrf52_registers(tmp_path):
    (tmp_path / "board.json").write_text(json.dumps({"port": "nrf", "sensors": {}}))
    (tmp_path / "regs.py").write_text(
        "import machine\n"
        "from watch.watchdog import Watchdog\n"
        "assert not hasattr(machine, 'WDT')\n"
        "Watchdog(8000)\n"
        "m = machine.mem32\n"
        "print(m[0x40010000 + 0x504], m[0x40010000 + 0x508], m[0x40010000 + 0x50C], m[0x40010000])\n")
    shims = compiled_tree(SHIMS)
    proc = run_micropython([str(tmp_path / "regs.py")], heapsize=200000, cwd=tmp_path,
                           extra_path=[shims] if shims else [])
    assert proc.stdout.split() == [str(8 * 32768 - 1), "1", "1", "1"], proc.stderr

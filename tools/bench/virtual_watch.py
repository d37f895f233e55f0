"""How fast the virtual watch runs a session, against real time, and what the host stores.

Records a synthetic scenario from a virtual watch at full speed (the unmodified firmware in
MicroPython, BLE through bleak and the virtual backend, into SQLite) and reports the ratio of
virtual to real seconds (target: at least 20), samples per real second, and loss.
Prints one JSON object as its last line.

    .venv/bin/python tools/bench/virtual_watch.py [--seconds 600] [--speed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from wears.ble.virtual import VirtualBleakClient
from wears.db import Study
from wears.record import record
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic


async def run(seconds: int, speed: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        episodes = max(1, (seconds - 60) // 90)
        scenario = synthetic(1, rest_s=seconds - 90 * episodes, episode_s=90, n_episodes=episodes)
        scenario.write(work / "s.wscn")
        study = Study.open(work / "study.db")
        async with VirtualWatch(work / "s.wscn", flash_dir=work / "flash", speed=speed) as vw:
            started = time.perf_counter()
            _, stats = await record(study, vw.address, participant="P01", until_s=scenario.duration_s - 5,
                                    backend=VirtualBleakClient)
            elapsed = time.perf_counter() - started
        samples = sum(stats.samples.values())
        return {
            "benchmark": "virtual_watch",
            "virtual_s": round(stats.seconds(), 1),
            "real_s": round(elapsed, 2),
            "speed_ratio": round(stats.seconds() / elapsed, 1),
            "target_ratio": 20,
            "samples": samples,
            "samples_per_real_s": round(samples / elapsed),
            "lost_samples": stats.lost_samples,
            "heart_rate_windows": stats.heart_rates,
            "heap_bytes": vw.heap_bytes,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--speed", type=float, default=0.0, help="virtual s per real s (0: as fast as possible)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.seconds, args.speed))))


if __name__ == "__main__":
    main()

"""A recording on the virtual watch that spans a watch reboot, and its true clock (the
simulator's clock log), for the tests of what reads such a recording back (export, training)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from wears.ble.virtual import VirtualBleakClient
from wears.db import Study
from wears.record import record
from wears.sim.fault_scenario import true_clock, true_seconds
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic

from . import RUN_TIMEOUT_S
from .waiting import samples_stored

SPEED = 4


def record_across_a_reboot(work: Path, duration_s: float = 40) -> tuple[Study, int]:
    """(study, session id) of a `duration_s` recording (watch seconds, at SPEED) during which the
    watch rebooted cleanly, after 2,400 PPG samples (so boot 1 gets enough pings for its rate)."""
    synthetic(7, rest_s=200, episode_s=60, n_episodes=1).write(work / "s.wscn")
    study = Study.open(work / "study.db")

    async def run():
        async with VirtualWatch(work / "s.wscn", flash_dir=work / "flash", speed=SPEED,
                                env={"WEARS_SIM_CLOCK_LOG": str(work / "clock.log")}) as vw:
            async def reboot_midway():
                await samples_stored(study, 2400)
                await vw.reboot()

            rebooting = asyncio.ensure_future(reboot_midway())
            sid, _ = await record(study, vw.address, participant="P01", duration_s=duration_s,
                                  backend=VirtualBleakClient)
            await rebooting
            await vw.shut_down()
            return sid

    return study, asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))


def true_host_seconds(study: Study, sid: int, work: Path, boots: np.ndarray, ticks_ms: np.ndarray) -> np.ndarray:
    """True host seconds of device ticks, each of its own boot."""
    anchors = true_clock(work / "clock.log")
    out = np.full(len(ticks_ms), np.nan)
    for boot in np.unique(boots):
        near = float(study.clock_sync(sid, int(boot))[0, 0])
        mask = boots == boot
        out[mask] = true_seconds(anchors[int(boot)], np.asarray(ticks_ms, dtype=float)[mask], near)
    return out

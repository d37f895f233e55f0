"""A completed run's rated clips are the labelled windows `wears train` learns from."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from wears.ble.virtual import VirtualBleakClient
from wears.db import Study
from wears.session.app import open_run
from wears.session.clips import write_trial_study
from wears.session.engine import SessionEngine
from wears.session.protocol import load_protocol
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic
from wears.train import VALENCE, build_dataset

from . import RUN_TIMEOUT_S

pytestmark = pytest.mark.slow

SPEED = 30  # 3 s of clip on the host are 90 s of samples: room for 30 s windows


def test_rated_clips_become_training_windows_of_both_classes(tmp_path):
    protocol_path = write_trial_study(tmp_path, per_language=1, seconds=3, baseline_s=0, washout_s=0)
    protocol = load_protocol(protocol_path)
    synthetic(6, rest_s=900, episode_s=60, n_episodes=1).write(tmp_path / "p.wscn")
    study = Study.open(tmp_path / "study.db")

    async def run() -> int:
        async with VirtualWatch(tmp_path / "p.wscn", flash_dir=tmp_path / "flash", speed=SPEED) as vw:
            store, _ = open_run(study, protocol_path, "P05", "hi")
            engine = SessionEngine(study, protocol, store, backend=VirtualBleakClient)
            await engine.connect_watch(vw.address)
            await engine.start(force=True)
            for valence in (8, 2):  # as a participant page reports it
                step = engine.step
                await engine.participant_message({"type": "onset", "step": step, "host": time.monotonic()})
                await asyncio.sleep(3)
                await engine.participant_message({"type": "offset", "step": step, "host": time.monotonic()})
                await engine.participant_message({"type": "rating", "step": engine.step,
                                                  "values": {"valence": valence, "arousal": 5}})
            await engine.participant_message({"type": "attention", "step": engine.step, "value": 3})
            assert engine.status == "complete"
            return store.sessions()[0]

    session = asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    assert study.session(session)["status"] == "complete"
    data = build_dataset(study, window_s=30, step_s=5)  # every complete session with annotations
    counts = {name: int(np.sum(data.y == code)) for name, code in VALENCE.items()}
    # Each clip spans about 90 s of samples: some 13 windows of 30 s fit wholly inside it.
    assert counts["pleasant"] >= 5 and counts["unpleasant"] >= 5
    assert set(data.groups) == {"P05"}

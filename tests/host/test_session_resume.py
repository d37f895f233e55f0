"""A host restart in the middle of a run resumes at the current step, on the virtual watch."""

from __future__ import annotations

import asyncio
import time

import pytest

from wears.ble.virtual import VirtualBleakClient
from wears.db import Study
from wears.errors import WearsError
from wears.session.app import open_run
from wears.session.clips import write_trial_study
from wears.session.engine import SessionEngine
from wears.session.protocol import load_protocol
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic

from . import RUN_TIMEOUT_S

pytestmark = pytest.mark.slow


def test_host_restart_resumes_the_run_at_the_step_it_was_on_and_bad_answers_are_refused(tmp_path):
    protocol_path = write_trial_study(tmp_path, per_language=1, baseline_s=2)
    protocol = load_protocol(protocol_path)
    synthetic(4, rest_s=300, episode_s=60, n_episodes=1).write(tmp_path / "p.wscn")
    study = Study.open(tmp_path / "study.db")
    seen = {}

    async def run():
        async with VirtualWatch(tmp_path / "p.wscn", flash_dir=tmp_path / "flash", speed=5) as vw:
            store, resumed = open_run(study, protocol_path, "P03", "hi")
            engine = SessionEngine(study, protocol, store, backend=VirtualBleakClient)
            await engine.connect_watch(vw.address)
            with pytest.raises(WearsError, match="pre-flight"):
                await engine.start()
            await engine.start(force=True)
            assert engine.current.kind == "baseline"
            await engine.participant_message({"type": "shown", "step": engine.step, "host": time.monotonic()})
            # A stale message from an earlier step changes nothing.
            await engine.participant_message({"type": "rating", "step": 99, "values": {"valence": 9, "arousal": 1}})
            await engine.close()  # the host stops in the middle of the baseline
            seen["first"] = store.sessions()

            store, resumed = open_run(study, protocol_path, "P03", "hi")
            engine = SessionEngine(study, protocol, store, backend=VirtualBleakClient)
            seen["resumed"], seen["paused"], seen["step"] = resumed, engine.paused, engine.current.kind
            await engine.connect_watch(vw.address)
            await engine.resume()
            seen["view"] = engine.participant_view()
            await engine.participant_message({"type": "shown", "step": engine.step, "host": time.monotonic()})
            while engine.current.kind != "clip":
                await asyncio.sleep(0.05)
            # What a participant page reports, as the page would (these host times are its clock sync's).
            step = engine.step
            await engine.participant_message({"type": "onset", "step": step, "host": time.monotonic(), "media_s": 0})
            await engine.participant_message({"type": "offset", "step": step, "host": time.monotonic() + 1.5})
            assert engine.current.kind == "rating"
            for bad in [{"valence": 5}, {"valence": True, "arousal": 2}, {"valence": 10, "arousal": 2}, "7"]:
                reply = await engine.participant_message({"type": "rating", "step": engine.step, "values": bad})
                seen.setdefault("refusals", []).append(reply["type"])
            await engine.participant_message({"type": "rating", "step": engine.step,
                                              "values": {"valence": 4, "arousal": 6}})
            seen["after_rating"] = engine.current.kind
            await engine.abort("test over")

    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    assert seen["resumed"] and seen["paused"] and seen["step"] == "baseline"
    assert seen["view"]["kind"] == "baseline" and not seen["view"]["paused"]
    first, second = study.conn.execute("SELECT session_id FROM run_sessions ORDER BY session_id").fetchall()
    assert seen["first"] == [first[0]]
    assert study.session(first[0])["status"] == "interrupted"
    assert study.session(second[0])["status"] == "aborted"
    trials = study.conn.execute("SELECT session_id, kind, attempt, status FROM trials ORDER BY id").fetchall()
    assert trials == [(first[0], "baseline", 1, "interrupted"), (second[0], "baseline", 2, "done"),
                      (second[0], "clip", 1, "done")]
    assert seen["refusals"] == ["error"] * 4 and seen["after_rating"] != "rating"
    assert study.conn.execute("SELECT item, value FROM self_reports").fetchall() == [("valence", 4), ("arousal", 6)]
    # The rated clip is labelled even though the run was aborted later (training skips aborted sessions).
    assert [label for *_, label in study.annotations(second[0])] == ["rest", "unpleasant"]

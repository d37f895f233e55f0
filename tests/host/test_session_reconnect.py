"""A watch lost in the middle of a clip: the session records through `record.Recorder` like
`wears record`, so the link is reconnected with backoff, what the watch logged meanwhile is
backfilled, the experimenter's screen shows it, and the run goes on without a pause.

Headless chromium against the virtual watch. In the middle of the clip the link breaks without a
goodbye from either side and the watch stays out of reach for `AWAY_S` (several of its outbox's
worth of packets: they come back only from its flash log), as a participant walking out of range.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bleak.exc import BleakError

from watch import protocol as P
from wears.ble.virtual import VirtualBleakClient
from wears.db import Study
from wears.export_data import export_bids
from wears.paths import DEFAULT_BOARD, HARDWARE
from wears.session.app import open_run
from wears.session.clips import write_trial_study
from wears.session.engine import SessionEngine
from wears.session.protocol import load_protocol
from wears.sim.fault_scenario import check_samples
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic

from . import RUN_TIMEOUT_S
from .session_driver import browser, pass_preflight, session_server, take_form, until
from .waiting import samples_stored

pytestmark = pytest.mark.slow

SPEED = 5
AWAY_S = 2.0  # real seconds out of reach: 10 s of the watch's clock
# Every text the experimenter's "Link" field shows, in order.
RECORD_LINK_STATES = """() => { window.linkStates = [];
  const field = document.getElementById('w-state');
  new MutationObserver(() => window.linkStates.push(field.textContent))
    .observe(field, {childList: true, characterData: true, subtree: true}); }"""


class OutOfRange(VirtualBleakClient):
    """The virtual watch's backend, with the watch out of reach while `away` (attempts refused and counted)."""

    away = False
    refused = 0

    async def connect(self, pair: bool, **kwargs) -> None:
        if OutOfRange.away:
            OutOfRange.refused += 1
            raise BleakError(f"{self.address} is out of range")
        await super().connect(pair, **kwargs)


async def walk_away(engine, seconds: float) -> None:
    """End the watch's connection abruptly, with no goodbye from either side, and keep it out of
    reach for `seconds` and at least one attempt to reconnect."""
    OutOfRange.away, OutOfRange.refused = True, 0
    engine.watch._client._backend._writer.transport.abort()
    await asyncio.sleep(seconds)  # the watch logs on, out of reach
    await until(lambda: OutOfRange.refused >= 1, 30, "an attempt to reconnect")


async def _run_with_a_lost_watch(b, study, protocol, address, seen: dict) -> None:
    async with session_server(study, protocol, "P05", "en", address, backend=OutOfRange) as server:
        engine = server.engine
        participant = await (await b.new_context()).new_page()
        experimenter = await (await b.new_context()).new_page()
        await participant.goto(server.participant_url)
        await experimenter.goto(server.experimenter_url)
        await experimenter.evaluate(RECORD_LINK_STATES)
        await pass_preflight(experimenter, engine)
        await experimenter.click("#start")
        while engine.status == "running":
            step = engine.current
            if step.kind == "clip" and "cut_trial" not in seen:
                await until(lambda: engine.trial is not None, 20, "the clip's onset")
                seen["cut_trial"] = engine.trial
                seen["session"] = engine.recorder.session_id
                await walk_away(engine, AWAY_S)
                seen["watch_while_away"] = engine.experimenter_view()["watch"]
                OutOfRange.away = False
                await until(lambda: engine.watch is not None and engine.recorder.stats.state == "recording", 30,
                            "the watch to be reconnected")
                seen["paused_after_reconnect"] = engine.paused
            elif step.kind in ("rating", "attention"):
                await take_form(participant, engine, (7, 3) if step.kind == "rating" else (3,))
            else:
                await asyncio.sleep(0.05)
        await until(engine.done.is_set, 60, "the recording to end")
        seen["link_states"] = await experimenter.evaluate("window.linkStates")
        seen["run"] = engine.run.id


@pytest.fixture(scope="module")
def lost_watch(tmp_path_factory):
    OutOfRange.away = False
    work = tmp_path_factory.mktemp("reconnect")
    protocol = write_trial_study(work, per_language=1, seconds=3.0)
    synthetic(6, rest_s=300, episode_s=60, n_episodes=1).write(work / "p.wscn")
    board = json.loads((HARDWARE / f"{DEFAULT_BOARD}.json").read_text())
    board["flash_log_bytes"] = 1 << 20  # keeps the whole session: the check reads every record back
    (work / "board.json").write_text(json.dumps(board))
    study = Study.open(work / "study.db")
    seen: dict = {}

    async def run():
        async with VirtualWatch(work / "p.wscn", board=str(work / "board.json"), flash_dir=work / "flash",
                                speed=SPEED) as vw, browser() as b:
            await _run_with_a_lost_watch(b, study, protocol, vw.address, seen)
            await vw.shut_down()  # the open segment of its flash log is written: the check reads it

    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    seen["samples"] = check_samples(study, seen["session"], work / "flash" / "log", work / "log-copy")
    return study, seen


def test_the_run_goes_on_through_a_lost_watch_without_a_pause(lost_watch):
    study, seen = lost_watch
    assert not seen["paused_after_reconnect"]
    assert seen["watch_while_away"]["state"] == "reconnecting" and not seen["watch_while_away"]["connected"]
    (status,), = study.conn.execute("SELECT status FROM study_runs WHERE id=?", (seen["run"],)).fetchall()
    assert status == "complete"
    kinds = [k for k, in study.conn.execute("SELECT kind FROM session_events WHERE run_id=?", (seen["run"],))]
    assert "pause" not in kinds and "interrupted" not in kinds
    # One recording for the whole run, complete.
    assert [s for s, in study.conn.execute("SELECT session_id FROM run_sessions WHERE run_id=?", (seen["run"],))] == [
        seen["session"]]
    assert study.session(seen["session"])["status"] == "complete"


def test_the_experimenter_screen_shows_the_watch_reconnected_and_backfilled(lost_watch):
    _, seen = lost_watch
    states = seen["link_states"]
    assert "reconnecting" in states and "backfilling" in states[states.index("reconnecting"):]
    assert states[-1] == "complete"
    after = states[states.index("reconnecting"):]
    assert "recording" in after  # streaming again before the run ended


def test_every_sample_the_watch_logged_is_stored_exactly_once(lost_watch):
    study, seen = lost_watch
    check = seen["samples"]
    assert check["missing"] == check["duplicates"] == check["unexpected"] == check["chunks_differing"] == 0
    assert check["samples_stored"] == check["samples_expected"] > 0
    sid = seen["session"]
    collection = json.loads(study.provenance(sid)["collection"])
    assert collection["reconnects"] >= 1 and collection["backfilled"] > 0
    assert collection["lost_records"] == 0 and collection["lost_samples"] == 0
    assert study.stream(sid, P.PPG).gaps == 0


def test_the_clip_cut_by_the_lost_watch_keeps_its_events_on_the_samples_timeline(lost_watch):
    study, seen = lost_watch
    trial = seen["cut_trial"]
    (kind, attempt, status, onset_s, offset_s), = study.conn.execute(
        "SELECT kind, attempt, status, onset_s, offset_s FROM trials WHERE id=?", (trial,)).fetchall()
    assert (kind, attempt, status) == ("clip", 1, "done")
    assert 0.7 * SPEED * 3.0 < offset_s - onset_s < 2.5 * SPEED * 3.0  # watch seconds, not host seconds
    events = study.conn.execute("SELECT kind, t_s, echo_tick FROM session_events WHERE trial_id=? ORDER BY id",
                                (trial,)).fetchall()
    assert [k for k, _, _ in events] == ["clip_onset", "clip_offset", "rating"]
    assert [t for _, t, _ in events[:2]] == pytest.approx([onset_s, offset_s])
    # Every event of the run reached the watch and came back, the ones of the cut clip included.
    assert not study.conn.execute("SELECT id FROM session_events WHERE run_id=? AND echo_tick IS NULL",
                                  (seen["run"],)).fetchall()
    # The clip's samples are all there: the labelled interval lies inside one unbroken PPG run.
    ppg = study.stream(seen["session"], P.PPG)
    start_s, end_s = ppg.first_index / ppg.rate_hz, (ppg.first_index + len(ppg.samples)) / ppg.rate_hz
    assert start_s <= onset_s < offset_s <= end_s


def test_a_watch_that_reboots_mid_clip_keeps_the_clip_on_one_timeline_in_the_export(tmp_path):
    """The engine without a browser (the page's messages sent as the page sends them): the watch
    reboots during a clip, the recorder follows it into its new boot, and the clip's label and
    both boots' samples end up on one timeline, in the database and in the BIDS export."""
    protocol_path = write_trial_study(tmp_path, per_language=1, seconds=3.0, baseline_s=0, washout_s=0)
    protocol = load_protocol(protocol_path)
    synthetic(8, rest_s=300, episode_s=60, n_episodes=1).write(tmp_path / "p.wscn")
    study = Study.open(tmp_path / "study.db")
    seen: dict = {}

    async def run():
        async with VirtualWatch(tmp_path / "p.wscn", flash_dir=tmp_path / "flash", speed=SPEED) as vw:
            store, _ = open_run(study, protocol_path, "P06", "en")
            engine = SessionEngine(study, protocol, store, backend=VirtualBleakClient)
            await engine.connect_watch(vw.address)
            await until(lambda: study.sample_count(engine.recorder.session_id, P.PPG) >= 1000, 60,
                        "samples enough for the first boot's clock fit")
            await engine.start(force=True)
            step = engine.step
            assert engine.current.kind == "clip"
            seen["onset"] = time.monotonic()
            await engine.participant_message({"type": "onset", "step": step, "host": seen["onset"], "media_s": 0})
            await vw.reboot()
            await until(lambda: engine.watch is not None and engine.recorder.stats.state == "recording"
                        and engine.recorder.stats.boot == 2, 60, "the watch's second boot recording")
            await samples_stored(study, study.sample_count(engine.recorder.session_id, P.PPG) + 300,
                                 session_id=engine.recorder.session_id)
            seen["offset"] = time.monotonic()
            await engine.participant_message({"type": "offset", "step": step, "host": seen["offset"]})
            await engine.participant_message({"type": "rating", "step": engine.step,
                                              "values": {"valence": 8, "arousal": 4}})
            while engine.status == "running":
                await engine.participant_message({"type": "attention", "step": engine.step, "value": 3})
                await asyncio.sleep(0.05)
            seen["trial"], seen["session"] = store.last_done_clip_trial(step), store.sessions()[0]
            await vw.shut_down()

    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    sid = seen["session"]
    assert study.session(sid)["status"] == "complete" and study.boots(sid) == [1, 2]
    check = check_samples(study, sid, tmp_path / "flash" / "log", tmp_path / "log-copy")
    assert check["missing"] == check["duplicates"] == check["unexpected"] == 0
    # The clip lasted (offset - onset) host seconds: that many times SPEED on the first boot's clock.
    (onset_s, offset_s), = study.conn.execute("SELECT onset_s, offset_s FROM trials WHERE id=?",
                                              (seen["trial"],)).fetchall()
    assert offset_s - onset_s == pytest.approx(SPEED * (seen["offset"] - seen["onset"]), abs=0.2)
    assert study.annotations(sid)[-1] == pytest.approx((onset_s, offset_s, "pleasant"))
    # Exported, the second boot begins inside the clip's labelled interval, as it did.
    export_bids(study, tmp_path / "bids", sessions=[sid])
    beh = tmp_path / "bids" / "sub-P06" / f"ses-{sid}" / "beh"
    side = json.loads((beh / f"sub-P06_ses-{sid}_task-wears_recording-ppg_physio.json").read_text())
    second = side["WatchBoots"][1]
    start_s = side["StartTime"] + second["FirstRow"] / side["SamplingFrequency"]
    events = [line.split("\t") for line in (beh / f"sub-P06_ses-{sid}_task-wears_events.tsv").read_text().splitlines()]
    onset, duration = next((float(e[0]), float(e[1])) for e in events if e[2] == "pleasant")
    assert onset < start_s < onset + duration

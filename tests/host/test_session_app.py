"""A whole labelling session in headless chromium against the virtual watch.

Run 1 (Hindi participant): baseline, clips in Hindi and English, ratings on the Self-Assessment
Manikin by keyboard, mouse and touch, an attention check, a pause, a marker and a note, a reload
in the middle of a clip. Run 2 (English participant): the watch paired from the experimenter's
screen; aborted during its first clip. The database must end with the right trials, events,
ratings, labels and samples.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from watch import protocol as P
from wears.db import Study
from wears.session.clips import write_trial_study
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic

from . import RUN_TIMEOUT_S
from .session_driver import browser, pass_preflight, session_server, take_form, until

pytestmark = pytest.mark.slow

SPEED = 5  # virtual seconds per real second: the first heart-rate windows come quickly
RATINGS = [((7, 3), "keyboard"), ((5, 5), "mouse"), ((2, 8), "touch"), ((8, 6), "keyboard")]


async def _complete_run(b, study, protocol, address, seen: dict) -> None:
    async with session_server(study, protocol, "P01", "hi", address) as server:
        engine = server.engine
        participant = await (await b.new_context(has_touch=True)).new_page()
        experimenter = await (await b.new_context()).new_page()
        await participant.goto(server.participant_url)
        await experimenter.goto(server.experimenter_url)
        seen["instructions"] = await participant.inner_text("main")
        # The participant's token opens neither the experimenter's page nor its controls.
        seen["experimenter_page_with_participant_token"] = (
            await participant.request.get(server.participant_url.replace("/p/", "/x/"))).status
        seen["experimenter_ws_with_participant_token"] = await participant.evaluate(
            """url => new Promise(resolve => { const ws = new WebSocket(url);
                 ws.onopen = () => resolve('open'); ws.onerror = () => resolve('refused'); })""",
            server.participant_url.replace("http", "ws").replace("/p/", "/x/") + "ws")
        await participant.evaluate("""() => { const ws = new WebSocket(location.href.replace('http', 'ws') + 'ws');
                                              ws.onopen = () => ws.send(JSON.stringify({type: 'abort'})); }""")
        await pass_preflight(experimenter, engine)
        seen["status_after_participant_abort"] = engine.status
        seen["preflight"] = engine.preflight_report
        await experimenter.click("#start")
        seen["heart_rate_shown"] = await experimenter.inner_text("#w-hr")
        ratings = iter(RATINGS)
        second_clip = engine.run.clip_order[1]
        reloaded = paused = False
        while engine.status == "running":
            step = engine.current
            if step.kind == "washout" and not paused:
                await until(lambda: engine.trial is not None, 20, "the first wash-out")
                await experimenter.click("#pauseresume")
                await participant.wait_for_selector("#pause:not([hidden])")
                await experimenter.click("#pauseresume")
                paused = True
            elif step.kind == "clip" and step.clip_id == second_clip and not reloaded:
                await until(lambda: engine.trial is not None, 20, "the second clip's onset")
                await participant.reload()
                reloaded = True
                await experimenter.click("#marker")
                await experimenter.fill("#note", "participant adjusted the strap")
                await experimenter.click("#save-note")
            elif step.kind == "rating":
                if "form" not in seen:  # the SAM manikins, labelled in the participant's language
                    await participant.wait_for_selector(f'main[data-step="{step.index}"] .scale button')
                    seen["form"] = await participant.eval_on_selector_all(".scale", """rows => rows.map(r =>
                        [r.dataset.scale, r.querySelectorAll('button.figure svg.sam-figure').length,
                         r.querySelector('button').getAttribute('aria-label')])""")
                await take_form(participant, engine, *next(ratings))
            elif step.kind == "attention":
                await take_form(participant, engine, (3,))
            else:
                await asyncio.sleep(0.05)
        await participant.wait_for_function("document.querySelector('main').innerText.includes('सत्र पूरा')")
        seen["end_screen"] = await participant.inner_text("main")
        seen["run1"] = engine.run.id


async def _aborted_run(b, study, protocol, address, seen: dict) -> None:
    async with session_server(study, protocol, "P02", "en", None) as server:
        engine = server.engine
        participant = await (await b.new_context()).new_page()
        experimenter = await (await b.new_context()).new_page()
        await participant.goto(server.participant_url)
        await experimenter.goto(server.experimenter_url)
        # Pairing from the experimenter's screen: find the watch, connect it.
        await experimenter.click("#scan")
        await experimenter.click(f'#found li:has-text("{address}") button')
        await until(lambda: engine.watch_info["connected"], 20, "the watch to connect")
        await pass_preflight(experimenter, engine)
        await experimenter.click("#start")
        await until(lambda: engine.current.kind == "clip" and engine.trial is not None, 30, "the first clip")
        experimenter.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept("participant felt unwell")))
        await experimenter.click("#abort")
        await until(lambda: engine.status == "aborted", 20, "the abort")
        await participant.wait_for_function("document.querySelector('main').innerText.includes('ended')")
        seen["run2"] = engine.run.id


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    work = tmp_path_factory.mktemp("session")
    protocol = write_trial_study(work)
    synthetic(3, rest_s=200, episode_s=100, n_episodes=4).write(work / "p.wscn")
    study = Study.open(work / "study.db")
    seen: dict = {}

    async def run():
        async with VirtualWatch(work / "p.wscn", flash_dir=work / "flash", speed=SPEED) as vw, browser() as b:
            await _complete_run(b, study, protocol, vw.address, seen)
            await _aborted_run(b, study, protocol, vw.address, seen)

    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    return study, seen


def _rows(study, sql, *args):
    return study.conn.execute(sql, args).fetchall()


def test_participant_screen_cannot_reach_the_experimenters_controls(sessions):
    _, seen = sessions
    assert seen["experimenter_page_with_participant_token"] == 404
    assert seen["experimenter_ws_with_participant_token"] == "refused"
    assert seen["status_after_participant_abort"] == "ready"


def test_instructions_and_end_are_in_the_participants_language(sessions):
    _, seen = sessions
    assert "स्वागत" in seen["instructions"] and "धन्यवाद" in seen["end_screen"]
    assert seen["form"] == [["valence", 5, "प्रसन्नता: 9 में से 1, बहुत दुखी"],
                            ["arousal", 5, "उत्तेजना: 9 में से 1, बहुत शांत"]]


def test_preflight_checked_every_clip_in_the_browser_and_the_watch(sessions):
    _, seen = sessions
    assert seen["heart_rate_shown"].endswith("bpm")
    names = {c["name"] for c in seen["preflight"]["checks"]}
    assert {"plays hi-1", "plays hi-2", "plays en-1", "plays en-2", "watch connected", "battery",
            "flash free", "signal quality"} <= names


def test_complete_run_stores_every_trial_on_the_samples_timeline(sessions):
    study, seen = sessions
    run = seen["run1"]
    (status, order, seed), = _rows(study, "SELECT status, clip_order, order_seed FROM study_runs WHERE id=?", run)
    assert status == "complete" and seed == 5 and len(json.loads(order)) == 4
    trials = _rows(study, "SELECT kind, clip_id, attempt, status, onset_s, offset_s FROM trials WHERE run_id=? "
                          "ORDER BY id", run)
    done = [t for t in trials if t[3] == "done"]
    assert [t[0] for t in done] == ["baseline", "clip", "washout", "clip", "washout", "clip", "washout", "clip"]
    # The pause interrupted the first wash-out, and the reload the second clip; each then ran again.
    interrupted = [t for t in trials if t[3] == "interrupted"]
    assert [(t[0], t[1], t[2]) for t in interrupted] == [("washout", None, 1), ("clip", json.loads(order)[1], 1)]
    assert [t[1] for t in done if t[0] == "clip"] == json.loads(order)
    assert {c[:2] for c in json.loads(order)} == {"hi", "en"}
    assert (json.loads(order)[1], 2) in [(t[1], t[2]) for t in done]
    # On the watch's sample timeline: the virtual watch runs at SPEED x, so a clip of 1.5 s
    # spans about SPEED x 1.5 s of samples (host seconds would be SPEED times fewer). A loaded
    # machine may stall the playback a little: the upper bound leaves it room.
    for kind, _, _, _, onset, offset in done:
        expected = SPEED * (1.5 if kind in ("clip", "baseline") else 0.5)
        assert onset is not None and 0.7 * expected < offset - onset < 2.5 * expected
    onsets = [t[4] for t in done]
    assert onsets == sorted(onsets)


def test_ratings_and_attention_check_are_stored_per_clip(sessions):
    study, seen = sessions
    run = seen["run1"]
    rows = _rows(study, "SELECT t.clip_id, r.item, r.value, r.expected FROM self_reports r "
                        "LEFT JOIN trials t ON t.id = r.trial_id WHERE r.run_id=? ORDER BY r.rowid", run)
    order = json.loads(_rows(study, "SELECT clip_order FROM study_runs WHERE id=?", run)[0][0])
    valence = {clip: v for clip, item, v, _ in rows if item == "valence"}
    arousal = {clip: v for clip, item, v, _ in rows if item == "arousal"}
    assert valence == {clip: r[0][0] for clip, r in zip(order, RATINGS)}
    assert arousal == {clip: r[0][1] for clip, r in zip(order, RATINGS)}
    assert [(v, e) for _, item, v, e in rows if item == "attention"] == [(3, 3)]


def test_every_event_is_stored_and_echoed_by_the_watch(sessions):
    study, seen = sessions
    run = seen["run1"]
    kinds = [k for k, in _rows(study, "SELECT kind FROM session_events WHERE run_id=? ORDER BY id", run)]
    for kind, n in [("start", 1), ("baseline_onset", 1), ("clip_onset", 5), ("clip_offset", 4), ("rating", 4),
                    ("attention", 1), ("marker", 1), ("interrupted", 2), ("pause", 1), ("resume", 1), ("complete", 1)]:
        assert kinds.count(kind) == n, kind
    assert ("note", "participant adjusted the strap") in _rows(
        study, "SELECT kind, text FROM session_events WHERE run_id=?", run)
    # Each event went to the watch as a MARK and came back as its EVENT, stamped on the watch's clock.
    (session,), = _rows(study, "SELECT session_id FROM run_sessions WHERE run_id=?", run)
    echoed = {arg for arg, in _rows(study, "SELECT arg FROM events WHERE session_id=? AND code=?", session,
                                    P.EV_MARK)}
    ids = {i for i, in _rows(study, "SELECT id FROM session_events WHERE run_id=?", run)}
    assert ids <= echoed
    assert not _rows(study, "SELECT id FROM session_events WHERE run_id=? AND echo_tick IS NULL", run)


def test_rated_clips_become_labels_for_training(sessions):
    study, seen = sessions
    (session,), = _rows(study, "SELECT session_id FROM run_sessions WHERE run_id=?", seen["run1"])
    labels = study.annotations(session)
    clip_trials = _rows(study, "SELECT clip_id, onset_s, offset_s FROM trials WHERE run_id=? AND kind='clip' "
                               "AND status='done' ORDER BY id", seen["run1"])
    expected = [(on, off, "pleasant" if v >= 6 else "unpleasant")
                for (_, on, off), ((v, _), _) in zip(clip_trials, RATINGS) if v != 5]
    assert [row for row in labels if row[2] != "rest"] == expected
    assert [row[2] for row in labels].count("rest") == 1
    # The labelled intervals lie inside the recorded samples.
    ppg = study.stream(session, P.PPG)
    assert ppg.gaps == 0
    end_s = (ppg.first_index + len(ppg.samples)) / ppg.rate_hz
    assert all(ppg.first_index / ppg.rate_hz <= a < b <= end_s for a, b, _ in labels)
    assert study.session(session)["status"] == "complete"


def test_aborted_run_stays_in_the_database_marked(sessions):
    study, seen = sessions
    run = seen["run2"]
    (status, note), = _rows(study, "SELECT status, note FROM study_runs WHERE id=?", run)
    assert status == "aborted" and note == "participant felt unwell"
    (session,), = _rows(study, "SELECT session_id FROM run_sessions WHERE run_id=?", run)
    assert study.session(session)["status"] == "aborted"
    assert study.sample_count(session, P.PPG) > 0
    assert _rows(study, "SELECT kind, status FROM trials WHERE run_id=? ORDER BY id", run) == [
        ("baseline", "done"), ("clip", "interrupted")]
    assert [k for k, in _rows(study, "SELECT kind FROM session_events WHERE run_id=? ORDER BY id", run)][-2:] == [
        "interrupted", "abort"]

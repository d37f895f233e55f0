"""`wears session` killed in the middle of a clip and started again with the same command.

The participant's page stays open through the restart: it reconnects by itself and the run
goes on at the clip that was playing. Then the tab is closed in the middle of that clip and
opened again. The database must end with the run complete, every event stored once and echoed
by the watch once, and the interrupted attempts marked.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from watch import protocol as P
from wears.db import Study
from wears.session.clips import write_trial_study
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic

from . import RUN_TIMEOUT_S
from .session_driver import answer_rating, browser, until

pytestmark = pytest.mark.slow

SPEED = 5
CLIP_S = 3.0  # long enough to be killed in the middle of, after its onset's echo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SessionCommand:
    """One `wears session` process; its console gives the two screens' addresses."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.lines: list[str] = []

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.ensure_future(self._read())
        await until(lambda: self.url("experimenter") or self.proc.returncode is not None, 60, "the screens' addresses")
        assert self.url("experimenter"), "\n".join(self.lines)

    async def _read(self) -> None:
        async for line in self.proc.stdout:
            self.lines.append(line.decode().rstrip())

    def url(self, screen: str) -> str | None:
        return next((line.split()[-1] for line in self.lines if line.startswith(f"{screen} screen:")), None)

    async def kill(self) -> None:
        self.proc.kill()
        await self.proc.wait()
        await self._reader

    async def finished(self, timeout: float) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await self._reader
        return code


class ExperimenterSocket:
    """The experimenter's screen reduced to its websocket: the latest state, and commands."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.state: dict = {}

    async def __aenter__(self) -> ExperimenterSocket:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url + "ws")
        self._reader = asyncio.ensure_future(self._read())
        await until(lambda: self.state, 10, "the experimenter's state")
        return self

    async def _read(self) -> None:
        async for message in self._ws:
            msg = json.loads(message.data)
            if msg.get("type") == "state":
                self.state = msg

    async def send(self, **msg) -> None:
        await self._ws.send_json(msg)

    async def __aexit__(self, *exc) -> None:
        self._reader.cancel()
        await self._http.close()


async def _answer_forms(page, state: dict, answered: set) -> None:
    """Answer a rating or attention form now shown (once per step), by keyboard."""
    step, kind = state.get("step"), state.get("step_kind")
    if kind in ("rating", "attention") and state.get("status") == "running" and step not in answered:
        answered.add(step)
        await answer_rating(page, step, (3,) if kind == "attention" else (8, 2), "keyboard")


def _echoed(db: Path, trial_id: int) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT echo_tick FROM session_events WHERE trial_id=? AND kind='clip_onset'",
                           (trial_id,)).fetchone()
    return row is not None and row[0] is not None


@pytest.fixture(scope="module")
def restarted(tmp_path_factory):
    work = tmp_path_factory.mktemp("restart")
    protocol = write_trial_study(work, seconds=CLIP_S, baseline_s=1.0, washout_s=0.5)
    synthetic(5, rest_s=300, episode_s=60, n_episodes=1).write(work / "p.wscn")
    db = work / "study.db"
    seen: dict = {"answered": set()}

    async def run():
        async with VirtualWatch(work / "p.wscn", flash_dir=work / "flash", speed=SPEED) as vw, browser() as b:
            wears = Path(sys.executable).with_name("wears")
            argv = [str(wears), "session", str(protocol), "--db", str(db), "--participant", "P05", "--language",
                    "en", "--address", vw.address, "--virtual", "--port", str(_free_port())]
            first = SessionCommand(argv)
            await first.start()
            context = await b.new_context()
            page = await context.new_page()
            await page.goto(first.url("participant"))
            await page.evaluate("window.loadedBeforeTheRestart = true")
            async with ExperimenterSocket(first.url("experimenter")) as x:
                await until(lambda: x.state["participant_screens"] == 1, 10, "the participant screen")
                await x.send(type="start", force=True)
                second_clip = x.state["clip_order"][1]
                while not (x.state["clip"] == second_clip and x.state["step_kind"] == "clip" and x.state["trial"]):
                    await _answer_forms(page, x.state, seen["answered"])
                    await asyncio.sleep(0.05)
                seen["killed_trial"], seen["killed_step"] = x.state["trial"], x.state["step"]
                await until(lambda: _echoed(db, seen["killed_trial"]), 10, "the onset's echo")
            await first.kill()  # SIGKILL in the middle of the clip: nothing gets closed
            await page.wait_for_function("document.querySelector('main').innerText.includes('Reconnecting')")

            second = SessionCommand(argv)
            await second.start()
            seen["second_output"] = second.lines
            seen["same_participant_url"] = second.url("participant") == first.url("participant")
            async with ExperimenterSocket(second.url("experimenter")) as x:
                await until(lambda: x.state["participant_screens"] == 1, 20, "the page to reconnect")
                seen["page_kept"] = await page.evaluate("window.loadedBeforeTheRestart === true")
                seen["after_restart"] = {k: x.state[k] for k in ("status", "paused", "step", "clip")}
                await x.send(type="resume")
                await until(lambda: x.state["trial"] and x.state["trial"] != seen["killed_trial"], 30,
                            "the clip to start again")
                # The tab is closed in the middle of the clip and opened again.
                seen["resumed_trial"] = x.state["trial"]
                await page.close()
                await until(lambda: x.state["participant_screens"] == 0, 10, "the closed tab")
                page = await context.new_page()
                await page.goto(second.url("participant"))
                await until(lambda: x.state["trial"] not in (None, seen["resumed_trial"]), 30, "a third attempt")
                while x.state["status"] == "running":
                    await _answer_forms(page, x.state, seen["answered"])
                    await asyncio.sleep(0.05)
            seen["exit_code"] = await second.finished(30)

    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    return Study.open(db), seen


def _rows(study, sql, *args):
    return study.conn.execute(sql, args).fetchall()


def test_restarted_host_resumes_paused_at_the_clip_that_was_playing_and_the_page_reconnects(restarted):
    study, seen = restarted
    assert seen["same_participant_url"] and seen["page_kept"]
    (clip_order,), = _rows(study, "SELECT clip_order FROM study_runs")
    assert seen["after_restart"] == {"status": "running", "paused": True, "step": seen["killed_step"],
                                     "clip": json.loads(clip_order)[1]}
    assert any(line.startswith("resuming run") for line in seen["second_output"])
    assert seen["exit_code"] == 0


def test_interrupted_attempts_are_marked_and_the_clip_is_shown_again(restarted):
    study, seen = restarted
    (run, status, clip_order), = _rows(study, "SELECT id, status, clip_order FROM study_runs")
    assert status == "complete"
    first, second = [s for s, in _rows(study, "SELECT session_id FROM run_sessions ORDER BY session_id")]
    assert study.session(first)["status"] == "interrupted" and study.session(second)["status"] == "complete"
    clips = _rows(study, "SELECT id, session_id, clip_id, attempt, status, offset_s IS NOT NULL FROM trials "
                         "WHERE kind='clip' ORDER BY id")
    one, two = json.loads(clip_order)
    assert [c[1:5] for c in clips] == [(first, one, 1, "done"), (first, two, 1, "interrupted"),
                                      (second, two, 2, "interrupted"), (second, two, 3, "done")]
    assert clips[1][0] == seen["killed_trial"] and clips[2][0] == seen["resumed_trial"]
    # The killed attempt ends with the last sign of life of its recording, on that recording's timeline.
    (end_s,), = _rows(study, "SELECT offset_s FROM trials WHERE id=?", seen["killed_trial"])
    ppg = study.stream(first, P.PPG)
    assert end_s is not None and end_s <= (ppg.first_index + len(ppg.samples)) / ppg.rate_hz + 1.0
    assert study.sample_count(first, P.PPG) > 0 and study.sample_count(second, P.PPG) > 0


def test_every_event_is_stored_once_and_echoed_once(restarted):
    study, seen = restarted
    events = _rows(study, "SELECT id, kind, trial_id, echo_tick FROM session_events")
    kinds = Counter(kind for _, kind, _, _ in events)
    for kind, n in [("start", 1), ("baseline_onset", 1), ("clip_onset", 4), ("clip_offset", 2), ("rating", 2),
                    ("attention", 1), ("resume", 1), ("interrupted", 2), ("complete", 1)]:
        assert kinds[kind] == n, kind
    for kind in ("clip_onset", "clip_offset", "interrupted"):
        trials = [trial for _, k, trial, _ in events if k == kind]
        assert len(trials) == len(set(trials)), f"{kind} twice for one trial"
    assert {trial for _, k, trial, _ in events if k == "interrupted"} == {seen["killed_trial"], seen["resumed_trial"]}
    assert all(echo is not None for *_, echo in events)
    echoes = Counter(arg for arg, in _rows(study, "SELECT arg FROM events WHERE code=?", P.EV_MARK))
    assert echoes == Counter(event_id for event_id, *_ in events)


def test_both_clips_are_labelled_in_their_own_recordings(restarted):
    study, _ = restarted
    first, second = [s for s, in _rows(study, "SELECT session_id FROM run_sessions ORDER BY session_id")]
    assert [label for *_, label in study.annotations(first)] == ["rest", "pleasant"]
    assert [label for *_, label in study.annotations(second)] == ["pleasant"]

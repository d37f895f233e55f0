"""The session engine: one run's state machine, the watch it records, and both screens' messages.

Everything runs in one asyncio loop with the BLE collection. The participant screen reports
what it presented (with host times from its clock sync); the engine stores each step, sends
every event to the watch as a MARK and moves the run on. State lives in the database, so a
reload, a closed tab or a host restart resumes at the current step.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from watch import protocol as P

from ..client import WatchClient
from ..db import Study
from ..errors import CommandTimeout, WearsError
from ..protocol import Event, HeartRate, Packet, Status
from ..record import Recorder, new_recording
from ..scan import watch_filter
from .protocol import StudyProtocol
from .steps import TIMED, Step, build_steps
from .store import RunStore, file_sha256

PING_EVERY_S = 0.25  # on average; jittered so that some pings meet the watch just before its loop step
STATUS_EVERY_S = 10.0
CONNECT_S = 20.0  # a watch that cannot be reached at first is reported (then paired from the screen)
STOP_WAIT_S = 20.0  # how long the end of a recording waits for a watch that is away, to backfill it
_COMMAND_TIMEOUT_S = 5.0
# The code field of the MARK sent for each event kind (the watch echoes the argument, the id).
EVENT_CODES = {"start": 1, "baseline_onset": 2, "baseline_offset": 3, "clip_onset": 4, "clip_offset": 5,
               "rating": 6, "attention": 7, "washout_onset": 8, "washout_offset": 9, "marker": 10, "note": 11,
               "pause": 12, "resume": 13, "interrupted": 14, "abort": 15, "complete": 16}

Send = Callable[[dict], Any]


class SessionEngine:
    """Runs one study run. The web server hands it each screen's messages.

    Args:
        study: the study database.
        protocol: the parsed protocol file.
        store: the run (new or resumed).
        backend, scanner_backend: bleak backends (virtual watch) or None for real BLE.
        board: the watch's board name, stored with the device.
        reconnect_s: how long a watch that went away is tried again before the run pauses.
    """

    def __init__(self, study: Study, protocol: StudyProtocol, store: RunStore, *, backend: type | None = None,
                 scanner_backend: type | None = None, board: str = "", reconnect_s: float = 60.0) -> None:
        self.study, self.protocol, self.store = study, protocol, store
        self.backend, self.scanner_backend, self.board = backend, scanner_backend, board
        run = store.run()
        self.run = run
        self.steps = build_steps(protocol, run.clip_order)
        self.step = min(run.step, len(self.steps) - 1)
        self.status = run.status
        # A host restart finds the run where it was: whatever was playing is interrupted and
        # shown again once the experimenter resumes.
        self.paused = run.status == "running"
        # What a killed host left playing; its "interrupted" event goes into the next recording.
        self._abandoned = store.interrupt_abandoned()
        for session_id in store.sessions():  # a recording of a host that was killed
            if study.session(session_id)["status"] == "recording":
                study.end_session(session_id, "interrupted", "the host stopped without closing it")
        self.participants: dict[Any, Send] = {}
        self.experimenters: dict[Any, Send] = {}
        self.trial: int | None = None
        self.reconnect_s = reconnect_s
        self.recorder: Recorder | None = None
        self._recording: asyncio.Task | None = None
        self._stopping = False
        self.watch_info: dict = {"address": None, "connected": False, "state": None}
        self.heart_rates: list[HeartRate] = []
        self.watch_status: Status | None = None
        self.preflight_report: dict | None = None
        self.found: list[dict] = []
        self.log: list[dict] = []
        self.done = asyncio.Event()
        self._timer: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._marking: dict[int, asyncio.Task] = {}  # MARKs on their way, by event id
        self._clip_check: asyncio.Future | None = None
        self._view_shown_at = time.monotonic()

    # Helpers --------------------------------------------------------------------------------

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def current(self) -> Step:
        return self.steps[self.step]

    def say(self, text: str) -> None:
        self.log.append({"host_time": time.monotonic(), "text": text})
        del self.log[:-50]

    async def event(self, kind: str, host_time: float | None = None, *, trial_id: int | None = None,
                    text: str | None = None) -> int | None:
        """Store an event and send it to the watch as a MARK (argument: the event's id)."""
        if self.store.session_id is None:
            self.say(f"{kind}: no watch recording yet; not stored")
            return None
        event_id = self.store.add_event(kind, time.monotonic() if host_time is None else host_time,
                                        trial_id=trial_id, text=text)
        if self.watch is not None:
            self._send_mark(kind, event_id)
        return event_id

    def _send_mark(self, kind: str, event_id: int) -> None:
        """The event's MARK, in its own task; one the watch misses is sent again when it reconnects."""
        self._marking[event_id] = self._spawn(self._mark(EVENT_CODES.get(kind, 0), event_id))

    async def _mark(self, code: int, event_id: int) -> None:
        try:
            watch = self.watch
            if watch is not None:
                await watch.mark(code, event_id)
        except WearsError as e:
            self.say(f"MARK {event_id} not delivered yet: {e}")
        finally:
            self._marking.pop(event_id, None)

    # The watch ------------------------------------------------------------------------------

    @property
    def watch(self) -> WatchClient | None:
        """The watch's client while it is connected (None while it is away or being reconnected)."""
        recorder = self.recorder
        client = recorder.client if recorder is not None else None
        return client if client is not None and client.is_connected else None

    async def scan(self, timeout: float = 3.0) -> list[dict]:
        from bleak import BleakScanner

        found = await BleakScanner.discover(timeout=timeout, return_adv=True, **watch_filter(self.scanner_backend))
        self.found = [{"address": d.address, "name": a.local_name or d.name or "?", "rssi": a.rssi}
                      for d, a in found.values()]
        return self.found

    async def connect_watch(self, address: Any) -> None:
        """Record the watch into a new recording of this run, the way `wears record` does
        (`record.Recorder`): a watch lost later is reconnected with backoff and what it
        logged meanwhile is backfilled, while the run goes on. Returns once it streams."""
        if self.recorder is not None:
            raise WearsError(f"already recording {self.watch_info.get('address')}")
        name = getattr(address, "name", None) or next((f["name"] for f in self.found
                                                       if f["address"] == address), "")
        session_id = new_recording(self.study, address, self.run.participant, backend=self.backend,
                                   board=self.board, name=name)
        self.watch_info = {"address": getattr(address, "address", address), "name": name, "connected": False,
                           "state": "connecting", "session": session_id}
        self.study.set_provenance(session_id, "study_run", self.run.id)
        self.heart_rates.clear()
        connected: asyncio.Future = asyncio.get_running_loop().create_future()
        recorder = Recorder(self.study, session_id, address, backend=self.backend, reconnect_s=self.reconnect_s,
                            connect_s=CONNECT_S, ping_every_s=PING_EVERY_S, on_packet=self._packet_stored,
                            on_state=self._watch_state,
                            prepare=lambda client: self._on_connection(client, recorder, connected))
        self.recorder = recorder
        self._recording = recording = self._spawn(self._record(recorder, connected))
        await asyncio.wait([connected, recording], return_when=asyncio.FIRST_COMPLETED)
        if not connected.done():  # the first connection failed: nothing was recorded
            self.recorder = None
            self.study.discard_session(session_id)
            recording.result()  # raises why
        while recorder.stats.state in ("connecting", "reconnecting") and not recording.done():
            await asyncio.sleep(0.02)  # streams are being started
        if recording.done():
            recording.result()
        self.say(f"watch {self.watch_info['address']} connected; recording session {session_id}")
        await self.refresh()

    async def _on_connection(self, client: WatchClient, recorder: Recorder, connected: asyncio.Future) -> None:
        """Each connection, before the streams start: the first attaches the recording to the run;
        every one sends the MARKs the watch has not echoed yet (they were made while it was away)."""
        if not connected.done():
            self.store.attach_session(recorder.session_id)
            self.watch_info["address"] = client.address
            for trial_id in self._abandoned:
                await self.event("interrupted", trial_id=trial_id, text="the host stopped in the middle of it")
            self._abandoned = []
            connected.set_result(True)
        else:
            for event_id, kind in self.store.unechoed():
                if event_id not in self._marking:
                    self._send_mark(kind, event_id)
        try:
            self.watch_status = await client.status()
        except CommandTimeout:
            pass  # the next STATUS will tell

    async def _record(self, recorder: Recorder, connected: asyncio.Future) -> None:
        """The recording's task: runs until the engine stops it, or the watch stays away."""
        status_task = self._spawn(self._statuses(recorder))
        try:
            await recorder.run(lambda _stats: self._stopping)
        except WearsError as e:
            if self._stopping or not connected.done():
                raise  # stop_watch / connect_watch report it
            await self._watch_lost(recorder, e)
        finally:
            status_task.cancel()

    async def _statuses(self, recorder: Recorder) -> None:
        """The watch's battery and flash every STATUS_EVERY_S while it is connected."""
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            watch = self.watch
            if watch is not None:
                try:
                    self.watch_status = await watch.status()
                except WearsError:
                    pass  # away: the recorder reconnects it

    def _watch_state(self, state: str) -> None:
        """The recorder's state changed (recording, reconnecting, backfilling...): show it."""
        self.watch_info["state"] = state
        self.watch_info["connected"] = self.watch is not None
        if state in ("reconnecting", "backfilling") and self.status == "running":
            self.say(f"watch {state}; the run goes on")
        self._spawn(self.refresh(participants=False))

    def _packet_stored(self, _channel: str, packet: Packet) -> None:
        if isinstance(packet, HeartRate):
            self.heart_rates.append(packet)
            del self.heart_rates[:-20]
            self._spawn(self.refresh(participants=False))
        elif isinstance(packet, Status):
            self.watch_status = packet
        elif isinstance(packet, Event) and packet.code == P.EV_MARK:
            self.store.echo(packet.arg, packet.tick)

    async def _watch_lost(self, recorder: Recorder, error: WearsError) -> None:
        """The watch stayed away longer than `reconnect_s`: close the recording and pause the run."""
        self.say(f"watch: {error}")
        recorder.close("interrupted", "the watch stayed away during the run")
        self.store.place_on_timeline()
        self.recorder = None
        self.watch_info["connected"] = False
        if self.status == "running" and not self.paused:
            await self.pause(reason="the watch disconnected")
        self.say("the watch stayed away: connect it again, then resume")
        await self.refresh()

    async def stop_watch(self, status: str, note: str | None = None) -> None:
        """End the recording as `status`: the MARKs in flight are echoed, the streams stopped and
        every gap backfilled (waiting up to STOP_WAIT_S for a watch that is away)."""
        recorder, recording = self.recorder, self._recording
        if recorder is None or recording is None:
            return
        if self._marking:
            await asyncio.wait(list(self._marking.values()), timeout=_COMMAND_TIMEOUT_S)
        await self._echoes(recorder.session_id)
        self._stopping = True
        try:
            await asyncio.wait_for(asyncio.shield(recording), STOP_WAIT_S)
        except asyncio.TimeoutError:
            recording.cancel()
            note = (note + "; " if note else "") + "the watch was away when the recording ended"
        except (WearsError, asyncio.CancelledError):
            pass
        recorder.close(status, note)
        self.store.place_on_timeline()
        self.recorder = None
        self._stopping = False
        self.watch_info["connected"] = False

    async def _echoes(self, session_id: int, timeout: float = 5.0) -> None:
        """Wait (a little) for the watch to echo every MARK sent to it."""
        deadline = time.monotonic() + timeout
        while self.watch is not None and time.monotonic() < deadline:
            if not self.store.unechoed(session_id):
                return
            await asyncio.sleep(0.05)

    # Pre-flight -------------------------------------------------------------------------------

    async def preflight(self, clip_timeout: float = 20.0) -> dict:
        """Every clip exists and plays on the participant's screen; the watch is fit to record."""
        checks: list[dict] = []

        def check(name: str, ok: bool, detail: str) -> None:
            checks.append({"name": name, "ok": bool(ok), "detail": detail})

        stored = dict(self.study.conn.execute("SELECT clip_id, sha256 FROM stimuli WHERE run_id=?", (self.run.id,)))
        for clip_id in self.run.clip_order:
            clip = self.protocol.clips[clip_id]
            if not clip.file.is_file():
                check(f"clip {clip_id}", False, f"{clip.file} is missing")
            elif stored.get(clip_id) and file_sha256(clip.file) != stored[clip_id]:
                check(f"clip {clip_id}", False, f"{clip.file} changed since the run was set up")
            else:
                check(f"clip {clip_id}", True, f"{clip.file.name} present")
        if not self.participants:
            check("clips play", False, "open the participant screen first: it checks that every clip plays there")
        else:
            loop = asyncio.get_running_loop()
            self._clip_check = loop.create_future()
            await self._to_participants({"type": "check_clips", "clips": [
                {"id": c, "url": self.clip_url(c)} for c in self.run.clip_order]})
            try:
                results = await asyncio.wait_for(self._clip_check, clip_timeout)
            except asyncio.TimeoutError:
                results = []
                check("clips play", False, f"the participant screen did not answer in {clip_timeout:.0f} s")
            for r in results:
                clip = self.protocol.clips.get(r.get("id"))
                if clip is None:
                    continue
                ok = bool(r.get("ok"))
                duration = float(r.get("duration") or 0)
                detail = (f"plays, {duration:.1f} s" if ok else f"does not play: {r.get('error', '?')}")
                if ok and abs(duration - clip.duration_s) > 1.0:
                    ok, detail = False, f"lasts {duration:.1f} s, the protocol says {clip.duration_s:.1f} s"
                check(f"plays {clip.id}", ok, detail)
        pre = self.protocol.preflight
        watch = self.watch
        check("watch connected", watch is not None, self.watch_info.get("address") or "no watch connected")
        if watch is not None:
            try:
                self.watch_status = await watch.status()
            except WearsError as e:
                check("watch status", False, str(e))
            st = self.watch_status
            if st is not None:
                check("battery", st.battery >= pre.min_battery_pct, f"{st.battery}% (at least {pre.min_battery_pct}%)")
                check("flash free", st.flash_free >= pre.min_flash_free_kb * 1024,
                      f"{st.flash_free // 1024} kB (at least {pre.min_flash_free_kb} kB)")
            recent = self.heart_rates[-pre.quality_windows:]
            if len(recent) < pre.quality_windows:
                check("signal quality", False, f"{len(recent)} of {pre.quality_windows} heart-rate windows so far; "
                                               "wait for the watch to settle, then check again")
            else:
                quality = statistics.median(h.quality for h in recent)
                check("signal quality", quality >= pre.min_signal_quality,
                      f"median {quality:.0f}% over {len(recent)} windows (at least {pre.min_signal_quality}%)")
        self.preflight_report = {"ok": all(c["ok"] for c in checks), "checks": checks,
                                 "host_time": time.monotonic()}
        if self.store.session_id is not None:
            await self.event("note", text="preflight " + json.dumps(self.preflight_report))
        await self.refresh()
        return self.preflight_report

    # Experimenter's controls ----------------------------------------------------------------

    async def start(self, *, force: bool = False) -> None:
        if self.status != "ready":
            raise WearsError(f"the run is {self.status}; it can be started only once")
        if not force and not (self.preflight_report and self.preflight_report["ok"]):
            raise WearsError("run the pre-flight check first (it must pass)")
        if self.recorder is None:
            raise WearsError("connect the watch first")
        self.status = "running"
        self.store.set_status("running")
        await self.event("start")
        await self._goto(self.step + 1 if self.current.kind == "instructions" else self.step)

    async def pause(self, reason: str = "the experimenter paused") -> None:
        if self.status != "running" or self.paused:
            return
        self.paused = True
        await self._interrupt(reason)
        await self.event("pause", text=reason)
        await self.refresh()

    async def resume(self) -> None:
        if self.status != "running" or not self.paused:
            return
        if self.recorder is None:
            raise WearsError("connect the watch before resuming")
        self.paused = False
        await self.event("resume")
        await self._goto(self.step)

    async def abort(self, reason: str = "aborted by the experimenter") -> None:
        if self.status in ("complete", "aborted"):
            return
        await self._interrupt(reason)
        await self.event("abort", text=reason)
        self.status = "aborted"
        self.store.set_status("aborted", reason)
        await self.stop_watch("aborted", reason)
        self.store.write_labels(self.protocol)
        await self.refresh()
        self.done.set()

    async def marker(self, text: str | None = None) -> None:
        await self.event("marker", text=text or None)
        self.say(f"marker{': ' + text if text else ''}")
        await self.refresh(participants=False)

    async def note(self, text: str) -> None:
        if not text.strip():
            return
        await self.event("note", text=text.strip())
        self.say(f"note: {text.strip()}")
        await self.refresh(participants=False)

    # The run ----------------------------------------------------------------------------------

    async def _interrupt(self, why: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        interrupted = self.store.interrupt_running(time.monotonic())
        for trial_id in interrupted:
            await self.event("interrupted", trial_id=trial_id, text=why)
        self.trial = None

    async def _goto(self, step: int) -> None:
        self.step = step
        self.store.set_step(step)
        self.trial = None
        if self.current.kind == "end":
            await self._complete()
            return
        await self.refresh()

    async def _complete(self) -> None:
        self.status = "complete"
        await self.event("complete")
        self.store.set_status("complete")
        await self.stop_watch("complete")
        self.store.write_labels(self.protocol)
        await self.refresh()
        self.done.set()

    def _accepts(self, msg: dict, *kinds: str) -> bool:
        """A participant message counts only for the step now shown, while running."""
        return (self.status == "running" and not self.paused and msg.get("step") == self.step
                and self.current.kind in kinds)

    async def participant_message(self, msg: dict) -> dict | None:
        kind = msg.get("type")
        if kind == "sync":
            return {"type": "sync", "id": msg.get("id"), "host": time.monotonic()}
        if kind == "check_clips":
            if self._clip_check is not None and not self._clip_check.done():
                self._clip_check.set_result(list(msg.get("results", [])))
            return None
        host = _host_time(msg)
        step = self.current
        if kind == "shown" and self._accepts(msg, *TIMED) and self.trial is None:
            self.trial = self.store.begin_trial(self.step, step.kind, None, host)
            await self.event(f"{step.kind}_onset", host, trial_id=self.trial)
            self._timer = self._spawn(self._end_timed(self.step, self.trial, host + step.duration_s))
        elif kind == "onset" and self._accepts(msg, "clip") and self.trial is None:
            self.trial = self.store.begin_trial(self.step, "clip", step.clip_id, host, float(msg.get("media_s", 0)))
            await self.event("clip_onset", host, trial_id=self.trial, text=json.dumps(msg.get("detail", {})))
            await self.refresh(participants=False)
        elif kind == "offset" and self._accepts(msg, "clip") and self.trial is not None:
            self.store.end_trial(self.trial, host, "done")
            await self.event("clip_offset", host, trial_id=self.trial, text=json.dumps(msg.get("detail", {})))
            self.store.place_on_timeline()
            await self._goto(self.step + 1)
        elif kind == "rating" and self._accepts(msg, "rating"):
            values = msg.get("values")
            if not isinstance(values, dict) or set(values) != set(self.protocol.scales) or not all(
                    type(v) is int and 1 <= v <= self.protocol.points for v in values.values()):
                return {"type": "error", "text": "every scale needs one answer"}
            assert step.rates_step is not None  # a rating step names the clip step it rates (build_steps)
            trial_id = self.store.last_done_clip_trial(step.rates_step)
            for item, value in values.items():
                self.store.add_report(self.step, trial_id, item, value, host, response_ms=msg.get("response_ms"))
            await self.event("rating", host, trial_id=trial_id, text=json.dumps(values))
            self.say(f"{step.clip_id} rated {json.dumps(values)}")
            self.store.write_labels(self.protocol)
            await self._goto(self.step + 1)
        elif kind == "attention" and self._accepts(msg, "attention"):
            value = msg.get("value")
            if type(value) is not int or not 1 <= value <= self.protocol.points:
                return {"type": "error", "text": "choose an answer"}
            check = step.check
            assert check is not None  # an attention step carries its check (build_steps)
            self.store.add_report(self.step, None, "attention", value, host, expected=check.answer,
                                  response_ms=msg.get("response_ms"))
            await self.event("attention", host, text=json.dumps({"value": value, "expected": check.answer}))
            passed = "passed" if value == check.answer else f"FAILED (answered {value})"
            self.say(f"attention check {passed}")
            await self._goto(self.step + 1)
        return None

    async def _end_timed(self, step: int, trial_id: int, due_host: float) -> None:
        await asyncio.sleep(max(0.0, due_host - time.monotonic()))
        if self.step != step or self.trial != trial_id:
            return
        self._timer = None
        self.store.end_trial(trial_id, due_host, "done")
        await self.event(f"{self.current.kind}_offset", due_host, trial_id=trial_id)
        await self._goto(step + 1)

    async def participant_left(self) -> None:
        """The last participant screen closed (reload, closed tab): what was playing must restart."""
        if self.participants or self.status != "running" or self.paused:
            return
        if self.current.kind in ("clip", *TIMED) and self.trial is not None:
            await self._interrupt("the participant screen closed")
            await self.refresh()

    # Views --------------------------------------------------------------------------------------

    def clip_url(self, clip_id: str) -> str:
        return f"clip/{clip_id}"

    def participant_view(self) -> dict:
        step = self.current
        view: dict = {"type": "view", "step": step.index, "kind": step.kind, "language": self.run.language,
                      "status": self.status, "paused": self.paused, "steps": len(self.steps)}
        if self.status == "ready":
            view["kind"] = "instructions"
        elif self.status in ("complete", "aborted"):
            view["kind"] = "end"
        elif step.kind == "clip":
            assert step.clip_id is not None  # a clip step names its clip (build_steps)
            view.update(clip_url=self.clip_url(step.clip_id), clip_id=step.clip_id)
        elif step.kind in TIMED:
            view["duration_s"] = step.duration_s
        elif step.kind == "rating":
            view.update(scales=list(self.protocol.scales), points=self.protocol.points)
        elif step.kind == "attention":
            check = step.check
            assert check is not None  # an attention step carries its check (build_steps)
            view.update(points=self.protocol.points, answer_prompt=check.prompt.get(self.run.language),
                        answer=check.answer)
        return view

    def experimenter_view(self) -> dict:
        last = self.heart_rates[-1] if self.heart_rates else None
        st = self.watch_status
        stats = self.recorder.stats if self.recorder is not None else None
        step = self.current
        return {
            "type": "state", "run": self.run.id, "participant": self.run.participant, "language": self.run.language,
            "status": self.status, "paused": self.paused, "step": step.index, "steps": len(self.steps),
            "step_kind": step.kind, "clip": step.clip_id, "clip_order": self.run.clip_order,
            "participant_screens": len(self.participants), "trial": self.trial,
            "participant_path": f"/p/{self.run.participant_token}/",
            "watch": {**self.watch_info, "connected": self.watch is not None,
                      "heart_rate": last.bpm if last else None, "quality": last.quality if last else None,
                      "battery": st.battery if st else None, "flash_free_kb": st.flash_free // 1024 if st else None,
                      "samples": stats.samples.get(P.PPG, 0) if stats else 0,
                      "lost_records": stats.lost_records if stats else 0,
                      "pending_records": self.recorder.pending() if self.recorder else 0,
                      "backfilled": stats.backfilled if stats else 0, "reconnects": stats.reconnects if stats else 0},
            "found": self.found, "preflight": self.preflight_report, "log": self.log[-12:],
        }

    async def _to_participants(self, msg: dict) -> None:
        for send in list(self.participants.values()):
            await _safe(send, msg)

    async def refresh(self, *, participants: bool = True) -> None:
        """Send both screens the current state."""
        if participants:
            await self._to_participants(self.participant_view())
        state = self.experimenter_view()
        for send in list(self.experimenters.values()):
            await _safe(send, state)

    async def close(self) -> None:
        """The host is stopping: keep the run resumable, close the recording."""
        if self.status == "running":
            await self._interrupt("the host stopped")
        await self.stop_watch("interrupted", "the host stopped")
        for task in list(self._tasks):
            task.cancel()


def _host_time(msg: dict) -> float:
    """The host time the page computed (its clock sync), or now when it sent none."""
    value = msg.get("host")
    return float(value) if isinstance(value, (int, float)) else time.monotonic()


async def _safe(send: Send, msg: dict) -> None:
    try:
        await send(msg)
    except (ConnectionError, RuntimeError):
        pass  # a screen that is going away; it gets the state again when it reconnects

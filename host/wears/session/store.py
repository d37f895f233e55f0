"""A study run in the database (migration 3): the run, its stimuli, trials, self-reports, events.

A *run* is one participant going through one protocol; each host start of the run records
into its own `sessions` row (its own samples and clock pings), listed in `run_sessions`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass

from ..db import Study, _now, inserted_id
from ..errors import WearsError
from .protocol import StudyProtocol
from .timeline import SessionTimeline

_PARTICIPANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def check_participant_id(participant: str) -> str:
    """A pseudonymous id (letters, digits, '_' or '-', at most 32): never a name."""
    if not _PARTICIPANT_ID.match(participant or ""):
        raise WearsError(f"participant id {participant!r}: use a pseudonymous code such as P07 "
                         "(letters, digits, '_' or '-', at most 32); never a name")
    return participant


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Run:
    id: int
    participant: str
    language: str
    clip_order: list[str]
    step: int
    status: str
    participant_token: str
    order_seed: int


class RunStore:
    """Reads and writes one run's rows; every write commits (a killed host loses nothing said)."""

    def __init__(self, study: Study, run_id: int) -> None:
        self.study = study
        self.run_id = run_id
        self.session_id: int | None = None

    # Runs -----------------------------------------------------------------------------

    @classmethod
    def create(cls, study: Study, protocol: StudyProtocol, participant: str, language: str, *,
               seed: int | None = None, slot: int | None = None) -> "RunStore":
        """A new run: the order is drawn now and stored with its seed and the protocol's text."""
        check_participant_id(participant)
        conn = study.conn
        if seed is None:
            seed = protocol.order_seed if protocol.order_seed is not None else secrets.randbits(31)
        if protocol.order_method == "counterbalanced":
            if slot is None:  # the next row of the Latin square for this protocol
                slot = int(conn.execute("SELECT COUNT(*) FROM study_runs WHERE protocol_sha256=?",
                                        (protocol.sha256,)).fetchone()[0])
            seed = slot
        order = protocol.clip_order(language, seed=seed, slot=seed)
        conn.execute("INSERT OR IGNORE INTO participants VALUES (?, ?)", (participant, _now()))
        cur = conn.execute(
            "INSERT INTO study_runs(participant_id, protocol_name, protocol_toml, protocol_sha256, language, "
            "order_method, order_seed, clip_order, status, participant_token, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ready', ?, ?)",
            (participant, protocol.name, protocol.source, protocol.sha256, language, protocol.order_method, seed,
             json.dumps(order), secrets.token_urlsafe(16), _now()))
        run_id = inserted_id(cur)
        for clip_id in order:
            clip = protocol.clips[clip_id]
            sha = file_sha256(clip.file) if clip.file.is_file() else ""
            conn.execute("INSERT INTO stimuli VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (run_id, clip.id, str(clip.file), sha, clip.language, clip.valence, clip.arousal,
                          clip.duration_s))
        conn.commit()
        return cls(study, run_id)

    @staticmethod
    def unfinished(study: Study, participant: str) -> int | None:
        row = study.conn.execute("SELECT id FROM study_runs WHERE participant_id=? AND status IN ('ready', 'running') "
                                 "ORDER BY id DESC LIMIT 1", (participant,)).fetchone()
        return None if row is None else row[0]

    def run(self) -> Run:
        row = self.study.conn.execute(
            "SELECT id, participant_id, language, clip_order, step, status, participant_token, order_seed "
            "FROM study_runs WHERE id=?", (self.run_id,)).fetchone()
        if row is None:
            raise WearsError(f"no study run {self.run_id} in {self.study.path}")
        return Run(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], row[7])

    def protocol_source(self) -> str:
        return self.study.conn.execute("SELECT protocol_toml FROM study_runs WHERE id=?", (self.run_id,)).fetchone()[0]

    def set_step(self, step: int) -> None:
        self.study.conn.execute("UPDATE study_runs SET step=? WHERE id=?", (step, self.run_id))
        self.study.commit()

    def set_status(self, status: str, note: str | None = None) -> None:
        ended = _now() if status in ("complete", "aborted") else None
        self.study.conn.execute("UPDATE study_runs SET status=?, ended_at=COALESCE(?, ended_at), "
                                "note=COALESCE(?, note) WHERE id=?", (status, ended, note, self.run_id))
        self.study.commit()

    def attach_session(self, session_id: int) -> None:
        self.session_id = session_id
        self.study.conn.execute("INSERT INTO run_sessions VALUES (?, ?)", (session_id, self.run_id))
        self.study.commit()

    def sessions(self) -> list[int]:
        return [r[0] for r in self.study.conn.execute(
            "SELECT session_id FROM run_sessions WHERE run_id=? ORDER BY session_id", (self.run_id,))]

    def _session(self) -> int:
        if self.session_id is None:
            raise WearsError("the run has no recording attached")
        return self.session_id

    # Trials, reports, events ------------------------------------------------------------

    def begin_trial(self, step: int, kind: str, clip_id: str | None, host_time: float,
                    first_media_s: float | None = None) -> int:
        attempt = 1 + self.study.conn.execute("SELECT COUNT(*) FROM trials WHERE run_id=? AND step=?",
                                              (self.run_id, step)).fetchone()[0]
        cur = self.study.conn.execute(
            "INSERT INTO trials(run_id, session_id, step, kind, clip_id, attempt, status, onset_host, first_media_s) "
            "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
            (self.run_id, self._session(), step, kind, clip_id, attempt, host_time, first_media_s))
        self.study.commit()
        return inserted_id(cur)

    def end_trial(self, trial_id: int, host_time: float, status: str) -> None:
        self.study.conn.execute("UPDATE trials SET offset_host=?, status=? WHERE id=?", (host_time, status, trial_id))
        self.study.commit()

    def interrupt_running(self, host_time: float) -> list[int]:
        """Mark every running trial interrupted (a reload, closed tab, pause or abort) at `host_time`."""
        return self._interrupt("?", host_time)

    def interrupt_abandoned(self) -> list[int]:
        """Mark the trials a killed host left running interrupted, ending at the last sign of life of
        their recording: its last clock-sync answer (now, if it has none)."""
        return self._interrupt("(SELECT MAX(c.host_received) FROM clock_sync c WHERE c.session_id = "
                               "trials.session_id), ?", time.monotonic())

    def _interrupt(self, end_sql: str, host_time: float) -> list[int]:
        """Interrupt the running trials; their offset (unless set) is the first non-null of `end_sql`."""
        conn = self.study.conn
        ids = [r[0] for r in conn.execute("SELECT id FROM trials WHERE run_id=? AND status='running'", (self.run_id,))]
        conn.execute(f"UPDATE trials SET status='interrupted', offset_host=COALESCE(offset_host, {end_sql}) "
                     "WHERE run_id=? AND status='running'", (host_time, self.run_id))
        self.study.commit()
        return ids

    def last_done_clip_trial(self, step: int) -> int | None:
        row = self.study.conn.execute("SELECT id FROM trials WHERE run_id=? AND step=? AND status='done' "
                                      "ORDER BY id DESC LIMIT 1", (self.run_id, step)).fetchone()
        return None if row is None else row[0]

    def add_report(self, step: int, trial_id: int | None, item: str, value: int, host_time: float, *,
                   expected: int | None = None, response_ms: int | None = None) -> None:
        self.study.conn.execute("INSERT INTO self_reports VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (self.run_id, trial_id, step, item, value, expected, response_ms, host_time))

    def add_event(self, kind: str, host_time: float, *, trial_id: int | None = None, text: str | None = None) -> int:
        cur = self.study.conn.execute(
            "INSERT INTO session_events(run_id, session_id, trial_id, kind, host_time, text) VALUES (?, ?, ?, ?, ?, ?)",
            (self.run_id, self._session(), trial_id, kind, host_time, text))
        self.study.commit()
        return inserted_id(cur)

    def echo(self, event_id: int, tick: int) -> None:
        """The watch echoed the MARK of event `event_id` (EVENT marker, argument = the id)."""
        self.study.conn.execute("UPDATE session_events SET echo_tick=? WHERE id=? AND run_id=?",
                                (tick, event_id, self.run_id))

    def unechoed(self, session_id: int | None = None) -> list[tuple[int, str]]:
        """(id, kind) of the events of a recording (default: the current one) the watch has not echoed."""
        return self.study.conn.execute("SELECT id, kind FROM session_events WHERE session_id=? AND echo_tick IS NULL "
                                       "ORDER BY id", (session_id or self._session(),)).fetchall()

    # The samples' timeline and the labels -----------------------------------------------

    def place_on_timeline(self) -> None:
        """Put every trial and event of the run on its recording's PPG timeline, with all pings so far."""
        conn = self.study.conn
        for session_id in self.sessions():
            timeline = SessionTimeline(self.study, session_id)
            pings = timeline.pings()
            if timeline.tick0() is None or len(pings) == 0:
                continue
            for trial_id, onset, offset in conn.execute(
                    "SELECT id, onset_host, offset_host FROM trials WHERE session_id=?", (session_id,)).fetchall():
                conn.execute("UPDATE trials SET onset_s=?, offset_s=? WHERE id=?",
                             (None if onset is None else timeline.seconds(onset, pings),
                              None if offset is None else timeline.seconds(offset, pings), trial_id))
            for event_id, host_time in conn.execute("SELECT id, host_time FROM session_events WHERE session_id=?",
                                                    (session_id,)).fetchall():
                conn.execute("UPDATE session_events SET t_s=? WHERE id=?", (timeline.seconds(host_time, pings),
                                                                           event_id))
        self.study.commit()

    def write_labels(self, protocol: StudyProtocol) -> int:
        """Each rated clip interval -> an `annotations` row; the baseline -> 'rest'. Returns rows written.

        Rewrites the run's annotations from its trials, so calling it again is harmless.
        """
        self.place_on_timeline()
        conn = self.study.conn
        rows: dict[int, list[tuple[float, float, str]]] = {}
        for session_id, kind, onset_s, offset_s, valence in conn.execute(
                "SELECT t.session_id, t.kind, t.onset_s, t.offset_s, r.value FROM trials t "
                "LEFT JOIN self_reports r ON r.trial_id = t.id AND r.item = 'valence' "
                "WHERE t.run_id=? AND t.status='done' AND t.kind IN ('clip', 'baseline') ORDER BY t.id",
                (self.run_id,)).fetchall():
            if onset_s is None or offset_s is None:
                continue
            label = "rest" if kind == "baseline" else (None if valence is None else protocol.label_for(valence))
            if label:
                rows.setdefault(session_id, []).append((onset_s, offset_s, label))
        for session_id in self.sessions():
            conn.execute("DELETE FROM annotations WHERE session_id=?", (session_id,))
            if rows.get(session_id):
                self.study.add_annotations(session_id, rows[session_id])
        self.study.commit()
        return sum(len(r) for r in rows.values())

    def summary(self) -> dict:
        conn = self.study.conn
        run = self.run()
        trials = conn.execute("SELECT kind, status, COUNT(*) FROM trials WHERE run_id=? GROUP BY kind, status",
                              (self.run_id,)).fetchall()
        events = conn.execute("SELECT COUNT(*), SUM(echo_tick IS NULL) FROM session_events WHERE run_id=?",
                              (self.run_id,)).fetchone()
        return {"run": run.id, "participant": run.participant, "status": run.status, "sessions": self.sessions(),
                "trials": {f"{k}:{s}": n for k, s, n in trials}, "events": events[0] or 0,
                "events_not_echoed": int(events[1] or 0)}


"""The study database: one SQLite file per study (WAL), schema in docs/database.md.

Samples are stored as compact chunks exactly as the watch sent them (one row per SAMPLES
packet, keyed by stream and first sample index, so a duplicate packet is stored once).

Example:
    >>> study = Study.open(":memory:")
    >>> sid = study.new_session("P01", device=("VW:01", "WEARS-VW01", "esp32s3-wrist"))
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from watch import protocol as P

from .errors import WearsError

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE participants (
        id TEXT PRIMARY KEY,              -- pseudonymous id, never a name
        created_at TEXT NOT NULL
    );
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        name TEXT,
        board TEXT
    );
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        participant_id TEXT NOT NULL REFERENCES participants(id),
        device_id INTEGER REFERENCES devices(id),
        source TEXT NOT NULL,             -- 'ble', 'virtual', 'import'
        status TEXT NOT NULL,             -- 'recording', 'complete', 'interrupted', 'aborted'
        started_at TEXT NOT NULL,         -- host UTC, ISO 8601
        ended_at TEXT,
        note TEXT,
        bad_packets INTEGER NOT NULL DEFAULT 0,
        lost_packets INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE stream_info (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        stream INTEGER NOT NULL,          -- 1 ppg, 2 acc, 3 gyro (docs/protocol.md)
        channels INTEGER NOT NULL,
        rate_mhz INTEGER NOT NULL,
        unit REAL NOT NULL,               -- physical unit per LSB
        tick0 INTEGER NOT NULL,           -- device tick (ms) of sample index 0
        PRIMARY KEY (session_id, stream)
    );
    CREATE TABLE chunks (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        stream INTEGER NOT NULL,
        first_index INTEGER NOT NULL,
        count INTEGER NOT NULL,
        tick INTEGER NOT NULL,            -- device tick when the packet was made
        data BLOB NOT NULL,               -- the samples as the packet carried them
        PRIMARY KEY (session_id, stream, first_index)
    ) WITHOUT ROWID;
    CREATE TABLE heart_rate (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        tick INTEGER NOT NULL,
        window_end INTEGER NOT NULL,      -- PPG sample index
        bpm_x10 INTEGER NOT NULL,
        quality INTEGER NOT NULL,
        beats INTEGER NOT NULL
    );
    CREATE TABLE predictions (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        tick INTEGER NOT NULL,
        window_end INTEGER NOT NULL,      -- PPG sample index
        model_id INTEGER NOT NULL,
        flags INTEGER NOT NULL,
        label INTEGER NOT NULL,
        proba TEXT NOT NULL               -- JSON list of u8 (x/255)
    );
    CREATE TABLE events (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        tick INTEGER,                     -- device tick, when the watch stamped it
        source TEXT NOT NULL,             -- 'watch' or 'host'
        code INTEGER NOT NULL,
        arg INTEGER NOT NULL,
        text TEXT
    );
    CREATE TABLE annotations (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        start_s REAL NOT NULL,            -- seconds on the PPG sample timeline (index / rate)
        end_s REAL NOT NULL,
        label TEXT NOT NULL
    );
    CREATE TABLE clock_sync (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        host_sent REAL NOT NULL,          -- host clock (s, monotonic epoch of the session)
        host_received REAL NOT NULL,
        tick INTEGER NOT NULL             -- the watch's tick in its answer
    );
    CREATE TABLE provenance (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (session_id, key)
    );
    """,
    3: """
    CREATE TABLE study_runs (
        id INTEGER PRIMARY KEY,
        participant_id TEXT NOT NULL REFERENCES participants(id),
        protocol_name TEXT NOT NULL,
        protocol_toml TEXT NOT NULL,      -- the protocol file as it was run
        protocol_sha256 TEXT NOT NULL,
        language TEXT NOT NULL,           -- the participant's language ('en', 'hi')
        order_method TEXT NOT NULL,       -- 'random', 'counterbalanced', 'fixed'
        order_seed INTEGER NOT NULL,      -- seed of a random order (the slot of a counterbalanced one)
        clip_order TEXT NOT NULL,         -- JSON list of clip ids, as shown
        step INTEGER NOT NULL DEFAULT 0,  -- index of the current step of the run
        status TEXT NOT NULL,             -- 'ready', 'running', 'complete', 'aborted'
        participant_token TEXT NOT NULL,  -- the participant screen's per-session token
        created_at TEXT NOT NULL,
        ended_at TEXT,
        note TEXT
    );
    CREATE TABLE run_sessions (
        session_id INTEGER PRIMARY KEY REFERENCES sessions(id),
        run_id INTEGER NOT NULL REFERENCES study_runs(id)  -- one recording per host start of the run
    );
    CREATE TABLE stimuli (
        run_id INTEGER NOT NULL REFERENCES study_runs(id),
        clip_id TEXT NOT NULL,
        file TEXT NOT NULL,
        sha256 TEXT NOT NULL,             -- of the file as shown
        language TEXT NOT NULL,
        intended_valence REAL NOT NULL,
        intended_arousal REAL NOT NULL,
        duration_s REAL NOT NULL,
        PRIMARY KEY (run_id, clip_id)
    );
    CREATE TABLE trials (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES study_runs(id),
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        step INTEGER NOT NULL,
        kind TEXT NOT NULL,               -- 'baseline', 'clip', 'washout'
        clip_id TEXT,
        attempt INTEGER NOT NULL,         -- 1, then 2... after a reload, a closed tab or a pause
        status TEXT NOT NULL,             -- 'running', 'done', 'interrupted'
        onset_host REAL,                  -- host monotonic clock (s)
        offset_host REAL,
        onset_s REAL,                     -- PPG sample timeline (s, index / rate) of the session
        offset_s REAL,
        first_media_s REAL                -- media time of the first frame presented (0 unless frames dropped)
    );
    CREATE TABLE self_reports (
        run_id INTEGER NOT NULL REFERENCES study_runs(id),
        trial_id INTEGER REFERENCES trials(id),  -- the clip rated
        step INTEGER NOT NULL,
        item TEXT NOT NULL,               -- 'valence', 'arousal', 'dominance', 'attention'
        value INTEGER NOT NULL,
        expected INTEGER,                 -- the instructed answer of an attention check
        response_ms INTEGER,              -- from the form shown to the answer
        host_time REAL NOT NULL
    );
    CREATE TABLE session_events (
        id INTEGER PRIMARY KEY,           -- also the argument of the MARK sent to the watch
        run_id INTEGER NOT NULL REFERENCES study_runs(id),
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        trial_id INTEGER REFERENCES trials(id),
        kind TEXT NOT NULL,               -- docs/database.md lists them
        host_time REAL NOT NULL,
        t_s REAL,                         -- on the PPG sample timeline
        text TEXT,
        echo_tick INTEGER                 -- the watch's tick in its EVENT echo of the MARK
    );
    """,
}

# Migrations are applied in key order; a key is a schema version.
SCHEMA_VERSION = max(_MIGRATIONS)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class StreamData:
    """One stream of a session: samples in index order, with what it takes to time them."""

    stream: int
    first_index: int
    samples: np.ndarray  # (n, channels) integer array, contiguous from first_index
    rate_hz: float
    unit: float
    gaps: int  # missing samples inside the span (filled by nothing: the span is split there)


class Study:
    """A study database. Open with `Study.open(path)`; every write commits through `commit()`."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> "Study":
        path = str(path)
        try:
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            study = cls(conn, path)
            study._migrate()
        except sqlite3.DatabaseError as e:
            raise WearsError(f"{path} is not a WEARS study database: {e}") from e
        return study

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise WearsError(f"{self.path} has schema {version}; this wears knows up to {SCHEMA_VERSION}")
        for target in sorted(v for v in _MIGRATIONS if v > version):
            with self.conn:
                self.conn.executescript(_MIGRATIONS[target])
                self.conn.execute(f"PRAGMA user_version={target}")

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    def commit(self) -> None:
        self.conn.commit()

    # Sessions -----------------------------------------------------------------------

    def new_session(self, participant: str, *, device: tuple[str, str, str] | None = None,
                    source: str = "ble", note: str | None = None) -> int:
        """Create a session in state 'recording'; `device` is (address, name, board)."""
        self.conn.execute("INSERT OR IGNORE INTO participants VALUES (?, ?)", (participant, _now()))
        device_id = None
        if device:
            self.conn.execute("INSERT OR IGNORE INTO devices(address, name, board) VALUES (?, ?, ?)", device)
            device_id = self.conn.execute("SELECT id FROM devices WHERE address=?", (device[0],)).fetchone()[0]
        cur = self.conn.execute(
            "INSERT INTO sessions(participant_id, device_id, source, status, started_at, note) "
            "VALUES (?, ?, ?, 'recording', ?, ?)", (participant, device_id, source, _now(), note))
        self.conn.commit()
        return cur.lastrowid

    def end_session(self, session_id: int, status: str, note: str | None = None) -> None:
        self.conn.execute("UPDATE sessions SET status=?, ended_at=?, note=COALESCE(?, note) WHERE id=?",
                          (status, _now(), note, session_id))
        self.conn.commit()

    def sessions(self) -> list[dict]:
        cur = self.conn.execute(
            "SELECT s.id, s.participant_id, s.source, s.status, s.started_at, s.ended_at, s.note, "
            "d.address, d.name FROM sessions s LEFT JOIN devices d ON d.id = s.device_id ORDER BY s.id")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row)) for row in cur]

    def session(self, session_id: int) -> dict:
        for s in self.sessions():
            if s["id"] == session_id:
                return s
        raise WearsError(f"no session {session_id} in {self.path}")

    def set_provenance(self, session_id: int, key: str, value: object) -> None:
        self.conn.execute("INSERT OR REPLACE INTO provenance VALUES (?, ?, ?)",
                          (session_id, key, value if isinstance(value, str) else json.dumps(value)))

    def provenance(self, session_id: int) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM provenance WHERE session_id=?", (session_id,)))

    def count_packets(self, session_id: int, *, bad: int = 0, lost: int = 0) -> None:
        self.conn.execute("UPDATE sessions SET bad_packets = bad_packets + ?, lost_packets = lost_packets + ? "
                          "WHERE id=?", (bad, lost, session_id))

    # What the watch sends -------------------------------------------------------------

    def add_stream_info(self, session_id: int, stream: int, channels: int, rate_mhz: int, unit: float,
                        tick0: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO stream_info VALUES (?, ?, ?, ?, ?, ?)",
                          (session_id, stream, channels, rate_mhz, unit, tick0))

    def add_chunk(self, session_id: int, stream: int, first_index: int, count: int, tick: int,
                  data: bytes) -> bool:
        """Store one packet's samples; False if that chunk was stored already (a duplicate)."""
        cur = self.conn.execute("INSERT OR IGNORE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                                (session_id, stream, first_index, count, tick, data))
        return cur.rowcount == 1

    def add_heart_rate(self, session_id: int, tick: int, window_end: int, bpm_x10: int, quality: int,
                       beats: int) -> None:
        self.conn.execute("INSERT INTO heart_rate VALUES (?, ?, ?, ?, ?, ?)",
                          (session_id, tick, window_end, bpm_x10, quality, beats))

    def add_prediction(self, session_id: int, tick: int, window_end: int, model_id: int, flags: int,
                       label: int, proba: tuple[int, ...]) -> None:
        self.conn.execute("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (session_id, tick, window_end, model_id, flags, label, json.dumps(list(proba))))

    def add_event(self, session_id: int, code: int, arg: int, *, tick: int | None = None,
                  source: str = "watch", text: str | None = None) -> None:
        self.conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", (session_id, tick, source, code, arg, text))

    def add_clock_sync(self, session_id: int, host_sent: float, host_received: float, tick: int) -> None:
        self.conn.execute("INSERT INTO clock_sync VALUES (?, ?, ?, ?)", (session_id, host_sent, host_received, tick))

    def add_annotations(self, session_id: int, rows: list[tuple[float, float, str]]) -> None:
        self.conn.executemany("INSERT INTO annotations VALUES (?, ?, ?, ?)",
                              [(session_id, float(a), float(b), str(label)) for a, b, label in rows])
        self.conn.commit()

    # Reading back ---------------------------------------------------------------------

    def annotations(self, session_id: int) -> list[tuple[float, float, str]]:
        return list(self.conn.execute(
            "SELECT start_s, end_s, label FROM annotations WHERE session_id=? ORDER BY start_s", (session_id,)))

    def predictions(self, session_id: int) -> list[dict]:
        cur = self.conn.execute("SELECT tick, window_end, model_id, flags, label, proba FROM predictions "
                                "WHERE session_id=? ORDER BY window_end", (session_id,))
        return [dict(tick=t, window_end=w, model_id=m, flags=f, label=lab, proba=json.loads(p))
                for t, w, m, f, lab, p in cur]

    def sample_count(self, session_id: int, stream: int) -> int:
        return self.conn.execute("SELECT COALESCE(SUM(count), 0) FROM chunks WHERE session_id=? AND stream=?",
                                 (session_id, stream)).fetchone()[0]

    def stream(self, session_id: int, stream: int) -> StreamData:
        """The longest contiguous run of a stream's samples (a lost chunk splits the data)."""
        info = self.conn.execute("SELECT channels, rate_mhz, unit FROM stream_info WHERE session_id=? AND stream=?",
                                 (session_id, stream)).fetchone()
        if info is None:
            raise WearsError(f"session {session_id} has no {P.STREAM_NAMES.get(stream, stream)} stream")
        channels, rate_mhz, unit = info
        dtype = np.dtype("<u4") if P.SAMPLE_FORMATS[stream][1] == "I" else np.dtype("<i2")
        rows = self.conn.execute("SELECT first_index, count, data FROM chunks WHERE session_id=? AND stream=? "
                                 "ORDER BY first_index", (session_id, stream)).fetchall()
        if not rows:
            raise WearsError(f"session {session_id} has no {P.STREAM_NAMES[stream]} samples")
        runs: list[list[tuple[int, int, bytes]]] = [[rows[0]]]
        gaps = 0
        for row in rows[1:]:
            prev_first, prev_count, _ = runs[-1][-1]
            expected = prev_first + prev_count
            if row[0] == expected:
                runs[-1].append(row)
            elif row[0] > expected:
                gaps += row[0] - expected
                runs.append([row])
            # An overlapping chunk (re-sent with a different split) adds nothing new here.
        best = max(runs, key=lambda run: sum(r[1] for r in run))
        data = np.frombuffer(b"".join(r[2] for r in best), dtype=dtype).reshape(-1, channels)
        return StreamData(stream, best[0][0], data, rate_mhz / 1000, unit, gaps)

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
from typing import TYPE_CHECKING

import numpy as np

from watch import protocol as P

from .errors import WearsError

if TYPE_CHECKING:
    from .clock import ClockFit

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
    # Issue 4, lab-grade collection: a watch that reboots mid-session starts its ticks and
    # sample indices again, so what the watch stamped is keyed by its boot as well; the flash
    # log's records received, the backfill state and the clock fits of each boot.
    2: """
    CREATE TABLE chunks_v2 (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        stream INTEGER NOT NULL,
        first_index INTEGER NOT NULL,
        count INTEGER NOT NULL,
        tick INTEGER NOT NULL,
        data BLOB NOT NULL,
        boot INTEGER NOT NULL DEFAULT 0,  -- the watch's boot number (flash log), 0 if unknown
        PRIMARY KEY (session_id, boot, stream, first_index)
    ) WITHOUT ROWID;
    INSERT INTO chunks_v2 SELECT session_id, stream, first_index, count, tick, data, 0 FROM chunks;
    DROP TABLE chunks;
    ALTER TABLE chunks_v2 RENAME TO chunks;
    CREATE TABLE stream_info_v2 (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        stream INTEGER NOT NULL,
        channels INTEGER NOT NULL,
        rate_mhz INTEGER NOT NULL,
        unit REAL NOT NULL,
        tick0 INTEGER NOT NULL,
        boot INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (session_id, boot, stream)
    );
    INSERT INTO stream_info_v2 SELECT session_id, stream, channels, rate_mhz, unit, tick0, 0 FROM stream_info;
    DROP TABLE stream_info;
    ALTER TABLE stream_info_v2 RENAME TO stream_info;
    ALTER TABLE heart_rate ADD COLUMN boot INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE predictions ADD COLUMN boot INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN boot INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE clock_sync ADD COLUMN boot INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE log_records (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        lsn INTEGER NOT NULL,             -- flash log sequence number of a stream packet stored
        PRIMARY KEY (session_id, lsn)
    ) WITHOUT ROWID;
    CREATE TABLE log_lost (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        first_lsn INTEGER NOT NULL,       -- records [first_lsn, end_lsn) the watch no longer holds
        end_lsn INTEGER NOT NULL,
        PRIMARY KEY (session_id, first_lsn)
    );
    CREATE TABLE log_state (
        session_id INTEGER PRIMARY KEY REFERENCES sessions(id),
        start_lsn INTEGER NOT NULL,       -- the first record of the session
        end_lsn INTEGER NOT NULL,         -- after the last record the watch said it has
        acked_lsn INTEGER NOT NULL,       -- every record before it is stored and acknowledged
        boot INTEGER NOT NULL,            -- the watch's boot last seen
        overflow INTEGER NOT NULL DEFAULT 0,  -- records the watch evicted unacknowledged (its count)
        torn INTEGER NOT NULL DEFAULT 0,      -- torn segments the watch skipped at boot
        backfilled INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        reconnects INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE clock_fits (
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        boot INTEGER NOT NULL,
        origin_tick INTEGER NOT NULL,     -- host_time = offset_s + rate * (tick - origin_tick) / 1000
        offset_s REAL NOT NULL,
        rate REAL NOT NULL,
        n_pings INTEGER NOT NULL,
        n_used INTEGER NOT NULL,
        uncertainty_ms REAL NOT NULL,
        jitter_ms REAL NOT NULL,
        rtt_ms REAL NOT NULL,
        PRIMARY KEY (session_id, boot)
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


def inserted_id(cur: sqlite3.Cursor) -> int:
    """The id of the row the INSERT on `cur` made (sqlite3's lastrowid is None before any INSERT)."""
    assert cur.lastrowid is not None
    return cur.lastrowid


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
    boot: int = 0  # the watch boot the span comes from
    tick0: int = 0  # the device tick (ms) of sample index 0 in that boot


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
        return inserted_id(cur)

    def end_session(self, session_id: int, status: str, note: str | None = None) -> None:
        self.conn.execute("UPDATE sessions SET status=?, ended_at=?, note=COALESCE(?, note) WHERE id=?",
                          (status, _now(), note, session_id))
        self.conn.commit()

    def discard_session(self, session_id: int) -> None:
        """Remove a session that never received data (a watch that could not be reached)."""
        if self.conn.execute("SELECT 1 FROM chunks WHERE session_id=? LIMIT 1", (session_id,)).fetchone():
            raise WearsError(f"session {session_id} holds samples; it is kept")
        tables = [name for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                  if any(col[1] == "session_id" for col in self.conn.execute(f"PRAGMA table_info({name})"))]
        for name in tables:
            self.conn.execute(f"DELETE FROM {name} WHERE session_id=?", (session_id,))
        self.conn.execute("DELETE FROM sessions WHERE id=?", (session_id,))
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

    # Device ticks and sample indices start again when a watch reboots: `boot` (the watch's
    # boot number from its flash log) keeps the boots of one session apart.

    def add_stream_info(self, session_id: int, stream: int, channels: int, rate_mhz: int, unit: float,
                        tick0: int, *, boot: int = 0) -> None:
        self.conn.execute("INSERT OR REPLACE INTO stream_info(session_id, stream, channels, rate_mhz, unit, tick0, "
                          "boot) VALUES (?, ?, ?, ?, ?, ?, ?)", (session_id, stream, channels, rate_mhz, unit, tick0,
                                                                 boot))

    def add_chunk(self, session_id: int, stream: int, first_index: int, count: int, tick: int,
                  data: bytes, *, boot: int = 0) -> bool:
        """Store one packet's samples; False if that chunk was stored already (a duplicate)."""
        cur = self.conn.execute("INSERT OR IGNORE INTO chunks(session_id, stream, first_index, count, tick, data, "
                                "boot) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (session_id, stream, first_index, count, tick, data, boot))
        return cur.rowcount == 1

    def add_heart_rate(self, session_id: int, tick: int, window_end: int, bpm_x10: int, quality: int,
                       beats: int, *, boot: int = 0) -> None:
        self.conn.execute("INSERT INTO heart_rate(session_id, tick, window_end, bpm_x10, quality, beats, boot) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", (session_id, tick, window_end, bpm_x10, quality, beats, boot))

    def add_prediction(self, session_id: int, tick: int, window_end: int, model_id: int, flags: int,
                       label: int, proba: tuple[int, ...], *, boot: int = 0) -> None:
        self.conn.execute("INSERT INTO predictions(session_id, tick, window_end, model_id, flags, label, proba, boot) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (session_id, tick, window_end, model_id, flags, label, json.dumps(list(proba)), boot))

    def add_event(self, session_id: int, code: int, arg: int, *, tick: int | None = None,
                  source: str = "watch", text: str | None = None, boot: int = 0) -> None:
        self.conn.execute("INSERT INTO events(session_id, tick, source, code, arg, text, boot) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", (session_id, tick, source, code, arg, text, boot))

    def add_clock_sync(self, session_id: int, host_sent: float, host_received: float, tick: int, *,
                       boot: int = 0) -> None:
        self.conn.execute("INSERT INTO clock_sync(session_id, host_sent, host_received, tick, boot) "
                          "VALUES (?, ?, ?, ?, ?)", (session_id, host_sent, host_received, tick, boot))

    # The flash log: what was received, what is lost for good, where the session stands ----------

    def add_log_record(self, session_id: int, lsn: int) -> bool:
        """Note a stream packet of the flash log as stored; False if it was stored already."""
        return self.conn.execute("INSERT OR IGNORE INTO log_records VALUES (?, ?)", (session_id, lsn)).rowcount == 1

    def log_records(self, session_id: int) -> np.ndarray:
        """The lsns stored for the session, ascending."""
        rows = self.conn.execute("SELECT lsn FROM log_records WHERE session_id=? ORDER BY lsn", (session_id,))
        return np.array([r[0] for r in rows], dtype=np.int64)

    def add_log_lost(self, session_id: int, first_lsn: int, end_lsn: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO log_lost VALUES (?, ?, ?)", (session_id, first_lsn, end_lsn))

    def log_lost(self, session_id: int) -> list[tuple[int, int]]:
        return list(self.conn.execute("SELECT first_lsn, end_lsn FROM log_lost WHERE session_id=? ORDER BY first_lsn",
                                      (session_id,)))

    def set_log_state(self, session_id: int, **state: int) -> None:
        """Insert or update the session's row of `log_state` (columns as keywords)."""
        cols = ", ".join(state)
        marks = ", ".join("?" for _ in state)
        update = ", ".join(f"{c}=excluded.{c}" for c in state)
        self.conn.execute(f"INSERT INTO log_state(session_id, {cols}) VALUES (?, {marks}) "
                          f"ON CONFLICT(session_id) DO UPDATE SET {update}", (session_id, *state.values()))

    def log_state(self, session_id: int) -> dict | None:
        cur = self.conn.execute("SELECT * FROM log_state WHERE session_id=?", (session_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row))

    # Time --------------------------------------------------------------------------------------

    def clock_sync(self, session_id: int, boot: int) -> np.ndarray:
        """The raw pings of one boot: (n, 3) host_sent, host_received (s), tick (ms)."""
        rows = self.conn.execute("SELECT host_sent, host_received, tick FROM clock_sync WHERE session_id=? AND boot=? "
                                 "ORDER BY tick", (session_id, boot)).fetchall()
        return np.array(rows, dtype=np.float64).reshape(-1, 3)

    def boots(self, session_id: int) -> list[int]:
        """The watch boots a session has samples or pings from."""
        rows = self.conn.execute("SELECT boot FROM stream_info WHERE session_id=? UNION "
                                 "SELECT boot FROM clock_sync WHERE session_id=? ORDER BY boot",
                                 (session_id, session_id))
        return [r[0] for r in rows]

    def set_clock_fit(self, session_id: int, boot: int, fit: "ClockFit") -> None:
        self.conn.execute("INSERT OR REPLACE INTO clock_fits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (session_id, boot, fit.origin_tick, fit.offset_s, fit.rate, fit.n_pings, fit.n_used,
                           fit.uncertainty_ms, fit.jitter_ms, fit.rtt_ms))

    def clock_fits(self, session_id: int) -> dict[int, "ClockFit"]:
        from .clock import ClockFit

        rows = self.conn.execute("SELECT boot, origin_tick, offset_s, rate, n_pings, n_used, uncertainty_ms, jitter_ms, "
                                 "rtt_ms FROM clock_fits WHERE session_id=? ORDER BY boot", (session_id,))
        return {r[0]: ClockFit(*r[1:]) for r in rows}

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

    def chunk_keys(self, session_id: int, stream: int) -> list[tuple[int, int, int]]:
        """(boot, first_index, count) of every stored chunk of a stream, in order."""
        return list(self.conn.execute("SELECT boot, first_index, count FROM chunks WHERE session_id=? AND stream=? "
                                      "ORDER BY boot, first_index", (session_id, stream)))

    def sample_count(self, session_id: int, stream: int) -> int:
        return self.conn.execute("SELECT COALESCE(SUM(count), 0) FROM chunks WHERE session_id=? AND stream=?",
                                 (session_id, stream)).fetchone()[0]

    def first_boot(self, session_id: int) -> int:
        """The watch boot a session's PPG sample timeline (annotations, trials) belongs to: its first."""
        row = self.conn.execute("SELECT COALESCE((SELECT MIN(boot) FROM stream_info WHERE session_id=? AND stream=?), "
                                "(SELECT MIN(boot) FROM stream_info WHERE session_id=?), 0)",
                                (session_id, P.PPG, session_id)).fetchone()
        return row[0]

    def sample_boots(self, session_id: int, stream: int) -> list[int]:
        """The watch boots a stream of a session has stored samples from, in order."""
        return [b for (b,) in self.conn.execute("SELECT DISTINCT boot FROM chunks WHERE session_id=? AND stream=? "
                                                "ORDER BY boot", (session_id, stream))]

    def stream(self, session_id: int, stream: int, boot: int | None = None) -> StreamData:
        """The longest contiguous run of a stream's samples (a lost chunk splits the data) in one
        watch boot: by default the session's first, the boot its annotations are timed in. The
        streams read for one boot line up with each other; a later boot's samples are placed on
        the annotations' timeline through `wears.export_data.timing.SessionClock` (training does,
        `wears.train.session_windows`; every boot at once: `wears.export_data.read_stream`).
        Every run, not only the longest: `stream_runs`."""
        runs = self.stream_runs(session_id, stream, boot)
        return max(runs, key=lambda run: len(run.samples))

    def stream_runs(self, session_id: int, stream: int, boot: int | None = None) -> list[StreamData]:
        """Every contiguous run of a stream's samples in one watch boot (default: the session's
        first), in index order: samples the host never received (a range the watch's flash log
        evicted before it was backfilled) split the stream into runs. Each run's `gaps` is the
        number of missing samples inside the boot's whole span."""
        if not self.conn.execute("SELECT 1 FROM stream_info WHERE session_id=? AND stream=?",
                                 (session_id, stream)).fetchone():
            raise WearsError(f"session {session_id} has no {P.STREAM_NAMES.get(stream, stream)} stream")
        dtype = np.dtype("<u4") if P.SAMPLE_FORMATS[stream][1] == "I" else np.dtype("<i2")
        first = self.first_boot(session_id)
        boot = first if boot is None else boot
        rows = self.conn.execute("SELECT boot, first_index, count, data FROM chunks WHERE session_id=? AND stream=? "
                                 "AND boot=? ORDER BY first_index", (session_id, stream, boot)).fetchall()
        if not rows:
            raise WearsError(f"session {session_id} has no {P.STREAM_NAMES[stream]} samples"
                             + (f" in its {'first ' if boot == first else ''}boot ({boot})" if boot else ""))
        runs: list[list[tuple[int, int, int, bytes]]] = [[rows[0]]]
        gaps = 0
        for row in rows[1:]:
            _, prev_first, prev_count, _ = runs[-1][-1]
            expected = prev_first + prev_count
            if row[1] == expected:
                runs[-1].append(row)
            elif row[1] > expected:
                gaps += row[1] - expected
                runs.append([row])
            # An overlapping chunk (re-sent with a different split) adds nothing new here.
        channels, rate_mhz, unit, tick0 = self.conn.execute(
            "SELECT channels, rate_mhz, unit, tick0 FROM stream_info WHERE session_id=? AND stream=? "
            "ORDER BY boot = ? DESC", (session_id, stream, boot)).fetchone()
        return [StreamData(stream, run[0][1], np.frombuffer(b"".join(r[3] for r in run), dtype=dtype)
                           .reshape(-1, channels), rate_mhz / 1000, unit, gaps, boot, tick0) for run in runs]

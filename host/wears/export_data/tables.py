"""A session's data as tables on the watch's timeline, written as CSV or Parquet per stream.

Every row is timed from the device: `device_time_s` is the watch's clock (seconds since its
boot) when the sample was taken, `tick0 + index / rate` (docs/protocol.md); `host_time_s`
is the same moment on the host's monotonic clock (`timing.host_clock`), present when the
session has clock-sync data. Samples keep their index, so a gap shows as a jump in `index`;
values are in physical units, named in the column (`ir_counts`, `x_g`, `x_dps`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from watch import protocol as P

from ..db import Study
from ..errors import WearsError
from ..train import CLASS_NAMES
from .timing import HostClock, host_clock

logger = logging.getLogger(__name__)

UNITS = {P.PPG: ("counts", "counts"), P.ACC: ("g", "g"), P.GYRO: ("deg/s", "dps")}
"""Per stream: the unit of its values (as BIDS writes it) and the column-name suffix."""
EVENT_NAMES = {value: name[3:].lower() for name, value in vars(P).items() if name.startswith("EV_")}
FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class StreamTable:
    """Every stored sample of one stream of a session, in index order, each exactly once."""

    session_id: int
    stream: int
    rate_hz: float
    unit: float
    tick0: int
    index: np.ndarray  # (n,) int64 sample indices, increasing; a jump is a gap
    raw: np.ndarray  # (n, channels) the samples as the watch sent them

    @property
    def name(self) -> str:
        return P.STREAM_NAMES.get(self.stream, f"stream{self.stream}")

    @property
    def channels(self) -> tuple[str, ...]:
        return P.CHANNELS.get(self.stream, tuple(f"ch{i}" for i in range(self.raw.shape[1])))

    @property
    def units(self) -> str:
        return UNITS.get(self.stream, ("", ""))[0]

    @property
    def missing(self) -> int:
        """Samples missing between the first and the last one stored."""
        return int(self.index[-1] - self.index[0] + 1 - len(self.index)) if len(self.index) else 0

    def device_ms(self, index: np.ndarray | None = None) -> np.ndarray:
        """Device time in ms of the given sample indices (default: every stored sample)."""
        index = self.index if index is None else index
        return self.tick0 + 1000.0 * index / self.rate_hz

    def values(self) -> np.ndarray:
        """Physical values: counts for PPG (integers), the stream's unit per LSB applied otherwise."""
        if self.stream == P.PPG:
            return self.raw.astype(np.int64)
        return self.raw.astype(np.float64) * self.unit

    def frame(self, clock: HostClock | None = None) -> pd.DataFrame:
        """The table: index, device_time_s, [host_time_s], one column per channel."""
        ms = self.device_ms()
        columns: dict[str, np.ndarray] = {"index": self.index, "device_time_s": ms / 1000}
        if clock is not None:
            columns["host_time_s"] = clock(ms)
        suffix = UNITS.get(self.stream, ("", "value"))[1]
        values = self.values()
        for i, channel in enumerate(self.channels):
            columns[f"{channel}_{suffix}"] = values[:, i]
        return pd.DataFrame(columns)


def read_stream(study: Study, session_id: int, stream: int) -> StreamTable:
    """All stored samples of a stream; a chunk re-sent with another split adds nothing twice."""
    info = study.conn.execute("SELECT channels, rate_mhz, unit, tick0 FROM stream_info WHERE session_id=? AND stream=?",
                              (session_id, stream)).fetchone()
    if info is None:
        raise WearsError(f"session {session_id} has no {P.STREAM_NAMES.get(stream, stream)} stream")
    channels, rate_mhz, unit, tick0 = info
    if rate_mhz <= 0:
        raise WearsError(f"session {session_id}: stream {stream} has no sampling rate")
    boots = [b for (b,) in study.conn.execute("SELECT DISTINCT boot FROM chunks WHERE session_id=? AND stream=?",
                                              (session_id, stream))]
    if len(boots) > 1:  # indices and ticks start again at a reboot: one table would mix two timelines
        raise WearsError(f"session {session_id}: the watch rebooted during it (boots {sorted(boots)}); exporting a "
                         "session across reboots is not supported yet")
    dtype = np.dtype("<u4") if P.SAMPLE_FORMATS[stream][1] == "I" else np.dtype("<i2")
    rows = study.conn.execute("SELECT first_index, count, data FROM chunks WHERE session_id=? AND stream=? "
                              "ORDER BY first_index", (session_id, stream)).fetchall()
    if not rows:
        index, raw = np.zeros(0, np.int64), np.zeros((0, channels), dtype)
    else:
        raw = np.frombuffer(b"".join(r[2] for r in rows), dtype=dtype).reshape(-1, channels)
        index = np.concatenate([np.arange(first, first + count, dtype=np.int64) for first, count, _ in rows])
        index, keep = np.unique(index, return_index=True)  # sorted, first copy of each index
        raw = raw[keep]
    return StreamTable(session_id, stream, rate_mhz / 1000, unit, tick0, index, raw)


def streams_of(study: Study, session_id: int) -> list[int]:
    """The session's sample streams this version can read (docs/protocol.md); others are logged."""
    every = [s for (s,) in study.conn.execute("SELECT stream FROM stream_info WHERE session_id=? ORDER BY stream",
                                              (session_id,))]
    unknown = [s for s in every if s not in P.SAMPLE_FORMATS]
    if unknown:
        logger.warning("session %d: stream(s) %s have no sample layout in this version and are not exported",
                       session_id, unknown)
    return [s for s in every if s in P.SAMPLE_FORMATS]


def _ppg_timeline(study: Study, session_id: int) -> tuple[float, float] | None:
    """(tick0 ms, rate Hz) of the PPG stream: window ends and annotations are on its sample timeline."""
    row = study.conn.execute("SELECT tick0, rate_mhz FROM stream_info WHERE session_id=? AND stream=?",
                             (session_id, P.PPG)).fetchone()
    return (row[0], row[1] / 1000) if row and row[1] > 0 else None


def event_rows(study: Study, session_id: int) -> list[dict]:
    """Annotations, watch events and on-device predictions as rows with `device_ms` (None when
    the event has no place on the watch's timeline), `duration_s`, `trial_type`, `value`,
    `source`, in time order (untimed last)."""
    rows: list[dict] = []
    ppg = _ppg_timeline(study, session_id)
    if ppg:
        tick0, rate = ppg
        for start, end, label in study.annotations(session_id):
            rows.append({"device_ms": tick0 + 1000 * start, "duration_s": end - start, "trial_type": label,
                         "value": "", "source": "annotation"})
        for p in study.predictions(session_id):
            label = CLASS_NAMES[p["label"]] if p["label"] < len(CLASS_NAMES) else str(p["label"])
            rows.append({"device_ms": tick0 + 1000 * p["window_end"] / rate, "duration_s": 0.0,
                         "trial_type": "prediction", "value": label, "source": "watch",
                         "proba": json.dumps([round(x / 255, 3) for x in p["proba"]]),
                         "low_quality": bool(p["flags"] & P.FLAG_LOW_QUALITY)})
    for tick, source, code, arg, text in study.conn.execute(
            "SELECT tick, source, code, arg, text FROM events WHERE session_id=? ORDER BY rowid", (session_id,)):
        rows.append({"device_ms": tick, "duration_s": 0.0,
                     "trial_type": EVENT_NAMES.get(code, f"event{code}") if source == "watch" else "host",
                     "value": str(arg) if source == "watch" else (text or ""), "source": source})
    rows.sort(key=lambda r: (r["device_ms"] is None, r["device_ms"] or 0))
    return rows


def session_tables(study: Study, session_id: int) -> dict[str, pd.DataFrame]:
    """Every table of a session: one per stream, then heart_rate, predictions and events."""
    clock = host_clock(study, session_id)
    tables = {}
    for stream in streams_of(study, session_id):
        tables[P.STREAM_NAMES.get(stream, f"stream{stream}")] = read_stream(study, session_id, stream).frame(clock)
    ppg = _ppg_timeline(study, session_id)

    def timed(df: pd.DataFrame, ms: pd.Series) -> pd.DataFrame:
        df.insert(0, "device_time_s", ms / 1000)
        if clock is not None:
            df.insert(1, "host_time_s", clock(ms.to_numpy(dtype=float)) if len(ms) else [])
        return df

    if ppg:
        tick0, rate = ppg
        hr = pd.read_sql_query("SELECT window_end, bpm_x10, quality, beats FROM heart_rate WHERE session_id=? "
                               "ORDER BY window_end", study.conn, params=(session_id,))
        hr.insert(1, "bpm", hr.pop("bpm_x10") / 10)
        tables["heart_rate"] = timed(hr, tick0 + 1000 * hr["window_end"] / rate)
        pred = pd.DataFrame(study.predictions(session_id),
                            columns=["tick", "window_end", "model_id", "flags", "label", "proba"])
        pred["label_name"] = [CLASS_NAMES[x] if x < len(CLASS_NAMES) else str(x) for x in pred["label"]]
        pred["proba"] = [json.dumps([round(x / 255, 3) for x in p]) for p in pred["proba"]]
        tables["predictions"] = timed(pred.drop(columns="tick"), tick0 + 1000 * pred["window_end"] / rate)
    events = pd.DataFrame(event_rows(study, session_id),
                          columns=["device_ms", "duration_s", "trial_type", "value", "source"])
    ms = events.pop("device_ms").astype(float)
    tables["events"] = timed(events, ms)
    return tables


def select_sessions(study: Study, sessions: list[int] | None) -> list[dict]:
    every = study.sessions()
    if sessions is None:
        return every
    known = {s["id"]: s for s in every}
    missing = [s for s in sessions if s not in known]
    if missing:
        raise WearsError(f"no session {', '.join(map(str, missing))} in {study.path}")
    return [known[s] for s in sessions]


def export_tables(study: Study, out: str | Path, *, fmt: str = "csv", sessions: list[int] | None = None) -> list[Path]:
    """Write every table of the sessions (default: all) as `session-<id>_<participant>_<table>.<fmt>`.

    Returns the files written. Parquet files carry the session, stream rate and units as
    key-value metadata.
    """
    if fmt not in FORMATS:
        raise WearsError(f"table format is one of {', '.join(FORMATS)}, not {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for session in select_sessions(study, sessions):
        sid = session["id"]
        for name, df in session_tables(study, sid).items():
            path = out / f"session-{sid}_{_safe(session['participant_id'])}_{name}.{fmt}"
            if fmt == "csv":
                df.to_csv(path, index=False, na_rep="", float_format="%.9g")
            else:
                _write_parquet(df, path, {"session": sid, "participant": session["participant_id"], "table": name,
                                          "started_at": session["started_at"]})
            written.append(path)
    return written


def _write_parquet(df: pd.DataFrame, path: Path, meta: dict) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow is a dependency
        raise WearsError("Parquet needs pyarrow: pip install pyarrow") from e
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"wears": json.dumps(meta).encode()})
    pq.write_table(table, path)


def _safe(text: str) -> str:
    """A participant id fit for a file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text)) or "unknown"

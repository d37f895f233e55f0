"""A session's data as tables on the watch's timeline, written as CSV or Parquet per stream.

Every row is timed from the device: `device_time_s` is the watch's clock (seconds since its
boot) when the sample was taken, `tick0 + index / rate` (docs/protocol.md); `host_time_s`
is the same moment on the host's monotonic clock (`timing.SessionClock`), present when the
session has clock-sync data. `boot` is the watch boot the row comes from: a watch that reboots
during a session starts its clock and its sample indices again, and each boot is timed by its
own clock fit. Rows are in time order (boot by boot, the order they were taken in), each
sample once; within a boot a gap shows as a jump in `index`. Values are in physical units,
named in the column (`ir_counts`, `x_g`, `x_dps`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import pandas as pd

from watch import protocol as P

from ..db import Study
from ..errors import WearsError
from ..train import CLASS_NAMES
from .timing import SessionClock

logger = logging.getLogger(__name__)

UNITS = {P.PPG: ("counts", "counts"), P.ACC: ("g", "g"), P.GYRO: ("deg/s", "dps")}
"""Per stream: the unit of its values (as BIDS writes it) and the column-name suffix."""
EVENT_NAMES = {value: name[3:].lower() for name, value in vars(P).items() if name.startswith("EV_")}
FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class StreamTable:
    """Every stored sample of one stream of a session, in time order, each exactly once."""

    session_id: int
    stream: int
    rate_hz: float
    unit: float
    tick0: dict[int, int]  # per boot: device tick (ms) of its sample index 0
    boot: np.ndarray  # (n,) the watch boot of each sample, non-decreasing
    index: np.ndarray  # (n,) int64 sample indices, increasing within a boot; a jump is a gap
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
    def boots(self) -> list[int]:
        return [int(b) for b in np.unique(self.boot)]

    @property
    def missing(self) -> int:
        """Samples missing between the first and the last one stored of each boot."""
        return sum(int(ix[-1] - ix[0] + 1 - len(ix)) for ix in (self.index[self.boot == b] for b in self.boots))

    def device_ms(self) -> np.ndarray:
        """Each sample's device time in ms, on its own boot's clock."""
        tick0 = np.array([self.tick0[int(b)] for b in self.boot], dtype=np.float64)
        return tick0 + 1000.0 * self.index / self.rate_hz

    def values(self) -> np.ndarray:
        """Physical values: counts for PPG (integers), the stream's unit per LSB applied otherwise."""
        if self.stream == P.PPG:
            return self.raw.astype(np.int64)
        return self.raw.astype(np.float64) * self.unit

    def frame(self, clock: SessionClock | None = None) -> pd.DataFrame:
        """The table: boot, index, device_time_s, [host_time_s], one column per channel."""
        ms = self.device_ms()
        columns: dict[str, np.ndarray] = {"boot": self.boot, "index": self.index, "device_time_s": ms / 1000}
        host = clock.host(self.boot, ms) if clock is not None else None
        if host is not None:
            columns["host_time_s"] = host
        suffix = UNITS.get(self.stream, ("", "value"))[1]
        values = self.values()
        for i, channel in enumerate(self.channels):
            columns[f"{channel}_{suffix}"] = values[:, i]
        return pd.DataFrame(columns)


def read_stream(study: Study, session_id: int, stream: int) -> StreamTable:
    """All stored samples of a stream, boot by boot; a chunk re-sent with another split adds nothing twice."""
    infos = study.conn.execute("SELECT boot, channels, rate_mhz, unit, tick0 FROM stream_info WHERE session_id=? "
                               "AND stream=? ORDER BY boot", (session_id, stream)).fetchall()
    if not infos:
        raise WearsError(f"session {session_id} has no {P.STREAM_NAMES.get(stream, stream)} stream")
    _, channels, rate_mhz, unit, _ = infos[0]
    if rate_mhz <= 0:
        raise WearsError(f"session {session_id}: stream {stream} has no sampling rate")
    if any((c, r, u) != (channels, rate_mhz, unit) for _, c, r, u, _ in infos):
        raise WearsError(f"session {session_id}: stream {stream} changed its layout or rate at a reboot")
    tick0 = {boot: t0 for boot, *_, t0 in infos}
    dtype = np.dtype("<u4") if P.SAMPLE_FORMATS[stream][1] == "I" else np.dtype("<i2")
    rows = study.conn.execute("SELECT boot, first_index, count, data FROM chunks WHERE session_id=? AND stream=? "
                              "ORDER BY boot, first_index", (session_id, stream)).fetchall()
    unknown = sorted({r[0] for r in rows} - set(tick0))
    if unknown:
        raise WearsError(f"session {session_id}: samples of boot(s) {unknown} came without their stream info")
    if not rows:
        boot, index, raw = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, channels), dtype)
    else:
        raw = np.frombuffer(b"".join(r[3] for r in rows), dtype=dtype).reshape(-1, channels)
        boot = np.concatenate([np.full(count, b, dtype=np.int64) for b, _, count, _ in rows])
        index = np.concatenate([np.arange(first, first + count, dtype=np.int64) for _, first, count, _ in rows])
        keys = np.stack([boot, index], axis=1)
        _, keep = np.unique(keys, axis=0, return_index=True)  # sorted by (boot, index), first copy of each
        boot, index, raw = boot[keep], index[keep], raw[keep]
    return StreamTable(session_id, stream, rate_mhz / 1000, unit, tick0, boot, index, raw)


def streams_of(study: Study, session_id: int) -> list[int]:
    """The session's sample streams this version can read (docs/protocol.md); others are logged."""
    every = [s for (s,) in study.conn.execute("SELECT stream FROM stream_info WHERE session_id=? ORDER BY stream",
                                              (session_id,))]
    unknown = [s for s in every if s not in P.SAMPLE_FORMATS]
    if unknown:
        logger.warning("session %d: stream(s) %s have no sample layout in this version and are not exported",
                       session_id, unknown)
    return [s for s in every if s in P.SAMPLE_FORMATS]


def _ppg_timelines(study: Study, session_id: int) -> dict[int, tuple[float, float]]:
    """Per boot, (tick0 ms, rate Hz) of the PPG stream: window ends are on its sample timeline."""
    return {boot: (tick0, rate_mhz / 1000) for boot, tick0, rate_mhz in study.conn.execute(
        "SELECT boot, tick0, rate_mhz FROM stream_info WHERE session_id=? AND stream=? AND rate_mhz > 0 ORDER BY boot",
        (session_id, P.PPG))}


class _PredictionRow(Protocol):
    """A row of `_windows(..., "predictions", ...)` as `itertuples` gives it."""

    boot: int
    device_ms: float
    flags: int
    label: int
    proba: str


def _windows(study: Study, session_id: int, table: str, columns: str) -> pd.DataFrame:
    """Rows of `heart_rate` or `predictions` with the device ms of their window's end, on their boot's clock."""
    df = pd.read_sql_query(f"SELECT boot, window_end, {columns} FROM {table} WHERE session_id=? "
                           "ORDER BY boot, window_end", study.conn, params=[session_id])
    ppg = _ppg_timelines(study, session_id)
    df = df.loc[df["boot"].isin(list(ppg))].reset_index(drop=True)
    df.insert(0, "device_ms", [ppg[b][0] + 1000 * w / ppg[b][1] for b, w in zip(df["boot"], df["window_end"])])
    return df


def event_rows(study: Study, session_id: int) -> list[dict]:
    """Annotations, watch events and on-device predictions as rows with `boot`, `device_ms` (on
    that boot's clock; None when the event has no place on the watch's timeline), `duration_s`,
    `trial_type`, `value`, `source`, in time order (untimed last). Annotations are on the PPG
    sample timeline of the session's first boot."""
    rows: list[dict] = []
    ppg = _ppg_timelines(study, session_id)
    if ppg:
        first = min(ppg)
        tick0, _ = ppg[first]
        for start, end, label in study.annotations(session_id):
            rows.append({"boot": first, "device_ms": tick0 + 1000 * start, "duration_s": end - start,
                         "trial_type": label, "value": "", "source": "annotation"})
        rows_of = _windows(study, session_id, "predictions", "flags, label, proba").itertuples()
        for p in cast("Iterable[_PredictionRow]", rows_of):  # pandas types its named tuples as plain tuples
            label = CLASS_NAMES[p.label] if p.label < len(CLASS_NAMES) else str(p.label)
            rows.append({"boot": p.boot, "device_ms": p.device_ms, "duration_s": 0.0,
                         "trial_type": "prediction", "value": label, "source": "watch",
                         "proba": json.dumps([round(x / 255, 3) for x in json.loads(p.proba)]),
                         "low_quality": bool(p.flags & P.FLAG_LOW_QUALITY)})
    for boot, tick, source, code, arg, text in study.conn.execute(
            "SELECT boot, tick, source, code, arg, text FROM events WHERE session_id=? ORDER BY rowid", (session_id,)):
        rows.append({"boot": boot, "device_ms": tick, "duration_s": 0.0,
                     "trial_type": EVENT_NAMES.get(code, f"event{code}") if source == "watch" else "host",
                     "value": str(arg) if source == "watch" else (text or ""), "source": source})
    rows.sort(key=lambda r: (r["device_ms"] is None, r["boot"], r["device_ms"] or 0))  # boots follow each other
    return rows


def session_tables(study: Study, session_id: int) -> dict[str, pd.DataFrame]:
    """Every table of a session: one per stream, then heart_rate, predictions and events."""
    clock = SessionClock(study, session_id)
    tables = {}
    for stream in streams_of(study, session_id):
        tables[P.STREAM_NAMES.get(stream, f"stream{stream}")] = read_stream(study, session_id, stream).frame(clock)

    def timed(df: pd.DataFrame) -> pd.DataFrame:
        """device_ms -> boot, device_time_s, [host_time_s] in front."""
        ms = df.pop("device_ms").to_numpy(dtype=float)
        boots = df.pop("boot").to_numpy()
        df.insert(0, "boot", boots)
        df.insert(1, "device_time_s", ms / 1000)
        host = clock.host(boots, ms)
        if host is not None:
            df.insert(2, "host_time_s", host)
        return df

    if _ppg_timelines(study, session_id):
        hr = _windows(study, session_id, "heart_rate", "bpm_x10, quality, beats")
        hr.insert(3, "bpm", hr.pop("bpm_x10") / 10)
        tables["heart_rate"] = timed(hr)
        pred = _windows(study, session_id, "predictions", "model_id, flags, label, proba")
        pred["label_name"] = [CLASS_NAMES[x] if x < len(CLASS_NAMES) else str(x) for x in pred["label"]]
        pred["proba"] = [json.dumps([round(x / 255, 3) for x in json.loads(p)]) for p in pred["proba"]]
        tables["predictions"] = timed(pred)
    events = pd.DataFrame(event_rows(study, session_id),
                          columns=pd.Index(["boot", "device_ms", "duration_s", "trial_type", "value", "source"]))
    tables["events"] = timed(events)
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
                _write_csv(df, path)
            else:
                _write_parquet(df, path, {"session": sid, "participant": session["participant_id"], "table": name,
                                          "started_at": session["started_at"]})
            written.append(path)
    return written


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    """Values to 9 significant digits; times to the microsecond (a host's monotonic clock can
    read 10^6 s and more, where 9 digits would leave milliseconds)."""
    df = df.copy()
    for column in df.columns:
        if str(column).endswith("_time_s"):
            df[column] = [f"{t:.6f}" if t == t else "" for t in df[column].to_numpy(dtype=float)]
    df.to_csv(path, index=False, na_rep="", float_format="%.9g")


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

"""BIDS physiological recordings of a session or a whole study (BIDS 1.9, "Physiological
recordings" and "Task events").

    <out>/dataset_description.json, README, participants.tsv, participants.json
    <out>/sub-<p>/sub-<p>_sessions.tsv
    <out>/sub-<p>/ses-<id>/beh/sub-<p>_ses-<id>_task-<task>_recording-<stream>_physio.tsv.gz (+ .json)
    <out>/sub-<p>/ses-<id>/beh/sub-<p>_ses-<id>_task-<task>_events.tsv (+ .json)

Time zero of a session is its first PPG sample (the first sample of any stream when it has
no PPG) on the watch's clock. Each physio file starts at its stream's first stored sample
(`StartTime` in seconds from time zero) and has one row per sample period up to its last,
with `n/a` where a sample is missing, so that row k is at `StartTime + k / SamplingFrequency`.
Event onsets are seconds from time zero; events with no place on the watch's timeline (host
notes) are left out.

A watch that reboots during a session starts its clock and sample indices again. The
session's timeline is then its first boot's clock, continued (`timing.SessionClock`: a later
boot through its own clock fit to host time, and back through the first boot's): each boot's
samples start at the row nearest to where its first sample falls (within half a sample
period), the rows between boots are `n/a`, and the sidecar's `WatchBoots` lists each boot's
first row, first sample index and sample count. BIDS labels are alphanumeric: a participant id loses its other
characters (`P-01` becomes `sub-P01`); two ids that become the same label are refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from watch import protocol as P

from .. import __version__
from ..db import Study
from ..errors import WearsError
from .tables import StreamTable, event_rows, read_stream, select_sessions, streams_of
from .timing import SessionClock

BIDS_VERSION = "1.9.0"
_DESCRIPTIONS = {
    P.PPG: {"ir": "photoplethysmogram, infrared LED (MAX30102 ADC counts, 18 bit)",
            "red": "photoplethysmogram, red LED (MAX30102 ADC counts, 18 bit)"},
    P.ACC: {c: f"wrist acceleration, {c} axis of the watch" for c in "xyz"},
    P.GYRO: {c: f"wrist angular velocity, {c} axis of the watch" for c in "xyz"},
}
_EVENT_COLUMNS = {
    "onset": {"Description": "seconds from the session's first PPG sample, on the watch's clock", "Units": "s"},
    "duration": {"Description": "seconds; 0 for an instant", "Units": "s"},
    "trial_type": {"Description": "an annotation's label (e.g. pleasant, rest), 'prediction' for the watch's "
                                  "on-device classification of the window ending at onset, or a watch event "
                                  "(boot, mark, model_loaded, ...; docs/protocol.md of WEARS)"},
    "value": {"Description": "the predicted class for predictions, the event's argument for watch events"},
    "source": {"Description": "annotation (the experimenter's labelled interval), watch or host"},
}


def label(text: str) -> str:
    """A BIDS label: letters and digits only."""
    out = re.sub(r"[^A-Za-z0-9]", "", str(text))
    if not out:
        raise WearsError(f"participant id {text!r} has no letters or digits for a BIDS label")
    return out


def export_bids(study: Study, out: str | Path, *, sessions: list[int] | None = None, task: str = "wears",
                name: str | None = None) -> list[Path]:
    """Write the sessions (default: every session with samples) as a BIDS dataset in `out`.

    Args:
        study: the study database.
        out: the dataset folder (created; files of the same names are replaced).
        sessions: session ids; None for the whole study.
        task: the BIDS task label.
        name: the dataset's name (default: the database file's name).

    Returns:
        The files written.
    """
    out = Path(out)
    task = label(task)
    chosen = [s for s in select_sessions(study, sessions) if streams_of(study, s["id"]) or sessions is not None]
    if not chosen:
        raise WearsError(f"{study.path} has no session with samples to export")
    subjects: dict[str, str] = {}
    for s in chosen:
        sub = label(s["participant_id"])
        if subjects.setdefault(sub, s["participant_id"]) != s["participant_id"]:
            raise WearsError(f"participants {subjects[sub]!r} and {s['participant_id']!r} both become sub-{sub}")
    out.mkdir(parents=True, exist_ok=True)
    written = [_dataset_description(out, name or Path(study.path).stem), _readme(out)]
    written += _participants(out, subjects)
    for sub, pid in sorted(subjects.items()):
        mine = [s for s in chosen if s["participant_id"] == pid]
        written.append(_sessions_tsv(out, sub, mine))
        for s in mine:
            written += _session(study, out, sub, s, task)
    return written


def _json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _dataset_description(out: Path, name: str) -> Path:
    return _json(out / "dataset_description.json", {
        "Name": name, "BIDSVersion": BIDS_VERSION, "DatasetType": "raw",
        "GeneratedBy": [{"Name": "wears", "Version": __version__,
                         "Description": "WEARS study database exported with `wears export-data --format bids`"}],
    })


def _readme(out: Path) -> Path:
    path = out / "README"
    path.write_text("Wrist recordings from WEARS watches: photoplethysmogram, acceleration and angular velocity,\n"
                    "with labelled intervals, watch events and on-device predictions as events.\n"
                    "Times are on each watch's own clock; time zero of a session is its first PPG sample.\n")
    return path


def _participants(out: Path, subjects: dict[str, str]) -> list[Path]:
    tsv = out / "participants.tsv"
    rows = "".join(f"sub-{sub}\t{pid}\n" for sub, pid in sorted(subjects.items()))
    tsv.write_text("participant_id\twears_id\n" + rows)
    side = _json(out / "participants.json", {
        "wears_id": {"Description": "the pseudonymous participant id in the WEARS study database"}})
    return [tsv, side]


def _sessions_tsv(out: Path, sub: str, sessions: list[dict]) -> Path:
    folder = out / f"sub-{sub}"
    folder.mkdir(exist_ok=True)
    path = folder / f"sub-{sub}_sessions.tsv"
    lines = ["session_id\tacq_time\tstatus\tsource"]
    for s in sessions:
        acq = (s["started_at"] or "n/a")[:19]  # BIDS acq_time: YYYY-MM-DDThh:mm:ss
        lines.append(f"ses-{s['id']}\t{acq}\t{s['status']}\t{s.get('source') or 'n/a'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _session(study: Study, out: Path, sub: str, session: dict, task: str) -> list[Path]:
    sid = session["id"]
    folder = out / f"sub-{sub}" / f"ses-{sid}" / "beh"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{sub}_ses-{sid}_task-{task}"
    clock = SessionClock(study, sid)
    tables = [t for t in (read_stream(study, sid, s) for s in streams_of(study, sid)) if len(t.index)]
    ppg = [t for t in tables if t.stream == P.PPG]
    first = (ppg or tables)[0] if tables else None
    zero_ms = float(clock.session_ms(first.boot[:1], first.device_ms()[:1])[0]) if first else 0.0
    device = study.conn.execute("SELECT d.name, d.board, d.address FROM sessions s JOIN devices d "
                                "ON d.id = s.device_id WHERE s.id=?", (sid,)).fetchone()
    written = []
    for table in tables:
        written += _physio(folder / f"{stem}_recording-{table.name}_physio", table, clock, zero_ms, device)
    written += _events(folder / f"{stem}_events", study, sid, clock, zero_ms)
    return written


def physio_rows(table: StreamTable, clock: SessionClock) -> np.ndarray:
    """The row of each sample on the file's grid of sample periods: by index within a boot, a
    later boot from the first row at or after where its first sample falls on the session's timeline."""
    t_ms = clock.session_ms(table.boot, table.device_ms())
    period_ms = 1000.0 / table.rate_hz
    rows = np.empty(len(table.index), dtype=np.int64)
    next_free = 0
    for boot in table.boots:
        at = np.flatnonzero(table.boot == boot)
        start = max(next_free, int(round((t_ms[at[0]] - t_ms[0]) / period_ms)))
        rows[at] = start + table.index[at] - table.index[at[0]]
        next_free = int(rows[at[-1]]) + 1
    return rows


def _physio(base: Path, table: StreamTable, clock: SessionClock, zero_ms: float, device: tuple | None) -> list[Path]:
    rows = physio_rows(table, clock)
    span = int(rows[-1] + 1)
    values = table.values()
    columns = [f"{table.name}_{c}" for c in table.channels]
    integer = np.issubdtype(values.dtype, np.integer)
    full = pd.DataFrame({c: pd.array([pd.NA] * span, dtype="Int64" if integer else "Float64") for c in columns})
    for i, c in enumerate(columns):
        full.loc[rows, c] = values[:, i]
    tsv = base.with_name(base.name + ".tsv.gz")
    full.to_csv(tsv, sep="\t", header=False, index=False, na_rep="n/a", float_format="%.7g", compression="gzip")
    start_ms = float(clock.session_ms(table.boot[:1], table.device_ms()[:1])[0])
    side: dict = {
        "SamplingFrequency": table.rate_hz,
        "StartTime": round((start_ms - zero_ms) / 1000, 6),
        "Columns": columns,
    }
    for c, channel in zip(columns, table.channels):
        side[c] = {"Description": _DESCRIPTIONS.get(table.stream, {}).get(channel, channel), "Units": table.units}
    side["Manufacturer"] = "WEARS"
    if device:
        side["ManufacturersModelName"] = device[1] or "n/a"
        side["DeviceSerialNumber"] = device[2]
    side["RecordingDuration"] = span / table.rate_hz
    side["MissingSamples"] = span - len(rows)
    side["FirstSampleIndex"] = int(table.index[0])
    side["WatchBoots"] = [{"Boot": b, "FirstRow": int(rows[at[0]]), "FirstSampleIndex": int(table.index[at[0]]),
                           "Samples": len(at)} for b, at in ((b, np.flatnonzero(table.boot == b)) for b in table.boots)]
    return [tsv, _json(base.with_name(base.name + ".json"), side)]


def _events(base: Path, study: Study, sid: int, clock: SessionClock, zero_ms: float) -> list[Path]:
    rows = [r for r in event_rows(study, sid) if r["device_ms"] is not None]
    onsets = (clock.session_ms(np.array([r["boot"] for r in rows]), np.array([r["device_ms"] for r in rows],
                                                                            dtype=float)) - zero_ms) / 1000
    lines = ["onset\tduration\ttrial_type\tvalue\tsource"]
    for r, onset in zip(rows, onsets):
        value = str(r["value"]).replace("\t", " ").replace("\n", " ") or "n/a"
        lines.append(f"{onset:.3f}\t{r['duration_s']:.3f}\t{r['trial_type']}\t{value}\t{r['source']}")
    tsv = base.with_name(base.name + ".tsv")
    tsv.write_text("\n".join(lines) + "\n")
    return [tsv, _json(base.with_name(base.name + ".json"), _EVENT_COLUMNS)]

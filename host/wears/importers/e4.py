"""Empatica E4 exports (BVP, ACC and an annotation table) into the study database.

The export is read by the scenario replay (`wears.sim.scenario.from_e4`), which converts
BVP to the 18-bit IR counts of the watch's PPG and ACC to mg at the watch's rates, so an
imported recording goes through exactly the pipeline a watch's recording does. Annotation
labels are stored as they are (baseline, stress, amusement, ...); a training recipe maps
them to classes.

Example:
    >>> from wears.db import Study
    >>> sid = import_e4(Study.open("study.db"), "wesad-e4-dev/S2")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from watch import protocol as P

from ..db import Study
from ..errors import WearsError
from ..sim.scenario import from_e4

_CHUNK = 1000  # samples per stored chunk
ACC_UNIT_G = 1e-3  # the replay's ACC is in mg


def _store(study: Study, sid: int, stream: int, samples: np.ndarray, rate_hz: int, unit: float) -> None:
    study.add_stream_info(sid, stream, samples.shape[1], rate_hz * 1000, unit, 0)
    dtype = "<u4" if P.SAMPLE_FORMATS[stream][1] == "I" else "<i2"
    data = np.ascontiguousarray(samples.astype(dtype))
    for first in range(0, len(data), _CHUNK):
        part = data[first:first + _CHUNK]
        study.add_chunk(sid, stream, first, len(part), first * 1000 // rate_hz, part.tobytes())


def import_e4(study: Study, folder: str | Path, *, participant: str | None = None,
              annotations: str | Path | None = None) -> int:
    """Import one E4 export folder (or a subject folder holding `E4/`) as a complete session.

    Parameters:
        study: the study database.
        folder: the E4 export (BVP.csv, ACC.csv, ...) or its subject folder.
        participant: pseudonymous id; default: the subject folder's name (S2, ...).
        annotations: CSV start_s,end_s,label[,condition] in s from the recording start;
            default: annotations.csv of the subject folder when present.
    Returns:
        The new session's id. Annotations go to the `annotations` table, unmapped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WearsError(f"{folder}: no such folder")
    try:
        scenario = from_e4(folder, annotations, margin_s=0.0, labels=None, participant=participant)
    except (ValueError, KeyError, OSError) as e:
        raise WearsError(f"{folder}: cannot read the E4 export: {e}") from e
    sid = study.new_session(scenario.participant, source="import", note=scenario.source)
    try:
        _store(study, sid, P.PPG, scenario.ppg, scenario.ppg_rate, 1.0)
        _store(study, sid, P.ACC, scenario.imu[:, :3], scenario.imu_rate, ACC_UNIT_G)
        study.set_provenance(sid, "source", scenario.source)
        study.set_provenance(sid, "path", str(folder.resolve()))
        study.set_provenance(sid, "import", "wears import e4: BVP -> IR counts, ACC -> mg (wears.sim.scenario.from_e4)")
        study.conn.commit()
        study.add_annotations(sid, scenario.episodes)
    except Exception:
        study.end_session(sid, "aborted", "import failed")
        raise
    study.end_session(sid, "complete")
    return sid

"""Windows, features and an ExtraTrees valence model from the sessions of a study.

Evaluation is subject-independent: leave one participant out whenever the data has more
than one participant. With a single participant the report says that no subject-independent
figure exists instead of quoting a flattering within-person number.

Example:
    >>> from wears.db import Study
    >>> trained = train(Study.open("study.db"), window_s=30, step_s=5)   # doctest: +SKIP
    >>> trained.report["accuracy"]                                         # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import balanced_accuracy_score, f1_score

from watch import features as F
from watch import protocol as P

from .db import Study
from .errors import WearsError
from .features import extract_features

VALENCE = {"unpleasant": 0, "pleasant": 1}
CLASS_NAMES = ("unpleasant", "pleasant")
MODEL_FORMAT = "wears-trained-model/1"
UNTRUSTED = F.FLAG_LOW_QUALITY | F.FLAG_FEW_BEATS | F.FLAG_WARMUP | F.FLAG_GAP


@dataclass
class Dataset:
    """Labelled windows: features X (fixed-point ints), labels y, participant per window."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    feature_names: tuple[str, ...]
    feature_spec: int
    window_s: int
    step_s: int
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> windows left out

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.X.tobytes())
        h.update(self.y.tobytes())
        return h.hexdigest()[:16]


def window_labels(window_end_s: np.ndarray, window_s: float, annotations: list[tuple[float, float, str]],
                  mapping: dict[str, int] = VALENCE) -> np.ndarray:
    """The label of each window lying wholly inside one annotated interval of a mapped label; -1 otherwise."""
    y = np.full(len(window_end_s), -1, dtype=np.int64)
    start = window_end_s - window_s
    for a, b, label in annotations:
        if label in mapping:
            inside = (start >= a) & (window_end_s <= b)
            y[inside] = mapping[label]
    return y


def session_windows(study: Study, session_id: int, *, window_s: int, step_s: int):
    """Feature table of one session's recorded streams."""
    ppg = study.stream(session_id, P.PPG)
    acc = study.stream(session_id, P.ACC)
    try:
        gyro = study.stream(session_id, P.GYRO)
    except WearsError:
        gyro = None
    return ppg, extract_features(
        ppg.samples[:, 0], acc.samples, None if gyro is None else gyro.samples,
        ppg_rate=int(round(ppg.rate_hz)), imu_rate=int(round(acc.rate_hz)), window_s=window_s, step_s=step_s,
        acc_unit_g=acc.unit, gyro_unit_dps=gyro.unit if gyro is not None else 0.0,
        first_ppg_index=ppg.first_index, first_imu_index=acc.first_index)


def build_dataset(study: Study, *, window_s: int = 30, step_s: int = 5, sessions: list[int] | None = None,
                  mapping: dict[str, int] = VALENCE) -> Dataset:
    """Labelled windows from every complete session with annotations (or the given sessions)."""
    chosen = [s for s in study.sessions() if (sessions is None and s["status"] == "complete")
              or (sessions is not None and s["id"] in sessions)]
    Xs, ys, gs = [], [], []
    excluded = {"unlabelled": 0, "low signal quality": 0}
    names: tuple[str, ...] = ()
    spec = 0
    for s in chosen:
        annotations = study.annotations(s["id"])
        if not annotations:
            continue
        ppg, table = session_windows(study, s["id"], window_s=window_s, step_s=step_s)
        y = window_labels(table.window_end / ppg.rate_hz, window_s, annotations, mapping)
        # Motion is a feature, not a defect: only windows whose beats cannot be trusted are left out.
        good = (table.quality & UNTRUSTED) == 0
        excluded["unlabelled"] += int(np.sum(y < 0))
        excluded["low signal quality"] += int(np.sum((y >= 0) & ~good))
        keep = (y >= 0) & good
        Xs.append(table.X[keep])
        ys.append(y[keep])
        gs.append(np.full(int(keep.sum()), s["participant_id"], dtype=object))
        names = tuple(table.names)
        spec = table.spec_id
    if not Xs or sum(len(y) for y in ys) == 0:
        raise WearsError(f"{study.path} has no labelled windows (sessions need annotations and "
                         f"{window_s} s of signal inside an annotated interval)")
    return Dataset(np.concatenate(Xs), np.concatenate(ys), np.concatenate(gs), names, spec, window_s, step_s,
                   excluded)


def default_model(seed: int = 0) -> ExtraTreesClassifier:
    """ExtraTrees sized for the watch: 20 trees of depth 6 stay under 20 KB as a blob."""
    return ExtraTreesClassifier(n_estimators=20, max_depth=6, min_samples_leaf=3, random_state=seed)


def evaluate(data: Dataset, seed: int = 0) -> dict:
    """Leave-one-participant-out accuracy, macro-F1 and balanced accuracy, with a per-participant table."""
    participants = sorted(set(data.groups))
    if len(participants) < 2:
        return {"protocol": "none: one participant only; no subject-independent figure exists",
                "n_windows": int(len(data.y))}
    pred = np.empty_like(data.y)
    per = {}
    for p in participants:
        test = data.groups == p
        if len(set(data.y[~test])) < 2:
            raise WearsError(f"leaving {p} out leaves only one class to train on")
        model = default_model(seed).fit(data.X[~test], data.y[~test])
        pred[test] = model.predict(data.X[test])
        per[p] = {"n_windows": int(test.sum()), "accuracy": float(np.mean(pred[test] == data.y[test]))}
    return {
        "protocol": "leave one participant out",
        "n_windows": int(len(data.y)),
        "accuracy": float(np.mean(pred == data.y)),
        "macro_f1": float(f1_score(data.y, pred, average="macro")),
        "balanced_accuracy": float(balanced_accuracy_score(data.y, pred)),
        "per_participant": per,
    }


@dataclass
class TrainedModel:
    """A fitted model with what export and the report need."""

    model: ExtraTreesClassifier
    X_train: np.ndarray
    feature_names: tuple[str, ...]
    feature_spec: int
    window_s: int
    step_s: int
    report: dict

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            pickle.dump({"format": MODEL_FORMAT, **self.__dict__}, f)

    @classmethod
    def load(cls, path: str | Path) -> "TrainedModel":
        try:
            with open(path, "rb") as f:
                data = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError) as e:
            raise WearsError(f"cannot read the trained model {path}: {e}") from e
        if not isinstance(data, dict) or data.pop("format", None) != MODEL_FORMAT:
            raise WearsError(f"{path} is not a model written by `wears train`")
        return cls(**data)


def train(study: Study, *, window_s: int = 30, step_s: int = 5, seed: int = 0) -> TrainedModel:
    """Build the dataset, evaluate subject-independently, then fit on everything."""
    data = build_dataset(study, window_s=window_s, step_s=step_s)
    if len(set(data.y)) < 2:
        raise WearsError("the labelled windows hold only one class; a classifier needs both")
    report = evaluate(data, seed)
    model = default_model(seed).fit(data.X, data.y)
    report.update({
        "feature_spec": data.feature_spec, "features": list(data.feature_names), "window_s": window_s,
        "step_s": step_s, "classes": list(CLASS_NAMES), "data_sha256": data.digest,
        "participants": sorted(set(map(str, data.groups))), "excluded_windows": data.excluded,
        "class_counts": {CLASS_NAMES[c]: int(np.sum(data.y == c)) for c in (0, 1)},
        "model": {"kind": "ExtraTrees", "n_estimators": model.n_estimators, "max_depth": model.max_depth,
                  "seed": seed},
    })
    return TrainedModel(model, data.X, data.feature_names, data.feature_spec, window_s, step_s, report)

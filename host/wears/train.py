"""Labelled windows from a study, models searched inside training folds, subject-independent evaluation.

`train_recipe(recipe)` runs one recipe (wears.recipe): windows and features of every session
with annotations, the label mapping of the recipe, then for each model kind the same outer
folds (leave one participant out by default; grouped k-fold for large studies; a random split
only when the recipe asks for it, with a warning in the report). Hyper-parameters are chosen
by an inner grouped cross-validation on the outer fold's training participants only, and the
on-device budget (blob size, depth, hidden units) is part of the search: a candidate over it
is never chosen. The deployed kind is then searched and fitted on every window.

Example:
    >>> from wears.recipe import load_recipe
    >>> trained = train_recipe(load_recipe("training/recipes/wesad-valence.toml"),
    ...                        study="wesad.db")                          # doctest: +SKIP
    >>> trained.report["macro_f1"], trained.report["quantized"]["macro_f1"]   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import pickle
import platform
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from watch import features as F
from watch import protocol as P

from .db import Study
from .errors import WearsError
from .features import FeatureTable, baseline_mean, baseline_normalise
from .recipe import FEATURE_GROUPS, Recipe, parse_recipe
from .report import scores
from .watch_models import ON_DEVICE_KINDS, WatchMLP, kind_of, on_watch, watch_predict
from .window_runs import boot_windows

VALENCE = {"unpleasant": 0, "pleasant": 1}
CLASS_NAMES = ("unpleasant", "pleasant")
MODEL_FORMAT = "wears-trained-model/2"
UNTRUSTED = F.UNTRUSTED
Progress = Callable[[str, float, float], None]  # (stage, done, total)
logger = logging.getLogger(__name__)


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
    flags: np.ndarray | None = None  # the watch's quality flags per window
    # session id -> {"participant", "windows", "labelled"}: the windows left out for gaps in the
    # samples (and of them, those inside an annotation the mapping labels), sessions with gaps only
    gaps: dict[int, dict] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.X.tobytes())
        h.update(self.y.tobytes())
        return h.hexdigest()[:16]


def window_labels(window_end_s: np.ndarray, window_s: float, annotations: list[tuple[float, float, str]],
                  mapping: dict[str, int] = VALENCE, margin_s: float = 0.0) -> np.ndarray:
    """The class of each window lying wholly inside one annotated interval (less margin_s at both ends); -1 otherwise."""
    y = np.full(len(window_end_s), -1, dtype=np.int64)
    start = window_end_s - window_s
    for a, b, label in annotations:
        if label in mapping:
            inside = (start >= a + margin_s) & (window_end_s <= b - margin_s)
            y[inside] = mapping[label]
    return y


@dataclass(frozen=True)
class SessionWindows:
    """The windows of one session, boot after boot.

    table: the features (its `window_end` is a PPG index in each window's own boot); boot: the
    watch boot of each window; end_s: where each window ends on the session's timeline in
    seconds, the one its annotations are on (the first boot's PPG timeline, continued across
    reboots); ppg_rate: Hz; missing_end_s: where the windows left out for gaps end (samples
    the host never received, `wears.window_runs`), on the same timeline.
    """

    table: FeatureTable
    boot: np.ndarray
    end_s: np.ndarray
    ppg_rate: float
    missing_end_s: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _boot_windows(study: Study, session_id: int, boot: int, has_gyro: bool, window_s: int, step_s: int):
    """(first PPG run, windows) of one watch boot of a session, from every run of its streams."""
    ppg = study.stream_runs(session_id, P.PPG, boot)
    acc = study.stream_runs(session_id, P.ACC, boot)
    gyro = study.stream_runs(session_id, P.GYRO, boot) if has_gyro else None
    return ppg[0], boot_windows(ppg, acc, gyro, window_s=window_s, step_s=step_s)


def session_windows(study: Study, session_id: int, *, window_s: int, step_s: int) -> SessionWindows:
    """Features of every window of a session, from every watch boot (a watch that rebooted
    mid-session started its sample indices again: each boot is windowed on its own, so no
    window spans a reboot) and every unbroken run of its streams within a boot (no window spans
    a gap in the samples: `wears.window_runs`). A later boot's windows are placed on the
    annotations' timeline through the boots' clock fits (`SessionClock.session_ms`); a boot
    whose PPG or IMU samples are missing has no windows."""
    first = study.first_boot(session_id)
    has_gyro = first in study.sample_boots(session_id, P.GYRO)
    stored = [set(study.sample_boots(session_id, s)) for s in ((P.PPG, P.ACC, P.GYRO) if has_gyro else (P.PPG, P.ACC))]
    later = sorted(set.intersection(*stored) - {first})
    ppg, found = _boot_windows(study, session_id, first, has_gyro, window_s, step_s)  # raises without samples
    parts = [(first, found.table, found.table.window_end / ppg.rate_hz, found.missing / ppg.rate_hz)]
    if later:
        from .export_data.timing import SessionClock

        clock = SessionClock(study, session_id)
        for boot in later:
            part, found = _boot_windows(study, session_id, boot, has_gyro, window_s, step_s)
            if part.rate_hz != ppg.rate_hz:
                raise WearsError(f"session {session_id}: the PPG rate changed at a reboot "
                                 f"({ppg.rate_hz} Hz, then {part.rate_hz} Hz in boot {boot})")

            def session_s(window_end: np.ndarray) -> np.ndarray:
                ticks = part.tick0 + 1000.0 * window_end / part.rate_hz
                return (clock.session_ms(np.full(len(ticks), boot), ticks) - ppg.tick0) / 1000.0

            parts.append((boot, found.table, session_s(found.table.window_end), session_s(found.missing)))
    tables = [t for _, t, _, _ in parts]
    table = tables[0]
    joined = FeatureTable(np.concatenate([t.X for t in tables]), np.concatenate([t.window_end for t in tables]),
                          np.concatenate([t.quality for t in tables]), table.names, table.units, table.spec_id)
    return SessionWindows(joined, np.concatenate([np.full(len(t), b, dtype=np.int64) for b, t, _, _ in parts]),
                          np.concatenate([e for _, _, e, _ in parts]), ppg.rate_hz,
                          np.concatenate([m for _, _, _, m in parts]))


def build_dataset(study: Study, *, window_s: int = 30, step_s: int = 5, sessions: list[int] | None = None,
                  mapping: dict[str, int] = VALENCE, margin_s: float = 0.0, keep: str = "trusted",
                  normalise: str = "none", baseline_label: str = "baseline", baseline_windows: int = 12,
                  progress: Progress | None = None) -> Dataset:
    """Labelled windows from every complete session with annotations (or the given sessions).

    keep="trusted" leaves out windows with an UNTRUSTED flag (their beats cannot be trusted);
    keep="all" keeps them (their HR features are 0 and ppg_quality says why). normalise=
    "baseline" subtracts each session's baseline (the watch's Baseline over the first
    baseline_windows trusted windows of the session, or of its `baseline_label` annotations).
    """
    chosen = [s for s in study.sessions() if (not sessions and s["status"] == "complete")
              or (sessions and s["id"] in sessions)]
    chosen = [s for s in chosen if study.annotations(s["id"])]
    Xs, ys, gs, fs = [], [], [], []
    excluded = {"unlabelled": 0, "low signal quality": 0, "no baseline": 0, "missing samples": 0}
    gaps: dict[int, dict] = {}
    names: tuple[str, ...] = ()
    spec = 0
    for i, s in enumerate(chosen):
        annotations = study.annotations(s["id"])
        windows = session_windows(study, s["id"], window_s=window_s, step_s=step_s)
        table, end_s = windows.table, windows.end_s
        y = window_labels(end_s, window_s, annotations, mapping, margin_s)
        if len(windows.missing_end_s):
            lost = int(np.sum(window_labels(windows.missing_end_s, window_s, annotations, mapping, margin_s) >= 0))
            gaps[s["id"]] = {"participant": s["participant_id"], "windows": len(windows.missing_end_s),
                             "labelled": lost}
            excluded["missing samples"] += lost
            logger.warning("session %s (%s): %d windows left out for gaps in the samples, %d of them labelled",
                           s["id"], s["participant_id"], len(windows.missing_end_s), lost)
        X = table.X
        good = (table.quality & UNTRUSTED) == 0
        if normalise == "baseline":
            # The calibration phase: the session's first trusted windows (as the watch does after it
            # is put on), or those inside `baseline_label` annotations when one is named.
            calm = (window_labels(end_s, window_s, annotations, {baseline_label: 0}, margin_s) == 0
                    if baseline_label else np.ones(len(y), dtype=bool))
            if not (calm & good).any():
                excluded["no baseline"] += int(np.sum(y >= 0))
                continue
            X = baseline_normalise(X, baseline_mean(X[calm], good[calm], baseline_windows), table.names)
        excluded["unlabelled"] += int(np.sum(y < 0))
        keep_rows = y >= 0
        if keep == "trusted":
            excluded["low signal quality"] += int(np.sum(keep_rows & ~good))
            keep_rows &= good
        Xs.append(X[keep_rows])
        ys.append(y[keep_rows])
        fs.append(table.quality[keep_rows])
        gs.append(np.full(int(keep_rows.sum()), s["participant_id"], dtype=object))
        names = tuple(table.names)
        spec = table.spec_id
        if progress:
            progress("features", i + 1, len(chosen))
    if not Xs or sum(len(y) for y in ys) == 0:
        raise WearsError(f"{study.path} has no labelled windows (sessions need annotations and "
                         f"{window_s} s of signal inside an annotated interval)")
    return Dataset(np.concatenate(Xs), np.concatenate(ys), np.concatenate(gs), names, spec, window_s, step_s,
                   excluded, np.concatenate(fs), gaps)


# Models -----------------------------------------------------------------------------------

def default_model(seed: int = 0) -> ExtraTreesClassifier:
    """ExtraTrees sized for the watch: 20 trees of depth 6 stay under 20 KB as a blob."""
    return ExtraTreesClassifier(n_estimators=20, max_depth=6, min_samples_leaf=3, random_state=seed)


def candidates(kind: str, settings: dict, budget: dict, seed: int) -> list:
    """The hyper-parameter grid of one model kind, inside the on-device budget. Kind "auto" is
    every on-device kind's grid together (ExtraTrees and the int8 MLP): the search picks the kind."""
    weight = None if settings["class_weight"] == "none" else settings["class_weight"]
    if kind == "auto":
        return [c for k in ON_DEVICE_KINDS for c in candidates(k, settings, budget, seed)]
    if kind == "majority":
        return [DummyClassifier(strategy="most_frequent")]
    if kind == "logreg":
        return [make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500, class_weight=weight))
                for c in settings["logreg"]["C"]]
    if kind == "extratrees":
        grid = settings["extratrees"]
        return [ExtraTreesClassifier(n_estimators=n, max_depth=d, min_samples_leaf=leaf, random_state=seed, n_jobs=1,
                                     class_weight=weight)
                for n, d, leaf in itertools.product(grid["n_estimators"], grid["max_depth"], grid["min_samples_leaf"])
                if d <= budget["max_depth"]]
    if kind == "mlp":
        grid = settings["mlp"]
        return [WatchMLP(tuple(h), alpha=a, max_iter=grid["max_iter"], class_weight=weight, random_state=seed)
                for h, a in itertools.product(grid["hidden"], grid["alpha"]) if sum(h) <= budget["max_hidden_units"]]
    raise WearsError(f"unknown model kind {kind}")


def on_watch_within_budget(model, X: np.ndarray, spec: int, budget: dict):
    """(fits, the watch's form of a fitted candidate or None): an on-device kind fits when its
    blob is within max_blob_bytes; a host-only kind (logreg, majority) always does."""
    try:
        quantized = on_watch(model, X, spec)
    except ValueError:  # more nodes than a blob holds, or weights the int8 runtime cannot hold
        return False, None
    return quantized is None or quantized.size_bytes <= budget["max_blob_bytes"], quantized


def fits_budget(model, X: np.ndarray, spec: int, budget: dict) -> bool:
    """A fitted candidate the watch can hold: its blob within max_blob_bytes."""
    return on_watch_within_budget(model, X, spec, budget)[0]


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # clone is unannotated: pyright joins every branch of it (lists, dicts, sets of
        # estimators); an estimator in gives an estimator out.
        return cast(Any, clone(model)).fit(X, y)


def _inner_score(models: list, X, y, inner, spec: int, recipe: Recipe) -> float | None:
    """Inner macro-F1 of one candidate (`models`: the same hyper-parameters with each repeat's
    seed), on the watch's predictions for an on-device kind; None when it does not fit the budget."""
    how = recipe["evaluation"]["inner_score"]
    f1s = []
    for model in models:
        pooled = np.full_like(y, -1)
        for tr, te in inner:
            if len(set(y[tr])) < 2:
                continue
            m = _fit(model, X[tr], y[tr])
            fits, quantized = on_watch_within_budget(m, X[tr], spec, recipe["budget"])
            if not fits:
                return None
            pooled[te] = m.predict(X[te]) if quantized is None else watch_predict(quantized, X[te])
            if how == "fold_mean":
                f1s.append(f1_score(y[te], pooled[te], average="macro"))
        if how == "pooled" and (pooled >= 0).any():
            f1s.append(f1_score(y[pooled >= 0], pooled[pooled >= 0], average="macro"))
    return float(np.mean(f1s)) if f1s else None


def select(kind: str, X, y, groups, recipe: Recipe, spec: int):
    """The best candidate of a kind by inner grouped CV macro-F1 on (X, y, groups) only, refitted on them.

    An on-device candidate is scored on the watch's predictions (its quantized form), so the
    search (and "auto", which chooses between ExtraTrees and the int8 MLP) optimises what the
    watch will run. With `inner_repeats` R > 1 every candidate is fitted with R seeds on each inner
    fold and scored by the mean: a candidate that won by one lucky random draw (a small forest,
    one initialisation) does not beat a steadier one."""
    ev, seed = recipe["evaluation"], recipe["evaluation"]["seed"]
    grid = candidates(kind, recipe["models"], recipe["budget"], seed)
    repeats = [grid] + [candidates(kind, recipe["models"], recipe["budget"], seed + r)
                        for r in range(1, ev["inner_repeats"])]
    scored = [(0.0, 0)] if len(grid) == 1 else []
    inner = [] if len(grid) == 1 else _splits(y, groups, "group-kfold" if len(set(groups)) > 1 else "random",
                    min(ev["inner_folds"], max(2, len(set(groups)))), seed)
    for i in range(len(grid)) if inner else []:
        score = _inner_score([same[i] for same in repeats], X, y, inner, spec, recipe)
        if score is not None:
            scored.append((-score, i))
    # The best by inner macro-F1 whose refit on all of (X, y) still fits the watch (more rows, more nodes).
    for _, i in sorted(scored):
        model = _fit(grid[i], X, y)
        if fits_budget(model, X, spec, recipe["budget"]):
            return model, i
    raise WearsError(f"no {kind} candidate fits the on-device budget {recipe['budget']}")


def describe(model) -> dict:
    """The hyper-parameters that matter of a fitted candidate."""
    est = model.steps[-1][1] if hasattr(model, "steps") else model
    if isinstance(est, ExtraTreesClassifier):
        return {"kind": "extratrees", "n_estimators": est.n_estimators, "max_depth": est.max_depth,
                "min_samples_leaf": est.min_samples_leaf}
    if isinstance(est, WatchMLP):
        return {"kind": "mlp", "hidden": list(est.hidden), "alpha": est.alpha}
    if isinstance(est, LogisticRegression):
        return {"kind": "logreg", "C": est.C}
    return {"kind": "majority", "strategy": "most_frequent"}


# Evaluation -------------------------------------------------------------------------------

def _splits(y, groups, protocol: str, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    idx = np.arange(len(y))
    if protocol == "random":
        k = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return list(k.split(idx, y))
    if protocol == "lopo":
        return [(idx[groups != g], idx[groups == g]) for g in sorted(set(groups.tolist()))]
    k = GroupKFold(n_splits=min(folds, len(set(groups.tolist()))))
    return list(k.split(idx, y, groups))


def protocol_of(recipe: Recipe, groups) -> str:
    ev = recipe["evaluation"]
    if ev["protocol"] != "auto":
        return ev["protocol"]
    return "lopo" if len(set(groups.tolist())) <= ev["lopo_max_participants"] else "group-kfold"


def _columns(names, groups_wanted) -> np.ndarray:
    wanted = set(itertools.chain.from_iterable(FEATURE_GROUPS[g] for g in groups_wanted))
    return np.array([n in wanted for n in names])


def cross_validate(data: Dataset, recipe: Recipe, folds, kinds, columns: np.ndarray,
                   progress: Progress | None = None, stage: str = "training") -> dict:
    """Out-of-fold predictions of each kind on the same folds; columns outside `columns` are zeroed
    (the watch still computes them; a constant column is never split on or weighted)."""
    n_classes = len(recipe["labels"]["classes"])
    X = np.where(columns, data.X, 0)
    out = {}
    total = len(kinds) * len(folds)
    for a, kind in enumerate(kinds):
        pred = np.zeros_like(data.y)
        proba = np.zeros((len(data.y), n_classes))
        qpred = np.zeros_like(data.y) if kind in (*ON_DEVICE_KINDS, "auto") else None
        chosen = []
        for b, (tr, te) in enumerate(folds):
            if len(set(data.y[tr])) < 2:
                raise WearsError("a training fold holds only one class; a classifier needs both")
            model, _ = select(kind, X[tr], data.y[tr], data.groups[tr], recipe, data.feature_spec)
            pred[te] = model.predict(X[te])
            p = model.predict_proba(X[te])
            proba[np.ix_(te, model.classes_)] = p
            chosen.append(describe(model))
            if qpred is not None:  # what the watch predicts: the quantized form of this fold's model
                qpred[te] = watch_predict(on_watch(model, X[tr], data.feature_spec), X[te])
            if progress:
                progress(stage, a * len(folds) + b + 1, total)
        out[kind] = {"scores": scores(data.y, pred, n_classes, proba, data.groups), "pred": pred,
                     "chosen": chosen, "qpred": qpred}
        if qpred is not None:
            out[kind]["quantized"] = scores(data.y, qpred, n_classes, None, data.groups)
            out[kind]["quantized"]["agreement_with_float"] = float(np.mean(qpred == pred))
    return out


def _versions() -> dict:
    import numpy
    import scipy
    import sklearn
    return {"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "feature_set": F.FEATURE_VERSION}


def _commit() -> str:
    try:
        repo = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class TrainedModel:
    """A fitted model with what export and the report need.

    model: the deployed estimator fitted on every window: an ExtraTreesClassifier (exported
    by wears.export.quantize_forest) or a wears.watch_models.WatchMLP (its float_model_ is
    exported by wears.mlp.quantize_mlp); X_train:
    the integer features it was fitted on (sets the quantization); feature_names,
    feature_spec: the watch's feature set, 9 / 10 when normalised (columns outside the
    recipe's groups are zero in X_train); window_s, step_s: the window grid; report: the training report. kind:
    "extratrees" or "mlp"; classes: class names by index; normalise: None or
    {"windows": N, "baseline_label": ...} when the model expects baseline-subtracted
    features (watch.baseline.Baseline); columns: which features the model may use.
    """

    model: object
    X_train: np.ndarray
    feature_names: tuple[str, ...]
    feature_spec: int
    window_s: int
    step_s: int
    report: dict
    kind: str = "extratrees"
    classes: tuple[str, ...] = CLASS_NAMES
    normalise: dict | None = None
    columns: tuple[str, ...] = ()

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


def train_recipe(recipe: Recipe, *, study: str | Path | None = None, progress: Progress | None = None) -> TrainedModel:
    """Run a recipe: dataset, every model kind on the same folds, ablation, then the deployed model on all data."""
    path = study or recipe["data"]["study"]
    if not path:
        raise WearsError("no study database: give data.study in the recipe or --study")
    if not Path(path).exists():
        raise WearsError(f"{path}: no such study database")
    f, w, ev = recipe["features"], recipe["windows"], recipe["evaluation"]
    data = build_dataset(Study.open(path), window_s=w["length_s"], step_s=w["step_s"],
                         sessions=recipe["data"]["sessions"], mapping=recipe.mapping,
                         margin_s=recipe["labels"]["margin_s"], keep=w["keep"], normalise=f["normalise"],
                         baseline_label=f["baseline_label"], baseline_windows=f["baseline_windows"],
                         progress=progress)
    classes = tuple(recipe["labels"]["classes"])
    if len(set(data.y.tolist())) < 2:
        raise WearsError("the labelled windows hold only one class; a classifier needs two")
    participants = sorted(set(map(str, data.groups)))
    protocol = protocol_of(recipe, data.groups)
    if protocol != "random" and len(participants) < 2:
        raise WearsError("one participant only: no subject-independent evaluation exists "
                         "(set evaluation.protocol = 'random' and random_split = true to get a flattering figure)")
    folds = _splits(data.y, data.groups, protocol, ev["folds"], ev["seed"])
    groups_present = [g for g in f["groups"] if g != "gyro" or "gyro_mean" in data.feature_names]
    columns = _columns(data.feature_names, groups_present)
    kinds = recipe["models"]["candidates"]
    deploy = recipe["models"]["deploy"]
    results = cross_validate(data, recipe, folds, kinds, columns, progress)
    report: dict = {
        "protocol": {"lopo": "leave one participant out", "group-kfold": f"grouped {len(folds)}-fold by participant",
                     "random": "random stratified split (same people in training and test)"}[protocol],
        "n_windows": int(len(data.y)), "classes": list(classes), "deploy": deploy,
        "evaluation": {k: r["scores"] for k, r in results.items()},
        "selected": {k: r["chosen"] for k, r in results.items()},
    }
    report.update({k: report["evaluation"][deploy][k] for k in ("accuracy", "macro_f1", "balanced_accuracy",
                                                                 "per_participant", "confusion", "calibration")})
    if protocol == "random":
        report["warning"] = ("random split: windows of the same person are in training and test, and "
                             "neighbouring windows overlap; this figure flatters and says nothing about a new person")
    report["evaluation_quantized"] = {k: r["quantized"] for k, r in results.items() if "quantized" in r}
    if deploy in report["evaluation_quantized"]:  # the on-device model: the watch's own predictions
        report["quantized"] = report["evaluation_quantized"][deploy]
    if ev["ablation"]:
        report["ablation"] = {}
        avail = groups_present
        for r in range(1, len(avail) + 1):
            for combo in itertools.combinations(avail, r):
                res = cross_validate(data, recipe, folds, [deploy], _columns(data.feature_names, combo), progress,
                                     "ablation " + "+".join(combo))
                report["ablation"]["+".join(combo)] = {k: res[deploy]["scores"][k] for k in
                                                      ("accuracy", "macro_f1", "balanced_accuracy")}
    X = np.where(columns, data.X, 0)
    model, _ = select(deploy, X, data.y, data.groups, recipe, data.feature_spec)
    report.update({
        "feature_spec": data.feature_spec, "feature_version": F.FEATURE_VERSION, "features": list(data.feature_names),
        "feature_groups": groups_present, "window_s": w["length_s"], "step_s": w["step_s"],
        "data_sha256": data.digest, "participants": participants, "excluded_windows": data.excluded,
        "gaps": {str(k): v for k, v in data.gaps.items()},
        "class_counts": {c: int(np.sum(data.y == i)) for i, c in enumerate(classes)},
        "model": {**describe(model), "seed": ev["seed"]},
        "recipe": {"name": recipe.name, "path": str(recipe.path) if recipe.path else None, "sha256": recipe.sha256,
                   "settings": recipe.settings},
        "study": {"path": str(path), "sha256": _file_sha256(path)},
        "versions": _versions(), "commit": _commit(),
    })
    normalise = ({"windows": f["baseline_windows"], "baseline_label": f["baseline_label"]}
                 if f["normalise"] == "baseline" else None)
    # A model on baseline-subtracted features carries its own spec id: a watch that does not
    # calibrate refuses it (feature set does not match) instead of feeding it raw features.
    spec = F.spec_for("gyro_mean" in data.feature_names, baseline=normalise is not None)[0]
    report["feature_spec"] = spec
    return TrainedModel(model, X, data.feature_names, spec, w["length_s"], w["step_s"], report,
                        kind=kind_of(model), classes=classes, normalise=normalise,
                        columns=tuple(n for n, c in zip(data.feature_names, columns) if c))


def _file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


DEFAULT_RECIPE = """
name = "study-valence"
[labels]
mapping = { unpleasant = "unpleasant", pleasant = "pleasant" }
classes = ["unpleasant", "pleasant"]
[windows]
length_s = 30
step_s = 5
[models]
candidates = ["extratrees"]
[models.extratrees]
n_estimators = [20]
max_depth = [6]
min_samples_leaf = [3]
[evaluation]
ablation = false
"""


def train(study: Study, *, window_s: int = 30, step_s: int = 5, seed: int = 0) -> TrainedModel:
    """The quick path of `wears demo`: one ExtraTrees on a study's valence annotations, LOPO."""
    recipe = parse_recipe(DEFAULT_RECIPE.replace("length_s = 30", f"length_s = {window_s}")
                          .replace("step_s = 5", f"step_s = {step_s}") + f"seed = {seed}\n")
    return train_recipe(recipe, study=study.path)

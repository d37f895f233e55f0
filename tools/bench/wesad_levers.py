"""What limits WESAD leave-one-participant-out scores: label-free normalisations, a better heart rate, more people.

    python tools/bench/wesad_levers.py DIR [--seeds 5]

Imports DIR (layout of wesad-e4-dev) like tools/bench/wesad_loso.py, computes the watch's
features (60 s windows, 5 s step) once, and scores one fixed quantized ExtraTrees (30 trees,
depth 6, leaf 5, balanced classes: no search, so the variants differ in their inputs only)
leaving one participant out, for both tasks, as macro-F1 per seed:

- `normalisations`: every one uses no labels and is computed per participant.
  `none`; `start_N`: the watch's Baseline, mean of the session's first N trusted windows
  subtracted (N = 12, 60, 120); `running`: the mean of every trusted window so far subtracted
  (causal, the watch could keep it); `session_z`: each feature standardised by the whole
  session's mean and deviation (uses the future: not possible on the watch, an optimistic bound).
- `e4_hr`: the E4's own heart rate (HR.csv, Empatica's estimate, made for motion) added as a
  feature, after the recipe's normalisation: does a better heart rate in the
  motion-dominated stress windows help?
- `int8_mlp`: the other on-device kind, one fixed int8 MLP (hidden 16-8, alpha 1, balanced,
  wears.watch_models.WatchMLP scored through wears.mlp.quantize_mlp, the watch's runtime) on
  the recipe's normalisation, against the forest on the same inputs.
- `training_participants`: the mean per-participant macro-F1 when training on 1 or on 2 of
  the other participants (the slope says whether more people would help), and
  `within_participant`: first half / second half of each class of one participant (an
  optimistic ceiling of what the features hold).

Every figure here was looked at while choosing the recipes: they are development figures.
The last line is one JSON object.
"""

import argparse
import itertools
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.metrics import f1_score

    from watch import features as F
    from wears.cli import main as wears
    from wears.db import Study
    from wears.features import baseline_mean, baseline_normalise
    from wears.train import UNTRUSTED, session_windows, window_labels
    from wears.watch_models import WatchMLP, on_watch, watch_predict

    tasks = {"stress": ({"baseline": 0, "stress": 1}, "start_60"), "valence": ({"stress": 0, "amusement": 1}, "none")}
    window_s, margin_s = 60, 10.0
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "wesad.db"
        if wears(["import", "e4", args.dir, "--study", str(db)]) != 0:
            return 1
        study = Study.open(db)
        sessions = []
        for s in study.sessions():
            windows = session_windows(study, s["id"], window_s=window_s, step_s=5)
            table, end_s = windows.table, windows.end_s
            hr = np.loadtxt(Path(args.dir) / s["participant_id"] / "E4" / "HR.csv", skiprows=2)
            t_hr = 10 + np.arange(len(hr))  # HR.csv starts 10 s after the other streams
            e4_hr = np.array([np.mean(hr[(t_hr >= e - window_s) & (t_hr < e)] if ((t_hr >= e - window_s) & (t_hr < e)).any()
                                      else [0.0]) for e in end_s])
            sessions.append((s["participant_id"], table, end_s, study.annotations(s["id"]), np.round(10 * e4_hr)))
    names = sessions[0][1].names
    normalised = np.array([n in F.NORMALISED for n in names])

    def normalise(X, good, how):
        if how == "none":
            return X
        if how.startswith("start_"):
            return baseline_normalise(X, baseline_mean(X, good, int(how[6:])), names)
        if how == "running":
            counts = np.maximum(np.cumsum(good), 1)[:, None]
            means = np.cumsum(np.where(good[:, None], X, 0), axis=0) // counts
            return np.where(normalised, X - means, X)
        mean, sd = X[good].mean(0), X[good].std(0) + 1
        return np.where(normalised, np.round(100 * (X - mean) / sd), X).astype(np.int64)

    def dataset(mapping, how, e4=False):
        Xs, ys, gs = [], [], []
        for pid, table, end_s, annotations, e4_hr in sessions:
            good = (table.quality & UNTRUSTED) == 0
            X = normalise(table.X.astype(np.int64), good, how)
            if e4:  # normalised like hr_mean: minus its own calibration mean
                calibration = e4_hr[good][:int(how[6:])].mean() if how.startswith("start_") else 0.0
                X = np.column_stack([X, np.round(e4_hr - calibration).astype(np.int64)])
            y = window_labels(end_s, window_s, annotations, mapping, margin_s)
            keep = y >= 0
            Xs.append(X[keep]), ys.append(y[keep]), gs.append(np.full(int(keep.sum()), pid))
        return np.concatenate(Xs), np.concatenate(ys), np.concatenate(gs)

    def forest(seed):
        return ExtraTreesClassifier(30, max_depth=6, min_samples_leaf=5, class_weight="balanced", random_state=seed)

    def quantized_predict(X, y, train, test, seed, make=forest):
        model = make(seed).fit(X[train], y[train])
        return watch_predict(on_watch(model, X[train], F.FEATURE_SPEC_ID_NO_GYRO), X[test])

    def mlp(seed):
        return WatchMLP((16, 8), alpha=1.0, class_weight="balanced", random_state=seed)

    def lopo(X, y, g, make=forest):
        f1s = []
        for seed in range(args.seeds):
            pred = np.zeros_like(y)
            for p in sorted(set(g)):
                pred[g == p] = quantized_predict(X, y, g != p, g == p, seed, make)
            f1s.append(round(float(f1_score(y, pred, average="macro")), 3))
        return {"seeds": f1s, "mean": round(float(np.mean(f1s)), 3)}

    out: dict = {"window_s": window_s, "model": "quantized ExtraTrees 30 x depth 6, leaf 5, balanced", "tasks": {}}
    for task, (mapping, recipe_norm) in tasks.items():
        res: dict = {"normalisations": {}}
        for how in ("none", "start_12", "start_60", "start_120", "running", "session_z"):
            res["normalisations"][how] = lopo(*dataset(mapping, how))
        X, y, g = dataset(mapping, recipe_norm, e4=True)
        res["e4_hr"] = {"normalisation": recipe_norm, "with": lopo(X, y, g),
                        "without": res["normalisations"][recipe_norm]}
        X, y, g = dataset(mapping, recipe_norm)
        res["int8_mlp"] = {"normalisation": recipe_norm, "int8_mlp": lopo(X, y, g, mlp),
                           "extratrees": res["normalisations"][recipe_norm]}
        people = sorted(set(g))
        curve = {}
        for n_train in (1, 2):
            f1s = [f1_score(y[g == test], quantized_predict(X, y, np.isin(g, chosen), g == test, seed), average="macro")
                   for test in people for chosen in itertools.combinations([p for p in people if p != test], n_train)
                   for seed in range(args.seeds)]
            curve[str(n_train)] = round(float(np.mean(f1s)), 3)
        res["training_participants"] = curve
        within = []
        for p in people:
            rows = np.where(g == p)[0]
            first = np.zeros(len(rows), dtype=bool)
            for c in (0, 1):
                idx = np.where(y[rows] == c)[0]
                first[idx[:len(idx) // 2]] = True
            for a, b in ((first, ~first), (~first, first)):
                pred = forest(0).fit(X[rows[a]], y[rows[a]]).predict(X[rows[b]])
                within.append(f1_score(y[rows[b]], pred, average="macro"))
        res["within_participant"] = round(float(np.mean(within)), 3)
        out["tasks"][task] = res
        print(task, json.dumps(res), file=sys.stderr, flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Quantized watch models against their float models on held-out WESAD windows.

    python tools/bench/model_agreement.py /work/shared/data/wesad-e4-dev [--board esp32s3-wrist]

For a board's feature set, the shipped-model recipe's windows (training/ship_models.py), leave
one subject out: each held-out subject is predicted by the float scikit-learn forest trained
on the others and by its quantized watch form (and likewise by a float MLP 12-16-2 and its
int8 form). Targets: agreement >= 99%, macro-F1 within 0.01. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "training"))
from ship_models import load_windows  # noqa: E402

from wears.mlp import fit_mlp, quantize_mlp  # noqa: E402
from wears.model_card import evaluate_quantized  # noqa: E402
from wears.paths import board_profile  # noqa: E402
from wears.train import default_model  # noqa: E402


def mlp_loso(X, y, groups, spec) -> dict:
    float_pred = np.empty_like(y)
    quant_pred = np.empty_like(y)
    for g in sorted(set(groups)):
        test = groups == g
        fm = fit_mlp(X[~test], y[~test], hidden=(16,))
        qm = quantize_mlp(fm, X[~test], spec)
        float_pred[test] = fm.predict(X[test])
        quant_pred[test] = qm.classes_[qm.predict(X[test])]
    return {"agreement": float(np.mean(float_pred == quant_pred)),
            "macro_f1_float": float(f1_score(y, float_pred, average="macro")),
            "macro_f1_quantized": float(f1_score(y, quant_pred, average="macro"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--board", default="esp32s3-wrist")
    args = parser.parse_args(argv)
    profile = board_profile(args.board)
    per = {s.name: load_windows(s, profile) for s in sorted(args.data.iterdir()) if (s / "E4").is_dir()}
    X = np.concatenate([v[0] for v in per.values()])
    y = np.concatenate([v[1] for v in per.values()])
    groups = np.concatenate([[k] * len(v[1]) for k, v in per.items()])
    spec = next(iter(per.values()))[2]
    trees = evaluate_quantized(X, y, groups, lambda: default_model(0), spec)
    mlp = mlp_loso(X, y, groups, spec)
    result = {"board": profile["id"], "protocol": trees["protocol"], "n_windows": trees["n_windows"],
              "subjects": sorted(per), "agreement": trees["agreement"],
              "macro_f1_float": round(trees["macro_f1_float"], 4),
              "macro_f1_quantized": round(trees["macro_f1_quantized"], 4),
              "macro_f1_delta": round(abs(trees["macro_f1_float"] - trees["macro_f1_quantized"]), 4),
              "mlp_agreement": round(mlp["agreement"], 4), "mlp_macro_f1_float": round(mlp["macro_f1_float"], 4),
              "mlp_macro_f1_quantized": round(mlp["macro_f1_quantized"], 4)}
    print(f"trees: quantized agrees with float on {100 * result['agreement']:.2f}% of {result['n_windows']} held-out "
          f"windows; macro-F1 {result['macro_f1_float']} float, {result['macro_f1_quantized']} quantized")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Quantized watch models against their float models on held-out WESAD windows.

    python tools/bench/model_agreement.py /work/shared/data/wesad-e4-dev [--recipe PATH]

The shipped models' recipe (training/recipes/ship-valence.toml) through the recipe pipeline,
leave one subject out: the forest's figures are `wears.train`'s own (each held-out subject
predicted by the float forest trained on the others and by its quantized watch form); an MLP
12-16-2 and its int8 form are scored on the same windows and folds. Targets: agreement >= 99%,
macro-F1 within 0.01. The last line is one JSON object.
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
from ship_models import RECIPE, card_evaluation, wesad_study  # noqa: E402

from wears.db import Study  # noqa: E402
from wears.mlp import fit_mlp, quantize_mlp  # noqa: E402
from wears.recipe import load_recipe  # noqa: E402
from wears.train import build_dataset, train_recipe  # noqa: E402


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
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    args = parser.parse_args(argv)
    recipe = load_recipe(args.recipe)
    with wesad_study(args.data) as path:
        trained = train_recipe(recipe, study=path)
        w, f = recipe["windows"], recipe["features"]
        data = build_dataset(Study.open(path), window_s=w["length_s"], step_s=w["step_s"], mapping=recipe.mapping,
                             margin_s=recipe["labels"]["margin_s"], keep=w["keep"], normalise=f["normalise"],
                             baseline_label=f["baseline_label"], baseline_windows=f["baseline_windows"])
    trees = card_evaluation(trained.report)
    mlp = mlp_loso(data.X, data.y, data.groups, data.feature_spec)
    result = {"recipe": recipe.name, "protocol": trees["protocol"], "n_windows": trees["n_windows"],
              "subjects": trained.report["participants"], "window_s": trained.window_s, "step_s": trained.step_s,
              "agreement": trees["agreement"], "macro_f1_float": round(trees["macro_f1_float"], 4),
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

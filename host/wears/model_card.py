"""Model cards: what a shipped or exported model is, next to it (`<model>.card.md` + `.card.json`).

A card says the data and its licence, the evaluation protocol and its figures, the feature set,
the size and the budget it fits, and how far the quantized watch model agrees with the float
model it came from on held-out windows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from watch import blob as B

from .blob import read_blob
from .feature_specs import describe_spec


def evaluate_quantized(X: np.ndarray, y: np.ndarray, groups: np.ndarray, make_model: Callable,
                       feature_spec: int) -> dict:
    """Leave one group (participant) out: float and quantized predictions on each held-out
    group, their macro-F1 and accuracy, and the quantized model's agreement with the float one."""
    from .export import quantize_forest

    float_pred = np.empty_like(y)
    quant_pred = np.empty_like(y)
    per = {}
    for g in sorted(set(groups)):
        test = groups == g
        model = make_model().fit(X[~test], y[~test])
        qf = quantize_forest(model, X[~test], feature_spec)
        float_pred[test] = model.predict(X[test])
        quant_pred[test] = qf.classes_[qf.predict(X[test])]
        per[str(g)] = {"n_windows": int(test.sum()), "accuracy_float": float(np.mean(float_pred[test] == y[test]))}
    return {
        "protocol": "leave one participant out" if len(set(groups)) > 1 else "none (one participant)",
        "n_windows": int(len(y)),
        "class_counts": {int(c): int(np.sum(y == c)) for c in np.unique(y)},
        "accuracy_float": float(accuracy_score(y, float_pred)),
        "accuracy_quantized": float(accuracy_score(y, quant_pred)),
        "macro_f1_float": float(f1_score(y, float_pred, average="macro")),
        "macro_f1_quantized": float(f1_score(y, quant_pred, average="macro")),
        "agreement": float(np.mean(float_pred == quant_pred)),
        "per_participant": per,
    }


def write_card(model_path: str | Path, blob: bytes, model, *, evaluation: dict | None, feature_names: list[str],
               board: dict | None, data: str, recipe: str, class_names: list[str]) -> Path:
    """Write `<model>.card.md` and `<model>.card.json` next to `model_path`; returns the .md path."""
    info = read_blob(blob)
    path = Path(model_path)
    budget = board.get("model_budget_bytes", B.MAX_BYTES) if board else B.MAX_BYTES
    nodes = "nodes" if info.version < 2 else "inner nodes"
    shape = (f"{info.n_trees} trees, {info.n_nodes} {nodes}, {info.n_leaves} distinct leaves"
             if info.n_trees is not None else f"int8 MLP {getattr(model, 'shape', '')}")
    window = {"window_s": info.window_s, "step_s": info.step_s, "baseline_windows": info.baseline_windows}
    card = {"model": path.name, "model_id": f"{info.model_id:08x}", "kind": info.kind_name, "shape": shape,
            "size_bytes": info.size, "budget_bytes": budget, "fits_budget": info.size <= budget,
            "board": board["id"] if board else None, "feature_spec": info.feature_spec,
            "features": feature_names, "classes": class_names, "windows": window, "data": data, "recipe": recipe,
            "evaluation": evaluation}
    path.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
    lines = [f"# Model card: {path.name}", "",
             f"- Model id `{card['model_id']}`, {info.kind_name}: {shape}.",
             f"- Size {info.size} bytes as a signed blob; the budget is {budget} bytes"
             + (f" ({board['id']}, heap budget {board.get('heap_budget_bytes')} bytes)" if board else "")
             + (": fits." if card["fits_budget"] else ": DOES NOT FIT."),
             f"- {describe_spec(info.feature_spec).capitalize()}: {', '.join(feature_names)}.",
             (f"- Windows (in the blob, the watch computes them): {info.window_s} s every {info.step_s} s; baseline "
              + (f"of {info.baseline_windows} calm windows subtracted." if info.baseline_windows else "none.")
              if info.window_s else "- Windows: not given in the blob (the board profile's apply)."),
             f"- Classes: {', '.join(class_names)}.", f"- Data: {data}", f"- Recipe: `{recipe}`.", ""]
    if evaluation:
        e = evaluation

        def fmt(v):
            return "not measured" if v is None else f"{v:.3f}"

        lines += ["## Evaluation", "", f"Protocol: {e['protocol']}, {e['n_windows']} windows "
                  f"(per class {e['class_counts']}).", "",
                  "| | float model | quantized (watch) |", "| --- | --- | --- |",
                  f"| accuracy | {fmt(e['accuracy_float'])} | {fmt(e['accuracy_quantized'])} |",
                  f"| macro-F1 | {fmt(e['macro_f1_float'])} | {fmt(e['macro_f1_quantized'])} |", "",
                  f"The watch's quantized model agrees with the float model on {100 * e['agreement']:.2f}% of the "
                  f"{e.get('agreement_on', 'held-out windows')}.", "",
                  "Three subjects are too few for a claim about people in general: these figures describe "
                  "this data and protocol only.", ""]
    else:
        lines += ["## Evaluation", "", "None was given for this export.", ""]
    out = path.with_suffix(".card.md")
    out.write_text("\n".join(lines))
    return out

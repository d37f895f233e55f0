"""Evaluation metrics and the training report (JSON for scripts, an HTML page with plots)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score


def _macro_f1(y: np.ndarray, pred: np.ndarray, labels: list[int]) -> float:
    # zero_division is unannotated in scikit-learn: pyright takes str from its default "warn",
    # while the documented values include 0.
    return float(f1_score(y, pred, average="macro", labels=labels,
                          zero_division=0))  # pyright: ignore[reportArgumentType]


def scores(y: np.ndarray, pred: np.ndarray, n_classes: int, proba: np.ndarray | None = None,
           groups: np.ndarray | None = None) -> dict:
    """accuracy, macro_f1, balanced_accuracy, confusion (rows: truth), calibration and per participant."""
    labels = list(range(n_classes))
    out = {"n_windows": int(len(y)), "accuracy": float(accuracy_score(y, pred)),
           "macro_f1": _macro_f1(y, pred, labels),
           "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
           "confusion": confusion_matrix(y, pred, labels=labels).tolist()}
    if proba is not None:
        out["calibration"] = calibration(y, proba)
    if groups is not None:
        out["per_participant"] = {
            str(g): {"n_windows": int(np.sum(groups == g)), "accuracy": float(np.mean(pred[groups == g] == y[groups == g])),
                     "macro_f1": _macro_f1(y[groups == g], pred[groups == g], labels)}
            for g in sorted(set(groups.tolist()))}
    return out


def calibration(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> dict:
    """Reliability of the predicted class's probability: ECE, Brier score and the reliability table."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            table.append({"confidence": float(conf[sel].mean()), "accuracy": float(correct[sel].mean()),
                          "n": int(sel.sum())})
            ece += sel.mean() * abs(conf[sel].mean() - correct[sel].mean())
    onehot = np.eye(proba.shape[1])[y]
    return {"ece": float(ece), "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1))), "bins": table}


def _figure_png(draw) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    draw(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(rows: list[list], head: list[str]) -> str:
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows) + "</table>")


def write_html(report: dict, path: str | Path) -> None:
    """The report as one self-contained HTML page: headline, models, ablation, confusion, calibration."""
    classes = report["classes"]
    best = report["evaluation"][report["deploy"]]
    parts = [f"<h1>{html.escape(report['recipe']['name'])}</h1>",
             f"<p><b>Protocol:</b> {html.escape(report['protocol'])}. {len(report['participants'])} participants, "
             f"{report['n_windows']} windows of {report['window_s']} s every {report['step_s']} s; "
             f"feature set v{report['feature_version']} (spec {report['feature_spec']}).</p>"]
    if report.get("warning"):
        parts.append(f"<p style='color:#b00'><b>Warning:</b> {html.escape(report['warning'])}</p>")
    if report.get("gaps"):
        parts.append("<p><b>Gaps in the samples</b> (never received; no window spans one): " + "; ".join(
            f"session {html.escape(sid)} ({html.escape(str(g['participant']))}): {g['windows']} windows left out, "
            f"{g['labelled']} of them labelled" for sid, g in report["gaps"].items()) + ".</p>")
    parts.append("<h2>Models (same folds)</h2>")
    on_watch = report.get("evaluation_quantized", {})
    parts.append(_table([[name, m["accuracy"], m["macro_f1"], m["balanced_accuracy"],
                          m.get("calibration", {}).get("ece", ""), on_watch.get(name, {}).get("macro_f1", "")]
                         for name, m in report["evaluation"].items()],
                        ["model", "accuracy", "macro-F1", "balanced accuracy", "ECE", "on-watch macro-F1"]))
    if "quantized" in report:
        q = report["quantized"]
        kinds = ", ".join(c["kind"] for c in report.get("selected", {}).get(report["deploy"], []))
        parts.append(f"<p>Quantized on-watch {report['deploy']} ({kinds} by fold): accuracy {q['accuracy']:.3f}, "
                     f"macro-F1 {q['macro_f1']:.3f}.</p>")
    if report.get("ablation"):
        parts.append("<h2>Ablation (deployed model kind, same folds)</h2>")
        parts.append(_table([[k, v["accuracy"], v["macro_f1"], v["balanced_accuracy"]]
                             for k, v in report["ablation"].items()], ["features", "accuracy", "macro-F1",
                                                                      "balanced accuracy"]))
    parts.append("<h2>Per participant</h2>")
    watch_rows = report.get("quantized", {}).get("per_participant", {})
    parts.append(_table([[p, v["n_windows"], v["accuracy"], v["macro_f1"], watch_rows.get(p, {}).get("macro_f1", "")]
                         for p, v in best.get("per_participant", {}).items()],
                        ["participant", "windows", "accuracy", "macro-F1", "on-watch macro-F1"]))

    def confusion(ax):
        cm = np.array(best["confusion"])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{report['deploy']}: confusion")

    def reliability(ax):
        bins = best.get("calibration", {}).get("bins", [])
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-")
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title("calibration")

    for draw in (confusion, reliability):
        parts.append(f"<img src='data:image/png;base64,{_figure_png(draw)}'>")
    parts.append("<h2>Provenance</h2><pre>" + html.escape(json.dumps(
        {k: report[k] for k in ("data_sha256", "study", "recipe", "versions", "commit", "excluded_windows", "class_counts",
                                "selected") if k in report}, indent=2)) + "</pre>")
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
    Path(path).write_text(f"<!doctype html><meta charset=utf-8><title>{html.escape(report['recipe']['name'])}</title>"
                          f"<style>{style}</style>" + "\n".join(parts))

"""Recipe for the shipped default models (models/<board>.wbl + model cards) from WESAD.

Data: the WESAD wrist (Empatica E4) recordings, BVP and ACC resampled to each board's PPG and
IMU rates and units, windows and features as the watch computes them (wears.features), labels
amusement = pleasant, stress = unpleasant (the valence proxy of ../shared/data/README.md), with
10 s margins at segment edges. E4 has no gyroscope: gyro features are zero in training, so a
gyro board's model never splits on them. Evaluation: leave one subject out; the quantized
model's agreement with the float model is measured on the held-out windows.

Kept small on purpose: `load_windows` is the only WESAD-specific part; point it at the
recipes of training/recipes/*.toml once they exist.

    python training/ship_models.py /work/shared/data/wesad-e4-dev models/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from watch import features as F
from wears.blob import DISTRIBUTION_KEY
from wears.export import quantize_forest
from wears.features import extract_features
from wears.model_card import evaluate_quantized, write_card
from wears.paths import HARDWARE, board_profile
from wears.train import VALENCE, default_model, window_labels

ACC_UNIT_G = {4: 0.122e-3, 8: 0.244e-3, 2: 0.061e-3}  # LSM6DS3TR-C / similar IMUs, g per LSB by range
MARGIN_S = 10
LABELS = {"amusement": "pleasant", "stress": "unpleasant"}
# Windows left out: those without trustworthy beats. Low PPG quality stays in: the watch flags
# those predictions, and the Trier Social Stress Test (speaking, moving) is low quality on the
# E4 almost throughout, so leaving them out would leave almost no unpleasant windows.
UNUSABLE = F.FLAG_FEW_BEATS | F.FLAG_WARMUP | F.FLAG_GAP


def _csv(path: Path) -> tuple[float, np.ndarray]:
    rate = float(path.read_text().split("\n", 2)[1].split(",")[0])
    return rate, np.loadtxt(path, skiprows=2, delimiter=",")


def load_windows(subject: Path, profile: dict, window_s: int = 30, step_s: int = 5):
    """(X, y) of one WESAD subject at a board's rates: trusted, labelled windows only."""
    ppg_rate = profile["sensors"]["ppg"]["rate_hz"]
    imu = profile["sensors"]["imu"]
    imu_rate = imu["rate_hz"]
    has_gyro = "gyro_range_dps" in imu
    unit = ACC_UNIT_G.get(imu.get("accel_range_g", 4), 0.122e-3)
    _, bvp = _csv(subject / "E4" / "BVP.csv")
    _, acc = _csv(subject / "E4" / "ACC.csv")
    ir = np.clip(np.round(110000 - 20 * resample_poly(bvp, ppg_rate, 64)), 0, 2 ** 18 - 1).astype(np.int64)
    acc_lsb = np.clip(np.round(resample_poly(acc / 64, imu_rate, 32, axis=0) / unit), -32768, 32767).astype(np.int16)
    gyro = np.zeros_like(acc_lsb) if has_gyro else None
    table = extract_features(ir, acc_lsb, gyro, ppg_rate=ppg_rate, imu_rate=imu_rate, window_s=window_s,
                             step_s=step_s, acc_unit_g=unit, gyro_unit_dps=0.0175 if has_gyro else 0.0)
    rows = [line.split(",") for line in (subject / "annotations.csv").read_text().splitlines()[1:] if line]
    annotations = [(float(a) + MARGIN_S, float(b) - MARGIN_S, LABELS[label]) for a, b, label, *_ in rows
                   if label in LABELS]
    y = window_labels(table.window_end / ppg_rate, window_s, annotations, VALENCE)
    keep = (y >= 0) & ((table.quality & UNUSABLE) == 0)
    return table.X[keep], y[keep], table.spec_id, list(table.names)


def ship(data: Path, out: Path, boards: list[str]) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for board in boards:
        profile = board_profile(board)
        subjects = sorted(p for p in data.iterdir() if (p / "E4").is_dir())
        per = {s.name: load_windows(s, profile) for s in subjects}
        spec, names = next(iter(per.values()))[2:]
        X = np.concatenate([v[0] for v in per.values()])
        y = np.concatenate([v[1] for v in per.values()])
        groups = np.concatenate([[k] * len(v[1]) for k, v in per.items()])
        evaluation = evaluate_quantized(X, y, groups, lambda: default_model(0), spec)
        forest = default_model(0).fit(X, y)
        qf = quantize_forest(forest, X, spec)
        budget = profile.get("model_budget_bytes", 16384)
        blob = qf.to_blob(DISTRIBUTION_KEY, max_bytes=min(budget, 16384))
        path = out / f"{profile['id']}.wbl"
        path.write_bytes(blob)
        card = write_card(path, blob, qf, evaluation=evaluation, feature_names=names, board=profile,
                          data=("WESAD wrist recordings (Empatica E4), subjects " + ", ".join(per)
                                + "; licence: non-commercial academic use only (Schmidt et al., ICMI 2018). "
                                "Valence proxy: amusement = pleasant, stress = unpleasant; 30 s windows every "
                                "5 s, 10 s margins at segment edges, windows with too few beats left out (low PPG quality kept); BVP/ACC resampled to the board's rates; "
                                "E4 has no gyroscope (gyro features are zero in training)."),
                          recipe="training/ship_models.py", class_names=list(VALENCE))
        results.append({"board": profile["id"], "size_bytes": len(blob), "model_id": f"{qf.model_id:08x}",
                        **{k: evaluation[k] for k in ("n_windows", "agreement", "macro_f1_float",
                                                      "macro_f1_quantized")}, "card": str(card)})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="wesad-e4-dev folder (SX/E4, SX/annotations.csv)")
    parser.add_argument("out", type=Path, nargs="?", default=Path("models"))
    parser.add_argument("--board", action="append", help="board ids (default: every hardware/*.json)")
    args = parser.parse_args(argv)
    boards = args.board or sorted(p.stem for p in HARDWARE.glob("*.json"))
    for r in ship(args.data, args.out, boards):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

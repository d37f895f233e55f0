"""The shipped default models (models/<board>.wbl + model cards), made by the recipe pipeline.

The WESAD subjects are imported into a temporary study (`wears import e4`), the recipe
(training/recipes/ship-valence.toml by default) is trained with `wears.train.train_recipe`
like every other model (leave one participant out, the quantized model's agreement with the
float one measured on the held-out windows), and the deployed forest is exported for each
board: the recipe's window settings go into the blob, the features are put in the order the
board computes them (the E4 has no gyroscope: on a board with one, the gyroscope features are
present and never split on), and the blob must fit the board's model budget and 16 KB.

    python training/ship_models.py /work/shared/data/wesad-e4-dev [models/] [--board ID]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from watch import features as F
from wears.blob import DISTRIBUTION_KEY
from wears.db import Study
from wears.export import quantize_forest, window_of
from wears.importers.e4 import import_e4
from wears.model_card import write_card
from wears.paths import HARDWARE, board_profile
from wears.recipe import load_recipe
from wears.train import TrainedModel, train_recipe

RECIPE = Path(__file__).resolve().parent / "recipes" / "ship-valence.toml"
MAX_SHIPPED_BYTES = 16384  # the bound on a default model


@contextmanager
def wesad_study(data: Path) -> Iterator[Path]:
    """A temporary study database holding every WESAD subject folder of `data` (SX/E4,
    SX/annotations.csv), imported with `wears import e4`; removed afterwards."""
    subjects = sorted(p for p in data.iterdir() if (p / "E4").is_dir())
    if not subjects:
        raise SystemExit(f"{data}: no WESAD subject folders (SX/E4)")
    with tempfile.TemporaryDirectory(prefix="wears-ship-") as tmp:
        path = Path(tmp) / "wesad.db"
        study = Study.open(path)
        for subject in subjects:
            import_e4(study, subject)
        study.conn.close()
        yield path


def train(data: Path, recipe_path: Path = RECIPE) -> TrainedModel:
    """The recipe trained on the WESAD recordings in `data`."""
    with wesad_study(data) as path:
        return train_recipe(load_recipe(recipe_path), study=path)


def card_evaluation(report: dict) -> dict:
    """The model card's evaluation from a training report: the float forest's out-of-fold
    figures and the quantized (watch) forest's on the same held-out windows."""
    float_scores, quantized = report["evaluation"]["extratrees"], report["quantized"]
    return {"protocol": report["protocol"], "n_windows": report["n_windows"],
            "class_counts": report["class_counts"], "accuracy_float": float_scores["accuracy"],
            "accuracy_quantized": quantized["accuracy"], "macro_f1_float": float_scores["macro_f1"],
            "macro_f1_quantized": quantized["macro_f1"], "agreement": quantized["agreement_with_float"],
            "agreement_on": "held-out windows", "per_participant": float_scores["per_participant"]}


def ship(trained: TrainedModel, out: Path, boards: list[str], subjects: list[str]) -> list[dict]:
    """Write each board's blob and card into `out`; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    base = quantize_forest(trained.model, trained.X_train, trained.feature_spec, window_of(trained))
    evaluation = card_evaluation(trained.report)
    data = ("WESAD wrist recordings (Empatica E4), subjects " + ", ".join(subjects)
            + "; licence: non-commercial academic use only (Schmidt et al., ICMI 2018). Imported with "
            f"`wears import e4`; labels, windows and margins from the recipe ({trained.report['recipe']['name']}: "
            f"amusement = pleasant, stress = unpleasant, {trained.window_s} s windows every {trained.step_s} s).")
    results = []
    for board in boards:
        profile = board_profile(board)
        has_gyro = "gyro_range_dps" in profile["sensors"].get("imu", {})
        spec = F.spec_for(has_gyro, baseline=trained.normalise is not None)[0]
        names = list(F.feature_names(has_gyro))
        qf = base.for_features(trained.feature_names, names, spec)
        budget = profile.get("model_budget_bytes", MAX_SHIPPED_BYTES)
        blob = qf.to_blob(DISTRIBUTION_KEY, max_bytes=min(budget, MAX_SHIPPED_BYTES))
        path = out / f"{profile['id']}.wbl"
        path.write_bytes(blob)
        card = write_card(
            path, blob, qf, evaluation=evaluation, feature_names=names, board=profile,
            data=data + (" E4 has no gyroscope: on this board the gyroscope features are computed and never "
                          "split on." if has_gyro else ""),
            recipe=f"training/ship_models.py with training/recipes/{Path(trained.report['recipe']['path']).name}",
            class_names=list(trained.classes))
        results.append({"board": profile["id"], "size_bytes": len(blob), "model_id": f"{qf.model_id:08x}",
                        "feature_spec": spec, "window_s": qf.window[0], "step_s": qf.window[1],
                        **{k: evaluation[k] for k in ("n_windows", "agreement", "macro_f1_float",
                                                      "macro_f1_quantized")}, "card": str(card)})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="wesad-e4-dev folder (SX/E4, SX/annotations.csv)")
    parser.add_argument("out", type=Path, nargs="?", default=Path("models"))
    parser.add_argument("--board", action="append", help="board ids (default: every hardware/*.json)")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    args = parser.parse_args(argv)
    boards = args.board or sorted(p.stem for p in HARDWARE.glob("*.json"))
    trained = train(args.data, args.recipe)
    subjects = trained.report["participants"]
    for r in ship(trained, args.out, boards, subjects):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

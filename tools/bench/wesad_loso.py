"""WESAD wrist recordings, leave one participant out, scored on the quantized on-watch model.

    python tools/bench/wesad_loso.py DIR --task valence|stress

Imports every subject folder of DIR (SX/E4/*.csv, SX/annotations.csv) with `wears import e4`
into a fresh study database, runs training/recipes/wesad-<task>.toml leaving one participant
out, and prints one JSON object as its last line: macro_f1 and accuracy of the on-device model's
quantized predictions (the recipe's deploy kind: ExtraTrees or the int8 MLP, chosen inside each
training fold with deploy = "auto"; scored through wears.export.quantize_forest /
wears.mlp.quantize_mlp, bit-exact with the watch's runtimes), per_participant, float_macro_f1
(the same models in floating point), windows, the kind chosen in each fold, every candidate's
float and quantized macro-F1, the ablation, and the quantized macro-F1 for seeds 0..N-1 (with
three participants the seed alone moves it by several points) with their mean and range.
"""

import argparse
import json
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def describe(chosen: dict) -> str:
    """One fold's chosen model in a few characters, e.g. "mlp 16-8 a1.0" or "extratrees 30x6"."""
    if chosen["kind"] == "mlp":
        return f"mlp {'-'.join(map(str, chosen['hidden']))} a{chosen['alpha']}"
    if chosen["kind"] == "extratrees":
        return f"extratrees {chosen['n_estimators']}x{chosen['max_depth']}"
    return chosen["kind"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--task", choices=["valence", "stress"], default="valence")
    ap.add_argument("--seeds", type=int, default=5,
                    help="also run seeds 1..N-1 (ExtraTrees and the search are random): macro_f1_seeds")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=TOML",
                    help='override a recipe setting, e.g. --set features.normalise=\'"baseline"\'')
    args = ap.parse_args()
    from wears.cli import main as wears
    from wears.recipe import load_recipe
    from wears.train import train_recipe

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "wesad.db"
        t0 = time.perf_counter()
        if wears(["import", "e4", args.dir, "--study", str(db)]) != 0:
            return 1
        t1 = time.perf_counter()
        recipe = load_recipe(REPO / "training" / "recipes" / f"wesad-{args.task}.toml")
        for item in args.set:
            key, value = item.split("=", 1)
            section, name = key.split(".", 1)
            recipe.settings[section][name] = tomllib.loads(f"v = {value}")["v"]
        trained = train_recipe(recipe, study=db)
        t2 = time.perf_counter()
        r = trained.report
        seeds = [r["quantized"]["macro_f1"]]
        kinds = [[c["kind"] for c in r["selected"][r["deploy"]]]]
        recipe.settings["evaluation"]["ablation"] = False
        recipe.settings["models"]["candidates"] = [r["deploy"]]  # the other seeds score the on-device model only
        for seed in range(1, args.seeds):
            recipe.settings["evaluation"]["seed"] = seed
            report = train_recipe(recipe, study=db).report
            seeds.append(report["quantized"]["macro_f1"])
            kinds.append([c["kind"] for c in report["selected"][report["deploy"]]])
    q = r["quantized"]
    print(json.dumps({
        "task": args.task, "overrides": args.set, "protocol": r["protocol"], "macro_f1": round(q["macro_f1"], 4),
        "accuracy": round(q["accuracy"], 4),
        "per_participant": {p: {k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()}
                            for p, s in q["per_participant"].items()},
        "float_macro_f1": round(r["evaluation"][r["deploy"]]["macro_f1"], 4), "windows": r["n_windows"],
        "deploy": r["deploy"], "selected_per_fold": [describe(c) for c in r["selected"][r["deploy"]]],
        "models_macro_f1": {k: round(v["macro_f1"], 4) for k, v in r["evaluation"].items()},
        "models_quantized_macro_f1": {k: round(v["macro_f1"], 4) for k, v in r["evaluation_quantized"].items()},
        "ablation_macro_f1": {k: round(v["macro_f1"], 4) for k, v in r.get("ablation", {}).items()},
        "macro_f1_seeds": [round(v, 4) for v in seeds], "macro_f1_seed_mean": round(sum(seeds) / len(seeds), 4),
        "macro_f1_seed_range": [round(min(seeds), 4), round(max(seeds), 4)], "kinds_per_fold_seeds": kinds,
        "class_counts": r["class_counts"], "import_s": round(t1 - t0, 1), "train_s": round(t2 - t1, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training-time bench: the default recipe on a generated 15-participant study of 2 h each.

    python tools/bench/train_time.py [--participants 15] [--hours 2]

Synthetic sessions (wears.sim.scenario.synthetic, the virtual watch's physiology) are written
to a study database as a watch would send them, then `train_recipe` runs the default recipe
(training/recipes/default.toml). Prints one JSON object: seconds for generation and for
training + evaluation (target < 300 s), windows, macro_f1 (synthetic data: tests the
pipeline, says nothing about accuracy).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--participants", type=int, default=15)
    ap.add_argument("--hours", type=float, default=2.0)
    args = ap.parse_args()
    from watch import protocol as P
    from wears.db import Study
    from wears.importers.e4 import _store
    from wears.recipe import load_recipe
    from wears.sim.scenario import synthetic
    from wears.train import train_recipe

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "study.db"
        study = Study.open(db)
        t0 = time.perf_counter()
        episode_s, rest_s = 300, 60
        n_episodes = int(args.hours * 3600 // (episode_s + rest_s))
        for i in range(args.participants):
            sc = synthetic(100 + i, participant=f"P{i + 1:02d}", rest_s=rest_s, episode_s=episode_s,
                           n_episodes=n_episodes)
            sid = study.new_session(sc.participant, source="virtual")
            _store(study, sid, P.PPG, sc.ppg, sc.ppg_rate, 1.0)
            _store(study, sid, P.ACC, sc.imu[:, :3], sc.imu_rate, 1e-3)
            _store(study, sid, P.GYRO, sc.imu[:, 3:], sc.imu_rate, 0.1)
            study.conn.commit()
            study.add_annotations(sid, sc.episodes)
            study.end_session(sid, "complete")
        t1 = time.perf_counter()
        trained = train_recipe(load_recipe(REPO / "training" / "recipes" / "default.toml"), study=db)
        t2 = time.perf_counter()
    r = trained.report
    print(json.dumps({"participants": args.participants, "hours_each": args.hours, "windows": r["n_windows"],
                      "protocol": r["protocol"], "generate_s": round(t1 - t0, 1),
                      "train_evaluate_s": round(t2 - t1, 1), "target_s": 300,
                      "macro_f1_synthetic": round(r["macro_f1"], 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

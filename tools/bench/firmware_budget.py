"""Per board: heap, loss and radio throughput of the full firmware over a long virtual session.

Runs each board profile in hardware/ at its highest sample rates (the largest `rates_hz`)
on the virtual watch for `--minutes` of virtual time (default 60: the issue's one-hour
session), all streams on, with the board's shipped model (models/<board>.wbl, signed with
the watch's key) uploaded first, so that the upload and the model's predictions are part of
the measured heap (a frozen board imports the model's modules after boot: its upload is the
case the PineTime's budget must hold), and reports per board:
- heap_budget: the profile's `heap_budget_bytes`;
- sim_heapsize: the `-X heapsize` of the board (budget + the simulation's own measured
  cost: shims, frozen bytecode, the 64-bit binary's wider objects, margin; wears.sim.heap);
  with a model uploaded, `sim_heap_bytes(upload=True)`: the pointer width of the states
  from the upload on (`wears.sim.runner.pointer_width_bytes`, which says why that is honest);
- runs_at_budget: whether the whole session ran at that heapsize; when it did not (a
  MemoryError, or the model's upload refused as too large: no room for its block), the
  session runs again with 32 KB more (`board_session(extra_kb=)`; the PineTime's upload
  has been refused at 16 KB more once in an hour-long run: where its block lands depends on
  the heap's layout as the upload found it);
- min_free: the lowest `gc.mem_free()` (after a collection) the watch reported in STATUS
  (every 60 s);
- peak_heap: the firmware's own heap on the watch at its peak, to compare with heap_budget:
  the largest over the STATUS reports of the heap in use minus the shims, the frozen bytecode,
  the GC tables of the simulated heap beyond the watch's (`gc_tables`, `heap.table_credit`;
  negative where the watch's budget holds larger tables than the simulation's heap) and the
  pointer width of the state the report came from (`pointer_width_for`): a report before
  the upload is credited the boot's width, one that came while the upload was under way the
  upload's (`heap.width_bytes(upload=True)`: its module and `watch.blob`, the upload's
  object; a report made just before the first MODEL_BEGIN and received after it is credited
  that too: the boot's state, smaller, is never the peak), one with the model the width of
  the state with the model (`heap.width_bytes(model=True)`: its modules, the model, the
  feature engine and heart-rate estimator rebuilt around it, at their 32-bit size); whatever
  else is made after boot (the connection's objects) counts at its 64-bit size, which is
  conservative. `pointer_width` is the credit at the peak, `pointer_widths` the measured
  states (boot, model, upload); `peak_heap_64` is the peak before any pointer width;
  `peak_state` says which state the peak came from (boot, upload, model);
- model_id: the shipped model the watch ran; predictions: how many PREDICTION packets came;
- lost_samples: indices missing per stream (sequence and sample-index gaps);
- payload_efficiency: sample bytes / all notification bytes the watch sent;
- ble_bytes_per_s: notification bytes per virtual second, per stream;
- window_ms: median real time of one window's computation (features and heart rate) in the
  MicroPython binary at the board's top rates, viper where it applies: the per-window cost on
  the virtual watch (a watch's MCU is slower; tools/bench/features.py splits the cost).
With `--no-model` the sessions run without a model (no upload, no predictions), at the
no-model heapsize. Prints one JSON object as its last line.

    .venv/bin/python tools/bench/firmware_budget.py [--minutes 60] [--board pinetime] [--no-model]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import tempfile
from pathlib import Path

from watch import protocol as P
from wears.blob import new_key, resign
from wears.ble.virtual import VirtualBleakClient
from wears.client import WatchClient
from wears.errors import ModelBlobError
from wears.flash import default_model_path
from wears.paths import HARDWARE
from wears.protocol import Prediction, Samples, Status
from wears.sim import heap
from wears.sim.runner import (FIRMWARE, VirtualWatch, compiled_tree, micropython_binary, micropython_path_compiled,
                              sim_heap_bytes)
from wears.sim.scenario import synthetic
from watch import segments
_SIZES = {P.STATUS: P.STATUS_BODY, P.EVENT: P.EVENT_BODY, P.RESULT: P.RESULT_BODY, P.PONG: P.PONG_BODY,
          P.STREAM_INFO: P.STREAM_INFO_BODY, P.HEART_RATE: P.HEART_RATE_BODY, P.LOG_INFO: P.LOG_INFO_BODY}


def _packet_size(packet) -> int:
    if isinstance(packet, Samples):
        return P.HEADER_SIZE + P.SAMPLES_BODY_SIZE + packet.count * P.SAMPLE_SIZES[packet.stream]
    if packet.type == P.PREDICTION:
        return P.HEADER_SIZE + struct.calcsize(P.PREDICTION_BODY) + len(packet.proba)
    if packet.type == P.AUTH_CHALLENGE:
        return P.HEADER_SIZE + 2 + P.NONCE_SIZE
    return P.HEADER_SIZE + struct.calcsize(_SIZES[packet.type])


def _size(packet, mtu: int) -> int:
    """Notification bytes the packet took: whole, or in segments with one header byte each."""
    n = _packet_size(packet)
    return n + segments.count(n, mtu - 3)


async def board_session(board: str, minutes: float, work: Path, extra_kb: int = 32, model: bool = True) -> dict:
    """One session per board at its heapsize; again with `extra_kb` more when it did not fit."""
    try:
        result = await _session(board, minutes, work, 0, model)
        result["runs_at_budget"] = True
    except MemoryError as e:
        result = await _session(board, minutes, work, extra_kb * 1024, model)
        result["runs_at_budget"] = False
        result["at_budget"] = str(e)
    result["fits_budget"] = result["runs_at_budget"] and result["peak_heap"] is not None and (
        result["peak_heap"] <= result["heap_budget"])
    return result


async def _session(board: str, minutes: float, work: Path, extra: int, with_model: bool = True) -> dict:
    profile = json.loads((HARDWARE / f"{board}.json").read_text())
    for role in profile["sensors"].values():
        role["rate_hz"] = max(role.get("rates_hz", [role["rate_hz"]]))
    path = work / f"{board}.json"
    path.write_text(json.dumps(profile))
    scenario = work / f"{board}.wscn"
    # The clock runs as fast as the CPU while the host uploads in real time: a 20-byte link's
    # upload takes a few virtual minutes (up to five seen on a loaded machine), which the scenario
    # adds before the streams' span: a scenario that ends mid-upload powers the watch off.
    seconds = int(minutes * 60) + 20 + (900 if with_model else 0)
    synthetic(3, rest_s=60, episode_s=90, n_episodes=max(1, (seconds - 60) // 90 + 1)).write(scenario)
    packets: list = []
    uploading = range(0)  # the packets that came while the upload was under way
    key = new_key()
    model = resign(default_model_path(board).read_bytes(), key)
    heapsize = sim_heap_bytes(profile, upload=with_model) + extra
    vw = VirtualWatch(scenario, board=str(path), heapsize=heapsize - extra, heap_extra=extra, key=key)
    try:
        await vw.start_async()
        async with WatchClient(vw.address, backend=VirtualBleakClient, on_packet=lambda c, p: packets.append(p),
                               timeout=60) as watch:
            mtu = watch.mtu
            try:
                if with_model:
                    start = len(packets)
                    await watch.upload_model(model)
                    uploading = range(start, len(packets))
            except ModelBlobError as e:  # E_TOO_LARGE: no room for the model's block at this heap
                raise MemoryError(f"model upload: {e}") from e
            await watch.start(0xFF)
            await watch.disconnected.wait()
        while vw.returncode is None:
            await asyncio.sleep(0.05)
    except MemoryError:
        raise
    except Exception as e:  # the watch ran out of heap (at boot or later), or something else went wrong
        out = f"{e}\n{vw.stdout}\n{vw.stderr}"
        if "MemoryError" in out:
            raise MemoryError([line for line in out.splitlines() if "MemoryError" in line][-1]) from e
        raise
    finally:
        vw.stop()
    if "MemoryError" in vw.stdout + vw.stderr:
        raise MemoryError((vw.stdout + vw.stderr).strip().splitlines()[-1])
    statuses = [p for p in packets if isinstance(p, Status)]
    min_free = min(s.heap_free for s in statuses) if statuses else None
    per_stream: dict[str, dict] = {}
    sample_bytes = total = 0
    ticks = [p.tick for p in packets if isinstance(p, Samples)]  # the span the streams cover
    span_s = (max(ticks) - min(ticks)) / 1000 if ticks else 1
    for p in packets:
        n = _size(p, mtu)
        total += n
        if isinstance(p, Samples):
            s = per_stream.setdefault(P.STREAM_NAMES[p.stream], {"bytes": 0, "next": None, "lost": 0, "samples": 0})
            s["bytes"] += n
            s["samples"] += p.count
            sample_bytes += p.count * P.SAMPLE_SIZES[p.stream]
            if s["next"] is not None and p.first_index > s["next"]:
                s["lost"] += p.first_index - s["next"]
            s["next"] = p.first_index + p.count
    binary, mpy_path = micropython_binary(), micropython_path_compiled()
    shims = heap.shim_bytes(profile, binary, mpy_path)
    frozen = heap.frozen_bytes(profile, binary, mpy_path, FIRMWARE)
    widths = {"boot": heap.width_bytes(profile, binary, mpy_path)}
    if with_model:
        widths["model"] = heap.width_bytes(profile, binary, mpy_path, model=True)
        widths["upload"] = heap.width_bytes(profile, binary, mpy_path, upload=True)
    # gc.mem_free() leaves out the GC's tables: the heap area in use is the rest of heapsize.
    # The watch's budget holds its own (smaller) tables: net, the credit of heap.table_credit.
    tables = heap.table_credit(heapsize, profile["heap_budget_bytes"])
    peak = firmware_peak(statuses, report_states(packets, uploading), heapsize - tables - shims - frozen, widths)
    return {
        "heap_budget": profile["heap_budget_bytes"],
        "sim_heapsize": heapsize - extra,
        "ran_at_heapsize": heapsize,
        "shim_heap": shims,
        "frozen_bytecode": frozen,
        "pointer_width": peak and peak["pointer_width"],
        "pointer_widths": widths,
        "gc_tables": tables,
        "min_free": min_free,
        "peak_heap": peak and peak["peak_heap"],
        "peak_heap_64": peak and peak["peak_heap_64"],
        "peak_state": peak and peak["state"],
        "status_reports": len(statuses),
        "model_id": statuses[-1].model_id if statuses else None,  # 0: none
        "predictions": sum(isinstance(p, Prediction) for p in packets),
        "virtual_s": round(span_s, 1),
        "rates_hz": {r: c["rate_hz"] for r, c in profile["sensors"].items()},
        "lost_samples": {k: v["lost"] for k, v in per_stream.items()},
        "samples": {k: v["samples"] for k, v in per_stream.items()},
        "mtu": mtu,
        "payload_efficiency": round(sample_bytes / total, 4) if total else None,
        "ble_bytes_per_s": {k: round(v["bytes"] / span_s, 1) for k, v in per_stream.items()},
        "window_ms": window_ms(profile),
    }


def report_states(packets: list, uploading: range) -> list[str]:
    """The state each STATUS report among `packets` came from: "model" for one with a model
    running (a report made after the commit can arrive before the upload's last reply),
    "upload" for one that came while the upload was under way (`uploading`: those packets'
    indices), "boot" for the rest."""
    return ["model" if p.model_id else "upload" if i in uploading else "boot"
            for i, p in enumerate(packets) if isinstance(p, Status)]


def pointer_width_for(state: str, widths: dict[str, int]) -> int:
    """The pointer-width credit of a report's `state` (`report_states`): its measured width
    (`widths`: the bench's `pointer_widths`), the boot's for a state the session did not measure."""
    return widths.get(state, widths["boot"])


def firmware_peak(statuses: list[Status], states: list[str], heap_area: int, widths: dict[str, int]) -> dict | None:
    """The firmware's peak over the STATUS reports, each credited with its state's pointer
    width (`states`, `report_states`): `heap_area` is the heapsize less the GC tables' credit,
    the shims and the frozen bytecode, so that `heap_area - heap_free` is the firmware's heap at
    64-bit. None without a report."""
    if not statuses:
        return None
    at_64 = [heap_area - s.heap_free for s in statuses]
    own = [used - pointer_width_for(state, widths) for used, state in zip(at_64, states)]
    i = max(range(len(own)), key=own.__getitem__)
    return {"peak_heap": own[i], "peak_heap_64": max(at_64), "pointer_width": pointer_width_for(states[i], widths),
            "state": states[i]}


# Runs in MicroPython without the shims: `time` is the real clock. argv: ppg rate, imu rate, gyro.
_WINDOW_BENCH = r"""
import sys, time
from array import array
from watch.features import FeatureEngine, spec_for
ppg_rate, imu_rate, gyro = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
e = FeatureEngine(ppg_rate, imu_rate, 30, 5, has_gyro=gyro)
x = array("i", [0] * spec_for(gyro)[1])
ir = array("I", [0] * ppg_rate)
acc = array("h", [0] * (3 * imu_rate))
for i in range(ppg_rate):
    ir[i] = 110000 + (4000 if i % (ppg_rate * 5 // 6) < 3 else 0)
for i in range(imu_rate):
    acc[3 * i + 2] = 8192 + (i * 37) % 200
times = []
p = q = 0
for second in range(90):
    e.add_ppg(ir, ppg_rate, p)
    e.add_acc(acc, imu_rate, q)
    e.add_gyro(acc, imu_rate, q)
    p += ppg_rate
    q += imu_rate
    while e.ready():
        t = time.ticks_us()
        e.compute(x)
        times.append(time.ticks_diff(time.ticks_us(), t))
times.sort()
print("WINDOW_US", times[len(times) // 2], len(times))
"""


def window_ms(profile: dict) -> float | None:
    """Median ms per window computation at the board's top rates, in the MicroPython binary."""
    sensors = profile["sensors"]
    ppg = max(sensors["ppg"].get("rates_hz", [sensors["ppg"]["rate_hz"]]))
    imu_cfg = sensors.get("imu", {})
    imu = max(imu_cfg.get("rates_hz", [imu_cfg.get("rate_hz", 25)]))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "window.py"
        script.write_text(_WINDOW_BENCH)
        proc = subprocess.run([micropython_binary(), "-X", "heapsize=400000", str(script), str(ppg), str(imu),
                               "1" if "gyro_range_dps" in imu_cfg else "0"],
                              env={**os.environ, "MICROPYPATH": str(compiled_tree(FIRMWARE, native=True) or FIRMWARE)},
                              capture_output=True, text=True, timeout=300)
    for line in proc.stdout.splitlines():
        if line.startswith("WINDOW_US"):
            return round(int(line.split()[1]) / 1000, 3)
    return None


async def main(minutes: float, boards: list[str], model: bool = True) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for board in boards:
            out[board] = await board_session(board, minutes, Path(tmp), model=model)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--board", action="append", help="a board id (default: every profile in hardware/)")
    ap.add_argument("--no-model", action="store_true", help="run without a model (no upload)")
    args = ap.parse_args()
    boards = args.board or sorted(p.stem for p in HARDWARE.glob("*.json"))
    result = asyncio.run(main(args.minutes, boards, not args.no_model))
    print(json.dumps({"minutes": args.minutes, "model": not args.no_model, "boards": result}))

"""The collection fault scenario on a virtual watch, and how its result is checked.

A recording survives, in one run: the link cut every `disconnect_s` seconds, notifications
dropped, duplicated and reordered, a watch reboot, and the host process killed (SIGKILL) and
started again with `wears record --resume`. Then the study database is compared with the
watch's own record (its flash log, read from its flash folder after a clean shutdown) and
with its true clock (the virtual clock's anchors against CLOCK_MONOTONIC):
`samples_expected`, `samples_stored`, `duplicates`, `missing`, `max_time_error_ms`.

Example:
    >>> result = asyncio.run(run_fault_scenario(Path("runs/faults"), seconds=120))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from watch import protocol as P
from watch.flashlog import FlashLog

from ..db import Study
from ..paths import HARDWARE, DEFAULT_BOARD
from ..protocol import Samples, decode
from .runner import VirtualWatch
from .scenario import synthetic

_WRAP_US = 1 << 30  # the virtual clock's real anchors are CLOCK_MONOTONIC microseconds mod 2^30


def _board(work: Path, flash_log_bytes: int) -> Path:
    """The default board with a flash log large enough to keep the whole run (the check reads it)."""
    profile = json.loads((HARDWARE / f"{DEFAULT_BOARD}.json").read_text())
    profile["flash_log_bytes"] = flash_log_bytes
    path = work / "board.json"
    path.write_text(json.dumps(profile))
    return path


def _recorder(args: list[str], work: Path, log_name: str) -> subprocess.Popen:
    """`wears record` as its own process, so that it can be killed like a crashing host."""
    out = open(work / log_name, "ab")
    return subprocess.Popen([sys.executable, "-m", "wears.cli", "record", "--virtual", *args],
                            stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())


async def _wait(proc: subprocess.Popen, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"recorder {proc.args} did not finish in {timeout:.0f} s")
        await asyncio.sleep(0.1)
    return proc.returncode


async def run_fault_scenario(work: Path, *, seconds: float = 120.0, speed: float = 1.0, disconnect_s: float = 30.0,
                             drop: float = 0.01, dup: float = 0.03, reorder: float = 0.03,
                             reboot_at: float | None = 0.35, kill_at: float | None = 0.65,
                             host_down_s: float = 3.0, seed: int = 1) -> dict:
    """Record `seconds` of PPG (watch clock) through every fault; returns the checked result.

    `reboot_at` and `kill_at` are fractions of the recording (in real time at `speed`) at which
    the watch reboots and the host is killed.
    """
    work.mkdir(parents=True, exist_ok=True)
    db = work / "study.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    clock_log = work / "clock.log"
    clock_log.unlink(missing_ok=True)
    flash = work / "flash"
    shutil.rmtree(flash, ignore_errors=True)
    # Long enough for the whole recording after a reboot restarts the scenario, and for what
    # the watch records while the host is away.
    episodes = max(1, int(seconds * 3) // 90)
    scenario = synthetic(seed, rest_s=int(seconds * 3) - 90 * episodes + 120, episode_s=90, n_episodes=episodes)
    scenario.write(work / "scenario.wscn")
    faults = f"disconnect_s={disconnect_s},drop={drop},dup={dup},reorder={reorder},seed={seed}"
    real_s = seconds / speed
    started = time.monotonic()
    vw = VirtualWatch(work / "scenario.wscn", board=str(_board(work, 512 << 10)), speed=speed, flash_dir=flash,
                      env={"WEARS_SIM_FAULTS": faults, "WEARS_SIM_CLOCK_LOG": str(clock_log)})
    await vw.start_async()
    try:
        args = [vw.address, "--db", str(db), "--reconnect-s", "60"]
        first = _recorder([*args, "--participant", "P01", "--duration", str(seconds)], work, "recorder-1.log")
        events = sorted(([(reboot_at, "reboot")] if reboot_at is not None else [])
                        + ([(kill_at, "kill")] if kill_at is not None else []))
        killed = False
        for at, what in events:
            while time.monotonic() - started < at * real_s and first.poll() is None:
                await asyncio.sleep(0.1)
            if what == "reboot":
                await vw.reboot()
            elif first.poll() is None:
                first.send_signal(signal.SIGKILL)
                first.wait()
                killed = True
                await asyncio.sleep(host_down_s)  # the watch records on with no host
        if killed:
            second = _recorder(["--resume", "1", *args], work, "recorder-2.log")
            status = await _wait(second, real_s * 3 + 120)
        else:
            status = await _wait(first, real_s * 3 + 120)
        elapsed = time.monotonic() - started
        await vw.shut_down()
    finally:
        (work / "watch.log").write_text(vw.stdout + vw.stderr)
        vw.stop()
    if status != 0:
        raise RuntimeError(f"the recorder failed (status {status}):\n" + "".join(
            (work / n).read_text(errors="replace")[-3000:] for n in ("recorder-1.log", "recorder-2.log")
            if (work / n).exists()))
    study = Study.open(db)
    result = {"seconds": seconds, "speed": speed, "real_s": round(elapsed, 1), "faults": faults,
              "watch_reboots": 1 if reboot_at is not None else 0, "host_kills": 1 if killed else 0}
    result.update(check_samples(study, 1, flash / "log", work / "log-copy"))
    result.update(check_timeline(study, 1, clock_log))
    state = study.log_state(1) or {}
    result.update({k: state.get(k, 0) for k in ("backfilled", "reconnects")})
    result["session_status"] = study.session(1)["status"]
    study.close()
    return result


def watch_truth(log_folder: Path, copy: Path, start_lsn: int = 0) -> dict[tuple[int, int, int], bytes]:
    """Every SAMPLES packet the watch logged from `start_lsn` on: (boot, stream, first index) -> samples."""
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(log_folder, copy)
    # None: the sizes the log on flash says, as the watch made it (watch.flashlog is untyped
    # MicroPython: pyright takes int from the defaults).
    log = FlashLog(str(copy), max_bytes=None, segment_bytes=None)  # pyright: ignore[reportArgumentType]
    out = bytearray(512)
    truth = {}
    log.seek(start_lsn, log.next_lsn)
    while n := log.read(out, 0):
        packet = decode(bytes(out[:n]))
        if isinstance(packet, Samples):
            truth[(log.record_boot, packet.stream, packet.first_index)] = packet.samples.tobytes()
    return truth


def check_samples(study: Study, session_id: int, log_folder: Path, copy: Path) -> dict:
    """The session's samples against the watch's flash log: counts, duplicates, missing, content."""
    state = study.log_state(session_id) or {"start_lsn": 0}
    truth = watch_truth(log_folder, copy, state["start_lsn"])
    expected = {(b, s, f + k) for (b, s, f), data in truth.items()
                for k in range(len(data) // P.SAMPLE_SIZES[s])}
    rows = study.conn.execute("SELECT boot, stream, first_index, count, data FROM chunks WHERE session_id=?",
                              (session_id,)).fetchall()
    stored: set[tuple[int, int, int]] = set()
    slots = mismatched = 0
    for boot, stream, first, count, data in rows:
        slots += count
        stored.update((boot, stream, first + k) for k in range(count))
        if truth.get((boot, stream, first)) != data:
            mismatched += 1
    return {"samples_expected": len(expected), "samples_stored": len(stored), "duplicates": slots - len(stored),
            "missing": len(expected - stored), "unexpected": len(stored - expected), "chunks_differing": mismatched}


def true_clock(clock_log: Path) -> dict[int, tuple[int, int, float]]:
    """Per boot (1, 2, ...): the virtual clock's last anchor (virtual us, real us mod 2^30, speed)."""
    anchors: dict[int, tuple[int, int, float]] = {}
    boot = 0
    for line in clock_log.read_text().splitlines():
        kind, virtual, real, speed = line.split()
        if kind == "boot":
            boot += 1
        anchors[boot] = (int(virtual), int(real), float(speed))
    return anchors


def true_seconds(anchor: tuple[int, int, float], ticks_ms: np.ndarray, near_s: float) -> np.ndarray:
    """The true host time (s, CLOCK_MONOTONIC) of a boot's ticks, from its clock anchor
    (`true_clock`); `near_s` is any host time within minutes of the boot (its real anchor wraps)."""
    virtual_us, real_mod, speed = anchor
    near = int(near_s * 1e6)
    real_us = near + ((real_mod - near + _WRAP_US // 2) % _WRAP_US) - _WRAP_US // 2
    return (real_us + (np.asarray(ticks_ms, dtype=np.float64) * 1000 - virtual_us) / speed) / 1e6


def check_timeline(study: Study, session_id: int, clock_log: Path) -> dict:
    """Host times the study derives for every stored sample against the virtual watch's true clock."""
    fits = study.clock_fits(session_id)
    anchors = true_clock(clock_log)
    worst = 0.0
    checked = 0
    jitter = {}
    for boot, fit in fits.items():
        if boot not in anchors:
            continue
        near_s = float(study.clock_sync(session_id, boot)[0, 0])
        info = dict(((s, (t0, r)) for s, t0, r in study.conn.execute(
            "SELECT stream, tick0, rate_mhz FROM stream_info WHERE session_id=? AND boot=?", (session_id, boot))))
        for stream, first, count in study.conn.execute(
                "SELECT stream, first_index, count FROM chunks WHERE session_id=? AND boot=?", (session_id, boot)):
            tick0, rate_mhz = info[stream]
            ticks = tick0 + (first + np.arange(count)) * 1e6 / rate_mhz
            true_s = true_seconds(anchors[boot], ticks, near_s)
            worst = max(worst, float(np.max(np.abs(fit.host_time(ticks) - true_s))))
            checked += count
        jitter[str(boot)] = round(fit.jitter_ms, 3)
    return {"max_time_error_ms": round(worst * 1000, 3), "samples_timed": checked,
            "clock_fits": {str(b): {"n_pings": f.n_pings, "n_used": f.n_used, "uncertainty_ms": round(f.uncertainty_ms, 3),
                                    "jitter_ms": round(f.jitter_ms, 3), "drift_ppm": round(f.drift_ppm, 2)}
                           for b, f in fits.items()}}

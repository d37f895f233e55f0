"""`wears demo`: the whole path on virtual watches in about a minute.

Two synthetic participants are recorded at once on two virtual watches, a model is trained
on them (evaluated leaving one participant out), quantized, signed with a third watch's
key and uploaded to it over BLE; that watch then predicts on its own wearer, a participant
the model has never seen, and its predictions are shown next to the scenario's labels.
Synthetic data tests the pipeline, nothing more: the agreement says the path works, not
how well WEARS recognises emotions.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np


from .ble.virtual import VirtualBleakClient
from .blob import new_key
from .client import WatchClient
from .db import Study
from .export import export_blob
from .live import describe_prediction
from .paths import board_profile
from .protocol import HeartRate, Packet, Prediction
from .record import record
from .sim.runner import VirtualWatch
from .sim.scenario import Scenario, synthetic
from .train import CLASS_NAMES, VALENCE, train, window_labels

TRAINING = ("P01", "P02")
TEST = "P03"


def _say(text: str) -> None:
    print(text, flush=True)


def _episodes(scenario: Scenario) -> list[tuple[float, float, str]]:
    return [(float(a), float(b), str(label)) for a, b, label in scenario.episodes]


def _uploader(blob: bytes) -> Callable[[WatchClient], Awaitable[None]]:
    """Uploads `blob` over BLE once the watch is connected (`record`'s `prepare`)."""

    async def upload(client: WatchClient) -> None:
        model_id = await client.upload_model(blob)
        _say(f"  uploaded the model over BLE; the watch now runs model {model_id:08x}")

    return upload


async def _record(study: Study, scenario: Scenario, path: Path, workdir: Path, speed: float, *, key: bytes | None = None,
                  blob: bytes | None = None, on_packet=None) -> int:
    flash = workdir / f"watch-{scenario.participant}"
    shutil.rmtree(flash, ignore_errors=True)
    name = f"WEARS-{scenario.participant}"

    async with VirtualWatch(path, speed=speed, name=name, flash_dir=flash, key=key) as vw:
        sid, stats = await record(study, vw.address, participant=scenario.participant,
                                  until_s=scenario.duration_s - 5, backend=VirtualBleakClient,
                                  annotations=_episodes(scenario), board="esp32s3-wrist",
                                  prepare=_uploader(blob) if blob else None, on_packet=on_packet)
    _say(f"  {scenario.participant}: {stats.seconds():.0f} s recorded, "
         f"{sum(stats.samples.values())} samples, {stats.lost_samples} lost, {stats.predictions} predictions")
    return sid


async def demo(workdir: Path, *, speed: float = 0.0, seed: int = 1) -> int:
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "study.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    study = Study.open(db)

    _say("1/5  Synthetic participants: labelled pleasant / unpleasant episodes (neurokit2 PPG + wrist motion)")
    scenarios: dict[str, tuple[Scenario, Path]] = {}
    for i, participant in enumerate((*TRAINING, TEST)):
        scenario = synthetic(seed * 100 + i, participant=participant)
        path = workdir / f"{participant}.wscn"
        scenario.write(path)
        scenarios[participant] = (scenario, path)
        _say(f"  {participant}: {scenario.duration_s:.0f} s, episodes "
             + " ".join(label[0].upper() for _, _, label in scenario.episodes))

    _say(f"2/5  Recording {', '.join(TRAINING)} at once on two virtual watches (MicroPython, BLE via bleak)")
    await asyncio.gather(*(_record(study, *scenarios[p], workdir, speed) for p in TRAINING))

    _say("3/5  Training ExtraTrees on the recorded windows")
    trained = train(study, window_s=30, step_s=5, seed=seed)
    r = trained.report
    _say(f"  {r['n_windows']} windows; {r['protocol']}: accuracy {r.get('accuracy', float('nan')):.2f}, "
         f"macro-F1 {r.get('macro_f1', float('nan')):.2f}")
    trained.save(workdir / "model.pkl")

    _say(f"4/5  Quantizing and signing for {TEST}'s watch")
    key = new_key()
    blob, info = export_blob(trained, key)
    (workdir / "model.wbl").write_bytes(blob)
    _say(f"  model blob {len(blob)} bytes, model id {info['model_id']:08x}")

    _say(f"5/5  {TEST}'s watch: flash the model over BLE, then its own predictions next to the scenario labels")
    scenario, path = scenarios[TEST]
    rate = float(board_profile()["sensors"]["ppg"]["rate_hz"])
    hr: list[HeartRate] = []  # the latest heart rate (every 2 s) is shown with each prediction

    def show(channel: str, packet: Packet) -> None:
        if isinstance(packet, HeartRate):
            hr[:] = [packet]
        elif isinstance(packet, Prediction):
            end_s = packet.index / rate
            truth = window_labels(np.array([end_s]), trained.window_s, _episodes(scenario))[0]
            truth_name = CLASS_NAMES[truth] if truth >= 0 else "(mixed/rest)"
            mark = "" if truth < 0 else ("  ok" if truth == packet.label else "  MISS")
            beat = hr[0] if hr else None
            bpm = f"{beat.bpm:5.1f}" if beat else "  ---"
            _say(f"  t={end_s:6.0f} s  HR {bpm}  watch: {describe_prediction(packet):<24} label: {truth_name}{mark}")

    sid = await _record(study, scenario, path, workdir, speed, key=key, blob=blob, on_packet=show)

    preds = study.predictions(sid)
    ends = np.array([p["window_end"] / rate for p in preds])
    truth = window_labels(ends, trained.window_s, _episodes(scenario), VALENCE)
    labelled = truth >= 0
    got = np.array([p["label"] for p in preds])
    agreement = float(np.mean(got[labelled] == truth[labelled])) if labelled.any() else float("nan")
    _say("")
    _say(f"On-device predictions for {TEST} (never seen in training): {int(labelled.sum())} labelled windows, "
         f"agreement with the scenario labels {agreement * 100:.1f}%")
    _say(f"Study database: {db}   model: {workdir / 'model.wbl'}   ({time.monotonic() - started:.0f} s)")
    _say("Synthetic data tests the pipeline only; accuracy is claimed on real recordings alone.")
    if not labelled.any():
        print("wears demo: the watch made no predictions on labelled windows", file=sys.stderr)
        return 1
    return 0

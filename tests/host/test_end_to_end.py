"""The whole path on the virtual watch: the unmodified firmware in MicroPython, bleak on the host."""

import asyncio

import numpy as np
import pytest

from watch import protocol as P
from wears.ble.virtual import VirtualBleakClient
from wears.blob import new_key
from wears.client import WatchClient
from wears.db import Study
from wears.errors import ModelBlobError, WatchDisconnected
from wears.export import export_blob
from wears.record import record
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic
from wears.train import TrainedModel, build_dataset, default_model

from . import RUN_TIMEOUT_S
from .waiting import samples_stored

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scenario") / "p01.wscn"
    scenario = synthetic(11, participant="P01", rest_s=20, episode_s=50, n_episodes=4)
    scenario.write(path)
    return scenario, path


@pytest.fixture(scope="module")
def recorded(scenario_file, tmp_path_factory):
    """One complete session recorded from the virtual watch (shared by the tests below)."""
    scenario, path = scenario_file
    work = tmp_path_factory.mktemp("rec")
    study = Study.open(work / "study.db")

    async def run():
        async with VirtualWatch(path, flash_dir=work / "flash") as vw:
            episodes = [(float(a), float(b), str(c)) for a, b, c in scenario.episodes]
            # Up to the end of the scenario on the watch's own timeline: at full speed the watch
            # runs on while the host connects, so a count of samples received would race its power-off.
            return await record(study, vw.address, participant="P01", until_s=scenario.duration_s - 5,
                                backend=VirtualBleakClient, annotations=episodes)

    sid, stats = asyncio.run(run())
    return study, sid, stats, scenario


def test_every_sample_arrives_once_in_order_with_no_gap(recorded):
    study, sid, stats, scenario = recorded
    assert study.session(sid)["status"] == "complete"
    ppg = study.stream(sid, P.PPG)
    assert ppg.gaps == 0 and stats.lost_samples == 0
    assert ppg.first_index + len(ppg.samples) >= (scenario.duration_s - 5) * ppg.rate_hz
    # The watch's samples are the scenario's: the register model resamples nothing at equal rates.
    first = ppg.first_index
    np.testing.assert_array_equal(ppg.samples[:500, 0], scenario.ppg[first:first + 500, 0])
    acc = study.stream(sid, P.ACC)
    gyro = study.stream(sid, P.GYRO)
    assert acc.gaps == 0 and gyro.gaps == 0 and len(acc.samples) == len(gyro.samples) > 0


def test_watch_reports_a_plausible_heart_rate_every_window(recorded):
    study, sid, stats, _ = recorded
    bpm = np.array([r[0] for r in study.conn.execute("SELECT bpm_x10 FROM heart_rate WHERE session_id=?", (sid,))])
    assert stats.heart_rates == len(bpm) > 10
    assert 50 < np.median(bpm) / 10 < 110


def _trained(study):
    data = build_dataset(study, window_s=30, step_s=5)
    model = default_model().fit(data.X, data.y)
    return TrainedModel(model, data.X, data.feature_names, data.feature_spec, 30, 5, {})


def test_uploaded_model_runs_on_the_watch_and_a_bad_blob_is_refused(recorded, scenario_file, tmp_path):
    study, _, _, _ = recorded
    _, path = scenario_file
    key = new_key()
    blob, info = export_blob(_trained(study), key)
    predictions = []

    async def run():
        # At speed 10 the uploads (paced by MODEL_RESUME round trips) finish before the scenario.
        async with VirtualWatch(path, flash_dir=tmp_path / "flash", key=key, speed=10) as vw:
            async with WatchClient(vw.address, backend=VirtualBleakClient,
                                   on_packet=lambda ch, p: predictions.append(p)) as watch:
                with pytest.raises(ModelBlobError) as refused:
                    await watch.upload_model(blob[:-40])
                assert refused.value.reason == P.E_TRUNCATED or refused.value.reason == P.E_BAD_CRC
                tampered = bytearray(blob)
                tampered[40] ^= 0xFF
                with pytest.raises(ModelBlobError):
                    await watch.upload_model(bytes(tampered))
                status = await watch.status()
                assert status.model_id == 0  # still no model after two refusals
                assert await watch.upload_model(blob) == info["model_id"]
                while sum(1 for p in predictions if p.type == P.PREDICTION) < 3:
                    await asyncio.sleep(0.05)

    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    got = [p for p in predictions if p.type == P.PREDICTION]
    assert {p.model_id for p in got} == {info["model_id"]}
    assert all(sum(p.proba) in range(250, 261) for p in got)


def test_model_on_baseline_subtracted_features_predicts_after_the_calibration_phase(recorded, scenario_file,
                                                                                    tmp_path):
    from watch import features as F
    from wears.features import baseline_mean, baseline_normalise

    study, _, _, _ = recorded
    _, path = scenario_file
    data = build_dataset(study, window_s=30, step_s=5)
    X = baseline_normalise(data.X, baseline_mean(data.X, np.ones(len(data.X), dtype=bool)), data.feature_names)
    spec = F.spec_for(True, baseline=True)[0]
    trained = TrainedModel(default_model().fit(X, data.y), X, data.feature_names, spec, 30, 5, {})
    key = new_key()
    blob, info = export_blob(trained, key)
    assert info["feature_spec"] == F.FEATURE_SPEC_ID_BASELINE
    packets = []

    async def run():
        async with VirtualWatch(path, flash_dir=tmp_path / "flash", key=key) as vw:
            async with WatchClient(vw.address, backend=VirtualBleakClient,
                                   on_packet=lambda ch, p: packets.append(p)) as watch:
                assert await watch.upload_model(blob) == info["model_id"]
                while sum(1 for p in packets if p.type == P.PREDICTION) < 2:
                    await asyncio.sleep(0.05)

    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    loaded = next(p.tick for p in packets if p.type == P.EVENT and p.code == P.EV_MODEL_LOADED)
    first = min(p.tick for p in packets if p.type == P.PREDICTION)
    calibration = [p for p in packets if p.type == P.HEART_RATE and loaded <= p.tick < first]
    assert len(calibration) >= 12  # baseline_windows trusted windows before the first prediction
    assert {p.model_id for p in packets if p.type == P.PREDICTION} == {info["model_id"]}


def test_watch_that_vanishes_mid_recording_keeps_what_arrived(scenario_file, tmp_path):
    _, path = scenario_file
    study = Study.open(tmp_path / "study.db")

    async def run():
        async with VirtualWatch(path, flash_dir=tmp_path / "flash", speed=20) as vw:
            async def kill_later():
                await samples_stored(study, 1000)
                vw.kill()
            killer = asyncio.ensure_future(kill_later())
            with pytest.raises(WatchDisconnected, match="kept in"):
                await record(study, vw.address, participant="P01", duration_s=1000, backend=VirtualBleakClient,
                             reconnect_s=2)
            await killer

    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    session = study.sessions()[0]
    assert session["status"] == "interrupted"
    assert study.sample_count(session["id"], P.PPG) >= 1000


def test_a_recording_is_resumable_from_its_first_connection(scenario_file, tmp_path):
    # A host killed as soon as it reached the watch must leave what `wears record --resume` needs
    # (the record target) committed, not only the session row.
    _, path = scenario_file
    study = Study.open(tmp_path / "study.db")
    seen: list[dict] = []

    async def look(client: WatchClient) -> None:
        other = Study.open(tmp_path / "study.db")  # another process's view: committed rows only
        seen.append(other.provenance(other.sessions()[0]["id"]))
        other.close()

    async def run():
        async with VirtualWatch(path, flash_dir=tmp_path / "flash", speed=20) as vw:
            await record(study, vw.address, participant="P01", duration_s=2, backend=VirtualBleakClient, prepare=look)

    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    assert seen and "record_target" in seen[0]

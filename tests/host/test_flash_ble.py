"""Model upload over BLE to the virtual watch: interrupted by a disconnect, resumed from the bytes
the watch holds, switched; after a reboot the watch runs the new model from its slot; the
shipped model, re-signed, is accepted; a model for another feature set, or for feature set 1
(spec ids 3 and 5, same columns), is refused."""

import asyncio

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier

from watch import protocol as P
from watch.features import spec_for
from wears.ble.virtual import VirtualBleakClient
from wears.blob import new_key, read_blob, resign
from wears.client import WatchClient
from wears.errors import ModelBlobError
from wears.export import quantize_forest
from wears.flash import default_model_path
from wears.protocol import Prediction
from wears.paths import board_profile
from wears.sim.runner import VirtualWatch, sim_heap_bytes
from wears.sim.scenario import synthetic

pytestmark = pytest.mark.slow


def _forest_blob(key, spec, nf, trees=12):
    rng = np.random.default_rng(4)
    X = rng.integers(-20000, 20000, size=(800, nf))
    forest = ExtraTreesClassifier(n_estimators=trees, max_depth=6, random_state=0).fit(X, X[:, 0] > 0)
    return quantize_forest(forest, X, spec).to_blob(key)


def test_upload_resumes_after_a_disconnect_and_survives_a_reboot(tmp_path):
    path = tmp_path / "s.wscn"
    synthetic(3, participant="P01", rest_s=20, episode_s=30, n_episodes=2).write(path)
    key = new_key()
    spec, nf = spec_for(True)
    blob = _forest_blob(key, spec, nf)
    new_id = read_blob(blob, key).model_id
    flash = tmp_path / "flash"
    seen = []

    async def run():
        async with VirtualWatch(path, flash_dir=flash, key=key, speed=5) as vw:
            async with WatchClient(vw.address, backend=VirtualBleakClient) as watch:
                assert await watch.upload_model(blob, stop_after=len(blob) // 2) == 0
            async with WatchClient(vw.address, backend=VirtualBleakClient) as watch:
                assert await watch.upload_model(blob, lambda done, total: seen.append(done)) == new_id
                other = _forest_blob(key, spec + 1, nf)  # a feature set this watch does not compute
                with pytest.raises(ModelBlobError) as refused:
                    await watch.upload_model(other)
                assert refused.value.reason == P.E_FEATURE_MISMATCH
                for set_1 in (spec - 4, spec - 2):  # feature set 1's ids, raw and minus the baseline: same shape
                    with pytest.raises(ModelBlobError) as refused:
                        await watch.upload_model(_forest_blob(key, set_1, nf, trees=2))
                    assert refused.value.reason == P.E_FEATURE_MISMATCH, set_1
                assert (await watch.status()).model_id == new_id
        async with VirtualWatch(path, flash_dir=flash, key=key, speed=5) as vw:  # reboot
            async with WatchClient(vw.address, backend=VirtualBleakClient) as watch:
                assert (await watch.status()).model_id == new_id
                shipped = resign(default_model_path("esp32s3-wrist").read_bytes(), key)
                assert await watch.upload_model(shipped) == read_blob(shipped, key).model_id

    asyncio.run(asyncio.wait_for(run(), 180))
    assert seen and seen[0] > len(blob) // 2  # resumed, not restarted
    assert (flash / "model_b.wbl").read_bytes() == blob


def test_upload_to_a_pinetime_commits_and_the_new_model_predicts(tmp_path):
    # The PineTime is frozen: the upload's and the model's modules come from its image (the
    # sim_frozen shim), so importing them takes only their RAM state. It runs at its own
    # heapsize for a session with an upload (`sim_heap_bytes(upload=True)`: the pointer width
    # of the upload's and the model's states measured, wears.sim.heap), with no heap to spare.
    path = tmp_path / "s.wscn"
    synthetic(3, participant="P01", rest_s=20, episode_s=30, n_episodes=2).write(path)
    key = new_key()
    blob = resign(default_model_path("pinetime").read_bytes(), key)
    new_id = read_blob(blob, key).model_id
    predictions = []

    def seen(channel, packet):
        if isinstance(packet, Prediction):
            predictions.append(packet)

    async def run():
        async with VirtualWatch(path, board="pinetime", flash_dir=tmp_path / "flash", key=key, speed=10,
                                heapsize=sim_heap_bytes(board_profile("pinetime"), upload=True)) as vw:
            async with WatchClient(vw.address, backend=VirtualBleakClient, on_packet=seen) as watch:
                assert (await watch.status()).model_id == 0
                assert await watch.upload_model(blob) == new_id
                assert (await watch.status()).model_id == new_id
                await watch.start()
                while not any(p.model_id == new_id for p in predictions):
                    await asyncio.sleep(0.2)

    asyncio.run(asyncio.wait_for(run(), 120))
    p = next(p for p in predictions if p.model_id == new_id)
    assert p.label in (0, 1) and len(p.proba) == 2 and abs(sum(p.proba) - 255) <= 2

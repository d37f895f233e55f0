"""A forest exported on the host runs on the watch runtime inside MicroPython, at the board's
heap budget, bit for bit like the host's emulation, on the viper path and the plain-Python path,
without allocating while it predicts."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier

from tests.conftest import run_micropython
from tests.host.test_export import synthetic
from wears.export import quantize_forest
from wears.paths import board_profile

FIRMWARE_TESTS = Path(__file__).resolve().parent.parent / "firmware"
KEY = bytes(range(100, 132))
SPEC = 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    X, y = synthetic(2600, seed=7)
    forest = ExtraTreesClassifier(n_estimators=10, max_depth=6, random_state=1).fit(X[:2000], y[:2000])
    qf = quantize_forest(forest, X[:2000], SPEC)
    extremes = np.array([[v] * 9 for v in (-2**31, -2**29 - 1, -2**29, 0, 2**29 - 1, 2**29, 2**31 - 1)])
    beyond = X[2000:2040] * 3 - X[:2000].mean(axis=0).astype(np.int64)  # out of the training range
    inputs = np.clip(np.vstack([X[2000:], extremes, beyond]), -2**31, 2**31 - 1)
    folder = tmp_path_factory.mktemp("watch")
    (folder / "model.wbl").write_bytes(qf.to_blob(KEY))
    (folder / "key.bin").write_bytes(KEY)
    np.savetxt(folder / "inputs.csv", inputs, fmt="%d", delimiter=",")
    return folder, qf, inputs


def _run_on_watch(folder: Path, path: str) -> tuple[list[str], np.ndarray]:
    proc = run_micropython([str(FIRMWARE_TESTS / "model_predict.py"), str(folder), path, str(SPEC), "9"],
                           heapsize=board_profile()["heap_budget_bytes"], extra_path=[FIRMWARE_TESTS])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    return lines[:2], np.array([[int(v) for v in line.split()] for line in lines[2:]])


@pytest.mark.parametrize("path", ["viper", "python"])
def test_watch_predictions_equal_host_emulation_bit_for_bit_under_heap_lock(exported, path):
    folder, qf, inputs = exported
    head, out = _run_on_watch(folder, path)
    assert head[1] == f"PATH {path}"
    assert len(out) == len(inputs) >= 600
    expected = np.column_stack([qf.predict(inputs), qf.predict_proba_u8(inputs)])
    mismatched = np.nonzero(np.any(out != expected, axis=1))[0]
    assert len(mismatched) == 0, f"{len(mismatched)} rows differ, first {mismatched[:5]}"


def test_loaded_model_takes_about_its_blob_size_of_heap(exported):
    folder, qf, _ = exported
    (head, _) = _run_on_watch(folder, "viper")
    _, before, after, size = head[0].split()
    used = int(before) - int(after)
    print(f"blob {size} bytes ({qf.n_trees} trees, {qf.n_nodes} nodes, {qf.n_leaves} leaf rows); "
          f"heap free {before} -> {after} bytes: the loaded model holds {used} bytes")
    assert int(size) == qf.size_bytes
    assert used <= qf.size_bytes + 1024

"""Int8 MLP: the host's quantization, the documented example, and three runtimes that must
agree bit for bit: the numpy emulation, TFLite (ai-edge-litert, reference and optimized
kernels) running the exported .tflite, and the watch's runtime inside MicroPython."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.conftest import REPO, run_micropython
from wears.blob import read_blob
from wears.mlp import Layer, QuantizedMLP, fit_mlp, quantize_mlp
from wears.tflite_export import run_tflite, to_tflite
from watch import blob as B

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(3)
    X = rng.integers(-60000, 60000, size=(1500, 12))
    y = ((X[:, 0] - 0.7 * X[:, 4] + 0.3 * X[:, 7]) > 0).astype(int)
    float_model = fit_mlp(X, y, hidden=(16,), seed=0)
    return X, y, float_model, quantize_mlp(float_model, X, feature_spec=1)


def _documented_example() -> QuantizedMLP:
    l1 = Layer(np.array([[20, -10], [-30, 40], [5, 5]], np.int8), np.array([100, -50, 0], np.int32),
               np.float32(1 / 32), 0, np.float32(0.01), np.float32(0.05), -128, True)
    l2 = Layer(np.array([[60, -60, 10], [-60, 60, -10]], np.int8), np.array([0, 20], np.int32),
               np.float32(0.05), -128, np.float32(0.02), np.float32(0.1), 3, False)
    return QuantizedMLP(feature_spec=1, classes=[0, 1], offsets=[1000, -50], shifts=[2, 0], layers=[l1, l2])


def test_documented_example_is_what_the_exporter_builds():
    text = (REPO / "docs" / "model-blob.md").read_text()
    block = text.split("```mlp-example")[1].split("```")[0]
    qm = _documented_example()
    assert bytes.fromhex(re.search(r"blob (\w+)", block).group(1)) == qm.to_blob(KEY)
    assert [layer.multiplier for layer in qm.layers_] == [(1717986854, -7), (1374389504, -6)]
    for x, label, proba, logits in re.findall(r"predict (\S+) -> (\d) (\S+)\s+logits (\S+)", block):
        row = [[int(v) for v in x.split(",")]]
        assert qm.predict(row)[0] == int(label)
        assert qm.predict_proba_u8(row)[0].tolist() == [int(v) for v in proba.split(",")]
        assert qm.logits(row)[0].tolist() == [int(v) for v in logits.split(",")]


def test_quantized_mlp_agrees_with_its_float_model(trained):
    X, y, float_model, qm = trained
    assert qm.shape == (12, 16, 2)
    assert np.mean(qm.predict(X) == float_model.predict(X)) >= 0.99
    assert np.mean(float_model.predict(X) == y) > 0.9


def test_blob_header_describes_the_mlp(trained):
    _, _, _, qm = trained
    info = read_blob(qm.to_blob(KEY), KEY, feature_spec=1, n_features=12)
    assert (info.kind, info.n_classes, info.size) == (B.KIND_MLP_INT8, 2, qm.size_bytes)
    assert info.payload_length == B.mlp_payload_size(2, 12 * 16 + 16 * 2, 18)


def test_tflite_file_gives_the_watch_arithmetic_bit_for_bit(trained):
    X, _, _, qm = trained
    rng = np.random.default_rng(5)
    q = np.vstack([qm.quantize(X[:300]), rng.integers(-128, 128, size=(300, 12)),
                   np.full((1, 12), -128), np.full((1, 12), 127)])
    model = to_tflite(qm)
    ours = qm.logits_from_int8(q)
    assert np.array_equal(run_tflite(model, q, reference_kernels=True), ours)
    assert np.array_equal(run_tflite(model, q, reference_kernels=False), ours)


def test_watch_runtime_in_micropython_equals_tflite(trained, tmp_path):
    X, _, _, qm = trained
    rng = np.random.default_rng(11)
    rows = np.vstack([X[:150], rng.integers(-2**31, 2**31, size=(50, 12))])
    (tmp_path / "model.wbl").write_bytes(qm.to_blob(KEY))
    np.savetxt(tmp_path / "x.csv", rows, fmt="%d", delimiter=",")
    script = tmp_path / "run.py"
    script.write_text(
        "from array import array\nfrom watch import loader\n"
        f"key = bytes(range(32))\nx = array('i', [0] * 12)\np = bytearray(2)\n"
        "for viper in (True, False):\n"
        f"    m = loader.load({str(tmp_path / 'model.wbl')!r}, key, 1, 12, viper=viper)\n"
        f"    for line in open({str(tmp_path / 'x.csv')!r}):\n"
        "        for i, v in enumerate(line.split(',')):\n"
        "            x[i] = int(v)\n"
        "        label = m.predict(x, p)\n"
        "        print(int(viper), label, *(m.logits() + list(p)))\n")
    proc = run_micropython([str(script)], heapsize=256 * 1024)
    assert proc.returncode == 0, proc.stderr
    out = np.array([[int(v) for v in line.split()] for line in proc.stdout.splitlines()])
    tflite_logits = run_tflite(to_tflite(qm), qm.quantize(rows))
    for viper in (1, 0):
        got = out[out[:, 0] == viper]
        assert np.array_equal(got[:, 2:4], tflite_logits), f"viper={viper}"
        assert np.array_equal(got[:, 1], qm.predict(rows))
        assert np.array_equal(got[:, 4:6], qm.predict_proba_u8(rows))


def test_a_scale_the_watch_cannot_requantize_is_refused():
    l1 = Layer(np.ones((2, 2), np.int8), np.zeros(2, np.int32), np.float32(1.0), 0, np.float32(1.0),
               np.float32(0.01), 0, False)
    with pytest.raises(ValueError, match="requantization"):
        QuantizedMLP(feature_spec=1, classes=[0, 1], offsets=[0, 0], shifts=[0, 0], layers=[l1])

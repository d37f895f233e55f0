"""`wears export` writes the blob, an ONNX file that onnxruntime runs like scikit-learn, a
TFLite file for the MLP, and a model card next to them; refusals are clear errors."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import ExtraTreesClassifier

from tests.host.test_export import synthetic
from wears.blob import read_blob, save_key
from wears.cli import main
from wears.errors import WearsError
from wears.export import export_model
from wears.mlp import fit_mlp, quantize_mlp
from wears.tflite_export import run_tflite
from wears.train import TrainedModel
from watch import blob as B


def _trained(tmp_path):
    X, y = synthetic(900, seed=2)
    y = (y > 0).astype(int)
    model = ExtraTreesClassifier(n_estimators=10, max_depth=5, random_state=0).fit(X, y)
    trained = TrainedModel(model, X, tuple(f"f{i}" for i in range(9)), 7, 30, 5,
                           {"protocol": "leave one participant out", "n_windows": 900, "accuracy": 0.8,
                            "macro_f1": 0.79, "participants": ["P1", "P2"], "data_sha256": "abc"})
    trained.save(tmp_path / "model.pkl")
    save_key(tmp_path / "watch.key", bytes(range(32)))
    return X, y, trained


def test_export_trees_writes_blob_onnx_and_card(tmp_path, capsys):
    X, _, trained = _trained(tmp_path)
    out = tmp_path / "m.wbl"
    assert main(["export", str(tmp_path / "model.pkl"), "--key", str(tmp_path / "watch.key"), "-o", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    blob = read_blob(out.read_bytes(), bytes(range(32)), feature_spec=7)
    assert blob.model_id == info["model_id"]
    # The blob carries the recipe's windows; a baseline-normalised model its baseline length.
    assert (blob.window_s, blob.step_s, blob.baseline_windows) == (30, 5, 0) == tuple(
        info[k] for k in ("window_s", "step_s", "baseline_windows"))
    trained.normalise = {"windows": 12, "baseline_label": "baseline"}
    trained.save(tmp_path / "model.pkl")
    assert main(["export", str(tmp_path / "model.pkl"), "--key", str(tmp_path / "watch.key"), "-o", str(out),
                 "--format", "blob"]) == 0
    capsys.readouterr()
    assert read_blob(out.read_bytes()).baseline_windows == 12
    session = ort.InferenceSession(str(out.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    labels = session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})[0]
    assert np.mean(labels == trained.model.predict(X)) == 1.0 and info["onnx_agreement"] == 1.0
    card = out.with_suffix(".card.md").read_text()
    assert "leave one participant out" in card and f"{info['size_bytes']} bytes" in card
    assert json.loads(out.with_suffix(".card.json").read_text())["fits_budget"] is True


def test_export_mlp_writes_a_tflite_the_watch_arithmetic_matches(tmp_path, capsys):
    X, _, trained = _trained(tmp_path)
    out = tmp_path / "mlp.wbl"
    assert main(["export", str(tmp_path / "model.pkl"), "--key", str(tmp_path / "watch.key"), "-o", str(out),
                 "--kind", "mlp"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [9, 16, 2] and read_blob(out.read_bytes()).kind == B.KIND_MLP_INT8
    qm = quantize_mlp(fit_mlp(X, trained.model.predict(X), hidden=(16,)), X, 7, (30, 5, 0))  # the same recipe
    assert qm.to_blob(bytes(range(32))) == out.read_bytes()
    q = qm.quantize(X[:200])
    assert np.array_equal(run_tflite(out.with_suffix(".tflite").read_bytes(), q), qm.logits_from_int8(q))
    assert out.with_suffix(".onnx").exists() and out.with_suffix(".card.md").exists()


def test_export_refuses_tflite_for_a_forest_and_a_blob_over_the_budget(tmp_path, capsys):
    _trained(tmp_path)
    args = ["export", str(tmp_path / "model.pkl"), "--key", str(tmp_path / "watch.key"), "-o", str(tmp_path / "m.wbl")]
    assert main(args + ["--format", "tflite"]) == 1
    assert "TFLite export is for the int8 MLP" in capsys.readouterr().err
    board = tmp_path / "tiny.json"
    from wears.paths import board_profile
    board.write_text(json.dumps(board_profile("esp32s3-wrist") | {"model_budget_bytes": 500}))
    assert main(args + ["--board", str(board)]) == 1
    assert "takes at most 500" in capsys.readouterr().err



def test_export_model_refuses_a_host_only_model_as_trees_with_a_clear_error(tmp_path):
    # `wears export` refuses it before (cli.cmd_export); the API says it too, as a WearsError.
    X, y, trained = _trained(tmp_path)
    trained.model, trained.kind = DummyClassifier().fit(X, y), "DummyClassifier"  # `wears train` can pick one
    trained.save(tmp_path / "model.pkl")
    with pytest.raises(WearsError, match="holds a DummyClassifier, which the watch does not run"):
        export_model(tmp_path / "model.pkl", tmp_path / "watch.key", tmp_path / "m.wbl")
    assert not (tmp_path / "m.wbl").exists()

"""The exporter's quantized forest agrees with scikit-learn, and its numpy emulation is the
watch runtime: equal to watch.model (run in CPython here, in MicroPython in
test_model_on_watch.py) on every row."""

from array import array

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from watch import blob as B
from watch import loader as L
from watch import model as M
from watch import protocol as P
from wears.blob import read_blob
from wears.errors import ModelBlobError
from wears.export import QuantizedForest, export_blob, quantize_forest

KEY = bytes(range(32))
SPEC = 3


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Nine wrist-like fixed-point features, three classes: ranges from tens to millions, some
    negative, so that some features need a shift and some do not."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = rng.normal(0, 1.2, (3, 9))
    z = centers[y] + rng.normal(0, 1, (n, 9))
    scale = np.array([60, 15000, 9000, 120, 400_000, 2_500, 30, 1_000_000, 8])
    base = np.array([850, 40000, 50000, 300, 1_200_000, 3_300, 0, -2_000_000, 0])
    return np.round(base + z * scale).astype(np.int64), y


@pytest.fixture(scope="module")
def trained():
    X, y = synthetic(3000, seed=1)
    forest = ExtraTreesClassifier(n_estimators=10, max_depth=6, random_state=0).fit(X[:2000], y[:2000])
    return forest, X[:2000], X[2000:]


def _watch_model(qf, tmp_path, viper=False):
    path = tmp_path / "model.wbl"
    path.write_bytes(qf.to_blob(KEY))
    return L.load(str(path), KEY, qf.feature_spec, qf.n_features, viper=viper)


def test_quantized_forest_agrees_with_sklearn_on_held_out_rows(trained):
    forest, X_train, X_test = trained
    qf = quantize_forest(forest, X_train, SPEC)
    agreement = np.mean(forest.classes_[qf.predict(X_test)] == forest.predict(X_test))
    print(f"quantized vs scikit-learn agreement on {len(X_test)} held-out rows: {agreement:.4f}")
    assert agreement >= 0.97
    proba_error = np.abs(qf.predict_proba_u8(X_test) / 255 - forest.predict_proba(X_test)).max()
    assert proba_error < 0.05, proba_error


def test_scaling_fits_training_range_into_int16_at_the_finest_resolution(trained):
    forest, X_train, _ = trained
    qf = quantize_forest(forest, X_train, SPEC)
    q = qf.quantize(X_train)
    assert q.min() >= -32768 and q.max() <= 32767
    assert np.array_equal(qf.offsets_, (X_train.max(axis=0) + X_train.min(axis=0)) // 2)
    span = X_train.max(axis=0) - X_train.min(axis=0)
    assert np.all(qf.shifts_[span < 65535] == 0)
    finer = np.maximum(qf.shifts_ - 1, 0)
    wide = qf.shifts_ > 0
    assert np.all(((X_train.max(axis=0) - qf.offsets_) >> finer > 32767)[wide]
                  | ((X_train.min(axis=0) - qf.offsets_) >> finer < -32768)[wide])


@settings(max_examples=200, deadline=None)
@given(threshold=st.floats(-70000, 70000), offset=st.integers(-40000, 40000), shift=st.integers(0, 4),
       x=st.integers(-80000, 80000))
def test_threshold_decision_flips_at_floor_of_sklearn_threshold_up_to_the_shift(threshold, offset, shift, x):
    from wears.export import _quantize_thresholds
    t = _quantize_thresholds(np.array([threshold]), np.array([offset]), np.array([shift]))[0]
    q = (x - offset) >> shift
    if -32768 < t < 32767 and -32768 <= q <= 32767:
        # the watch's flip point is within half a quantization step of sklearn's
        flip = offset + (t + 1) * 2 ** shift - 1
        assert abs(flip - np.floor(threshold)) <= 2 ** shift // 2
        if shift == 0:
            assert (q <= t) == (x <= threshold)


def test_emulation_equals_the_watch_runtime_row_for_row(trained, tmp_path):
    forest, X_train, X_test = trained
    qf = quantize_forest(forest, X_train, SPEC)
    m = _watch_model(qf, tmp_path)
    extremes = np.array([[v] * 9 for v in (-2**31, -2**29 - 1, 2**29, 2**31 - 1)])
    X = np.vstack([X_test[:300], extremes])
    labels, probas = qf.predict(X), qf.predict_proba_u8(X)
    x, proba = array("i", [0] * 9), bytearray(3)
    for i, row in enumerate(X):
        x[:] = array("i", row.tolist())
        assert m.predict(x, proba) == labels[i] and list(proba) == probas[i].tolist(), i


@pytest.mark.parametrize("offset, threshold, x, label", [(B.X_MAX - 1000, 5000, 2**31 - 1, 0),
                                                         (B.X_MIN + 1000, -5000, -2**31, 1)])
def test_features_beyond_30_bits_are_clamped_on_host_and_watch(tmp_path, offset, threshold, x, label):
    qf = QuantizedForest(feature_spec=1, classes=[0, 1], offsets=[offset], shifts=[0], roots=[0],
                         feature=[0, 255, 255], threshold=[threshold, 0, 0], right=[2, 0, 1],
                         leaf_proba=[[255, 0], [0, 255]])
    assert qf.predict([[x]]).tolist() == [label]
    assert _watch_model(qf, tmp_path).predict(array("i", [x]), bytearray(2)) == label


def test_ties_go_to_the_lowest_class_on_host_and_watch(tmp_path):
    qf = QuantizedForest(feature_spec=1, classes=[0, 1, 2], offsets=[0], shifts=[0], roots=[0, 1],
                         feature=[255, 255], threshold=[0, 0], right=[0, 1], leaf_proba=[[0, 128, 127], [0, 127, 128]])
    assert qf.predict([[0]]).tolist() == [1]
    assert qf.predict_proba_u8([[0]]).tolist() == [[0, 128, 128]]  # 255 / 2 rounds half up
    proba = bytearray(3)
    assert _watch_model(qf, tmp_path).predict(array("i", [0]), proba) == 1 and list(proba) == [0, 128, 128]


def test_best_first_trees_are_relaid_depth_first(trained, tmp_path):
    forest, X_train, X_test = trained
    y = forest.predict(X_train)
    rf = RandomForestClassifier(n_estimators=3, max_leaf_nodes=12, random_state=0).fit(X_train, y)
    qf = quantize_forest(rf, X_train, SPEC)
    assert np.mean(rf.classes_[qf.predict(X_test)] == rf.predict(X_test)) >= 0.97
    inner = np.nonzero(qf.feature_ != B.LEAF)[0]
    assert np.all(qf.right_[inner] > inner + 1)


def test_leaf_probabilities_sum_to_255_and_equal_leaves_share_a_row(trained):
    forest, X_train, _ = trained
    qf = quantize_forest(forest, X_train, SPEC)
    assert np.all(qf.leaf_proba_.sum(axis=1) == 255)
    assert len(np.unique(qf.leaf_proba_, axis=0)) == qf.n_leaves
    assert qf.n_leaves < np.sum(qf.feature_ == B.LEAF)


def test_blob_round_trips_and_reports_the_model_id(trained):
    forest, X_train, X_test = trained
    qf = quantize_forest(forest, X_train, SPEC)
    data = qf.to_blob(KEY)
    assert len(data) == qf.size_bytes
    info = read_blob(data, KEY, feature_spec=SPEC, n_features=9)
    assert (info.model_id, info.n_trees, info.n_nodes) == (qf.model_id, 10, qf.n_inner)
    back = QuantizedForest.from_blob(data, KEY, classes=forest.classes_)
    assert np.array_equal(back.predict_proba_u8(X_test), qf.predict_proba_u8(X_test))
    assert back.to_blob(KEY) == data


def test_blob_too_large_for_the_watch_is_refused(trained):
    forest, X_train, _ = trained
    qf = quantize_forest(forest, X_train, SPEC)
    with pytest.raises(ModelBlobError) as e:
        qf.to_blob(KEY, max_bytes=qf.size_bytes - 1)
    assert e.value.reason == P.E_TOO_LARGE
    assert len(qf.to_blob(KEY, max_bytes=None)) == qf.size_bytes


def test_non_integer_or_out_of_range_training_data_is_refused(trained):
    forest, X_train, _ = trained
    with pytest.raises(ValueError, match="integer"):
        quantize_forest(forest, X_train + 0.5, SPEC)
    with pytest.raises(ValueError, match="lie in"):
        quantize_forest(forest, np.where(X_train == X_train.max(), 2**30, X_train), SPEC)
    with pytest.raises(ValueError, match="n_samples"):
        quantize_forest(forest, X_train[:, :8], SPEC)
    with pytest.raises(TypeError):
        quantize_forest(object(), X_train, SPEC)


def test_runtime_constants_equal_the_blob_contract():
    from watch import mlp as MLP, mlp_plain as MP, trees_plain as TP
    assert (M._BIAS, M._X_MIN, M._X_MAX) == (TP._BIAS, TP._X_MIN, TP._X_MAX) == (B.BIAS, B.X_MIN, B.X_MAX)
    assert (MLP._X_MIN, MLP._X_MAX, MLP._HEAD, MLP._ROW) == (MP._X_MIN, MP._X_MAX, MP._HEAD, MP._ROW)
    assert (MLP._X_MIN, MLP._X_MAX) == (B.X_MIN, B.X_MAX)
    # where the model id lies, read again before each prediction; the tree array's header
    assert M._ID_AT == TP._ID_AT == MP._ID_AT == B.HEADER_SIZE - 4 and M._HEAD == TP._HEAD == L._HEAD
    assert B.trees_payload_size(2, 6, 3, 2, B.OLD_VERSION) == 48 and B.blob_size(2, 48, B.OLD_VERSION) == 114
    assert B.trees_payload_size(2, 2, 3, 2) == 40 and B.blob_size(2, 40) == 114
    assert M._forest is None  # CPython runs the plain-Python path


def test_export_blob_signs_a_trained_model_and_reports_json_ready_info(trained):
    import json
    from types import SimpleNamespace
    forest, X_train, _ = trained
    data, info = export_blob(SimpleNamespace(model=forest, X_train=X_train, feature_spec=SPEC), KEY)
    assert json.loads(json.dumps(info)) == info
    assert read_blob(data, KEY, feature_spec=SPEC, n_features=9).model_id == info["model_id"]
    assert info["size_bytes"] == len(data) and info["n_trees"] == 10 and info["train_agreement"] >= 0.97

"""Feature-spec ids: feature set 2 has its own (7-10), the retired ones (1-6: the draft and feature
set 1) are never reused, and a blob made for feature set 1 is refused by the host before it is
flashed or uploaded, with a message naming the feature set (the watch's own refusal is in
test_flash_ble.py)."""

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier

from watch import features as F
from watch import protocol as P
from wears.blob import DISTRIBUTION_KEY, describe, read_blob
from wears.errors import ModelBlobError
from wears.export import quantize_forest
from wears.feature_specs import RETIRED, current_specs, describe_spec, require_current
from wears.flash import default_model_path, flash_firmware

SET_1 = {(True, False): 3, (False, False): 4, (True, True): 5, (False, True): 6}


def _blob(spec: int, n_features: int) -> bytes:
    rng = np.random.default_rng(0)
    X = rng.integers(-500, 500, size=(200, n_features))
    forest = ExtraTreesClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, X[:, 0] > 0)
    return quantize_forest(forest, X, spec).to_blob(DISTRIBUTION_KEY)


def test_feature_set_2_has_ids_of_its_own_that_no_retired_set_had():
    assert F.FEATURE_VERSION == 2
    assert {F.spec_for(g, b)[0] for g in (True, False) for b in (False, True)} == {7, 8, 9, 10} == set(current_specs())
    assert not set(current_specs()) & set(RETIRED)
    for (gyro, baseline), old in SET_1.items():  # the same columns as feature set 1, in the same order
        assert F.spec_for(gyro, baseline)[0] == old + 4
        assert RETIRED[old].startswith("feature set 1 with" + ("" if gyro else "out"))


def test_the_shipped_models_are_made_for_feature_set_2():
    for board in ("esp32s3-wrist", "xiao-nrf52840-sense", "pinetime"):
        info = read_blob(default_model_path(board).read_bytes())
        require_current(info.feature_spec, info.n_features, board != "pinetime", board)
        assert describe_spec(info.feature_spec).startswith("feature set 2")


@pytest.mark.parametrize("gyro, baseline", list(SET_1))
def test_a_feature_set_1_blob_is_refused_naming_its_feature_set(gyro, baseline):
    n = F.spec_for(gyro)[1]
    info = read_blob(_blob(SET_1[gyro, baseline], n))
    with pytest.raises(ModelBlobError) as refused:
        require_current(info.feature_spec, info.n_features)
    assert refused.value.reason == P.E_FEATURE_MISMATCH
    message = str(refused.value)
    assert f"feature set 1 with{'' if gyro else 'out'} the gyroscope" in message
    assert f"spec {SET_1[gyro, baseline]}, retired" in message and "Retrain" in message
    assert "feature set 1" in describe(info)


def test_flashing_a_feature_set_1_model_is_refused_before_the_board_is_touched(tmp_path):
    old = _blob(3, 22)
    with pytest.raises(ModelBlobError, match=r"feature set 1 with the gyroscope \(spec 3, retired\)") as refused:
        flash_firmware(str(tmp_path / "no-such-port"), "esp32s3-wrist", key_path=tmp_path / "k", model=old)
    assert refused.value.reason == P.E_FEATURE_MISMATCH
    with pytest.raises(ModelBlobError, match=r"needs feature set 2 without the gyroscope \(spec 8\).*"
                                             r"computes feature set 2 with the gyroscope \(spec 7\)"):
        flash_firmware(str(tmp_path / "no-such-port"), "esp32s3-wrist", key_path=tmp_path / "k",
                       model=_blob(8, 18))


def test_wears_flash_model_refuses_a_feature_set_1_blob_before_connecting(tmp_path, capsys):
    from wears.cli import main

    path = tmp_path / "old.wbl"
    path.write_bytes(_blob(5, 22))
    assert main(["flash", "model", "--ble", "AA:BB:CC:DD:EE:FF", str(path)]) == 1
    err = capsys.readouterr().err
    assert "feature set 1 with the gyroscope, minus the wearer's baseline (spec 5, retired)" in err

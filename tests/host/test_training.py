"""E4 import, recipes and `wears train`: labels from the annotations table, subject-independent
folds, every model kind, the quantized model scored, ablation and a report with provenance."""

import json
from array import array

import numpy as np
import pytest

from watch import features as F
from watch.baseline import Baseline
from wears.cli import main as wears
from wears.db import Study
from wears.errors import WearsError
from wears.features import baseline_mean, baseline_normalise
from wears.recipe import parse_recipe

RECIPE = """
name = "t"
[labels]
mapping = { calm = "rest", stress = "stress" }
classes = ["rest", "stress"]
[windows]
length_s = 30
step_s = 10
keep = "all"
[models]
candidates = ["extratrees", "logreg", "majority"]
[models.extratrees]
n_estimators = [5, 10]
max_depth = [3, 5]
min_samples_leaf = [5]
"""


def write_e4(folder, seed, stressed_at):
    """An E4 export: BVP at 64 Hz (a pulse, faster and with arm motion in the stress segment), ACC at 32 Hz."""
    rng = np.random.default_rng(seed)
    (folder / "E4").mkdir(parents=True)
    n = 64 * 600
    t = np.arange(n) / 64
    bpm = np.where((t >= stressed_at) & (t < stressed_at + 200), 100, 65) + rng.normal(0, 1, n)
    phase = np.cumsum(bpm / 60 / 64)
    bvp = ((1 + np.sin(2 * np.pi * phase)) / 2) ** 6 * 80 + rng.normal(0, 2, n)  # one bump per beat
    ta = np.arange(32 * 600) / 32
    moving = (ta >= stressed_at) & (ta < stressed_at + 200)
    acc = np.stack([np.zeros_like(ta), np.zeros_like(ta), np.full_like(ta, 64)], axis=1)
    acc[moving, 0] += 20 * np.sin(2 * np.pi * 1.3 * ta[moving])
    for name, rate, data in (("BVP.csv", 64, bvp[:, None]), ("ACC.csv", 32, np.round(acc))):
        head = "1495437325.0" + ",1495437325.0" * (data.shape[1] - 1) + "\n" + f"{rate}.0" * 1 + "\n"
        (folder / "E4" / name).write_text(head + "\n".join(",".join(f"{v:g}" for v in row) for row in data))
    (folder / "annotations.csv").write_text(
        "start_s,end_s,label,condition\n"
        f"0,{stressed_at},calm,Base\n{stressed_at},{stressed_at + 200},stress,TSST\n"
        f"{stressed_at + 200},600,calm,Base\n")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("e4")
    for i, at in enumerate((150, 200, 250, 300)):
        write_e4(root / f"S{i + 2}", i, at)
    db = root / "study.db"
    assert wears(["import", "e4", str(root), "--study", str(db)]) == 0
    return db


def test_e4_import_stores_streams_and_raw_annotation_labels(study):
    s = Study.open(study)
    sessions = s.sessions()
    assert [x["participant_id"] for x in sessions] == ["S2", "S3", "S4", "S5"]
    assert all(x["status"] == "complete" and x["source"] == "import" for x in sessions)
    ppg = s.stream(1, 1)
    assert ppg.rate_hz == 100 and len(ppg.samples) == 60000 and ppg.gaps == 0
    assert [a[2] for a in s.annotations(1)] == ["calm", "stress", "calm"]


def test_import_of_a_folder_without_an_export_is_a_clear_error(tmp_path, capsys):
    assert wears(["import", "e4", str(tmp_path), "--study", str(tmp_path / "x.db")]) == 1
    assert "no E4 export" in capsys.readouterr().err


def test_one_participant_id_for_many_recordings_is_refused(study, tmp_path, capsys):
    assert wears(["import", "e4", str(study.parent), "--study", str(tmp_path / "y.db"), "--participant", "P1"]) == 1
    assert "names one recording" in capsys.readouterr().err


def test_train_recipe_reports_subject_independent_scores_quantized_ablation_and_provenance(study, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE)
    out = tmp_path / "m.pkl"
    assert wears(["train", str(recipe), "--study", str(study), "-o", str(out)]) == 0
    r = json.loads(out.with_suffix(".report.json").read_text())
    assert r["protocol"] == "leave one participant out"
    assert set(r["evaluation"]) == {"extratrees", "logreg", "majority"}
    assert set(r["per_participant"]) == {"S2", "S3", "S4", "S5"}
    assert r["macro_f1"] > 0.9 and r["evaluation"]["majority"]["macro_f1"] < 0.5  # stress is easy here
    assert r["quantized"]["agreement_with_float"] > 0.95
    assert set(r["ablation"]) == {"hr", "acc", "hr+acc"}  # no gyroscope on the E4
    assert r["feature_spec"] == F.FEATURE_SPEC_ID_NO_GYRO and r["feature_version"] == F.FEATURE_VERSION
    assert len(r["selected"]["extratrees"]) == 4 and "scikit-learn" in r["versions"] and r["commit"]
    assert len(r["study"]["sha256"]) == 64 and len(r["recipe"]["sha256"]) == 64
    assert "calibration" in r and 0 <= r["calibration"]["ece"] <= 1
    assert "<img src='data:image/png;base64," in out.with_suffix(".report.html").read_text()


def test_random_split_needs_the_flag_and_the_report_warns(study, tmp_path):
    with pytest.raises(WearsError, match="random_split"):
        parse_recipe(RECIPE + '[evaluation]\nprotocol = "random"\n')
    from wears.train import train_recipe
    recipe = parse_recipe(RECIPE.replace('candidates = ["extratrees", "logreg", "majority"]', 'candidates = ["extratrees"]')
                          + '[evaluation]\nprotocol = "random"\nrandom_split = true\nablation = false\n')
    r = train_recipe(recipe, study=study).report
    assert "flatters" in r["warning"] and r["protocol"].startswith("random")


def test_model_on_baseline_subtracted_features_carries_its_own_spec_id(study, tmp_path, capsys):
    from wears.train import train_recipe
    recipe = parse_recipe(RECIPE.replace('candidates = ["extratrees", "logreg", "majority"]', 'candidates = ["extratrees"]')
                          + '[features]\nnormalise = "baseline"\nbaseline_label = ""\nbaseline_windows = 4\n'
                          + '[evaluation]\nablation = false\n')
    trained = train_recipe(recipe, study=study)
    assert trained.feature_spec == trained.report["feature_spec"] == F.FEATURE_SPEC_ID_NO_GYRO_BASELINE
    assert trained.normalise == {"windows": 4, "baseline_label": ""}
    # hr_mean is relative to the first windows now: around 0 at rest, not around 650
    assert abs(np.median(trained.X_train[:, trained.feature_names.index("hr_mean")])) < 200
    # `wears export` says which board profile features the watch needs to compute the same windows
    trained.save(tmp_path / "m.pkl")
    (tmp_path / "key").write_bytes(bytes(range(32)))
    capsys.readouterr()
    assert wears(["export", str(tmp_path / "m.pkl"), "--key", str(tmp_path / "key"), "-o", str(tmp_path / "m.wbl")]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["board_features"] == {"window_s": 30, "step_s": 10, "baseline_windows": 4}


def test_session_start_calibration_uses_no_labels(study, tmp_path):
    """baseline_label = "": the calibration is the session's first trusted windows whatever the
    annotations say, so moving a label changes no feature (with a named label it does)."""
    import sqlite3

    from wears.train import build_dataset
    moved = tmp_path / "moved.db"
    with sqlite3.connect(study) as src, sqlite3.connect(moved) as dst:
        src.backup(dst)  # a file copy would miss what still sits in the WAL
    s = Study.open(moved)
    s.conn.execute("UPDATE annotations SET start_s = start_s + 120 WHERE label = 'calm' AND start_s = 0")
    s.conn.commit()
    common = dict(window_s=30, step_s=10, mapping={"stress": 1}, keep="all", normalise="baseline",
                  baseline_windows=6)
    before = build_dataset(Study.open(study), baseline_label="", **common)
    after = build_dataset(Study.open(moved), baseline_label="", **common)
    assert np.array_equal(before.X, after.X) and len(before.y) > 0
    named_before = build_dataset(Study.open(study), baseline_label="calm", **common)
    named_after = build_dataset(Study.open(moved), baseline_label="calm", **common)
    assert not np.array_equal(named_before.X, named_after.X)  # the test can tell the two apart


def test_recipe_rejects_unknown_keys_and_unmapped_classes():
    with pytest.raises(WearsError, match="unknown key windows.lenght_s"):
        parse_recipe("[windows]\nlenght_s = 60\n")
    with pytest.raises(WearsError, match="not one of labels.classes"):
        parse_recipe('[labels]\nmapping = { a = "x" }\nclasses = ["y", "z"]\n')


def test_host_baseline_equals_the_watch_baseline():
    rng = np.random.default_rng(3)
    names = F.feature_names(True)
    X = rng.integers(-3000, 3000, (20, len(names)))
    flags = rng.choice([0, 0, 0, F.FLAG_LOW_QUALITY, F.FLAG_MOTION], 20)
    watch = Baseline(names, windows=6)
    for row, fl in zip(X, flags):
        watch.add(array("i", row.tolist()), int(fl))
    host_mean = baseline_mean(X, (flags & F.UNTRUSTED) == 0, 6)
    assert list(watch.mean) == host_mean.tolist()
    out = array("i", X[-1].tolist())
    watch.apply(out)
    assert list(out) == baseline_normalise(X[-1:], host_mean, names)[0].tolist()
    assert out[names.index("beats")] == X[-1][names.index("beats")]  # counts are not normalised


def test_every_shipped_recipe_parses():
    from pathlib import Path

    from wears.recipe import load_recipe
    recipes = sorted((Path(__file__).resolve().parents[2] / "training" / "recipes").glob("*.toml"))
    assert {p.stem for p in recipes} >= {"default", "wesad-valence", "wesad-stress"}
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe["evaluation"]["protocol"] != "random" and len(recipe.mapping) >= 2
    # stress vs baseline: the baseline segment is a class, so its calibration must not come from it
    stress = load_recipe(recipes[0].parent / "wesad-stress.toml")["features"]
    assert stress["normalise"] == "baseline" and stress["baseline_label"] == ""


def test_on_device_budget_is_part_of_the_search(study):
    from wears.export import quantize_forest
    from wears.train import train_recipe
    small = RECIPE.replace('candidates = ["extratrees", "logreg", "majority"]', 'candidates = ["extratrees"]').replace(
        "n_estimators = [5, 10]", "n_estimators = [3, 60]").replace("max_depth = [3, 5]", "max_depth = [5]")
    recipe = parse_recipe(small + "[budget]\nmax_blob_bytes = 3000\n[evaluation]\nablation = false\n")
    trained = train_recipe(recipe, study=study)
    assert trained.report["model"]["n_estimators"] == 3  # 60 trees would not fit 3000 bytes
    assert quantize_forest(trained.model, trained.X_train, trained.feature_spec).size_bytes <= 3000
    with pytest.raises(WearsError, match="budget"):
        train_recipe(parse_recipe(small + "[budget]\nmax_blob_bytes = 100\n[evaluation]\nablation = false\n"),
                     study=study)


def test_trained_int8_mlp_is_scored_and_exported_as_the_watch_runs_it(study, tmp_path, capsys):
    from wears.mlp import QuantizedMLP
    from wears.train import train_recipe
    recipe = parse_recipe(RECIPE.replace('candidates = ["extratrees", "logreg", "majority"]',
                                         'candidates = ["mlp"]\ndeploy = "mlp"')
                          + "[models.mlp]\nhidden = [[4]]\nalpha = [1.0]\n[evaluation]\nablation = false\n")
    trained = train_recipe(recipe, study=study)
    assert trained.kind == "mlp" and trained.report["quantized"]["macro_f1"] > 0.8
    assert trained.report["quantized"]["agreement_with_float"] > 0.9
    trained.save(tmp_path / "mlp.pkl")
    (tmp_path / "key").write_bytes(bytes(32))
    assert wears(["export", str(tmp_path / "mlp.pkl"), "--key", str(tmp_path / "key")]) == 1
    assert "mlp model" in capsys.readouterr().err
    out = tmp_path / "mlp.wbl"
    assert wears(["export", str(tmp_path / "mlp.pkl"), "--key", str(tmp_path / "key"), "--kind", "mlp",
                  "-o", str(out), "--format", "blob"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["shape"][1:] == [4, 2]
    # the exported blob is the model that was trained and scored, not a new fit
    from wears.watch_models import on_watch
    expected = on_watch(trained.model, trained.X_train, trained.feature_spec)
    assert isinstance(expected, QuantizedMLP) and expected.payload in out.read_bytes()
    # its card carries the figures `wears train` measured for it, float and as the watch runs it
    card = json.loads(out.with_suffix(".card.json").read_text())["evaluation"]
    assert card["macro_f1_quantized"] == trained.report["quantized"]["macro_f1"]
    assert card["macro_f1_float"] == trained.report["macro_f1"]


def test_auto_chooses_the_on_device_kind_inside_each_training_fold(study, tmp_path):
    from wears.report import write_html
    from wears.train import train_recipe
    recipe = parse_recipe(RECIPE.replace('candidates = ["extratrees", "logreg", "majority"]',
                                         'candidates = ["auto", "extratrees", "mlp"]\ndeploy = "auto"')
                          + "[models.mlp]\nhidden = [[4]]\nalpha = [1.0]\n"
                            "[evaluation]\nablation = false\ninner_repeats = 2\n")
    trained = train_recipe(recipe, study=study)
    r = trained.report
    assert trained.kind in ("extratrees", "mlp") and r["model"]["kind"] == trained.kind
    assert {c["kind"] for c in r["selected"]["auto"]} <= {"extratrees", "mlp"}
    assert set(r["evaluation_quantized"]) == {"auto", "extratrees", "mlp"}
    assert r["quantized"] == r["evaluation_quantized"]["auto"]
    write_html(r, tmp_path / "auto.html")
    assert "on-watch macro-F1" in (tmp_path / "auto.html").read_text()
    for bad in ("inner_repeats = 0", 'inner_score = "median"'):
        with pytest.raises(WearsError, match=bad.split()[0]):
            parse_recipe(RECIPE + f"[evaluation]\n{bad}\n")
    with pytest.raises(WearsError, match="auto"):
        parse_recipe(RECIPE.replace('candidates = ["extratrees", "logreg", "majority"]',
                                    'candidates = ["extratrees", "mlp"]\ndeploy = "auto"'))

"""Training on a session with samples the host never received (a range the watch's flash log
evicted before it was backfilled): every window whose samples are all present is trained on,
with its label and the watch's own features, and no window spans the gap."""

from __future__ import annotations

import numpy as np
import pytest

from watch import protocol as P
from wears.cli import main as wears
from wears.db import Study, StreamData
from wears.features import extract_features
from wears.recipe import parse_recipe
from wears.report import write_html
from wears.train import DEFAULT_RECIPE, build_dataset, session_windows, train_recipe, window_labels
from wears.window_runs import boot_windows

from .test_training import write_e4

WINDOW_S, STEP_S = 30, 5
MAPPING = {"calm": 0, "stress": 1}
STRESSED_AT = 150  # the stress clip: 150 s to 350 s
PPG_GAP = (240, 250)  # seconds never received: one 1000-sample PPG chunk, in the middle of the clip
ACC_GAP_CHUNK = 23  # the accelerometer chunk never received (52 Hz: about 442 s to 461 s, calm)


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """The same imported recording twice: whole, and with an unbackfilled PPG gap in the middle
    of the labelled stress clip and an accelerometer gap in a calm part."""
    root = tmp_path_factory.mktemp("gaps")
    write_e4(root / "S2", 0, STRESSED_AT)
    whole, gapped = root / "whole.db", root / "gapped.db"
    for path in (whole, gapped):
        assert wears(["import", "e4", str(root), "--study", str(path)]) == 0
    study = Study.open(gapped)
    sid = study.sessions()[0]["id"]
    acc_rate = study.stream(sid, P.ACC).rate_hz
    acc_gap = study.conn.execute("SELECT first_index, count FROM chunks WHERE session_id=? AND stream=? "
                                 "ORDER BY first_index LIMIT 1 OFFSET ?", (sid, P.ACC, ACC_GAP_CHUNK)).fetchone()
    with study.conn:
        study.conn.execute("DELETE FROM chunks WHERE session_id=? AND stream=? AND first_index=?",
                           (sid, P.PPG, PPG_GAP[0] * 100))
        study.conn.execute("DELETE FROM chunks WHERE session_id=? AND stream=? AND first_index=?",
                           (sid, P.ACC, acc_gap[0]))
    acc_gap_s = (acc_gap[0] / acc_rate, (acc_gap[0] + acc_gap[1]) / acc_rate)
    return Study.open(whole), study, sid, acc_gap_s


def _overlaps(end_s, gap):
    return (end_s - WINDOW_S < gap[1]) & (end_s > gap[0])


def test_windows_on_both_sides_of_a_gap_are_trained_on_with_their_labels(studies):
    whole, gapped, sid, acc_gap = studies
    assert [len(r.samples) for r in gapped.stream_runs(sid, P.PPG)] == [24000, 35000]  # the stream is split
    full = session_windows(whole, sid, window_s=WINDOW_S, step_s=STEP_S)
    got = session_windows(gapped, sid, window_s=WINDOW_S, step_s=STEP_S)
    assert len(full.missing_end_s) == 0
    # No window spans a gap: its PPG samples and its accelerometer blocks are all present.
    assert not _overlaps(got.end_s, PPG_GAP).any() and not _overlaps(got.end_s, acc_gap).any()
    # Every kept window is the watch's (the whole recording's), bit for bit.
    at = np.searchsorted(full.end_s, got.end_s)
    np.testing.assert_array_equal(full.end_s[at], got.end_s)
    np.testing.assert_array_equal(full.table.X[at], got.table.X)
    np.testing.assert_array_equal(full.table.quality[at], got.table.quality)
    # What is left out: the windows across a gap, and the few after it while the detector settles.
    left_out = np.setdiff1d(full.end_s, got.end_s)
    np.testing.assert_array_equal(np.sort(got.missing_end_s), left_out)
    across = _overlaps(full.end_s, PPG_GAP) | _overlaps(full.end_s, acc_gap)
    assert set(full.end_s[across]) <= set(left_out)
    settling = np.setdiff1d(left_out, full.end_s[across])
    assert len(settling) and np.all(settling - WINDOW_S >= PPG_GAP[1]) and np.all(settling - WINDOW_S < PPG_GAP[1] + 15)
    # Labelled windows on both sides of the PPG gap, inside the stress clip, are in the training set.
    annotations = gapped.annotations(sid)
    y = window_labels(got.end_s, WINDOW_S, annotations, MAPPING)
    before = (got.end_s <= PPG_GAP[0]) & (y == 1)
    after = (got.end_s - WINDOW_S >= PPG_GAP[1]) & (y == 1)
    assert before.sum() >= 10 and after.sum() >= 10
    data = build_dataset(gapped, window_s=WINDOW_S, step_s=STEP_S, sessions=[sid], mapping=MAPPING, keep="all")
    np.testing.assert_array_equal(data.y, y[y >= 0])
    np.testing.assert_array_equal(data.X, got.table.X[y >= 0])
    # The training report says how many windows the gaps took, and how many of them were labelled.
    lost = int(np.sum(window_labels(left_out, WINDOW_S, annotations, MAPPING) >= 0))
    assert data.gaps == {sid: {"participant": "S2", "windows": len(left_out), "labelled": lost}}
    assert data.excluded["missing samples"] == lost > 0
    whole_data = build_dataset(whole, window_s=WINDOW_S, step_s=STEP_S, sessions=[sid], mapping=MAPPING, keep="all")
    assert len(whole_data.y) == len(data.y) + lost and whole_data.gaps == {}


def test_a_session_without_gaps_gives_the_windows_of_its_whole_streams(studies):
    whole, _, sid, _ = studies
    got = session_windows(whole, sid, window_s=WINDOW_S, step_s=STEP_S)
    ppg, acc = whole.stream(sid, P.PPG), whole.stream(sid, P.ACC)
    before = extract_features(ppg.samples[:, 0], acc.samples, ppg_rate=int(ppg.rate_hz), imu_rate=int(acc.rate_hz),
                              window_s=WINDOW_S, step_s=STEP_S, acc_unit_g=acc.unit, first_ppg_index=ppg.first_index,
                              first_imu_index=acc.first_index)
    np.testing.assert_array_equal(got.table.X, before.X)
    np.testing.assert_array_equal(got.table.window_end, before.window_end)
    np.testing.assert_array_equal(got.table.quality, before.quality)
    np.testing.assert_array_equal(got.end_s, before.window_end / ppg.rate_hz)
    assert len(got.missing_end_s) == 0


def _runs(stream, samples, rate, unit, cuts):
    """StreamData runs of `samples` with the index ranges `cuts` never received."""
    edges = [0, *np.ravel(cuts), len(samples)]
    return [StreamData(stream, a, samples[a:b], rate, unit, 0) for a, b in zip(edges[::2], edges[1::2])]


def test_every_stream_has_its_own_runs_and_a_window_needs_all_of_them():
    """PPG, accelerometer and gyroscope gaps at different places (synthetic, 100 / 52 Hz): a kept
    window is inside one run of each stream and equals the whole recording's, and every window
    clear of the gaps and of the detector's settling after them is kept."""
    fs, imu, seconds = 100, 52, 240
    rng = np.random.default_rng(3)
    t = np.arange(fs * seconds) / fs
    phase = np.cumsum((70 + 8 * np.sin(2 * np.pi * t / 40)) / 60 / fs)
    ir = (110000 - 600 * ((1 + np.sin(2 * np.pi * phase)) / 2) ** 6 + rng.normal(0, 5, len(t))).astype(np.int64)
    acc = (np.array([0, 0, 8192]) + rng.normal(0, 60, (imu * seconds, 3))).astype(np.int16)
    gyro = rng.normal(0, 40, (imu * seconds, 3)).astype(np.int16)
    kw = dict(window_s=20, step_s=5)
    whole = extract_features(ir, acc, gyro, ppg_rate=fs, imu_rate=imu, acc_unit_g=0.122e-3, gyro_unit_dps=0.07, **kw)
    gaps_s = {P.PPG: (60.0, 61.5), P.ACC: (120.3, 121.0), P.GYRO: (180.2, 180.5)}
    rates = {P.PPG: fs, P.ACC: imu, P.GYRO: imu}
    runs = {s: _runs(s, x, rates[s], u, [int(gaps_s[s][0] * rates[s]), int(gaps_s[s][1] * rates[s])])
            for s, x, u in ((P.PPG, ir[:, None], 1.0), (P.ACC, acc, 0.122e-3), (P.GYRO, gyro, 0.07))}
    got = boot_windows(runs[P.PPG], runs[P.ACC], runs[P.GYRO], **kw)
    end_s = got.table.window_end / fs
    at = np.searchsorted(whole.window_end, got.table.window_end)
    np.testing.assert_array_equal(whole.window_end[at], got.table.window_end)
    np.testing.assert_array_equal(whole.X[at], got.table.X)
    np.testing.assert_array_equal(whole.quality[at], got.table.quality)
    all_end_s = whole.window_end / fs
    clear = np.ones(len(all_end_s), dtype=bool)
    for stream, (a, b) in gaps_s.items():
        assert not ((end_s - 20 < b) & (end_s > a)).any()  # no kept window spans a gap
        settle = 12.0 if stream == P.PPG else 0.1  # the detector's warm-up and reference; the IMU's last sample
        clear &= (all_end_s <= a) | (all_end_s - 20 >= b + settle)
    assert set(all_end_s[clear]) <= set(end_s)
    np.testing.assert_array_equal(np.sort(got.missing / fs), np.setdiff1d(all_end_s, end_s))
    # The detector's settling is what keeps the first windows after a PPG gap out: computed on
    # the run alone, as if the stream started there, the first of them are not the watch's.
    after = runs[P.PPG][1]
    alone = extract_features(after.samples[:, 0], acc, gyro, ppg_rate=fs, imu_rate=imu, acc_unit_g=0.122e-3,
                             gyro_unit_dps=0.07, first_ppg_index=after.first_index, **kw)
    dropped = np.isin(alone.window_end, got.missing)
    same = np.all(alone.X == whole.X[np.searchsorted(whole.window_end, alone.window_end)], axis=1) & (
        alone.quality == whole.quality[np.searchsorted(whole.window_end, alone.window_end)])
    assert dropped.any() and not same[dropped].all() and same[~dropped].all()


def test_the_training_report_says_what_the_gaps_took(tmp_path, caplog):
    root = tmp_path / "e4"
    for i, at in enumerate((150, 250)):
        write_e4(root / f"S{i + 2}", i, at)
    db = tmp_path / "study.db"
    assert wears(["import", "e4", str(root), "--study", str(db)]) == 0
    study = Study.open(db)
    with study.conn:  # S3's PPG from 300 s to 310 s never arrived: inside its stress clip
        study.conn.execute("DELETE FROM chunks WHERE session_id=2 AND stream=? AND first_index=30000", (P.PPG,))
    recipe = parse_recipe(DEFAULT_RECIPE.replace('unpleasant = "unpleasant", pleasant = "pleasant"',
                                          'stress = "unpleasant", calm = "pleasant"'))
    with caplog.at_level("WARNING", logger="wears.train"):
        trained = train_recipe(recipe, study=db)
    report = trained.report
    assert set(report["gaps"]) == {"2"} and report["gaps"]["2"]["participant"] == "S3"
    assert report["gaps"]["2"]["labelled"] == report["excluded_windows"]["missing samples"] > 0
    assert report["gaps"]["2"]["windows"] >= report["gaps"]["2"]["labelled"]
    assert "session 2 (S3)" in caplog.text and "left out for gaps" in caplog.text
    write_html(report, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert f"session 2 (S3): {report['gaps']['2']['windows']} windows left out" in page

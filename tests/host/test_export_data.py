"""Exports: CSV and Parquet per stream and a BIDS dataset, from a study with gaps, duplicates,
events, predictions and clock-sync pings whose answers are known."""

import gzip
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from watch import protocol as P
from wears.cli import build_parser, main
from wears.db import Study
from wears.errors import WearsError
from wears.export_data import export_bids, export_tables, host_clock, read_stream

PPG_TICK0 = 500  # device ms of PPG index 0
ACC_TICK0 = 520
ACC_UNIT = 0.000122
DRIFT = 1 + 2e-5  # the host clock runs this much faster than the watch's
HOST_AT_TICK0 = 1000.0  # host monotonic seconds at device tick 0


def _host(tick_ms):
    return HOST_AT_TICK0 + tick_ms / 1000 * DRIFT


def _ppg(first, n):
    idx = np.arange(first, first + n)
    return np.stack([100000 + idx, 80000 + 2 * idx], axis=1).astype("<u4")


def _acc(first, n):
    idx = np.arange(first, first + n)
    return np.stack([idx, -idx, 8192 + 0 * idx], axis=1).astype("<i2")


@pytest.fixture
def study(tmp_path):
    s = Study.open(tmp_path / "lab.db")
    sid = s.new_session("P-01", device=("AA:BB:CC:DD:EE:01", "WEARS-1", "esp32s3-wrist"))
    s.add_stream_info(sid, P.PPG, 2, 100000, 1.0, PPG_TICK0)
    s.add_stream_info(sid, P.ACC, 3, 52000, ACC_UNIT, ACC_TICK0)
    for first in (0, 50, 150):  # 100..149 lost
        s.add_chunk(sid, P.PPG, first, 50, PPG_TICK0 + first * 10, _ppg(first, 50).tobytes())
    s.add_chunk(sid, P.PPG, 25, 50, 0, _ppg(25, 50).tobytes())  # re-sent with another split
    s.add_chunk(sid, P.ACC, 0, 104, ACC_TICK0, _acc(0, 104).tobytes())
    s.add_event(sid, P.EV_BOOT, 0, tick=100)
    s.add_event(sid, P.EV_MARK, 7, tick=2000)
    s.add_event(sid, 0, 0, source="host", text="bad packet on stream")
    s.add_annotations(sid, [(0.5, 1.5, "pleasant")])
    s.add_prediction(sid, 2100, 160, 0xDEADBEEF, 0, 1, (64, 191))
    s.add_heart_rate(sid, 2100, 150, 723, 87, 9)
    rng = np.random.default_rng(3)
    for tick in range(0, 60000, 2000):
        rtt = 0.004 + rng.uniform(0, 0.002)
        if tick == 30000:
            rtt = 0.5  # an outlier round trip: answered late
        s.add_clock_sync(sid, _host(tick) - rtt / 2, _host(tick) + rtt / 2, tick)
    s.end_session(sid, "complete")
    other = s.new_session("P02", device=("AA:BB:CC:DD:EE:02", "WEARS-2", "esp32s3-wrist"))
    s.add_stream_info(other, P.PPG, 2, 100000, 1.0, 0)
    s.add_chunk(other, P.PPG, 1000, 40, 0, _ppg(1000, 40).tobytes())
    s.end_session(other, "complete")
    s.commit()
    return s


def test_read_stream_keeps_each_sample_once_with_its_index_and_counts_the_gap(study):
    t = read_stream(study, 1, P.PPG)
    assert len(t.index) == 150 and t.missing == 50
    assert list(t.index[:3]) == [0, 1, 2] and 100 not in t.index and t.index[-1] == 199
    np.testing.assert_array_equal(t.raw[t.index >= 150], _ppg(150, 50))
    np.testing.assert_allclose(t.device_ms()[:2], [500, 510])


def _rebooted_session(study: Study) -> int:
    """A session: boot 1 from host second 1000 (PPG 0..99), the watch reboots, boot 2 from host
    second 1003.004 (PPG indices start again at 0, its clock at tick 40), with pings for both."""
    sid = study.new_session("P03", device=("AA:BB:CC:DD:EE:03", "WEARS-3", "esp32s3-wrist"))
    study.add_stream_info(sid, P.PPG, 2, 100000, 1.0, 0, boot=1)
    study.add_stream_info(sid, P.PPG, 2, 100000, 1.0, 40, boot=2)
    study.add_chunk(sid, P.PPG, 0, 100, 0, _ppg(0, 100).tobytes(), boot=1)
    study.add_chunk(sid, P.PPG, 0, 60, 40, _ppg(0, 60).tobytes(), boot=2)
    study.add_chunk(sid, P.PPG, 30, 30, 340, _ppg(30, 30).tobytes(), boot=2)  # a duplicate re-split
    study.add_event(sid, P.EV_BOOT, 0, tick=10, boot=2)
    for boot, host0 in ((1, 1000.0), (2, 1003.004)):
        for tick in range(0, 2000, 100):
            study.add_clock_sync(sid, host0 + tick / 1000 - 0.002, host0 + tick / 1000 + 0.002, tick, boot=boot)
    study.commit()
    return sid


def test_a_session_across_a_reboot_exports_each_boot_on_its_own_clock_in_time_order(study, tmp_path):
    sid = _rebooted_session(study)
    table = read_stream(study, sid, P.PPG)
    assert table.boots == [1, 2] and len(table.index) == 160 and table.missing == 0
    files = export_tables(study, tmp_path / "csv", sessions=[sid])
    ppg = pd.read_csv(next(p for p in files if p.name.endswith("_ppg.csv")))
    assert list(ppg.columns) == ["boot", "index", "device_time_s", "host_time_s", "ir_counts", "red_counts"]
    assert ppg["boot"].tolist() == [1] * 100 + [2] * 60
    assert ppg["index"].tolist() == list(range(100)) + list(range(60))
    true_host = np.r_[1000 + np.arange(100) / 100, 1003.004 + (40 + 10 * np.arange(60)) / 1000]
    np.testing.assert_allclose(ppg["host_time_s"], true_host, atol=5e-4)
    assert np.all(np.diff(ppg["host_time_s"]) > 0)
    events = pd.read_csv(next(p for p in files if p.name.endswith("_events.csv")))
    assert events.loc[0, "boot"] == 2 and events.loc[0, "host_time_s"] == pytest.approx(1003.014, abs=5e-4)
    # BIDS: one file on the first boot's clock; boot 2 starts at the row nearest 3.044 s.
    export_bids(study, tmp_path / "bids", sessions=[sid])
    base = tmp_path / "bids" / "sub-P03" / f"ses-{sid}" / "beh" / f"sub-P03_ses-{sid}_task-wears_recording-ppg_physio"
    side = json.loads(base.with_suffix(".json").read_text())
    assert side["WatchBoots"] == [{"Boot": 1, "FirstRow": 0, "FirstSampleIndex": 0, "Samples": 100},
                                  {"Boot": 2, "FirstRow": 304, "FirstSampleIndex": 0, "Samples": 60}]
    rows = gzip.decompress(base.with_name(base.name + ".tsv.gz").read_bytes()).decode().splitlines()
    assert len(rows) == 364 and side["MissingSamples"] == 364 - 160
    assert rows[99] == "\t".join(map(str, _ppg(99, 1)[0])) and rows[100] == "n/a\tn/a"
    assert rows[304] == "\t".join(map(str, _ppg(0, 1)[0]))
    events_tsv = (base.parent / f"sub-P03_ses-{sid}_task-wears_events.tsv").read_text().splitlines()
    assert events_tsv[1].split("\t")[:3] == ["3.014", "0.000", "boot"]


def test_a_reboot_without_pings_cannot_be_placed_and_says_so(study, tmp_path):
    sid = _rebooted_session(study)
    study.conn.execute("DELETE FROM clock_sync WHERE session_id=? AND boot=2", (sid,))
    with pytest.raises(WearsError, match="rebooted"):
        export_bids(study, tmp_path / "bids", sessions=[sid])
    assert len(read_stream(study, sid, P.PPG).index) == 160  # the tables still hold every sample


def test_host_clock_follows_offset_and_drift_and_ignores_a_late_answer(study):
    clock = host_clock(study, 1)
    ticks = np.array([0, 30000, 59000])
    np.testing.assert_allclose(clock(ticks), _host(ticks), atol=1e-3)
    assert host_clock(study, 2) is None  # no pings: no host times


def test_csv_tables_per_stream_carry_device_and_host_times_and_physical_units(study, tmp_path):
    files = export_tables(study, tmp_path / "csv", fmt="csv", sessions=[1])
    names = sorted(p.name for p in files)
    assert names == sorted(f"session-1_P-01_{t}.csv" for t in ("ppg", "acc", "heart_rate", "predictions", "events"))
    ppg = pd.read_csv(tmp_path / "csv" / "session-1_P-01_ppg.csv")
    assert list(ppg.columns) == ["boot", "index", "device_time_s", "host_time_s", "ir_counts", "red_counts"]
    assert len(ppg) == 150 and ppg["ir_counts"].iloc[-1] == 100199
    np.testing.assert_allclose(ppg["device_time_s"], (PPG_TICK0 + 10 * ppg["index"]) / 1000)
    np.testing.assert_allclose(ppg["host_time_s"], _host(ppg["device_time_s"] * 1000), atol=1e-3)
    acc = pd.read_csv(tmp_path / "csv" / "session-1_P-01_acc.csv")
    assert list(acc.columns)[-3:] == ["x_g", "y_g", "z_g"]
    np.testing.assert_allclose(acc["z_g"], 8192 * ACC_UNIT, rtol=1e-6)
    hr = pd.read_csv(tmp_path / "csv" / "session-1_P-01_heart_rate.csv")
    assert hr["bpm"].tolist() == [72.3] and hr["device_time_s"].tolist() == [2.0]
    events = pd.read_csv(tmp_path / "csv" / "session-1_P-01_events.csv")
    assert events["trial_type"].tolist() == ["boot", "pleasant", "mark", "prediction", "host"]
    assert np.isnan(events["device_time_s"].iloc[-1])  # a host note has no place on the watch's clock


def test_parquet_holds_the_same_table_and_says_where_it_came_from(study, tmp_path):
    export_tables(study, tmp_path / "csv", fmt="csv")
    files = export_tables(study, tmp_path / "pq", fmt="parquet")
    assert len(files) == 5 + 4  # session 2: ppg, heart_rate, predictions, events
    table = pq.read_table(tmp_path / "pq" / "session-1_P-01_acc.parquet")
    meta = json.loads(table.schema.metadata[b"wears"])
    assert meta["session"] == 1 and meta["participant"] == "P-01" and meta["table"] == "acc"
    got = table.to_pandas()
    want = pd.read_csv(tmp_path / "csv" / "session-1_P-01_acc.csv")
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-6)
    assert str(got["index"].dtype) == "int64"


def test_bids_dataset_is_valid_and_its_physio_files_match_their_sidecars(study, tmp_path):
    validator = pytest.importorskip("bids_validator").BIDSValidator()
    out = tmp_path / "bids"
    files = export_bids(study, out, name="lab")
    for path in files:
        assert validator.is_bids("/" + str(path.relative_to(out))), path
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["Name"] == "lab" and description["BIDSVersion"] and description["DatasetType"] == "raw"
    assert (out / "participants.tsv").read_text().splitlines() == ["participant_id\twears_id", "sub-P01\tP-01",
                                                                   "sub-P02\tP02"]
    beh = out / "sub-P01" / "ses-1" / "beh"
    side = json.loads((beh / "sub-P01_ses-1_task-wears_recording-ppg_physio.json").read_text())
    assert side["SamplingFrequency"] == 100.0 and side["StartTime"] == 0.0
    assert side["Columns"] == ["ppg_ir", "ppg_red"] and side["ppg_ir"]["Units"] == "counts"
    assert side["MissingSamples"] == 50
    with gzip.open(beh / "sub-P01_ses-1_task-wears_recording-ppg_physio.tsv.gz", "rt") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert len(rows) == 200 and all(len(r) == len(side["Columns"]) for r in rows)
    assert rows[0] == ["100000", "80000"] and rows[100] == ["n/a", "n/a"] and rows[150] == ["100150", "80300"]
    acc_side = json.loads((beh / "sub-P01_ses-1_task-wears_recording-acc_physio.json").read_text())
    assert acc_side["StartTime"] == pytest.approx(0.02) and acc_side["acc_x"]["Units"] == "g"
    with gzip.open(beh / "sub-P01_ses-1_task-wears_recording-acc_physio.tsv.gz", "rt") as f:
        first = f.readline().split("\t")
    assert float(first[2]) == pytest.approx(8192 * ACC_UNIT, rel=1e-6)
    events = (beh / "sub-P01_ses-1_task-wears_events.tsv").read_text().splitlines()
    assert events[0].split("\t")[:2] == ["onset", "duration"]
    parsed = [line.split("\t") for line in events[1:]]
    assert [r[2] for r in parsed] == ["boot", "pleasant", "mark", "prediction"]
    assert [float(r[0]) for r in parsed] == [-0.4, 0.5, 1.5, 1.6]
    assert parsed[1][1] == "1.000" and parsed[3][3] == "pleasant"
    assert json.loads((beh / "sub-P01_ses-1_task-wears_events.json").read_text())["onset"]["Units"] == "s"
    sessions = (out / "sub-P01" / "sub-P01_sessions.tsv").read_text().splitlines()
    assert sessions[0] == "session_id\tacq_time\tstatus\tsource" and sessions[1].startswith("ses-1\t20")


def test_bids_of_one_session_and_ids_that_would_collide(study, tmp_path):
    files = export_bids(study, tmp_path / "one", sessions=[2])
    assert not (tmp_path / "one" / "sub-P01").exists() and any("sub-P02_ses-2" in p.name for p in files)
    study.new_session("P01")  # "P-01" and "P01" are both sub-P01
    with pytest.raises(WearsError, match="both become sub-P01"):
        export_bids(study, tmp_path / "clash", sessions=[1, 3])
    with pytest.raises(WearsError, match="no session 9"):
        export_bids(study, tmp_path / "none", sessions=[9])


def test_cli_export_data_writes_each_format_and_wears_export_still_exports_models(study, tmp_path, capsys):
    for fmt in ("csv", "parquet", "bids"):
        assert main(["export-data", "--db", study.path, "--format", fmt, "-o", str(tmp_path / fmt)]) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["files"] > 0
    assert (tmp_path / "bids" / "dataset_description.json").exists()
    assert main(["export-data", "--db", str(tmp_path / "missing.db"), "-o", str(tmp_path / "x")]) == 1
    assert "no such study database" in capsys.readouterr().err
    args = build_parser().parse_args(["export", "model.pkl", "--key", "key.bin"])
    assert args.func.__name__ == "cmd_export"


def test_a_stream_this_version_cannot_read_is_named_and_left_out(study, tmp_path, caplog):
    study.add_stream_info(2, 9, 1, 4000, 1.0, 0)  # e.g. a stream a newer watch or an import adds
    files = export_tables(study, tmp_path / "t", sessions=[2])
    assert sorted(p.name.split("_", 2)[2] for p in files) == ["events.csv", "heart_rate.csv", "ppg.csv",
                                                             "predictions.csv"]
    assert "stream(s) [9]" in caplog.text

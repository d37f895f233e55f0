"""A recording that spans a watch reboot, exported: each boot's samples through its own clock
fit, in one continuous file per stream in time order, every sample once, checked against the
virtual watch's flash log and its true clock (CSV, Parquet and BIDS alike)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from watch import protocol as P
from wears.clock import sample_times
from wears.export_data import export_bids, export_tables
from wears.sim.fault_scenario import check_samples

from .rebooting import SPEED, record_across_a_reboot
from .rebooting import true_host_seconds as _truth

pytestmark = pytest.mark.slow

# Against the true clock, a gross bound: mapped through the wrong boot's fit a sample would be
# seconds off. The fit itself is as good as its pings: at speed 4 with a few pings per boot,
# 7 to 31 ms were measured here under load (about 1 ms at real speed: tools/bench/faults.py).
MAX_HOST_ERROR_MS = 100.0


@pytest.fixture(scope="module")
def rebooted(tmp_path_factory):
    work = tmp_path_factory.mktemp("export-reboot")
    study, sid = record_across_a_reboot(work)
    files = export_tables(study, work / "csv", fmt="csv", sessions=[sid])
    files += export_tables(study, work / "parquet", fmt="parquet", sessions=[sid])
    export_bids(study, work / "bids", sessions=[sid])
    return study, sid, work, {p.name: p for p in files if p.suffix == ".csv"} | {
        p.name: p for p in files if p.suffix == ".parquet"}


def test_every_sample_is_exported_once_in_time_order_on_the_true_clock(rebooted):
    study, sid, work, files = rebooted
    check = check_samples(study, sid, work / "flash" / "log", work / "log-copy")
    assert check["missing"] == check["duplicates"] == check["unexpected"] == 0
    for stream in (P.PPG, P.ACC, P.GYRO):
        name = P.STREAM_NAMES[stream]
        table = pd.read_csv(files[f"session-{sid}_P01_{name}.csv"])
        assert sorted(set(table["boot"])) == study.boots(sid) and len(study.boots(sid)) == 2
        assert not table.duplicated(["boot", "index"]).any()
        assert len(table) == study.conn.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT boot, first_index + k FROM chunks, "
            "(WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k < 999) SELECT k FROM n) "
            "WHERE session_id=? AND stream=? AND k < count)", (sid, stream)).fetchone()[0]
        assert np.all(np.diff(table["host_time_s"]) > 0)  # one timeline, in the order taken
        true = _truth(study, sid, work, table["boot"].to_numpy(), table["device_time_s"].to_numpy() * 1000)
        assert np.max(np.abs(table["host_time_s"] - true)) * 1000 < MAX_HOST_ERROR_MS
        # Exactly each boot's stored clock fit, as the recording computed it (wears.clock.sample_times).
        for boot, (index, host) in sample_times(study, sid, stream).items():
            rows = table[table["boot"] == boot]
            np.testing.assert_array_equal(rows["index"], index)
            np.testing.assert_allclose(rows["host_time_s"], host, rtol=0, atol=1e-6)
        parquet = pd.read_parquet(files[f"session-{sid}_P01_{name}.parquet"])
        pd.testing.assert_frame_equal(parquet, table, check_dtype=False, rtol=0, atol=1e-6)
    # The samples of both boots together: as many as the watch logged for the session.
    assert sum(len(pd.read_csv(files[f"session-{sid}_P01_{P.STREAM_NAMES[s]}.csv"]))
               for s in (P.PPG, P.ACC, P.GYRO)) == check["samples_expected"]


def test_bids_puts_the_second_boot_where_it_truly_began(rebooted):
    study, sid, work, files = rebooted
    base = work / "bids" / "sub-P01" / f"ses-{sid}" / "beh" / f"sub-P01_ses-{sid}_task-wears_recording-ppg_physio"
    side = json.loads(base.with_suffix(".json").read_text())
    ppg = pd.read_csv(files[f"session-{sid}_P01_ppg.csv"])
    (first, second) = side["WatchBoots"]
    assert [first["Samples"], second["Samples"]] == [int((ppg["boot"] == b).sum()) for b in study.boots(sid)]
    rows = gzip.decompress(base.with_name(base.name + ".tsv.gz").read_bytes()).decode().splitlines()
    assert len(rows) - side["MissingSamples"] == len(ppg)
    # Where the second boot's first sample truly was, on the first boot's clock.
    boot1, boot2 = study.boots(sid)
    zero_ms = ppg["device_time_s"].iloc[0] * 1000
    true_host = _truth(study, sid, work, np.array([boot2]), np.array([ppg[ppg["boot"] == boot2]["device_time_s"]
                                                                      .iloc[0] * 1000]))[0]
    at0 = _truth(study, sid, work, np.array([boot1, boot1]), np.array([zero_ms, zero_ms + 1000.0]))
    true_ms = (true_host - at0[0]) / (at0[1] - at0[0]) * 1000  # on boot 1's watch clock, from time zero
    period_ms = 1000 / side["SamplingFrequency"]
    assert abs(second["FirstRow"] * period_ms - true_ms) < period_ms / 2 + SPEED * MAX_HOST_ERROR_MS
    values = [int(v) for v in rows[second["FirstRow"]].split("\t")]
    assert values == ppg[ppg["boot"] == boot2][["ir_counts", "red_counts"]].iloc[0].tolist()
    assert rows[second["FirstRow"] - 1] == "n/a\tn/a"  # the watch was rebooting

"""A short version of tools/bench/firmware_budget.py: top rates, no sample lost, efficient packets."""

import asyncio
import json
import importlib.util

import pytest

from wears.paths import REPO

pytestmark = pytest.mark.slow


def _bench():
    spec = importlib.util.spec_from_file_location("firmware_budget", REPO / "tools" / "bench" / "firmware_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("board", ["pinetime", "esp32s3-wrist"])
def test_two_minutes_at_the_highest_rates_lose_no_sample(board, tmp_path):
    # With the shipped model uploaded first: every board's heap holds it (hardware/README.md,
    # "Heap per board"; the PineTime's since issue 3m).
    result = asyncio.run(asyncio.wait_for(_bench().board_session(board, 2, tmp_path), 300))
    streams = {"ppg", "acc"} | ({"gyro"} if board != "pinetime" else set())
    assert set(result["samples"]) == streams
    rates = {"ppg": result["rates_hz"]["ppg"], "acc": result["rates_hz"]["imu"], "gyro": result["rates_hz"]["imu"]}
    # Most of the two minutes streamed (the clock runs while the host connects and
    # authenticates: under load that took 80 virtual seconds once), every sample accounted for.
    assert all(result["samples"][s] > 45 * rates[s] for s in streams), json.dumps(result)
    assert result["lost_samples"] == {s: 0 for s in streams}
    # The 85 % is the hour-long bench's figure (PineTime 0.866 at 23-byte MTU); over two
    # minutes the host's pings and auth retries under load move it by about 0.01.
    assert result["payload_efficiency"] >= 0.84, json.dumps(result)
    assert result["status_reports"] >= 1 and result["min_free"] > 0
    assert result["model_id"] and result["predictions"] > 0, json.dumps(result)
    assert result["runs_at_budget"] and result["fits_budget"], json.dumps(result)


def _status(heap_free, model_id):
    from wears.protocol import Status

    return Status(type=0x02, seq=0, tick=0, battery=100, flags=0, reserved=0, heap_free=heap_free, flash_free=0,
                  model_id=model_id, overflow=0, i2c_errors=0, dropped=0, imu_lost=0, boots=1, streams=3,
                  auth_failures=0)


def test_each_status_report_is_credited_the_pointer_width_of_the_state_it_came_from():
    # Before the upload the watch holds the boot's state; while it is under way the upload's;
    # after the commit the state with the model. A report is credited its own state's width.
    bench = _bench()
    widths = {"boot": 18000, "model": 20000, "upload": 20500}
    packets = [_status(10000, 0), "chunk reply", _status(8000, 0), _status(9000, 7)]
    states = bench.report_states(packets, range(1, 3))
    assert states == ["boot", "upload", "model"]
    # a report made after the commit, received before the upload's last reply: the model's
    assert bench.report_states(packets, range(1, 4)) == ["boot", "upload", "model"]
    # 64-bit heap 50000 before the upload, 52000 during it, 51000 after: 32000, 31500, 31000
    result = bench.firmware_peak([p for p in packets if not isinstance(p, str)], states, 60000, widths)
    assert result == {"peak_heap": 32000, "peak_heap_64": 52000, "pointer_width": 18000, "state": "boot"}
    result = bench.firmware_peak([_status(10000, 0), _status(6000, 0)], ["boot", "upload"], 60000, widths)
    assert result == {"peak_heap": 33500, "peak_heap_64": 54000, "pointer_width": 20500, "state": "upload"}
    # a session without a model measured no other state: the boot's width throughout
    assert bench.firmware_peak([_status(10000, 0)], ["boot"], 60000, {"boot": 18000})["peak_heap"] == 32000
    assert bench.firmware_peak([], [], 60000, widths) is None

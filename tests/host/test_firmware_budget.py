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
    # With the shipped model uploaded first, where the board's heap holds it (the PineTime's
    # does not yet: hardware/README.md, "Heap per board").
    with_model = board != "pinetime"
    result = asyncio.run(asyncio.wait_for(_bench().board_session(board, 2, tmp_path, model=with_model), 300))
    streams = {"ppg", "acc"} | ({"gyro"} if board != "pinetime" else set())
    assert set(result["samples"]) == streams
    rates = {"ppg": result["rates_hz"]["ppg"], "acc": result["rates_hz"]["imu"], "gyro": result["rates_hz"]["imu"]}
    assert all(result["samples"][s] > 60 * rates[s] for s in streams), json.dumps(result)  # a minute or more of each
    assert result["lost_samples"] == {s: 0 for s in streams}
    # The 85 % is the hour-long bench's figure (PineTime 0.866 at 23-byte MTU); over two
    # minutes the host's pings and auth retries under load move it by about 0.01.
    assert result["payload_efficiency"] >= 0.84, json.dumps(result)
    assert result["status_reports"] >= 1 and result["min_free"] > 0
    if with_model:
        assert result["model_id"] and result["predictions"] > 0, json.dumps(result)
    assert result["runs_at_budget"], json.dumps(result)
    if board != "pinetime":  # the PineTime does not fit its 32 KB yet: the bench says by how much
        assert result["fits_budget"], json.dumps(result)

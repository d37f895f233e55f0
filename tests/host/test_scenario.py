"""Scenario files: synthetic physiology, E4 replay, the file format, and what the watch reads from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import butter, find_peaks, sosfiltfilt

from tests.conftest import run_micropython
from wears.errors import WearsError
from wears.paths import board_profile
from wears.sim import scenario
from wears.sim.scenario import Scenario, ScenarioError


@pytest.fixture(scope="module")
def synth() -> Scenario:
    return scenario.synthetic(3, participant="P03")


def _heart_rates(sc: Scenario) -> dict[str, list[float]]:
    """Beats per minute in each episode from a simple peak count on the (re-inverted) IR channel."""
    sos = butter(2, [0.5, 4.0], btype="band", fs=sc.ppg_rate, output="sos")
    pulse = sosfiltfilt(sos, -sc.ppg[:, 0].astype(float))
    out: dict[str, list[float]] = {}
    for start, end, label in sc.episodes:
        x = pulse[int((start + 5) * sc.ppg_rate):int((end - 5) * sc.ppg_rate)]
        peaks, _ = find_peaks(x, distance=int(0.4 * sc.ppg_rate), prominence=0.5 * x.std())
        out.setdefault(label, []).append(len(peaks) / (end - start - 10) * 60)
    return out


def test_synthetic_round_trips_through_the_file(synth, tmp_path):
    path = synth.write(tmp_path / "p03.wscn")
    back = scenario.from_file(path)
    assert np.array_equal(back.ppg, synth.ppg) and back.ppg.dtype == np.uint32
    assert np.array_equal(back.imu, synth.imu) and back.imu.dtype == np.int16
    assert (back.ppg_rate, back.imu_rate, back.has_gyro) == (100, 52, True)
    assert back.episodes == synth.episodes
    assert (back.source, back.participant) == ("synthetic:seed=3", "P03")
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    assert header["ppg_offset"] % 16 == 0
    assert header["imu_offset"] == header["ppg_offset"] + 8 * header["n_ppg"]
    assert path.stat().st_size == header["imu_offset"] + 12 * header["n_imu"]


def test_synthetic_episodes_are_labelled_rest_then_alternating(synth):
    labels = [label for _, _, label in synth.episodes]
    assert labels[0] == "rest" and len(labels) == 7
    assert all(a != b for a, b in zip(labels[1:], labels[2:]))
    assert {"pleasant", "unpleasant"} == set(labels[1:])
    assert synth.duration_s == 600
    assert synth.episodes[1] == (60.0, 150.0, labels[1])
    assert list(synth.labels_at([0, 59.9, 60, 149.9, 600.0])) == ["rest", "rest", labels[1], labels[1], ""]


def test_first_episode_depends_on_the_seed():
    firsts = {scenario.synthetic(seed, rest_s=10, episode_s=10, n_episodes=2).episodes[1][2] for seed in range(8)}
    assert firsts == {"pleasant", "unpleasant"}


def test_pleasant_and_unpleasant_heart_rates_differ_as_designed(synth):
    hr = _heart_rates(synth)
    pleasant, unpleasant = np.mean(hr["pleasant"]), np.mean(hr["unpleasant"])
    assert 62 <= pleasant <= 76, hr
    assert 78 <= unpleasant <= 96, hr
    assert unpleasant - pleasant >= 8, hr


def test_unpleasant_wrist_is_more_restless(synth):
    moves = {}
    for start, end, label in synth.episodes:
        gyro = synth.imu[int(start * 52):int(end * 52), 3:].astype(float) / 10
        moves.setdefault(label, []).append(np.abs(gyro).mean())
    assert np.mean(moves["unpleasant"]) > 1.5 * np.mean(moves["pleasant"]), moves


def test_synthetic_signals_look_like_the_parts(synth):
    ir, red = synth.ppg[:, 0].astype(float), synth.ppg[:, 1].astype(float)
    assert 95000 < np.median(ir) < 125000 and np.median(red) < np.median(ir)
    ac = np.percentile(ir, 95) - np.percentile(ir, 5)
    assert 0.003 * np.median(ir) < ac < 0.03 * np.median(ir)
    gravity = np.linalg.norm(synth.imu[:, :3].astype(float), axis=1)
    assert 900 < np.median(gravity) < 1100  # 1 g in mg
    # the gyroscope is the derivative of the orientation the accelerometer sees
    assert np.abs(synth.imu[:, 3:]).max() > 0


def test_same_seed_same_scenario_other_seed_other_participant():
    a = scenario.synthetic(11, rest_s=20, episode_s=20, n_episodes=2)
    b = scenario.synthetic(11, rest_s=20, episode_s=20, n_episodes=2)
    c = scenario.synthetic(12, rest_s=20, episode_s=20, n_episodes=2)
    assert np.array_equal(a.ppg, b.ppg) and np.array_equal(a.imu, b.imu)
    assert not np.array_equal(a.ppg, c.ppg)


def test_ten_minutes_are_generated_in_a_couple_of_seconds():
    import time
    scenario.synthetic(0, rest_s=5, episode_s=5, n_episodes=1)  # neurokit2 import
    t = time.perf_counter()
    sc = scenario.synthetic(5)
    assert time.perf_counter() - t < 2.0
    assert sc.duration_s == 600


def test_truncated_file_gives_a_clear_error(synth, tmp_path):
    path = synth.write(tmp_path / "whole.wscn")
    cut = tmp_path / "cut.wscn"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ScenarioError, match="truncated"):
        Scenario.read(cut)


@pytest.mark.parametrize("content, message", [
    (b"", "not a WEARS scenario"),
    (b"RIFF\x00\x00 binary junk", "not a WEARS scenario"),
    (b"{not json}\n", "not a WEARS scenario"),
    (b'{"version": 2, "ppg_rate": 100}\n', "version 2"),
    (b'{"version": 1, "ppg_rate": 100}\n', "lacks"),
])
def test_corrupt_file_gives_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.wscn"
    path.write_bytes(content)
    with pytest.raises(ScenarioError, match=message) as info:
        Scenario.read(path)
    assert isinstance(info.value, WearsError)


def test_scenario_rejects_values_the_parts_cannot_give():
    with pytest.raises(ValueError):
        Scenario(ppg=np.full((4, 2), 1 << 18), imu=np.zeros((2, 6)))
    with pytest.raises(ValueError):
        Scenario(ppg=np.zeros((4, 3)), imu=np.zeros((2, 6)))


def test_e4_replay_of_shared_data(shared_data):
    sc = scenario.from_e4(shared_data / "wesad-e4-dev" / "S2" / "E4", start_s=6280, duration_s=120)
    assert sc.duration_s == pytest.approx(120, abs=0.1)
    assert sc.has_gyro is False and not sc.imu[:, 3:].any()
    assert (sc.ppg_rate, sc.imu_rate, sc.participant) == (100, 52, "S2")
    # amusement starts at 6309.2 s: 29.2 s into the cut, plus the 10 s margin
    assert sc.episodes == [(39.219, 120.0, "pleasant")]
    # IR falls where the E4's BVP rises
    bvp = np.loadtxt(shared_data / "wesad-e4-dev" / "S2" / "E4" / "BVP.csv", skiprows=2 + 6280 * 64,
                     max_rows=120 * 64)
    ir = np.interp(np.arange(len(bvp)) / 64, np.arange(len(sc.ppg)) / 100, sc.ppg[:, 0].astype(float))
    assert np.corrcoef(bvp, ir)[0, 1] < -0.95
    assert 100000 < np.median(sc.ppg[:, 0]) < 120000
    gravity = np.linalg.norm(sc.imu[:, :3].astype(float), axis=1)
    assert 850 < np.median(gravity) < 1150


def test_e4_replay_round_trips_through_the_file(shared_data, tmp_path):
    sc = scenario.from_e4(shared_data / "wesad-e4-dev" / "S3", start_s=100, duration_s=30)
    back = scenario.from_file(sc.write(tmp_path / "s3.wscn"))
    assert back.has_gyro is False and np.array_equal(back.imu, sc.imu) and np.array_equal(back.ppg, sc.ppg)


WATCH_READS = """
import array, time, machine
from watch.drivers.max30102 import MAX30102
from watch.drivers.lsm6ds3 import LSM6DS3
i2c = machine.I2C(0)
ppg = MAX30102(i2c)
imu = LSM6DS3(i2c)
ppg.init(100)
imu.init(52)
ir = array.array('I', [0] * 32)
red = array.array('I', [0] * 32)
acc = array.array('h', [0] * 192)
gyro = array.array('h', [0] * 192)
machine.on_power_off(lambda: print('OFF', ppg.lost, imu.lost))
while True:
    time.sleep_ms(100)
    for i in range(ppg.read(ir, red)):
        print('P', ir[i], red[i])
    for i in range(imu.read(acc, gyro)):
        print('I', acc[3 * i], acc[3 * i + 1], acc[3 * i + 2], gyro[3 * i], gyro[3 * i + 1], gyro[3 * i + 2])
"""


def test_virtual_watch_reads_what_the_writer_wrote(tmp_path):
    sc = scenario.synthetic(9, rest_s=3, episode_s=2, n_episodes=1)
    path = sc.write(tmp_path / "short.wscn")
    script = tmp_path / "reads.py"
    script.write_text(WATCH_READS)
    proc = run_micropython([str(script)], heapsize=board_profile()["heap_budget_bytes"],
                           env={"WEARS_SIM_SCENARIO": str(path), "WEARS_SIM_MISSING": "", "WEARS_SIM_I2C_ERROR_RATE": "0"},
                           cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]  # the scenario ran out: powered off cleanly
    lines = proc.stdout.splitlines()
    assert lines[-1].split() == ["OFF", "0", "0"]
    got_ppg = np.array([[int(v) for v in line.split()[1:]] for line in lines if line.startswith("P ")])
    got_imu = np.array([[int(v) for v in line.split()[1:]] for line in lines if line.startswith("I ")])
    # every PPG sample at 100 Hz is the scenario's, in order, from boot until power-off
    assert len(got_ppg) >= 490
    assert np.array_equal(got_ppg, sc.ppg[:len(got_ppg)])
    # the IMU at +-4 g and 500 dps: mg / 0.122 and (0.1 dps) / 0.175, sample 0 before the FIFO ran
    expected = np.concatenate([sc.imu[:, :3] / 0.122, sc.imu[:, 3:] / 0.175], axis=1)
    first = 1
    assert len(got_imu) >= 250
    assert np.abs(got_imu - expected[first:first + len(got_imu)]).max() <= 0.5 + 1e-9


WATCH_ENVIRONMENT = """
import machine, time, errno
i2c = machine.I2C(0, scl=machine.Pin(9), sda=machine.Pin(8))
print('SCAN', *i2c.scan())
errors = 0
for _ in range(400):
    try:
        i2c.readfrom_mem(0x57, 0xFF, 1)
    except OSError as e:
        assert e.args[0] == errno.EIO
        errors += 1
print('ERRORS', errors)
adc = machine.ADC(machine.Pin(1))
print('BATTERY', adc.read_uv())
time.sleep(3600)
print('HOUR', adc.read_uv(), adc.read_u16())
machine.on_power_off(lambda: print('BYE'))
machine.reset()
"""


def test_virtual_watch_environment_removes_parts_and_injects_errors(tmp_path):
    script = tmp_path / "env.py"
    script.write_text(WATCH_ENVIRONMENT)
    proc = run_micropython([str(script)], heapsize=board_profile()["heap_budget_bytes"], cwd=tmp_path,
                           env={"WEARS_SIM_MISSING": "imu", "WEARS_SIM_I2C_ERROR_RATE": "0.25",
                                "WEARS_SIM_SCENARIO": ""}, timeout=60)
    assert proc.returncode == 3, proc.stderr[-2000:]  # machine.reset(): hooks, then status 3
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert out["SCAN"] == "87"  # the IMU is off the bus
    assert 60 < int(out["ERRORS"]) < 140  # about a quarter of 400 transactions
    assert int(out["BATTERY"]) == 2050000  # 4.1 V through the 1:2 divider
    assert int(out["HOUR"].split()[0]) == 2000000  # 100 mV later
    assert proc.stdout.splitlines()[-1] == "BYE"

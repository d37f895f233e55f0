"""A TROIKA recording replayed through the virtual watch: the watch's heart rate under treadmill
running, against the ECG reference, beats the plain spectral peak (skips without the data)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from wears.sim.hr_replay import spectral_peak_bpm, troika_reference, watch_heart_rates
from wears.sim.scenario import from_troika

pytestmark = pytest.mark.slow


def test_watch_heart_rate_follows_the_ecg_while_running(shared_data, tmp_path):
    folder = shared_data / "troika-dev"
    data = folder / "DATA_02_TYPE02.mat"
    if not data.exists():
        pytest.skip("TROIKA recording 02 is not present")
    scenario = from_troika(data)
    assert scenario.ppg_rate == 100 and scenario.imu_rate == 52 and not scenario.has_gyro
    assert scenario.imu[:, :3].std(axis=0).max() > 300  # the treadmill run is in the accelerometer, in mg
    got = asyncio.run(watch_heart_rates(scenario.write(tmp_path / "t02.wscn")))
    ends_s, truth = troika_reference(folder / "REF_02_TYPE02.mat")
    ends = np.rint(ends_s * scenario.ppg_rate).astype(int)
    assert all(e in got for e in ends)  # a HEART_RATE packet for every reference window
    watch = np.array([got[e][0] / 10 for e in ends])
    baseline = spectral_peak_bpm(scenario.ppg[:, 0], scenario.ppg_rate, ends)
    mae = np.abs(watch - truth).mean()
    assert mae < 5, mae
    assert mae < np.abs(baseline - truth).mean() / 3


def test_a_file_that_is_not_a_troika_recording_is_refused_clearly(tmp_path):
    from scipy.io import savemat

    from wears.sim.scenario import ScenarioError

    savemat(tmp_path / "DATA_x.mat", {"sig": np.zeros((4, 5000))})
    with pytest.raises(ScenarioError, match="6 x N"):
        from_troika(tmp_path / "DATA_x.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(ScenarioError, match="not a TROIKA recording"):
        from_troika(tmp_path / "junk.mat")


def test_plain_baseline_takes_the_strongest_peak_whatever_it_is():
    t = np.arange(30 * 100) / 100
    ppg = np.sin(2 * np.pi * 1.2 * t) + 3 * np.sin(2 * np.pi * 2.5 * t) * (t >= 15)  # 72 bpm; 150/min swing from 15 s
    got = spectral_peak_bpm(ppg, 100, np.array([800, 1400, 3000, 4000]))
    assert abs(got[0] - 72) < 0.5 and abs(got[2] - 150) < 0.5  # the swing wins: no motion handling
    assert np.isnan(got[3])  # a window past the signal's end

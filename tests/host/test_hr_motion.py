"""The watch's motion-robust heart rate (watch.heart_rate, run here in CPython) on synthetic wrists:
it follows the pulse and rejects a bigger motion peak the accelerometer sees."""

from __future__ import annotations

from array import array

import numpy as np
import pytest

from watch import heart_rate as H
from watch.heart_rate import HeartRate

FS, IMU = 100, 52
LSB_PER_G = 8192  # 0.122 mg per LSB


def wrist(bpm: float, swing_hz: float, *, seconds: int = 60, rest_s: int = 10, artefact: float = 3.0, seed: int = 0):
    """IR counts (pulse of `bpm`, plus a motion artefact `artefact` times the pulse's size at
    `swing_hz` and its harmonic after `rest_s`) and the accelerometer (LSB) that sees the swing."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * FS) / FS
    moving = t >= rest_s
    phase = 2 * np.pi * bpm / 60 * t + 0.3 * np.sin(2 * np.pi * 0.25 * t)  # a little respiratory wobble
    pulse = np.sin(phase) + 0.4 * np.sin(2 * phase + 1.0)
    swing = moving * (np.sin(2 * np.pi * swing_hz * t) + 0.5 * np.sin(4 * np.pi * swing_hz * t + 0.7))
    ir = 110000 - 550 * pulse - 550 * artefact * swing + rng.normal(0, 20, len(t))
    ti = np.arange(seconds * IMU) / IMU
    mi = ti >= rest_s
    acc = np.zeros((len(ti), 3))
    acc[:, 0] = mi * 0.6 * np.sin(2 * np.pi * swing_hz * ti)
    acc[:, 1] = mi * 0.3 * np.sin(4 * np.pi * swing_hz * ti + 0.7)
    acc[:, 2] = 1 + mi * 0.2 * np.sin(2 * np.pi * swing_hz * ti + 2.0)
    acc = acc * LSB_PER_G + rng.normal(0, 20, acc.shape)
    return np.rint(ir).astype(np.int64), np.clip(np.rint(acc), -32768, 32767).astype(np.int64)


def estimate(ir, acc, *, with_acc: bool = True) -> dict[int, tuple[float, int]]:
    """Every window's (bpm, quality) by window end, fed in the bursts a watch reads."""
    hr = HeartRate(FS, IMU if with_acc else 0, fast=False)
    out = {}
    ia = 0
    for ip in range(0, len(ir), 10):
        n = min(10, len(ir) - ip)
        hr.add_ppg(array("i", ir[ip:ip + n].tolist()), n, ip)
        while with_acc and ia * FS < (ip + n) * IMU and ia < len(acc):
            m = min(5, len(acc) - ia)
            hr.add_acc(array("h", acc[ia:ia + m].ravel().tolist()), m, ia)
            ia += m
        while hr.compute() >= 0:
            out[hr.window_end] = (hr.bpm_x10 / 10, hr.quality)
    return out


@pytest.mark.parametrize("bpm,swing_hz", [(72, 1.8), (95, 2.6), (140, 1.4)])
def test_motion_peak_bigger_than_the_pulse_is_rejected(bpm, swing_hz):
    ir, acc = wrist(bpm, swing_hz)
    got = estimate(ir, acc)
    moving = {end: v for end, v in got.items() if end - 8 * FS >= 12 * FS}
    assert len(moving) >= 18
    errors = np.array([abs(b - bpm) for b, _ in moving.values()])
    assert errors.max() < 3, (bpm, swing_hz, got)


def test_without_the_accelerometer_the_motion_peak_wins():
    # The same wrist with the gate off (no accelerometer): the tracker drifts to the swing.
    # This is what the accelerometer buys, and shows the test above can fail.
    ir, acc = wrist(72, 1.8)
    blind = estimate(ir, acc, with_acc=False)
    late = [b for end, (b, _) in blind.items() if end >= 40 * FS]
    assert np.median(np.abs(np.array(late) - 108)) < 5, blind


def test_first_estimate_of_a_resting_wrist_is_the_fundamental_not_its_harmonic():
    # A strong second harmonic (dicrotic notch) must not be taken for the heart rate at start.
    t = np.arange(30 * FS) / FS
    phase = 2 * np.pi * 65 / 60 * t
    ir = np.rint(110000 - 300 * np.sin(phase) - 450 * np.sin(2 * phase)).astype(np.int64)
    acc = np.tile([0, 0, LSB_PER_G], (30 * IMU, 1))
    got = estimate(ir, acc)
    assert all(abs(b - 65) < 2 for b, _ in got.values()), got


def test_windows_end_every_two_seconds_on_the_ppg_index():
    ir, acc = wrist(80, 2.0, seconds=20)
    got = estimate(ir, acc)
    assert sorted(got) == list(range(8 * FS, 20 * FS + 1, 2 * FS))
    assert H.WINDOW_S == 8 and H.STEP_S == 2


def test_flat_signal_gives_no_heart_rate_and_zero_quality():
    ir = np.full(30 * FS, 110000, dtype=np.int64)
    acc = np.tile([0, 0, LSB_PER_G], (30 * IMU, 1))
    got = estimate(ir, acc)
    assert got and all(v == (0.0, 0) for v in got.values()), got


def test_resting_wrist_whose_accelerometer_feels_the_pulse_keeps_its_heart_rate():
    # At rest the accelerometer can carry the pulse itself (a few mg of ballistocardiogram);
    # the gate is relative to the motion's peak, so below MOTION_FLOOR_MG it must stay off,
    # or it removes the pulse with the "motion".
    ir, acc = wrist(70, 1.5, seconds=60, rest_s=1000)  # never swings
    t = np.arange(len(acc)) / IMU
    bcg = 40 * np.sin(2 * np.pi * 70 / 60 * t + 1.0)  # 5 mg at the heart rate
    acc = acc + np.rint(np.stack([bcg, 0 * t, 0 * t], axis=1)).astype(np.int64)
    got = estimate(ir, acc)
    assert all(abs(b - 70) < 1 and q > 50 for b, q in got.values()), got


def test_fidgeting_wrist_keeps_the_heart_rate_of_its_beats():
    # The synthetic scenario's restless wrist: fidgets turn it by up to 15 degrees (hundreds of
    # mg as gravity moves across the axes) but hardly move it in the heart-rate band, so the
    # gate stays off and the estimate follows the beat detector's intervals.
    from wears.features import heart_rate
    from wears.sim.scenario import synthetic

    sc = synthetic(3, rest_s=40, episode_s=30, n_episodes=1)
    ir = sc.ppg[:, 0].astype(np.int64)
    acc = np.rint(sc.imu[:, :3] / 0.122).astype(np.int64)
    assert np.ptp(sc.imu[:, :3], axis=0).max() > 100
    got = estimate(ir, acc)
    beats = heart_rate(ir, FS)
    errors = []
    for end, (bpm, quality) in got.items():
        sel = beats.valid & (beats.time_s >= end / FS - 8) & (beats.time_s < end / FS)
        errors.append(abs(bpm - 60000 / beats.ibi_ms[sel].mean()))
        assert quality > 50, got
    assert np.median(errors) < 2 and max(errors) < 8, errors  # 8-s spectrum vs mean interval under RSA


def test_quarter_wave_dft_equals_the_full_cosine_table():
    # The estimator keeps a quarter of the cosine table and mirrors it, and keeps the DFT in
    # 16 bits with the least shift that fits every bin: every spectrum equals the one a full
    # 1024-entry table gives, shifted by that, bit for bit.
    import math

    full = [int(round(1024 * math.cos(2 * math.pi * m / H.TABLE))) for m in range(H.TABLE)]
    quarter = HeartRate(100, 52)._cos
    assert list(quarter) == full[:H.TABLE // 4 + 1]
    rng = np.random.default_rng(7)
    for amp in (2047, 300, 3):
        x = array("h", rng.integers(-amp, amp + 1, H.WINDOW).tolist())
        out = array("h", [0] * (2 * H.NK))
        shift = H.dft_py(x, quarter, H.K0, H.NK, out, 9)
        re, im = out[:H.NK], out[H.NK:]
        exact_re = [sum(x[n] * full[((H.K0 + j) * n) & 1023] for n in range(H.WINDOW)) for j in range(H.NK)]
        exact_im = [sum(x[n] * full[((H.K0 + j) * n - 256) & 1023] for n in range(H.WINDOW)) for j in range(H.NK)]
        top = max(max(map(abs, exact_re)), max(map(abs, exact_im)))
        assert top >> shift < 512 and (shift == 0 or top >> (shift - 1) >= 512)
        assert list(re) == [v >> shift for v in exact_re]
        assert list(im) == [v >> shift for v in exact_im]


def test_hrv_cosine_mirrors_its_quarter_wave_exactly():
    # The HRV spectrum reads round(1024 cos(2 pi i / 256)) from the 65 literal values of its
    # quarter wave (no table in RAM, no floats on the watch).
    import math

    from watch.spectrum import cos256

    assert [cos256(i) for i in range(512)] == [int(round(1024 * math.cos(2 * math.pi * i / 256))) for i in range(512)]


def test_literal_tables_equal_their_formulas():
    # The estimator's tables are literals (in flash on a frozen watch): the cosine's quarter
    # wave, half the Hann window, the prior's nonzero entries.
    import math

    assert list(array("h", H._COS_Q10)) == [int(round(1024 * math.cos(2 * math.pi * m / H.TABLE)))
                                            for m in range(H.TABLE // 4 + 1)]
    hann = [int(round(2048 * (1 - math.cos(2 * math.pi * (n + 0.5) / H.WINDOW)))) for n in range(H.WINDOW)]
    assert list(array("h", H._HANN)) == hann[:H.WINDOW // 2] and hann == hann[::-1]
    prior = [int(round(1024 * math.exp(-0.5 * d * d / 15 ** 2))) for d in range(H.NK)]
    assert list(H._PRIOR) == prior[:len(H._PRIOR)] and not any(prior[len(H._PRIOR):]) and prior[len(H._PRIOR) - 1]

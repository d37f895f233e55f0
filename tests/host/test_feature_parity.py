"""The host's vectorised features equal the watch's FeatureEngine, run inside MicroPython, on every window.

The engine gets the samples in driver-sized bursts (1..32, interleaved by time) from files,
at the board's heap budget; the host gets the whole arrays. docs/features.md promises
equality (no tolerance), so the comparison is exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_micropython
from watch import features as F
from wears.features import extract_features
from wears.paths import board_profile
from wears.sim.runner import FIRMWARE, compiled_tree

ACC_UNIT_G = 0.122e-3  # LSM6DS3 at +-4 g
GYRO_UNIT_DPS = 17.5e-3  # at +-500 dps

# Runs in MicroPython: feeds the recorded streams in bursts, prints every window.
RUNNER = r'''
import os
import sys
from array import array
from watch.features import FeatureEngine, micro_units

d = sys.argv[1]
fs, imu, window, step, f0, i0, seed, gyro, fast = [int(v) for v in sys.argv[2:11]]
acc_unit, gyro_unit = float(sys.argv[11]), float(sys.argv[12])
e = FeatureEngine(fs, imu, window, step, gyro == 1, micro_units(acc_unit), micro_units(gyro_unit) if gyro else 1,
                  None if fast < 0 else fast == 1)
n_ppg = os.stat(d + "/ppg.bin")[6] // 4
n_imu = os.stat(d + "/acc.bin")[6] // 6
fp = open(d + "/ppg.bin", "rb")
fa = open(d + "/acc.bin", "rb")
fg = open(d + "/gyro.bin", "rb") if gyro else None
ir = array("I", [0] * 32)
acc = array("h", [0] * 96)
gy = array("h", [0] * 96)
irv, accv, gyv = memoryview(ir), memoryview(acc), memoryview(gy)
out = array("i", [0] * e.n_features)
ip = ii = 0
while ip < n_ppg or ii < n_imu:
    seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
    n = 1 + (seed >> 16) % 32  # a driver's burst
    if ii >= n_imu or (ip < n_ppg and ip * imu <= ii * fs):
        n = min(n, n_ppg - ip)
        fp.readinto(irv[:n])
        e.add_ppg(ir, n, f0 + ip)
        ip += n
    else:
        n = min(n, n_imu - ii)
        fa.readinto(accv[:3 * n])
        e.add_acc(acc, n, i0 + ii)
        if fg:
            fg.readinto(gyv[:3 * n])
            e.add_gyro(gy, n, i0 + ii)
        ii += n
    while e.ready():
        flags = e.compute(out)
        print("W", e.window_end, flags, " ".join([str(v) for v in out]))
print("END", e.dropped)
'''


def run_engine(tmp_path: Path, ir, acc, gyro, *, ppg_rate, imu_rate, window_s, step_s, first_ppg_index=0,
               first_imu_index=0, fast=-1, seed=7, acc_unit_g=ACC_UNIT_G, gyro_unit_dps=GYRO_UNIT_DPS) -> np.ndarray:
    """Rows [window_end, flags, features...] from the firmware engine inside MicroPython."""
    (tmp_path / "ppg.bin").write_bytes(np.asarray(ir, dtype="<u4").tobytes())
    (tmp_path / "acc.bin").write_bytes(np.asarray(acc, dtype="<i2").tobytes())
    if gyro is not None:
        (tmp_path / "gyro.bin").write_bytes(np.asarray(gyro, dtype="<i2").tobytes())
    script = tmp_path / "feed_engine.py"
    script.write_text(RUNNER)
    args = [ppg_rate, imu_rate, window_s, step_s, first_ppg_index, first_imu_index, seed,
            int(gyro is not None), fast, acc_unit_g, gyro_unit_dps]
    firmware = compiled_tree(FIRMWARE, native=True)  # as deployed: compiling the source would need the heap
    proc = run_micropython([str(script), str(tmp_path), *map(str, args)], extra_path=[firmware] if firmware else [],
                           heapsize=board_profile()["heap_budget_bytes"])
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[-1] == "END 0", lines[-1]
    return np.array([[int(v) for v in line.split()[1:]] for line in lines if line.startswith("W ")], dtype=np.int64)


def run_host(ir, acc, gyro, **kw) -> np.ndarray:
    kw.pop("fast", None)
    kw.pop("seed", None)
    kw.setdefault("acc_unit_g", ACC_UNIT_G)
    kw.setdefault("gyro_unit_dps", GYRO_UNIT_DPS if gyro is not None else 0.0)
    table = extract_features(ir, acc, gyro, **kw)
    assert table.X.shape[1] == len(table.names) == F.spec_for(gyro is not None)[1]
    return np.column_stack([table.window_end, table.quality, table.X])


def assert_parity(engine: np.ndarray, host: np.ndarray, names) -> None:
    assert engine.shape == host.shape, f"engine {engine.shape} windows vs host {host.shape}"
    assert np.array_equal(engine[:, 0], host[:, 0]), "window ends differ"
    assert np.array_equal(engine[:, 1], host[:, 1]), "quality flags differ"
    for j, name in enumerate(names):
        diff = np.flatnonzero(engine[:, 2 + j] != host[:, 2 + j])
        assert diff.size == 0, (f"{name} differs in {diff.size} of {len(engine)} windows, first at window end "
                                f"{engine[diff[0], 0]}: engine {engine[diff[0], 2 + j]} host {host[diff[0], 2 + j]}")


def synthetic(seconds: int, heart_rate: float, *, ppg_rate=100, imu_rate=52, seed=1, motion=True):
    """neurokit2 PPG as inverted 18-bit IR counts around 110000 with noise; IMU int16 with wrist motion."""
    import neurokit2 as nk

    rng = np.random.default_rng(seed)
    ppg = nk.ppg_simulate(duration=seconds, sampling_rate=ppg_rate, heart_rate=heart_rate, random_state=seed)
    ir = np.round(110000 - 600 * ppg + rng.normal(0, 15, len(ppg))).astype(np.int64)
    n = seconds * imu_rate
    t = np.arange(n) / imu_rate
    swing = (t % 40 > 25) if motion else np.zeros(n, dtype=bool)  # 15 s of arm swing every 40 s
    acc = np.stack([1500 * swing * np.sin(2 * np.pi * 1.6 * t), 300 * np.cos(2 * np.pi * 0.3 * t),
                    8192 + 2500 * swing * np.sin(2 * np.pi * 3.2 * t)], axis=1) + rng.normal(0, 40, (n, 3))
    gyro = np.stack([4000 * swing * np.sin(2 * np.pi * 1.6 * t), rng.normal(0, 30, n),
                     -600 * np.cos(2 * np.pi * 0.2 * t)], axis=1) + rng.normal(0, 25, (n, 3))
    return ir, np.round(acc).astype(np.int16), np.round(gyro).astype(np.int16)


@pytest.fixture(scope="module")
def stream():
    return synthetic(200, 72)


def test_engine_in_micropython_equals_host_on_every_window(tmp_path, stream):
    ir, acc, gyro = stream
    kw = dict(ppg_rate=100, imu_rate=52, window_s=30, step_s=5)
    engine = run_engine(tmp_path, ir, acc, gyro, **kw)
    assert len(engine) == (200 - 30) // 5 + 1
    assert_parity(engine, run_host(ir, acc, gyro, **kw), F.FEATURE_NAMES)
    hr = engine[engine[:, 1] == 0, 2]
    assert len(hr) > 20 and abs(np.median(hr) - 720) < 20  # the stream is 72 bpm
    for name in ("hr_slope", "pnn50", "hf_amp", "lf_hf", "acc_energy", "gyro_jerk", "activity"):
        assert np.count_nonzero(engine[:, 2 + F.FEATURE_NAMES.index(name)]) > 10, name  # exercised, not all 0


def test_plain_fallback_in_micropython_equals_host_with_streams_starting_mid_block(tmp_path, stream):
    ir, acc, gyro = stream
    kw = dict(ppg_rate=100, imu_rate=52, window_s=60, step_s=10, first_ppg_index=123457, first_imu_index=64203)
    engine = run_engine(tmp_path, ir, acc, gyro, fast=0, seed=11, **kw)
    host = run_host(ir, acc, gyro, **kw)
    assert len(engine) >= 12 and engine[0, 0] - 6000 >= 123457
    assert_parity(engine, host, F.FEATURE_NAMES)


def test_engine_without_gyroscope_equals_host_on_the_smaller_feature_set(tmp_path, stream):
    ir, acc, _ = stream
    kw = dict(ppg_rate=100, imu_rate=52, window_s=20, step_s=5, first_ppg_index=5, first_imu_index=0)
    engine = run_engine(tmp_path, ir, acc, None, **kw)
    assert engine.shape[1] == 2 + F.spec_for(False)[1] == 2 + len(F.FEATURE_NAMES) - len(F.GYRO_FEATURES)
    assert_parity(engine, run_host(ir, acc, None, **kw), F.feature_names(False))


def test_parity_holds_at_other_rates_and_an_8_s_window(tmp_path):
    ir, acc, gyro = synthetic(90, 110, ppg_rate=64, imu_rate=26, seed=4)
    kw = dict(ppg_rate=64, imu_rate=26, window_s=8, step_s=2, first_ppg_index=64 * 3 + 1, first_imu_index=77)
    engine = run_engine(tmp_path, ir, acc, gyro, **kw)
    assert_parity(engine, run_host(ir, acc, gyro, **kw), F.FEATURE_NAMES)


def test_parity_across_a_pause_without_beats_longer_than_the_beat_rings_index_range(tmp_path):
    """The engine keeps beats' detector indices modulo 2^16: a pulse, a flat PPG just over 2^16
    samples long (44 min at the PineTime's 25 Hz), the pulse again, from an index just below
    2^16. The old beats must leave the ring: kept, they would alias into the first windows of
    the new pulse (2^16 samples later)."""
    a = synthetic(120, 70, ppg_rate=25, imu_rate=50, seed=2, motion=False)
    b = synthetic(120, 85, ppg_rate=25, imu_rate=50, seed=3)
    pause = 65536 + 200  # PPG samples
    ir = np.r_[a[0], np.full(pause, 110000), b[0]]
    acc = np.r_[a[1], np.tile(np.array([[0, 300, 8192]], dtype=np.int16), (2 * pause, 1)), b[1]]
    f0 = 65536 - 25 * 30
    kw = dict(ppg_rate=25, imu_rate=50, window_s=60, step_s=5, first_ppg_index=f0, first_imu_index=2 * f0 + 9)
    engine = run_engine(tmp_path, ir, acc, None, **kw)
    assert_parity(engine, run_host(ir, acc, None, **kw), F.feature_names(False))
    beats = engine[:, 2 + F.FEATURE_NAMES.index("beats")]
    ends = engine[:, 0] - f0
    assert beats[ends <= 25 * 120].max() > 60 and beats[ends >= 25 * 181 + pause].min() > 70
    assert beats[(ends > 25 * 181) & (ends < 25 * 120 + pause)].max() == 0  # the pause's windows: none


# --- Real recordings (skip without ../shared/data) ------------------------------------------------


def _to_ir(ppg: np.ndarray, gain: float) -> np.ndarray:
    """A PPG that rises with blood volume as 18-bit IR counts around 110000, which fall instead."""
    return np.clip(np.round(110000 - gain * ppg), 0, 2 ** 18 - 1).astype(np.int64)


def _to_lsb(g: np.ndarray, unit_g: float = ACC_UNIT_G) -> np.ndarray:
    return np.clip(np.round(g / unit_g), -32768, 32767).astype(np.int16)


def test_parity_on_a_real_wesad_recording(tmp_path, shared_data):
    """WESAD S2: 5 minutes across the baseline's end and the stress test, resampled to the board's 100 / 52 Hz."""
    from scipy.signal import resample_poly

    e4 = shared_data / "wesad-e4-dev" / "S2" / "E4"
    t0, seconds = 3700, 300
    bvp = np.loadtxt(e4 / "BVP.csv", skiprows=2, max_rows=64 * (t0 + seconds))[64 * t0:]
    acc = np.loadtxt(e4 / "ACC.csv", skiprows=2, delimiter=",", max_rows=32 * (t0 + seconds))[32 * t0:]
    ir = _to_ir(resample_poly(bvp, 25, 16), 20)  # 64 -> 100 Hz
    acc_lsb = _to_lsb(resample_poly(acc / 64, 13, 8, axis=0))  # 32 -> 52 Hz, 1/64 g -> 0.122 mg
    kw = dict(ppg_rate=100, imu_rate=52, window_s=30, step_s=5)
    engine = run_engine(tmp_path, ir, acc_lsb, None, **kw)
    assert len(engine) == (seconds - 30) // 5 + 1
    assert_parity(engine, run_host(ir, acc_lsb, None, **kw), F.feature_names(False))


def test_parity_on_a_real_troika_recording(tmp_path, shared_data):
    """TROIKA 01 at its own 125 Hz: rest, treadmill running, rest; 8 s windows every 2 s as its reference."""
    from scipy.io import loadmat

    sig = loadmat(shared_data / "troika-dev" / "DATA_01_TYPE01.mat")["sig"]
    ir = _to_ir(sig[1], 20)
    acc = _to_lsb(sig[3:6].T)
    kw = dict(ppg_rate=125, imu_rate=125, window_s=8, step_s=2)
    engine = run_engine(tmp_path, ir, acc, None, **kw)
    assert len(engine) == len(ir) // 250 - 3
    assert_parity(engine, run_host(ir, acc, None, **kw), F.feature_names(False))


@pytest.mark.parametrize("subject", ["S2", "S3", "S4"])
def test_parity_on_every_window_of_a_whole_wesad_recording(tmp_path, shared_data, subject):
    """A whole WESAD subject (about 2 h) as `wears import e4` stores it, with the recipes' 60 s / 5 s windows."""
    from wears.sim.scenario import from_e4

    folder = shared_data / "wesad-e4-dev" / subject
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")
    sc = from_e4(folder, margin_s=0, labels=None)
    ir, acc = sc.ppg[:, 0].astype(np.int64), sc.imu[:, :3]
    kw = dict(ppg_rate=100, imu_rate=52, window_s=60, step_s=5, acc_unit_g=1e-3)
    engine = run_engine(tmp_path, ir, acc, None, **kw)
    assert len(engine) > 1000
    assert_parity(engine, run_host(ir, acc, None, **kw), F.feature_names(False))
    assert np.count_nonzero(engine[:, 2 + F.FEATURE_NAMES.index("hf_amp")]) > 50  # clean windows reach the spectrum


@pytest.mark.parametrize("recording", ["DATA_01_TYPE01", "DATA_02_TYPE02", "DATA_03_TYPE02"])
def test_parity_on_every_window_of_each_troika_recording(tmp_path, shared_data, recording):
    from scipy.io import loadmat

    path = shared_data / "troika-dev" / f"{recording}.mat"
    if not path.exists():
        pytest.skip(f"{path} is not present")
    sig = loadmat(path)["sig"]
    ir, acc = _to_ir(sig[1], 20), _to_lsb(sig[3:6].T)
    kw = dict(ppg_rate=125, imu_rate=125, window_s=8, step_s=2)
    assert_parity(run_engine(tmp_path, ir, acc, None, **kw), run_host(ir, acc, None, **kw), F.feature_names(False))


def test_rail_to_rail_inputs_stay_in_32_bit_arithmetic_and_agree(tmp_path):
    """Full-scale noise and square waves: every bound docs/features.md relies on holds, and parity too."""
    from wears.features import _imu_blocks, _smoothed

    rng = np.random.default_rng(9)
    seconds = 80
    ir = np.where((np.arange(100 * seconds) // 37) % 2, 2 ** 18 - 1, 0)  # 0 <-> full scale, ~1.35 Hz
    ir[50 * 100:] = rng.integers(0, 2 ** 18, 30 * 100)  # then white noise over the whole range
    acc = rng.integers(-32768, 32768, (52 * seconds, 3)).astype(np.int16)
    acc[:52 * 20] = np.where((np.arange(52 * 20) // 3) % 2, 32767, -32768)[:, None]  # saturated swings
    gyro = rng.integers(-32768, 32768, (52 * seconds, 3)).astype(np.int16)
    s, _ = _smoothed(ir.astype(np.int64), 100)
    assert np.abs(s).max() < 2 ** 25
    for xyz, unit, per in ((acc, F.micro_units(0.488e-3), 1000), (gyro, F.micro_units(70e-3), 100000)):
        _, sums, sq, jerks = _imu_blocks(xyz.astype(np.int64), 0, 260, unit, per)
        assert sums.max() < 2 ** 30 and jerks.max() < 2 ** 30 and sq.max() <= F.SUM_LIMIT
    kw = dict(ppg_rate=100, imu_rate=52, window_s=20, step_s=5, acc_unit_g=0.488e-3, gyro_unit_dps=70e-3)
    engine = run_engine(tmp_path, ir, acc, gyro, **kw)
    host = run_host(ir, acc, gyro, **kw)
    assert np.abs(host).max() < 2 ** 31
    assert_parity(engine, host, F.FEATURE_NAMES)


def test_block_spread_from_its_sums_equals_the_second_pass():
    """watch.feature_loops.sq_dev: the spread of a block's magnitudes around their rounded mean
    from the running sums (S, and Q in two 28-bit pieces) equals the second pass over the
    magnitudes it replaced, saturation included (values just below and above 2^30)."""
    from watch import feature_loops as L

    rng = np.random.default_rng(3)
    cases = [np.full(260, 28377), np.zeros(260, dtype=np.int64), np.r_[np.zeros(130), np.full(130, 28377)]]
    cases += [rng.integers(0, 28378, n) for n in (1, 7, 260, 520, 6240)]
    cases += [1000 + rng.integers(-s, s + 1, 520) for s in (0, 3, 60, 900, 2400, 2480, 2520, 2600)]  # around 2^30
    cases += [rng.integers(0, 28378, 32768)]
    near = []
    for fed in cases:
        fed = fed.astype(np.int64)
        for missing in (0, len(fed) // 3):  # the first block of a stream starting mid-block: 0 in the second pass
            m = np.r_[np.zeros(missing, dtype=np.int64), fed[missing:]]
            n = len(m)
            st = [0] * L._I_SIZE
            st[L._I_BN] = n
            st[L._I_SUM] = int(m.sum())
            for v in (m[missing:] ** 2).tolist():  # as the loops accumulate it
                st[L._I_QHI] += v >> 28
                st[L._I_QLO] += v & 0xFFFFFFF
                if st[L._I_QLO] >= 1 << 28:
                    st[L._I_QLO] -= 1 << 28
                    st[L._I_QHI] += 1
            mean = (int(m.sum()) + (n >> 1)) // n
            exact = int(((m - mean) ** 2).sum())
            assert L.sq_dev(st) == min(exact, L.SUM_LIMIT)
            near.append(exact)
    assert any(3 << 28 < v <= L.SUM_LIMIT for v in near) and any(L.SUM_LIMIT < v < 5 << 28 for v in near)


def test_the_engine_folds_the_loops_state_layout_unchanged():
    """watch.features keeps copies of watch.feature_loops' `_` constants (state slots, limits):
    every copy equals its original."""
    from watch import feature_loops as L

    copies = [n for n in vars(F) if n.startswith(("_D_", "_I_")) or n in ("_OFF", "_SUM_LIMIT")]
    assert len(copies) == 22
    for name in copies:
        original = getattr(L, name, None)
        if original is None:
            original = getattr(L, name[1:])
        assert getattr(F, name) == original, name

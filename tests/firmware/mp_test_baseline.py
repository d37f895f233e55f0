"""The wearer's baseline inside MicroPython: learnt from the first trusted windows, then
subtracted, without allocating."""

import gc
from array import array

import micropython
from watch.baseline import Baseline
from watch.features import FeatureEngine
from wrist_signal import Stream



def test_baseline_learns_then_subtracts_without_allocating():
    from watch.baseline import Baseline
    engine = FeatureEngine(100, 52, 20, 5)
    out = array("i", [0] * engine.n_features)
    base = Baseline(engine.names, windows=3)
    raw = array("i", [-1])  # hr_mean of the first window after calibration, before subtraction
    src = Stream(3)
    ir = array("I", [0] * 25)
    acc = array("h", [0] * 39)
    gyro = array("h", [0] * 39)
    gc.collect()
    micropython.heap_lock()
    try:
        for i in range(0, 100 * 50, 25):
            engine.add_ppg(ir, src.ppg(ir, 25), i)
            j = i * 52 // 100
            m = (i + 25) * 52 // 100 - j
            src.imu(acc, gyro, m)
            engine.add_acc(acc, m, j)
            engine.add_gyro(gyro, m, j)
            while engine.ready():
                flags = engine.compute(out)
                if base.ready():
                    raw[0] = out[0]
                    base.apply(out)
                    break
                base.add(out, flags)
            if raw[0] >= 0:
                break
    finally:
        micropython.heap_unlock()
    assert base.ready() and base.count == 3
    assert abs(base.mean[0] - 750) <= 15  # the baseline's heart rate: 75 bpm
    assert out[0] == raw[0] - base.mean[0]  # subtracted on normalised features
    assert out[6] > 10  # beats: not normalised

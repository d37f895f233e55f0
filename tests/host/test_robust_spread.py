"""Feature set 2: one wrong interval no longer sets a window's extremes or its spread."""

import numpy as np

from watch import features as F
from wears.features import Beats, _hr_stats


def _window_of(ibi_ms):
    """The HR columns of one window holding these valid intervals (one beat before them)."""
    ibi = np.array([0, *ibi_ms], dtype=np.int64)
    index = np.concatenate(([0], np.cumsum(ibi[1:]) // 10))  # detector index at 100 Hz
    valid = ibi > 0
    hr = np.where(valid, (F.HR_X10 + (ibi >> 1)) // np.maximum(ibi, 1), 0)
    pair = valid & np.concatenate(([False], valid[:-1]))
    sd = np.where(pair, ibi - np.concatenate(([0], ibi[:-1])), 0)
    beats = Beats(index=index, time_s=index / 100, ibi_ms=ibi, valid=valid, hr_x10=hr, pair=pair, sd_ms=sd)
    X, _ = _hr_stats(beats, np.array([0]), np.array([index[-1] + 1]), 60000, 100)
    return {name: int(X[0, i]) for i, name in enumerate(F.FEATURE_NAMES[:F.HR_COLUMNS])}


def test_a_single_fast_interval_moves_neither_hr_max_nor_sdnn():
    steady = [800] * 60
    one_off = [800] * 30 + [620] + [800] * 29  # 97 bpm among 75 bpm beats: outside the median's 20 % band
    a, b = _window_of(steady), _window_of(one_off)
    assert a["hr_max"] == b["hr_max"] == 750 and a["hr_min"] == b["hr_min"] == 750
    assert b["sdnn"] == a["sdnn"] == 0 and b["hr_std"] == 0
    assert b["hr_mean"] > a["hr_mean"]  # the mean still counts every valid interval


def test_extremes_are_the_trimmed_order_statistics():
    ibi = list(range(700, 900, 10)) * 3  # 60 intervals, 700..890 ms
    f = _window_of(ibi)
    trim = len(ibi) // F.TRIM_DIV  # 6: the three 700 and the three 710 ms intervals are left out
    srt = sorted(ibi)
    assert f["hr_max"] == (F.HR_X10 + srt[trim] // 2) // srt[trim] == (F.HR_X10 + 360) // 720
    assert f["hr_min"] == (F.HR_X10 + srt[-1 - trim] // 2) // srt[-1 - trim]
    few = _window_of([700, 800, 900])  # below TRIM_DIV intervals: the extremes
    assert (few["hr_max"], few["hr_min"]) == (857, 667)

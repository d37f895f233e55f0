"""The clock fit: offset and drift from ping intervals, robust to slow round trips and outliers."""

import numpy as np
import pytest

from wears.clock import fit_boots, fit_clock, intersection
from wears.errors import WearsError


def _pings(seed, n=300, rate=1.00004, offset=1234.5, span_s=300, outliers=0):
    rng = np.random.default_rng(seed)
    tick = np.sort(rng.uniform(0, span_s, n)) * 1000
    true = offset + rate * tick / 1000
    wait = rng.uniform(0, 0.1, n)  # the command waits for the watch's loop
    sent = true - wait - rng.uniform(0.0002, 0.001, n)
    received = true + rng.uniform(0.001, 0.003, n)
    idx = rng.choice(n, outliers, replace=False)
    received[idx] += rng.uniform(0.05, 0.5, outliers)  # the OS held the reply
    sent[idx[: outliers // 2]] += 0.04  # a watch that stalled: its tick lags its clock
    return np.c_[sent, received, np.floor(tick)], (offset, rate)


@pytest.mark.parametrize("seed", range(3))
def test_fit_recovers_offset_and_drift_to_a_millisecond_despite_slow_round_trips_and_outliers(seed):
    pings, (offset, rate) = _pings(seed, outliers=30)
    fit = fit_clock(pings)
    ticks = np.linspace(0, 300_000, 100)
    err = np.abs(fit.host_time(ticks) - (offset + rate * ticks / 1000))
    assert err.max() < 0.002, err.max()
    assert abs(fit.drift_ppm - 40) < 15
    assert fit.n_used >= 270 and fit.rtt_ms > 10  # midpoints alone would be off by tens of ms
    assert fit.jitter_ms > 5 and fit.uncertainty_ms < 5


def test_fit_follows_a_clock_that_runs_at_another_speed():
    pings, (offset, rate) = _pings(4, rate=0.5)
    fit = fit_clock(pings)
    assert abs(fit.rate - 0.5) < 1e-4


def test_a_short_boot_takes_the_watch_rate_of_its_longest_boot():
    """Pings over 1.5 s cannot pin a rate; extrapolated over a 10-minute boot a wrong one is
    seconds off. The oscillator is the same after a reboot: the short boot borrows the rate."""
    long, (_, rate) = _pings(5, rate=1 / 3, span_s=300)
    short, (offset, _) = _pings(6, n=4, rate=1 / 3, offset=999.0, span_s=1.5)
    ticks = np.linspace(0, 600_000, 50)
    truth = offset + rate * ticks / 1000
    alone = np.abs(fit_clock(short).host_time(ticks) - truth).max()
    fits = fit_boots({1: long, 2: short, 3: np.zeros((0, 3))})
    assert set(fits) == {1, 2} and fits[1] == fit_clock(long) and fits[2].rate == fits[1].rate
    # what is left is the offset the four round trips allow (their common part: ~18 ms)
    assert np.abs(fits[2].host_time(ticks) - truth).max() < 0.03 < 1 < alone


def test_intersection_picks_the_region_most_intervals_agree_on():
    lo = np.array([0.0, 1.0, 2.0, 10.0])
    hi = np.array([3.0, 4.0, 5.0, 11.0])
    assert intersection(lo, hi) == (2.0, 3.0, 3)


def test_no_pings_is_a_clear_error():
    with pytest.raises(WearsError, match="no clock-sync pings"):
        fit_clock(np.zeros((0, 3)))

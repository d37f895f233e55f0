"""The training windows of one watch boot whose streams have gaps: every unbroken run.

A range of samples the host never received (the watch's flash log evicted it before it was
backfilled, a lost range) splits a stream into runs; PPG, accelerometer and gyroscope each
have their own. The watch computed its features over its whole stream, so the host keeps a
window only where the features it computes are the watch's, bit for bit:

- every stream's samples are present over the whole window (it lies inside one run of each);
- after a gap, the beat detector has settled again: the window's beats (detector indices from
  `start - R` on) lie past the detector's warm-up from the run's first sample (its moving-mean
  baseline and peak search, `warmup_samples`), and each of them, and the beat before it, has
  the previous beat and `REF_INTERVALS` in-range intervals before it inside the run (the
  interval, the artefact reference and the pair flag are then the watch's);
- after a gap in an IMU stream, the window's first block starts at least one sample after
  the run's first (a block's jerk needs the sample before it).

The first run of each stream is the stream's start, as the watch's engine saw it: there the
windows are the watch's own (its warm-up windows carry FLAG_WARMUP), as without a gap, so a
boot without gaps gives exactly the windows `extract_features` gives for its streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from watch import features as F

from .db import StreamData
from .features import FeatureTable, extract_features, heart_rate, window_grid


@dataclass(frozen=True)
class BootWindows:
    """table: the kept windows in time order (`window_end`: PPG indices of the boot); missing:
    the PPG window ends of the windows of the boot's grid (first to last sample of every
    stream) left out for gaps."""

    table: FeatureTable
    missing: np.ndarray


def settled_from(run: StreamData, ppg_rate: int) -> int:
    """The first detector index from which the host's beats of a PPG run that starts after a gap
    are the watch's (module docstring): a window's HR range must start there or later."""
    beats = heart_rate(run.samples[:, 0], ppg_rate, first_index=run.first_index)
    ibi = beats.ibi_ms
    in_range = (np.arange(len(ibi)) > 0) & (ibi >= F.IBI_MIN_MS) & (ibi <= F.IBI_MAX_MS)
    before = np.cumsum(in_range) - in_range  # in-range intervals before each beat
    settled = np.zeros(len(ibi), dtype=bool)
    settled[1:] = before[:-1] >= F.REF_INTERVALS  # this beat and the one before have their reference
    start = run.first_index + beats.info["warmup_samples"]
    unsettled = np.flatnonzero(~settled)
    return max(start, int(beats.index[unsettled[-1]]) + 1) if len(unsettled) else start


def _span(run: StreamData) -> tuple[int, int]:
    return run.first_index, run.first_index + len(run.samples)


def boot_windows(ppg_runs: list[StreamData], acc_runs: list[StreamData], gyro_runs: list[StreamData] | None, *,
                 window_s: int, step_s: int) -> BootWindows:
    """The windows of one boot from every run of its streams (`Study.stream_runs`, index order)."""
    ppg_rate, imu_rate = int(round(ppg_runs[0].rate_hz)), int(round(acc_runs[0].rate_hz))
    step, win, block, n_blocks = step_s * ppg_rate, window_s * ppg_rate, step_s * imu_rate, window_s // step_s
    r = F.detector_params(ppg_rate)[4]
    imu_streams = [acc_runs] + ([gyro_runs] if gyro_runs is not None else [])
    grid = window_grid((ppg_runs[0].first_index, _span(ppg_runs[-1])[1]),
                       [(runs[0].first_index, _span(runs[-1])[1]) for runs in imu_streams],
                       ppg_rate=ppg_rate, imu_rate=imu_rate, window_s=window_s, step_s=step_s)
    tables = []
    for i, ppg in enumerate(ppg_runs):
        hr_from = settled_from(ppg, ppg_rate) if i else None
        for a, acc in enumerate(acc_runs):
            for g, gyro in enumerate(gyro_runs if gyro_runs is not None else [None]):
                imu = [(acc, a)] + ([(gyro, g)] if gyro is not None else [])
                if not len(window_grid(_span(ppg), [_span(run) for run, _ in imu], ppg_rate=ppg_rate,
                                       imu_rate=imu_rate, window_s=window_s, step_s=step_s)):
                    continue
                t = extract_features(
                    ppg.samples[:, 0], acc.samples, None if gyro is None else gyro.samples, ppg_rate=ppg_rate,
                    imu_rate=imu_rate, window_s=window_s, step_s=step_s, acc_unit_g=acc.unit,
                    gyro_unit_dps=0.0 if gyro is None else gyro.unit, first_ppg_index=ppg.first_index,
                    first_imu_index=acc.first_index, first_gyro_index=None if gyro is None else gyro.first_index)
                keep = np.ones(len(t), dtype=bool)
                if hr_from is not None:
                    keep &= t.window_end - win - r >= hr_from
                first_block = (t.window_end // step - n_blocks) * block  # IMU index of each window's first block
                for run, j in imu:
                    if j:
                        keep &= first_block >= run.first_index + 1
                tables.append(FeatureTable(t.X[keep], t.window_end[keep], t.quality[keep], t.names, t.units,
                                           t.spec_id))
    if len(tables) == 1:  # no gap: the one table as it is
        table = tables[0]
    else:
        tables = tables or [extract_features(ppg_runs[0].samples[:0, 0], acc_runs[0].samples[:0],
                                             None if gyro_runs is None else gyro_runs[0].samples[:0],
                                             ppg_rate=ppg_rate, imu_rate=imu_rate, window_s=window_s, step_s=step_s,
                                             acc_unit_g=acc_runs[0].unit,
                                             gyro_unit_dps=0.0 if gyro_runs is None else gyro_runs[0].unit)]
        order = np.argsort(np.concatenate([t.window_end for t in tables]), kind="stable")
        t0 = tables[0]
        table = FeatureTable(np.concatenate([t.X for t in tables])[order],
                             np.concatenate([t.window_end for t in tables])[order],
                             np.concatenate([t.quality for t in tables])[order], t0.names, t0.units, t0.spec_id)
    ends = (grid + 1) * step
    return BootWindows(table, ends[~np.isin(ends, table.window_end)])

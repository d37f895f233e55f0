"""The watch's clock on the host's timeline: offset and drift fitted to ping round trips.

A ping gives `(host_sent, host_received, tick)`: the watch read its clock `tick` (ms)
somewhere between the host sending and receiving, so each ping is an interval that must
contain the true host time of `tick`. Where inside it falls depends on when the watch got
round to the command, so round-trip midpoints are biased; the intervals are not. The fit:

1. drift: the pings are cut into blocks in time; each block's offset is the point covered by
   the most of its (detrended) intervals (Marzullo's intersection, as NTP selects clocks),
   and a line through the block offsets gives the rate;
2. offset: the same intersection over all pings, detrended by that rate.

An interval that disagrees with the others (a round trip the OS or the radio delayed, a
watch that stalled) covers less of the agreed region and is left out: robust to outliers.

Example:
    >>> import numpy as np
    >>> ticks = np.arange(0, 60_000, 1000)
    >>> pings = np.c_[10 + ticks / 1000 - 0.004, 10 + ticks / 1000 + 0.006, ticks]
    >>> fit = fit_clock(pings)
    >>> round(float(fit.host_time(30_000)), 3)
    40.001
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import WearsError

if TYPE_CHECKING:
    from .db import Study

_TICK_S = 0.001  # the watch's tick is whole milliseconds: it read the clock within this after `tick`
_BLOCK = 20  # pings per block when fitting the rate


@dataclass(frozen=True)
class ClockFit:
    """host_time = offset_s + rate * (tick - origin_tick) / 1000, for one boot of one watch.

    Attributes:
        origin_tick: device tick (ms) the fit is centred on.
        offset_s: host time (s, monotonic) of `origin_tick`.
        rate: host seconds per watch second (1 + drift).
        n_pings: pings offered; n_used: pings whose interval contains the fitted line.
        uncertainty_ms: half the width of the interval every used ping agrees on.
        jitter_ms: residual jitter: robust spread (1.4826 x MAD) of the round-trip midpoints
            around the fit.
        rtt_ms: median round trip.
    """

    origin_tick: int
    offset_s: float
    rate: float
    n_pings: int
    n_used: int
    uncertainty_ms: float
    jitter_ms: float
    rtt_ms: float

    @property
    def drift_ppm(self) -> float:
        return (self.rate - 1.0) * 1e6

    def host_time(self, tick_ms: np.ndarray | float) -> np.ndarray:
        """Host time (s) of device ticks (ms, fractional allowed)."""
        return self.offset_s + self.rate * (np.asarray(tick_ms, dtype=np.float64) - self.origin_tick) / 1000.0

    def tick(self, host_s: np.ndarray | float) -> np.ndarray:
        """The device tick (ms, fractional) at host times (s): the inverse of `host_time`."""
        return self.origin_tick + (np.asarray(host_s, dtype=np.float64) - self.offset_s) / self.rate * 1000.0

    def as_dict(self) -> dict:
        return {**asdict(self), "drift_ppm": self.drift_ppm}


def intersection(lo: np.ndarray, hi: np.ndarray) -> tuple[float, float, int]:
    """Marzullo: the interval covered by the most of [lo_i, hi_i]; (start, end, how many)."""
    edges = np.concatenate([np.c_[lo, np.full(len(lo), -1)], np.c_[hi, np.full(len(hi), 1)]])
    edges = edges[np.lexsort((edges[:, 1], edges[:, 0]))]  # starts before ends at the same time
    best = count = 0
    start = end = float(lo[0])
    for i, (t, kind) in enumerate(edges):
        count -= int(kind)
        if count > best:
            best = count
            start = float(t)
            end = float(edges[i + 1, 0])
    return start, end, best


def fit_clock(pings: np.ndarray, rate: float | None = None) -> ClockFit:
    """Fit a boot's clock from its pings, an (n, 3) array of host_sent, host_received (s), tick (ms);
    with `rate` given, only the offset is fitted (see `fit_boots`).

    Raises WearsError without pings.
    """
    pings = np.asarray(pings, dtype=np.float64).reshape(-1, 3)
    pings = pings[np.argsort(pings[:, 2], kind="stable")]
    sent, received, tick = pings[:, 0], pings[:, 1], pings[:, 2]
    ok = received >= sent
    sent, received, tick = sent[ok], received[ok], tick[ok]
    n = len(tick)
    if n == 0:
        raise WearsError("no clock-sync pings to fit the watch's clock to")
    origin = int(np.median(tick))
    x = (tick - origin) / 1000.0
    if rate is None:
        rate = _rate(x, sent, received) if n >= 4 and np.ptp(x) > 0 else 1.0
        agree = _agreeing(x, sent, received, rate)
        if np.ptp(x[agree]) > 0:
            rate = _widest(x[agree], sent[agree], received[agree], rate)
    lo = sent - rate * (x + _TICK_S)
    hi = received - rate * x
    start, end, _ = intersection(lo, hi)
    offset = (start + end) / 2
    used = int(np.sum((lo <= offset + 1e-9) & (hi >= offset - 1e-9)))
    residual = (sent + received) / 2 - (offset + rate * x)
    mad = float(np.median(np.abs(residual - np.median(residual))))
    return ClockFit(origin, float(offset), float(rate), n, used, (end - start) / 2 * 1000, 1.4826 * mad * 1000,
                    float(np.median(received - sent)) * 1000)


def fit_boots(pings: dict[int, np.ndarray]) -> dict[int, ClockFit]:
    """Fit every boot of one watch: {boot: pings} -> {boot: ClockFit}, boots without pings left out.

    A reboot restarts the tick, not the oscillator: a boot whose pings span less than half of
    the longest boot's span takes that boot's rate and fits only its offset. A few pings over
    a second or two cannot pin a rate, and a wrong rate grows into seconds over a long boot.
    """
    spans = {b: float(np.ptp(np.asarray(p, dtype=np.float64).reshape(-1, 3)[:, 2])) for b, p in pings.items() if len(p)}
    if not spans:
        return {}
    longest = max(spans, key=lambda b: spans[b])
    reference = fit_clock(pings[longest])
    return {b: reference if b == longest else fit_clock(pings[b], None if span >= spans[longest] / 2 else reference.rate)
            for b, span in spans.items()}


def _agreeing(x: np.ndarray, sent: np.ndarray, received: np.ndarray, rate: float) -> np.ndarray:
    """The pings whose intervals cover the region most of them agree on, at this rate."""
    lo = sent - rate * (x + _TICK_S)
    hi = received - rate * x
    start, end, _ = intersection(lo, hi)
    return (lo <= end) & (hi >= start)


def _widest(x: np.ndarray, sent: np.ndarray, received: np.ndarray, rate: float, span: float = 1e-3) -> float:
    """The rate near `rate` at which the intervals' common part is widest: the line that
    keeps farthest from every bound. The width is concave in the rate: ternary search."""
    def width(b: float) -> float:
        return float(np.min(received - b * x) - np.max(sent - b * (x + _TICK_S)))

    a, b = rate - span, rate + span
    for _ in range(80):
        m1, m2 = a + (b - a) / 3, b - (b - a) / 3
        if width(m1) < width(m2):
            a = m1
        else:
            b = m2
    return (a + b) / 2


def _rate(x: np.ndarray, sent: np.ndarray, received: np.ndarray) -> float:
    """Host seconds per watch second, from block offsets detrended by a least-squares guess."""
    guess = float(np.polyfit(x, (sent + received) / 2, 1)[0])
    blocks = max(2, min(16, len(x) // _BLOCK))
    centres, offsets = [], []
    for idx in np.array_split(np.arange(len(x)), blocks):
        if len(idx) == 0:
            continue
        start, end, _ = intersection(sent[idx] - guess * x[idx], received[idx] - guess * x[idx])
        centres.append(float(np.mean(x[idx])))
        offsets.append((start + end) / 2)
    if len(centres) < 2 or np.ptp(centres) == 0:
        return guess
    slope = np.polyfit(centres, offsets, 1)[0]
    return guess + float(slope)


def sample_times(study: "Study", session_id: int, stream: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Every stored sample's host time: {boot: (sample indices, host times in s)} from the
    boot's STREAM_INFO (`tick0 + 1000 * i / rate`) and its clock fit. A boot without a fit
    (no pings) is left out."""
    fits = study.clock_fits(session_id)
    out = {}
    for boot, fit in fits.items():
        info = study.conn.execute("SELECT tick0, rate_mhz FROM stream_info WHERE session_id=? AND boot=? AND stream=?",
                                  (session_id, boot, stream)).fetchone()
        if info is None:
            continue
        tick0, rate_mhz = info
        spans = [np.arange(first, first + count) for b, first, count in study.chunk_keys(session_id, stream)
                 if b == boot]
        if not spans:
            continue
        index = np.unique(np.concatenate(spans))
        out[boot] = (index, fit.host_time(tick0 + index * 1e6 / rate_mhz))
    return out

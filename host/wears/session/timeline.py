"""Host clock -> the watch's tick -> the samples' timeline, from the stored clock-sync pings.

`host_to_tick` is the one place that maps host time onto the watch's clock, so that a
better drift fit (wears.clock) can replace it without touching its callers.
"""

from __future__ import annotations

import numpy as np

from watch import protocol as P

from ..db import Study
from ..errors import WearsError

_NEAREST = 12  # pings around the instant used in the local fit


def host_to_tick(pings: np.ndarray, host_time: float) -> float:
    """The watch's tick (ms) at `host_time` (host monotonic s).

    `pings` is an (n, 3) array of (host_sent, host_received, tick). The watch stamps its
    answer between sending and receiving, so each ping says tick ~ midpoint; the pings with
    the shortest round trips among the nearest in time are fitted with a line (offset and
    rate, so a drifting or a sped-up virtual clock maps too). One ping gives offset alone.
    """
    if len(pings) == 0:
        raise WearsError("no clock-sync pings: the host's events cannot be put on the watch's timeline")
    mid = (pings[:, 0] + pings[:, 1]) / 2
    rtt = pings[:, 1] - pings[:, 0]
    near = np.argsort(np.abs(mid - host_time))[:_NEAREST]
    keep = near[rtt[near] <= np.min(rtt[near]) * 2 + 0.002]
    if len(keep) < 2 or np.ptp(mid[keep]) < 1e-3:
        best = near[np.argmin(rtt[near])]
        rate = 1000.0
        if len(pings) >= 2 and np.ptp(mid) > 0.5:
            rate = float(np.polyfit(mid, pings[:, 2], 1)[0])
        return float(pings[best, 2] + (host_time - mid[best]) * rate)
    slope, intercept = np.polyfit(mid[keep], pings[keep, 2].astype(float), 1)
    return float(intercept + slope * host_time)


class SessionTimeline:
    """Maps host instants onto one recording's PPG sample timeline (seconds, index / rate)."""

    def __init__(self, study: Study, session_id: int) -> None:
        self.study = study
        self.session_id = session_id

    def pings(self) -> np.ndarray:
        rows = self.study.conn.execute("SELECT host_sent, host_received, tick FROM clock_sync WHERE session_id=? "
                                       "ORDER BY host_sent", (self.session_id,)).fetchall()
        return np.array(rows, dtype=float).reshape(-1, 3)

    def tick0(self) -> int | None:
        row = self.study.conn.execute("SELECT tick0 FROM stream_info WHERE session_id=? AND stream=?",
                                      (self.session_id, P.PPG)).fetchone()
        return None if row is None else row[0]

    def seconds(self, host_time: float, pings: np.ndarray | None = None) -> float | None:
        """Where `host_time` falls on the PPG sample timeline; None before pings and stream info exist."""
        tick0 = self.tick0()
        pings = self.pings() if pings is None else pings
        if tick0 is None or len(pings) == 0:
            return None
        return (host_to_tick(pings, host_time) - tick0) / 1000.0

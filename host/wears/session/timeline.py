"""Host clock -> the watch's tick -> the samples' timeline, from the stored clock-sync pings.

`host_to_tick` is the one place that maps host time onto the watch's clock, so that a
better drift fit (wears.clock) can replace it without touching its callers.
"""

from __future__ import annotations

import numpy as np

from watch import protocol as P

from ..clock import fit_clock
from ..db import Study
from ..errors import WearsError

_WINDOW_S = 20.0  # pings this close to the instant set its offset
_RTT_SLACK_S = 0.004  # keep the pings whose round trip is within this of the shortest


def host_to_tick(pings: np.ndarray, host_time: float) -> float:
    """The watch's tick (ms) at `host_time` (host monotonic s).

    `pings` is an (n, 3) array of (host_sent, host_received, tick). The watch stamps its
    answer somewhere between the host's sending and receiving, and where depends on the
    watch's loop (a watch that handles commands once per 100 ms period stamps late), so only
    a short round trip pins the watch's clock down: the tick lies within half of it from the
    midpoint. The rate (drift, or a sped-up virtual clock) comes from a line through the
    shortest-round-trip pings of the whole recording (while they span under a second, from
    `wears.clock.fit_clock` over all of them); the offset from the shortest ones
    within `_WINDOW_S` of the instant. The session sends its pings at jittered intervals so
    that some land just before the watch's next loop step and come back fast.
    """
    if len(pings) == 0:
        raise WearsError("no clock-sync pings: the host's events cannot be put on the watch's timeline")
    mid = (pings[:, 0] + pings[:, 1]) / 2
    rtt = pings[:, 1] - pings[:, 0]
    tick = pings[:, 2].astype(float)
    good = rtt <= np.percentile(rtt, 25) + _RTT_SLACK_S
    if np.sum(good) >= 2 and np.ptp(mid[good]) > 1.0:
        rate = float(np.polyfit(mid[good], tick[good], 1)[0])
    else:  # the fast round trips span too little for a line: the interval fit of all pings
        rate = 1000.0 / fit_clock(pings).rate
    near = np.abs(mid - host_time) <= _WINDOW_S
    if not np.any(near):
        near = np.abs(mid - host_time) <= np.min(np.abs(mid - host_time)) + _WINDOW_S
    local = near & (rtt <= np.min(rtt[near]) + _RTT_SLACK_S)
    offsets = tick[local] - rate * mid[local]
    return float(np.median(offsets) + rate * host_time)


class SessionTimeline:
    """Maps host instants onto one recording's PPG sample timeline (seconds, index / rate).

    A watch that rebooted during the recording started its clock and sample indices again:
    the timeline is then its first boot's, continued (what `wears export-data` puts the later
    boots on), so only the first boot's pings and STREAM_INFO count here.
    """

    def __init__(self, study: Study, session_id: int) -> None:
        self.study = study
        self.session_id = session_id

    def pings(self) -> np.ndarray:
        boot = self.study.first_boot(self.session_id)
        rows = self.study.conn.execute("SELECT host_sent, host_received, tick FROM clock_sync WHERE session_id=? "
                                       "AND boot=? ORDER BY host_sent", (self.session_id, boot)).fetchall()
        return np.array(rows, dtype=float).reshape(-1, 3)

    def tick0(self) -> int | None:
        boot = self.study.first_boot(self.session_id)
        row = self.study.conn.execute("SELECT tick0 FROM stream_info WHERE session_id=? AND stream=? AND boot=?",
                                      (self.session_id, P.PPG, boot)).fetchone()
        return None if row is None else row[0]

    def seconds(self, host_time: float, pings: np.ndarray | None = None) -> float | None:
        """Where `host_time` falls on the PPG sample timeline; None before pings and stream info exist."""
        tick0 = self.tick0()
        pings = self.pings() if pings is None else pings
        if tick0 is None or len(pings) == 0:
            return None
        return (host_to_tick(pings, host_time) - tick0) / 1000.0

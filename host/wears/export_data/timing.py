"""Host time of device ticks: the one place exports ask for it.

Samples are timed on the watch's clock (docs/protocol.md); the ping exchanges stored in
`clock_sync` relate that clock to the host's monotonic clock (`time.monotonic()`, the clock
Lab Streaming Layer's `local_clock()` reads too). The fit here is the plain one: offset and
drift by least squares over the pings whose round trip is at most the median, the midpoint of
each exchange taken as the moment of the watch's answer. The clock-sync work of issue 4 (a
robust fit with its residual jitter stored per session) replaces the body of `host_clock`;
everything that exports host times calls nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..db import Study

HostClock = Callable[[np.ndarray], np.ndarray]
_MIN_SPAN_MS = 10_000  # drift is only fitted over pings at least this far apart; an offset below it


def host_clock(study: Study, session_id: int) -> HostClock | None:
    """A function from device ticks (ms, array) to host monotonic seconds, or None when the
    session has no clock-sync data (e.g. an import)."""
    rows = np.array(study.conn.execute("SELECT host_sent, host_received, tick FROM clock_sync WHERE session_id=? "
                                       "ORDER BY tick", (session_id,)).fetchall(), dtype=float)
    if len(rows) == 0:
        return None
    rtt = rows[:, 1] - rows[:, 0]
    good = rows[rtt <= np.median(rtt)]
    host = (good[:, 0] + good[:, 1]) / 2
    tick = good[:, 2]
    if len(good) >= 2 and tick.max() - tick.min() >= _MIN_SPAN_MS:
        slope, intercept = np.polyfit(tick - tick[0], host, 1)
        t0 = tick[0]
        return lambda ticks: intercept + slope * (np.asarray(ticks, dtype=float) - t0)
    offset = float(np.median(host - tick / 1000))
    return lambda ticks: np.asarray(ticks, dtype=float) / 1000 + offset

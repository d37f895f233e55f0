"""Times of device ticks: the one place exports ask for them.

Samples are timed on the watch's clock (docs/protocol.md), which starts again when the watch
reboots: a tick means something only with its boot. The ping exchanges stored in
`clock_sync` relate each boot's clock to the host's monotonic clock (`time.monotonic()`,
the clock Lab Streaming Layer's `local_clock()` reads too), through that boot's clock fit
(`wears.clock`: the fit stored when the recording closed, else fitted here from the boot's
pings).

`SessionClock` gives a session two timelines:
- host time: each boot's ticks through its own fit;
- the session's own timeline: the first boot's watch clock, continued across reboots (a later
  boot's tick goes to host time through its fit, and back onto the first boot's clock through
  the first boot's fit). A session without a reboot keeps its watch clock exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..clock import ClockFit, fit_boots
from ..db import Study
from ..errors import WearsError

HostClock = Callable[[np.ndarray], np.ndarray]


def clock_fits(study: Study, session_id: int) -> dict[int, ClockFit]:
    """Each boot's clock fit: the stored one, else one fitted now from the boot's pings."""
    fits = study.clock_fits(session_id)
    missing = [boot for boot in study.boots(session_id) if boot not in fits]
    if missing:
        fitted = fit_boots({boot: study.clock_sync(session_id, boot) for boot in study.boots(session_id)})
        fits.update({boot: fitted[boot] for boot in missing if boot in fitted})
    return fits


def host_clock(study: Study, session_id: int, boot: int | None = None) -> HostClock | None:
    """A function from device ticks (ms, array) of one boot (default: the session's first) to
    host monotonic seconds, or None when that boot has no clock-sync data (e.g. an import)."""
    return SessionClock(study, session_id).host_clock(boot)


class SessionClock:
    """A session's device ticks on the host's clock and on the session's own timeline."""

    def __init__(self, study: Study, session_id: int) -> None:
        self.session_id = session_id
        self.fits = clock_fits(study, session_id)
        self.first_boot = study.first_boot(session_id)

    def host_clock(self, boot: int | None = None) -> HostClock | None:
        fit = self.fits.get(self.first_boot if boot is None else boot)
        return None if fit is None else fit.host_time

    def host(self, boots: np.ndarray, ticks_ms: np.ndarray) -> np.ndarray | None:
        """Host seconds of ticks, each of its own boot (NaN for a boot without pings); None when
        the session has no clock-sync data at all."""
        if not self.fits:
            return None
        boots, ticks = np.asarray(boots), np.asarray(ticks_ms, dtype=np.float64)
        out = np.full(len(ticks), np.nan)
        for boot in np.unique(boots):
            fit = self.fits.get(int(boot))
            if fit is not None:
                mask = boots == boot
                out[mask] = fit.host_time(ticks[mask])
        return out

    def session_ms(self, boots: np.ndarray, ticks_ms: np.ndarray) -> np.ndarray:
        """Ticks, each of its own boot, on the first boot's clock (ms). Raises WearsError when a
        later boot cannot be placed (it or the first boot has no clock-sync pings)."""
        boots, ticks = np.asarray(boots), np.asarray(ticks_ms, dtype=np.float64)
        out = ticks.copy()
        later = boots != self.first_boot
        if np.any(later):
            first = self.fits.get(self.first_boot)
            host = self.host(boots[later], ticks[later])
            if first is None or host is None or np.isnan(host[~np.isnan(ticks[later])]).any():
                raise WearsError(f"session {self.session_id}: the watch rebooted during it and a boot has no "
                                 "clock-sync pings, so its samples cannot be placed beside the others")
            out[later] = first.tick(host)
        return out

"""Several watches at once in one process (a lab room): one recording per watch, each with
its own stream state, status and counters, all in one asyncio loop and one study database.

Example:
    >>> async def room(study):
    ...     watches = [LabWatch("WEARS-A", "P01"), LabWatch("WEARS-B", "P02")]
    ...     return await record_lab(study, watches, duration_s=600)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .db import Study
from .errors import WearsError
from .record import RecordingStats, record


@dataclass
class LabWatch:
    """One watch of the room: address or advertised name, its participant, and what it did.

    `stats` is live while recording (state, samples, backfill, reconnects, clock); after
    the run, `session_id` is set, or `error` says why this watch's recording failed.
    """

    address: Any
    participant: str
    board: str = ""
    stats: RecordingStats = field(default_factory=RecordingStats)
    session_id: int | None = None
    error: str | None = None


async def record_lab(study: Study, watches: list[LabWatch], *, duration_s: float | None = None,
                     until_s: float | None = None, backend: type | None = None, reconnect_s: float = 60.0,
                     progress: Callable[[list[LabWatch]], None] | None = None,
                     mask: int = 0x07) -> list[LabWatch]:
    """Record every watch into its own session at once; one watch failing stops none of the others.

    Returns the watches with their session ids, final stats or errors.
    """
    if len({str(w.address).upper() for w in watches}) != len(watches):
        raise WearsError("the same watch is named twice")

    async def one(watch: LabWatch) -> None:
        def seen(stats: RecordingStats) -> None:
            watch.stats = stats
            if progress:
                progress(watches)

        try:
            watch.session_id, watch.stats = await record(
                study, watch.address, participant=watch.participant, duration_s=duration_s, until_s=until_s,
                backend=backend, board=watch.board, reconnect_s=reconnect_s, progress=seen, mask=mask)
        except WearsError as e:
            watch.error = str(e)

    await asyncio.gather(*(one(w) for w in watches))
    return watches


def status_table(watches: list[LabWatch]) -> str:
    """One line per watch: state, seconds recorded, backfilled records, reconnects, losses."""
    lines = [f"{'watch':<20} {'participant':<11} {'state':<12} {'ppg s':>7} {'backfill':>8} {'reconn':>6} "
             f"{'lost':>5} {'dup':>5}"]
    for w in watches:
        s = w.stats
        lines.append(f"{str(w.address)[:20]:<20} {w.participant[:11]:<11} {(w.error and 'failed') or s.state:<12} "
                     f"{s.seconds():7.1f} {s.backfilled:8d} {s.reconnects:6d} {s.lost_samples:5d} {s.duplicates:5d}")
    return "\n".join(lines)

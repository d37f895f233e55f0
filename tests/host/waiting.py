"""Waiting in tests for what a virtual watch or a host does, by condition, never by a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from watch import protocol as P
from wears.db import Study


async def until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Wait for `condition()` (polled); fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def samples_stored(study: Study, count: int, *, session_id: int = 1, stream: int = P.PPG,
                         timeout: float = 120.0) -> None:
    """Wait until the session holds `count` samples of the stream (the recording is under way)."""
    await until(lambda: study.sample_count(session_id, stream) >= count, timeout,
                f"{count} {P.STREAM_NAMES[stream]} samples in session {session_id}")

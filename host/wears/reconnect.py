"""Keeping a watch connected: the reconnection loop `record.Recorder` (recordings and sessions)
and `wears live` share.

`Reconnection.run` runs one connection's work; when the watch goes away (WatchDisconnected, or
CommandTimeout: a watch that stops answering is gone too) it waits, with a jittered backoff that
doubles up to its longest, and runs the work again, until the work returns, the caller says to
stop, or no connection could be made for `reconnect_s`. The jitter keeps several hosts (or
several watches of one host) from retrying in step.

Example:
    >>> async def follow(address):  # doctest: +SKIP
    ...     link = Reconnection(address, reconnect_s=60)
    ...     async def attempt():
    ...         async with WatchClient(address) as watch:
    ...             link.connected()
    ...             await watch.disconnected.wait()
    ...     await link.run(attempt)
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import CommandTimeout, WatchDisconnected

BACKOFF_S = (0.2, 5.0)  # first and longest mean wait between reconnection attempts
LOST = (WatchDisconnected, CommandTimeout)  # what means the watch went away


class Reconnection:
    """When and how often to connect a watch again.

    Args:
        name: the watch, for messages.
        reconnect_s: give up after this long without a connection (inf: never; a viewer).
        connect_s: give up on the first connection after this long (default `reconnect_s`).
        backoff_s: (first, longest) mean wait between attempts; each wait is jittered by +-50 %.
    """

    def __init__(self, name: Any, *, reconnect_s: float = math.inf, connect_s: float | None = None,
                 backoff_s: tuple[float, float] = BACKOFF_S) -> None:
        self.name = getattr(name, "address", None) or str(name)
        self.reconnect_s = reconnect_s
        self.backoff_s = backoff_s
        self._give_up_s = reconnect_s if connect_s is None else connect_s
        self._wait_s = backoff_s[0]
        self._up = False
        self._since = time.monotonic()

    def connected(self) -> None:
        """The work's connection is up: waits start again from the first, and from now on it
        gives up after `reconnect_s`."""
        self._up = True
        self._give_up_s = self.reconnect_s
        self._wait_s = self.backoff_s[0]

    @property
    def away_s(self) -> float:
        """Seconds since the last connection ended (or since `run` began, before the first)."""
        return time.monotonic() - self._since

    async def run(self, attempt: Callable[[], Awaitable[None]], *,
                  lost: Callable[[Exception], bool] | None = None,
                  retrying: Callable[[Exception], None] | None = None) -> None:
        """Run `attempt` (connect, call `connected()`, do the work) until it returns.

        Args:
            attempt: one connection's work; raises WatchDisconnected or CommandTimeout when the
                watch goes away. Any other error ends the run with it.
            lost: called when the watch went away; True stops trying (the work is done anyway).
            retrying: called before each wait for the next attempt (a dashboard's state, counts).

        Raises:
            WatchDisconnected: no connection could be made for the time allowed.
        """
        self._since = time.monotonic()
        while True:
            self._up = False
            try:
                await attempt()
                return
            except LOST as e:
                if self._up:
                    self._since = time.monotonic()
                if lost is not None and lost(e):
                    return
                if self.away_s > self._give_up_s:
                    raise WatchDisconnected(f"{self.name}: no connection for {self._give_up_s:g} s ({e})") from e
                if retrying is not None:
                    retrying(e)
                await asyncio.sleep(self._wait_s * (0.5 + random.random()))
                self._wait_s = min(self.backoff_s[1], self._wait_s * 2)

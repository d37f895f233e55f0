"""`wears live`: heart rate, signal quality and the watch's own predictions as they arrive."""

from __future__ import annotations

import asyncio
from typing import Any

from .client import WatchClient
from .errors import WatchDisconnected
from .protocol import HeartRate, Packet, Prediction
from .train import CLASS_NAMES


def describe_prediction(packet: Prediction) -> str:
    label = CLASS_NAMES[packet.label] if packet.label < len(CLASS_NAMES) else str(packet.label)
    quality = "  (low signal quality)" if packet.flags & 1 else ""
    return f"{label:<10} p={packet.proba[packet.label] / 255:.2f}{quality}"


class LiveView:
    """Prints one line per heart rate (every 2 s) until the watch predicts; then one per
    prediction, with the latest heart rate."""

    def __init__(self, print_fn=print) -> None:
        self._print = print_fn
        self._t0: int | None = None
        self.last_tick = 0
        self._hr: HeartRate | None = None
        self._predicting = False

    def seconds(self) -> float:
        return 0.0 if self._t0 is None else (self.last_tick - self._t0) / 1000

    def __call__(self, channel: str, packet: Packet) -> None:
        if self._t0 is None:
            self._t0 = packet.tick
        self.last_tick = packet.tick
        if isinstance(packet, HeartRate):
            self._hr = packet
            if not self._predicting:
                self._print(self._line(packet, "no prediction from the watch yet"))
        elif isinstance(packet, Prediction):
            self._predicting = True
            self._print(self._line(self._hr, describe_prediction(packet)))

    def _line(self, hr: HeartRate | None, what: str) -> str:
        heart = f"HR {hr.bpm:5.1f} bpm  quality {hr.quality:3d}%" if hr else "HR   ---"
        return f"t={self.seconds():7.1f} s  {heart}  {what}"


async def live(address: Any, *, backend: type | None = None, duration_s: float = 0) -> None:
    """Show the watch's heart rate and predictions until `duration_s` watch seconds (0: forever)."""
    view = LiveView()
    async with WatchClient(address, backend=backend, on_packet=view) as watch:
        while not duration_s or view.seconds() < duration_s:
            if watch.disconnected.is_set():
                raise WatchDisconnected(f"{address} disconnected after {view.seconds():.1f} s")
            await asyncio.sleep(0.1)

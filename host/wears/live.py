"""`wears live`: a terminal dashboard with one row per watch.

Each row shows what the watch says about itself as it arrives: heart rate and signal quality
(HEART_RATE), battery (STATUS, asked for every few seconds), packet loss (sequence gaps per
characteristic and sample-index gaps per stream), backfill state (samples missing from the
timeline that have not arrived since; a re-sent chunk fills its hole), the on-device
prediction, and the link's state. A watch that goes away is reconnected with the recorder's
backoff (`wears.reconnect`) for as long as the dashboard runs; it stores nothing.

Example:
    >>> asyncio.run(live([("F0:12:34:56:78:9A", None)], duration_s=60))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from watch import protocol as P

from .client import WatchClient
from .errors import WatchDisconnected, WearsError
from .protocol import HeartRate, Packet, Prediction, Samples, Status
from .reconnect import Reconnection
from .train import CLASS_NAMES

_STATUS_EVERY_S = 5.0  # battery and the watch's own counters
_REFRESH_PER_S = 4


def describe_prediction(packet: Prediction) -> str:
    label = CLASS_NAMES[packet.label] if packet.label < len(CLASS_NAMES) else str(packet.label)
    quality = "  (low signal quality)" if packet.flags & P.FLAG_LOW_QUALITY else ""
    return f"{label:<10} p={packet.proba[packet.label] / 255:.2f}{quality}"


class Timeline:
    """Which sample indices of one stream have arrived: the holes are what backfill must fill."""

    def __init__(self) -> None:
        self.next: int | None = None
        self.holes: list[list[int]] = []  # [start, end) ranges not received, in order
        self.lost = 0  # samples ever found missing

    def add(self, first: int, count: int) -> None:
        end = first + count
        if self.next is None:
            self.next = end
            return
        if first > self.next:
            self.holes.append([self.next, first])
            self.lost += first - self.next
        if first < self.next:
            self._fill(first, min(end, self.next))
        self.next = max(self.next, end)

    def _fill(self, start: int, end: int) -> None:
        kept = []
        for a, b in self.holes:
            if b <= start or a >= end:
                kept.append([a, b])
                continue
            if a < start:
                kept.append([a, start])
            if b > end:
                kept.append([end, b])
        self.holes = kept

    @property
    def pending(self) -> int:
        return sum(b - a for a, b in self.holes)


@dataclass
class WatchState:
    """What the dashboard knows about one watch; `handle` takes every packet it sends."""

    label: str
    link: str = "connecting"
    heart_rate: HeartRate | None = None
    prediction: Prediction | None = None
    status: Status | None = None
    packets: int = 0
    lost_packets: int = 0
    bad_packets: int = 0
    reconnects: int = 0
    error: str = ""  # why the watch is no longer followed (link "failed")
    last_tick: int | None = None
    first_tick: int | None = None
    timelines: dict[int, Timeline] = field(default_factory=dict)

    def handle(self, channel: str, packet: Packet) -> None:
        self.packets += 1
        if self.first_tick is None:
            self.first_tick = packet.tick
        self.last_tick = packet.tick
        if isinstance(packet, HeartRate):
            self.heart_rate = packet
        elif isinstance(packet, Prediction):
            self.prediction = packet
        elif isinstance(packet, Status):
            self.status = packet
        elif isinstance(packet, Samples):
            self.timelines.setdefault(packet.stream, Timeline()).add(packet.first_index, packet.count)

    def bad_packet(self, channel: str, data: bytes, error: Exception) -> None:
        self.bad_packets += 1

    @property
    def seconds(self) -> float:
        """Watch seconds seen since the dashboard started."""
        if self.first_tick is None or self.last_tick is None:
            return 0.0
        return ((self.last_tick - self.first_tick) & 0xFFFFFFFF) / 1000

    @property
    def lost_samples(self) -> int:
        return sum(t.lost for t in self.timelines.values())

    @property
    def backfill_pending(self) -> int:
        return sum(t.pending for t in self.timelines.values())


def _cell_heart(s: WatchState) -> Text:
    if s.heart_rate is None:
        return Text("---", style="dim")
    return Text(f"{s.heart_rate.bpm:5.1f}")


def _cell_quality(s: WatchState) -> Text:
    if s.heart_rate is None:
        return Text("---", style="dim")
    q = s.heart_rate.quality
    return Text(f"{q:3d} %", style="green" if q >= 70 else "yellow" if q >= 40 else "red")


def _cell_battery(s: WatchState) -> Text:
    if s.status is None:
        return Text("---", style="dim")
    b = s.status.battery
    return Text(f"{b:3d} %", style="red" if b < 15 else "")


def _cell_loss(s: WatchState) -> Text:
    text = f"{s.lost_packets} pkt / {s.lost_samples} smp"
    if s.bad_packets:
        text += f" / {s.bad_packets} bad"
    return Text(text, style="red" if s.lost_packets or s.lost_samples or s.bad_packets else "green")


def _cell_backfill(s: WatchState) -> Text:
    pending = s.backfill_pending
    if not s.timelines:
        return Text("no samples", style="dim")
    if pending:
        return Text(f"{pending} smp pending", style="yellow")
    return Text("complete" if s.lost_samples else "none needed", style="green")


def _cell_prediction(s: WatchState) -> Text:
    if s.prediction is None:
        return Text("no model" if s.status is not None and not s.status.model_id else "---", style="dim")
    return Text(describe_prediction(s.prediction).strip())


def _cell_link(s: WatchState) -> Text:
    style = {"streaming": "green", "connecting": "yellow", "reconnecting": "yellow"}.get(s.link, "red")
    text = s.link + (f" ({s.reconnects}x)" if s.reconnects else "") + (f": {s.error}" if s.error else "")
    return Text(text, style=style)


COLUMNS: tuple[tuple[str, Callable[[WatchState], Text]], ...] = (
    ("Link", _cell_link), ("HR bpm", _cell_heart), ("Quality", _cell_quality), ("Battery", _cell_battery),
    ("Loss", _cell_loss), ("Backfill", _cell_backfill), ("On-device prediction", _cell_prediction),
    ("Watch s", lambda s: Text(f"{s.seconds:7.1f}")),
)


class Dashboard:
    """The table of watches; a rich renderable, redrawn by `rich.live.Live`."""

    def __init__(self, watches: Sequence[WatchState]) -> None:
        self.watches = list(watches)

    def table(self) -> Table:
        table = Table(title="WEARS live", expand=False)
        table.add_column("Watch", no_wrap=True)
        for name, _ in COLUMNS:
            table.add_column(name, no_wrap=True)
        for s in self.watches:
            table.add_row(Text(s.label, style="bold"), *(cell(s) for _, cell in COLUMNS))
        return table

    def __rich__(self) -> Table:
        return self.table()


async def _follow(address: Any, backend: type | None, state: WatchState, until: Callable[[], bool],
                  stream: bool, lsl: bool) -> None:
    """Keep one watch connected and streaming until `until()`, reconnecting as the recorder does
    (`wears.reconnect`) but never giving up: a viewer stores nothing, so it only ever waits."""
    handlers: list[Callable[[str, Packet], None]] = [state.handle]
    link = Reconnection(address)

    def on_packet(channel: str, packet: Packet) -> None:
        for handler in handlers:
            handler(channel, packet)

    async def attempt() -> None:
        if until():
            return
        client = WatchClient(address, backend=backend, on_packet=on_packet, on_bad_packet=state.bad_packet)
        async with client:
            link.connected()
            lost_before = state.lost_packets  # earlier connections' losses stay counted
            name = getattr(client._client, "name", "") or ""
            if name and name not in state.label:
                state.label = f"{name} {state.label}"
            if lsl and len(handlers) == 1:
                from .lsl import LslOutlet
                handlers.append(LslOutlet(name or str(address), str(address)).handle)
            if stream:
                await client.start()
            state.link = "streaming"
            next_status = 0.0
            while not until():
                if client.disconnected.is_set():
                    raise WatchDisconnected(f"{address} disconnected")
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + _STATUS_EVERY_S
                    await client.status()
                state.lost_packets = lost_before + sum(t.lost for t in client.sequences.values())
                await asyncio.sleep(0.1)
            if stream:
                with contextlib.suppress(WearsError):
                    await client.stop()

    def retrying(_: Exception) -> None:
        state.link = "reconnecting"
        state.reconnects += 1

    try:
        await link.run(attempt, lost=lambda _: until(), retrying=retrying)
    except WearsError as e:  # e.g. a key the watch refuses: this row says so, the others go on
        state.link = "failed"
        state.error = str(e)
        return
    state.link = "done"


async def live(watches: Sequence[tuple[Any, type | None]], *, duration_s: float = 0, stream: bool = True,
               lsl: bool = False, console: Console | None = None,
               wall_timeout_s: float | None = None) -> Dashboard:
    """Show the dashboard for these watches until each has run `duration_s` watch seconds
    (0: until Ctrl-C).

    Args:
        watches: (address, bleak client backend) per watch; e.g. a BLE address and None, a
            virtual watch's address and `VirtualBleakClient`, a serial port and `SerialBleakClient`.
        duration_s: how long to show, in seconds of each watch's clock.
        stream: also start the sample streams, so that sample loss and backfill show.
        lsl: also publish each watch's streams and markers on Lab Streaming Layer (`wears.lsl`).
        console: where to draw (default: the terminal).
        wall_timeout_s: give up after this many real seconds (for scripts and tests).

    Returns:
        The dashboard as it ended (for a last look or a test).
    """
    if not watches:
        raise WearsError("name at least one watch")
    states = [WatchState(str(address)) for address, _ in watches]
    board = Dashboard(states)
    started = time.monotonic()

    def stop_for(state: WatchState) -> Callable[[], bool]:
        def done() -> bool:
            if wall_timeout_s is not None and time.monotonic() - started > wall_timeout_s:
                return True
            return bool(duration_s) and state.seconds >= duration_s
        return done

    console = console or Console()
    with Live(board, console=console, refresh_per_second=_REFRESH_PER_S, transient=False):
        await asyncio.gather(*(_follow(address, backend, state, stop_for(state), stream, lsl)
                               for (address, backend), state in zip(watches, states)))
    return board

"""Lab Streaming Layer outlet: a watch's sample streams and markers, so that LabRecorder records
WEARS beside EEG or eye tracking (optional: `pip install wears[lsl]`).

One outlet per sample stream (`<name> ppg`, type PPG, int32 ADC counts; `<name> acc`, type
Accelerometer, float32 g; `<name> gyro`, type Gyroscope, float32 deg/s), opened when the
stream's STREAM_INFO arrives, and one `<name> markers` outlet (type Markers, string) with the
watch's events, heart rate windows and on-device predictions. Source ids are stable per
watch and stream, so LabRecorder finds them again after a reconnect.

Timestamps are on LSL's clock (`local_clock()`), from the watch's clock: sample `i` at
`tick0 + i / rate`, moved to the host's clock by the smallest (arrival - packet tick) seen in
the last minute, i.e. the packet that travelled fastest; that bound follows clock drift and
ignores packets that waited in a queue. The host's smaller one-way delay (a few ms over BLE)
remains in it as a constant.

Example:
    >>> outlet = LslOutlet("WEARS-VW01", "F0:12:34:56:78:9A")  # doctest: +SKIP
    >>> async with WatchClient(address, on_packet=outlet.handle) as watch: ...  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from numpy.lib.recfunctions import structured_to_unstructured

from watch import protocol as P

from . import __version__
from .errors import WearsError
from .export_data.tables import EVENT_NAMES
from .protocol import Event, HeartRate, Packet, Prediction, Samples, StreamInfo
from .train import CLASS_NAMES

_TYPES = {P.PPG: ("PPG", "int32", "counts"), P.ACC: ("Accelerometer", "float32", "g"),
          P.GYRO: ("Gyroscope", "float32", "deg/s")}
_WINDOW_S = 60.0  # the clock offset is the best packet of this much recent arrival time
_CHUNK = 32  # samples per LSL chunk the outlet sends at most


def _pylsl() -> Any:
    try:
        import pylsl
    except ImportError as e:
        raise WearsError("the Lab Streaming Layer outlet needs pylsl: pip install 'wears[lsl]'") from e
    except (OSError, RuntimeError) as e:  # the wheel carries liblsl; a platform without one fails here
        raise WearsError(f"pylsl is installed but liblsl could not be loaded: {e}") from e
    return pylsl


class ArrivalClock:
    """Device ticks to host seconds: offset = the smallest (arrival - tick) in a sliding window."""

    def __init__(self, window_s: float = _WINDOW_S) -> None:
        self.window_s = window_s
        self._candidates: deque[tuple[float, float]] = deque()  # (arrival, offset), offsets increasing

    def see(self, tick_ms: int, arrival: float) -> None:
        offset = arrival - tick_ms / 1000
        while self._candidates and self._candidates[-1][1] >= offset:
            self._candidates.pop()
        self._candidates.append((arrival, offset))
        while arrival - self._candidates[0][0] > self.window_s:
            self._candidates.popleft()

    @property
    def offset(self) -> float | None:
        return self._candidates[0][1] if self._candidates else None

    def host_time(self, tick_ms: float) -> float:
        if not self._candidates:
            raise WearsError("no packet has arrived yet to relate the watch's clock to the host's")
        return tick_ms / 1000 + self._candidates[0][1]


class LslOutlet:
    """LSL outlets for one watch; pass `handle` as the `on_packet` of `WatchClient` or `record`.

    Args:
        name: the watch's name (stream names start with it).
        source: a stable id of the watch (its address or serial port).
        now: the host's monotonic clock in seconds (tests give their own).
    """

    def __init__(self, name: str, source: str, *, now: Callable[[], float] = time.monotonic) -> None:
        self._lsl = _pylsl()
        self._now = now
        self.name = name
        self.source = source
        self.clock = ArrivalClock()
        # LSL's clock and Python's monotonic clock are the same on Linux; elsewhere this aligns them.
        self._lsl_minus_host = self._lsl.local_clock() - now()
        self._streams: dict[int, tuple[Any, StreamInfo]] = {}
        self._markers = self._outlet(f"{name} markers", "Markers", 1, self._lsl.IRREGULAR_RATE, "string",
                                     f"wears-{source}-markers", [("marker", "", "Marker")])
        self.samples_pushed = 0
        self.markers_pushed = 0

    def _outlet(self, name: str, kind: str, channels: int, rate: float, fmt: str, source_id: str,
                labels: list[tuple[str, str, str]]) -> Any:
        info = self._lsl.StreamInfo(name, kind, channels, rate, fmt, source_id)
        desc = info.desc()
        desc.append_child_value("manufacturer", "WEARS")
        desc.append_child_value("software", f"wears {__version__}")
        chans = desc.append_child("channels")
        for label, unit, ctype in labels:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", unit)
            ch.append_child_value("type", ctype)
        return self._lsl.StreamOutlet(info, _CHUNK)

    def _lsl_time(self, tick_ms: float) -> float:
        return self.clock.host_time(tick_ms) + self._lsl_minus_host

    def handle(self, channel: str, packet: Packet) -> None:
        self.clock.see(packet.tick, self._now())
        if isinstance(packet, StreamInfo):
            self._open_stream(packet)
        elif isinstance(packet, Samples):
            self._push_samples(packet)
        elif isinstance(packet, Event):
            self.mark(f"event {EVENT_NAMES.get(packet.code, packet.code)} {packet.arg}", packet.tick)
        elif isinstance(packet, Prediction):
            label = CLASS_NAMES[packet.label] if packet.label < len(CLASS_NAMES) else str(packet.label)
            proba = packet.proba[packet.label] / 255 if packet.label < len(packet.proba) else 0.0
            self.mark(f"prediction {label} {proba:.2f}" + (" low-quality" if packet.flags & P.FLAG_LOW_QUALITY else ""),
                      packet.tick)
        elif isinstance(packet, HeartRate):
            self.mark(f"heart_rate {packet.bpm:.1f} quality {packet.quality}", packet.tick)

    def mark(self, text: str, tick_ms: float | None = None) -> None:
        """A marker at a device tick (default: now on the host's clock)."""
        stamp = self._lsl.local_clock() if tick_ms is None else self._lsl_time(tick_ms)
        self._markers.push_sample([text], stamp)
        self.markers_pushed += 1

    def _open_stream(self, info: StreamInfo) -> None:
        known = self._streams.get(info.stream)
        if known and (known[1].rate_mhz, known[1].channels, known[1].unit) == (info.rate_mhz, info.channels, info.unit):
            self._streams[info.stream] = (known[0], info)  # resent every 10 s; keep the outlet
            return
        kind, fmt, unit = _TYPES.get(info.stream, ("Misc", "float32", ""))
        stream_name = P.STREAM_NAMES.get(info.stream, f"stream{info.stream}")
        labels = [(f"{stream_name}_{c}", unit, kind) for c in P.CHANNELS.get(info.stream, ())][:info.channels]
        outlet = self._outlet(f"{self.name} {stream_name}", kind, info.channels, info.rate_hz, fmt,
                              f"wears-{self.source}-{stream_name}", labels)
        self._streams[info.stream] = (outlet, info)

    def _push_samples(self, packet: Samples) -> None:
        known = self._streams.get(packet.stream)
        if known is None:
            return  # no STREAM_INFO yet: its rate and unit are unknown
        outlet, info = known
        samples = packet.samples
        if samples.dtype.names:  # the decoder's records: one field per channel
            samples = structured_to_unstructured(samples)
        if packet.stream == P.PPG:
            values = samples.astype("int64").tolist()
        else:
            values = (samples.astype("float64") * info.unit).tolist()
        index = packet.first_index
        stamps = [self._lsl_time(info.tick0 + 1000 * (index + k) / info.rate_hz) for k in range(len(values))]
        outlet.push_chunk(values, stamps)
        self.samples_pushed += len(values)


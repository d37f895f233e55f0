"""Record a watch into the study database: every packet stored as it arrives, committed often.

A watch that disappears ends the recording with `WatchDisconnected`; everything received
before it is already committed and the session is marked 'interrupted'.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from watch import protocol as P

from .client import WatchClient
from .db import Study
from .errors import ProtocolError, WatchDisconnected
from .protocol import Event, HeartRate, Packet, Prediction, Samples, Status, StreamInfo

_COMMIT_EVERY_S = 0.5
_PING_EVERY_S = 2.0


@dataclass
class RecordingStats:
    """What a recording received, per stream and in total."""

    samples: dict[int, int] = field(default_factory=dict)
    next_index: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0
    lost_samples: int = 0
    bad_packets: int = 0
    predictions: int = 0
    heart_rates: int = 0
    last_status: Status | None = None
    rates: dict[int, float] = field(default_factory=dict)

    def seconds(self, stream: int = P.PPG) -> float:
        """Seconds of the stream recorded, on the watch's clock."""
        rate = self.rates.get(stream)
        return self.samples.get(stream, 0) / rate if rate else 0.0

    def position_s(self, stream: int = P.PPG) -> float:
        """Where the stream has got to on the watch's sample timeline (seconds since the sensor started)."""
        rate = self.rates.get(stream)
        return self.next_index.get(stream, 0) / rate if rate else 0.0


class SessionWriter:
    """Stores the packets of one session. Call `handle` for every packet and `commit` often."""

    def __init__(self, study: Study, session_id: int,
                 on_packet: Callable[[str, Packet], None] | None = None) -> None:
        self.study = study
        self.session_id = session_id
        self.stats = RecordingStats()
        self._on_packet = on_packet
        self._last_commit = time.monotonic()

    def handle(self, channel: str, packet: Packet) -> None:
        sid, study, stats = self.session_id, self.study, self.stats
        if isinstance(packet, Samples):
            stored = study.add_chunk(sid, packet.stream, packet.first_index, packet.count, packet.tick,
                                     packet.samples.tobytes())
            if not stored:
                stats.duplicates += 1
            else:
                stats.samples[packet.stream] = stats.samples.get(packet.stream, 0) + packet.count
                expected = stats.next_index.get(packet.stream)
                if expected is not None and packet.first_index > expected:
                    stats.lost_samples += packet.first_index - expected
                stats.next_index[packet.stream] = max(expected or 0, packet.first_index + packet.count)
        elif isinstance(packet, StreamInfo):
            study.add_stream_info(sid, packet.stream, packet.channels, packet.rate_mhz, packet.unit, packet.tick0)
            stats.rates[packet.stream] = packet.rate_hz
        elif isinstance(packet, Prediction):
            study.add_prediction(sid, packet.tick, packet.index, packet.model_id, packet.flags, packet.label,
                                 packet.proba)
            stats.predictions += 1
        elif isinstance(packet, HeartRate):
            study.add_heart_rate(sid, packet.tick, packet.index, packet.bpm_x10, packet.quality, packet.beats)
            stats.heart_rates += 1
        elif isinstance(packet, Event):
            study.add_event(sid, packet.code, packet.arg, tick=packet.tick)
        elif isinstance(packet, Status):
            stats.last_status = packet
        if self._on_packet:
            self._on_packet(channel, packet)
        if time.monotonic() - self._last_commit > _COMMIT_EVERY_S:
            self.commit()

    def bad_packet(self, channel: str, data: bytes, error: ProtocolError) -> None:
        self.stats.bad_packets += 1
        self.study.count_packets(self.session_id, bad=1)
        self.study.add_event(self.session_id, 0, 0, source="host",
                             text=f"bad packet on {channel}: {error} ({data[:32].hex()})")

    def commit(self) -> None:
        self.study.commit()
        self._last_commit = time.monotonic()


async def record(study: Study, address: Any, *, participant: str, duration_s: float | None = None,
                 until_s: float | None = None, backend: type | None = None,
                 annotations: list[tuple[float, float, str]] | None = None, board: str = "",
                 on_packet: Callable[[str, Packet], None] | None = None,
                 prepare: Callable[[WatchClient], Awaitable[None]] | None = None,
                 progress: Callable[[RecordingStats], None] | None = None) -> tuple[int, RecordingStats]:
    """Record `duration_s` seconds of the watch's own clock into a new session.

    Args:
        study: the study database.
        address: the watch's address or bleak device.
        participant: pseudonymous participant id.
        duration_s: how much to record, measured in PPG samples received.
        until_s: instead, record until the PPG stream reaches this many seconds on the watch's
            sample timeline (e.g. the end of a replayed scenario).
        backend: bleak client backend class (the virtual watch's, or None for real BLE).
        annotations: labelled intervals (start_s, end_s, label) on the sample timeline.
        on_packet: called for every stored packet (a live view).
        prepare: awaited with the connected client before streaming starts (e.g. a model upload).
        progress: called about twice a second with the running stats.

    Returns:
        (session id, stats). Raises WatchDisconnected if the watch goes away first; what
        arrived before that stays committed and the session is marked 'interrupted'.
    """
    name = getattr(address, "name", None) or ""
    addr = getattr(address, "address", address)
    sid = study.new_session(participant, device=(addr, name, board),
                            source=getattr(backend, "session_source", "virtual") if backend is not None else "ble")
    if annotations:
        study.add_annotations(sid, annotations)
    writer = SessionWriter(study, sid, on_packet)
    client = WatchClient(address, backend=backend, on_packet=writer.handle, on_bad_packet=writer.bad_packet)
    try:
        async with client:
            if prepare:
                await prepare(client)
            await client.start()
            next_ping = 0.0
            def more() -> bool:
                if until_s is not None:
                    return writer.stats.position_s() < until_s
                return writer.stats.seconds() < duration_s

            while more():
                if client.disconnected.is_set():
                    raise WatchDisconnected(f"{addr} disconnected")
                if time.monotonic() >= next_ping:
                    study.add_clock_sync(sid, *(await client.ping()))
                    next_ping = time.monotonic() + _PING_EVERY_S
                    if progress:
                        progress(writer.stats)
                await asyncio.sleep(0.05)
            if progress:
                progress(writer.stats)
            try:
                await client.stop()
                await asyncio.sleep(0.2)  # the last packets in flight
            except WatchDisconnected:
                pass  # it went away after giving all that was asked for (a virtual watch's scenario ended)
    except WatchDisconnected as e:
        got = writer.stats.seconds()
        finish_recording(writer, client, "interrupted", f"watch disconnected after {got:.1f} s of samples")
        raise WatchDisconnected(f"{addr} disconnected after {got:.1f} s of samples; everything received is "
                                f"kept in {study.path}, session {sid} (marked interrupted)") from e
    except BaseException:
        finish_recording(writer, client, "interrupted", "recording stopped by the host")
        raise
    finish_recording(writer, client, "complete")
    return sid, writer.stats


def finish_recording(writer: SessionWriter, client: WatchClient, status: str, note: str | None = None) -> None:
    """Commit what arrived, count the packets the sequence numbers say were lost, close the session."""
    writer.commit()
    writer.study.count_packets(writer.session_id, lost=sum(t.lost for t in client.sequences.values()))
    writer.study.end_session(writer.session_id, status, note)

"""Record a watch into the study database, and keep the recording alive until it is whole.

`SessionWriter` stores packets as they come. `Recorder` keeps one watch's recording going
across disconnects: it reconnects with backoff, learns where the watch's flash log stands,
asks again for every record (by log sequence number) it does not hold, acknowledges what is
committed so the watch may free it, and pings the watch throughout for the clock fit.
A host killed mid-recording loses nothing it committed; `Recorder(..., resume=True)` (`wears
record --resume`) picks the session up and backfills the rest from the watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from watch import protocol as P

from .client import LogRecord, WatchClient
from .clock import fit_boots
from .db import Study
from .errors import CommandTimeout, ProtocolError, WatchDisconnected, WearsError
from .protocol import Event, HeartRate, LogInfo, Packet, Prediction, Samples, Status, StreamInfo
from .ranges import RangeSet
from .reconnect import Reconnection

_COMMIT_EVERY_S = 0.5
_PING_EVERY_S = 0.5  # mean interval; random, so pings meet the watch loop at every phase
_ACK_EVERY_S = 1.0
_BACKFILL_MAX = 512  # records asked for at once
_BACKFILL_TRIES = 5  # attempts on a range the watch says it holds before it counts as lost
_IN_FLIGHT = 16  # the newest records may still be on their way: not yet a gap
_COMMAND_TIMEOUT_S = 5.0  # a reply lost on the way costs this much, then the command is sent again
_TRIES = 3
_ACK_GRACE_S = 10.0  # how long a finished recording tries to reach the watch again just to acknowledge


@dataclass
class RecordingStats:
    """What a recording received, per stream and in total, and how the link behaved."""

    samples: dict[int, int] = field(default_factory=dict)
    next_index: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0
    lost_samples: int = 0
    bad_packets: int = 0
    predictions: int = 0
    heart_rates: int = 0
    last_status: Status | None = None
    rates: dict[int, float] = field(default_factory=dict)
    backfilled: int = 0
    reconnects: int = 0
    lost_records: int = 0
    boot: int = 0
    log: LogInfo | None = None
    state: str = "connecting"  # connecting, recording, reconnecting, backfilling, complete, interrupted
    clock: dict[int, dict] = field(default_factory=dict)  # per boot: the clock fit's figures

    def seconds(self, stream: int = P.PPG) -> float:
        """Seconds of the stream recorded, on the watch's clock."""
        rate = self.rates.get(stream)
        return self.samples.get(stream, 0) / rate if rate else 0.0

    def position_s(self, stream: int = P.PPG) -> float:
        """Where the stream has got to on the watch's sample timeline (seconds since the sensor started)."""
        rate = self.rates.get(stream)
        return self.next_index.get(stream, 0) / rate if rate else 0.0


class SessionWriter:
    """Stores the packets of one session. Call `handle` for every packet and `commit` often.

    `boot` is the watch boot the live packets come from (ticks and indices restart with it).
    """

    def __init__(self, study: Study, session_id: int,
                 on_packet: Callable[[str, Packet], None] | None = None) -> None:
        self.study = study
        self.session_id = session_id
        self.stats = RecordingStats()
        self.boot = 0
        self._on_packet = on_packet
        self._last_commit = time.monotonic()

    def handle(self, channel: str, packet: Packet) -> None:
        """A live packet: stored with the current boot, shown to `on_packet`."""
        self.store(packet, self.boot)
        self.show(channel, packet)

    def show(self, channel: str, packet: Packet) -> None:
        """Hand a live packet to the live view, if there is one."""
        if self._on_packet:
            self._on_packet(channel, packet)

    def store(self, packet: Packet, boot: int) -> None:
        sid, study, stats = self.session_id, self.study, self.stats
        if isinstance(packet, Samples):
            stored = study.add_chunk(sid, packet.stream, packet.first_index, packet.count, packet.tick,
                                     packet.samples.tobytes(), boot=boot)
            if not stored:
                stats.duplicates += 1
            else:
                stats.samples[packet.stream] = stats.samples.get(packet.stream, 0) + packet.count
                if boot == stats.boot:
                    expected = stats.next_index.get(packet.stream)
                    if expected is not None and packet.first_index > expected:
                        stats.lost_samples += packet.first_index - expected
                    stats.next_index[packet.stream] = max(expected or 0, packet.first_index + packet.count)
        elif isinstance(packet, StreamInfo):
            study.add_stream_info(sid, packet.stream, packet.channels, packet.rate_mhz, packet.unit, packet.tick0,
                                  boot=boot)
            stats.rates[packet.stream] = packet.rate_hz
        elif isinstance(packet, Prediction):
            study.add_prediction(sid, packet.tick, packet.index, packet.model_id, packet.flags, packet.label,
                                 packet.proba, boot=boot)
            stats.predictions += 1
        elif isinstance(packet, HeartRate):
            study.add_heart_rate(sid, packet.tick, packet.index, packet.bpm_x10, packet.quality, packet.beats,
                                 boot=boot)
            stats.heart_rates += 1
        elif isinstance(packet, Event):
            study.add_event(sid, packet.code, packet.arg, tick=packet.tick, boot=boot)
        elif isinstance(packet, Status):
            stats.last_status = packet
        elif isinstance(packet, LogInfo):
            stats.log = packet
        if time.monotonic() - self._last_commit > _COMMIT_EVERY_S:
            self.commit()

    def bad_packet(self, channel: str, data: bytes, error: ProtocolError) -> None:
        self.stats.bad_packets += 1
        self.study.count_packets(self.session_id, bad=1)
        self.study.add_event(self.session_id, 0, 0, source="host", boot=self.boot,
                             text=f"bad packet on {channel}: {error} ({data[:32].hex()})")

    def commit(self) -> None:
        self.study.commit()
        self._last_commit = time.monotonic()


class Recorder:
    """One watch's recording into an existing session, kept alive across disconnects.

    Args:
        study: the study database; session_id: the session to record into (new or resumed).
        address: the watch's address, advertised name, or bleak device.
        backend: bleak client backend class (None: the platform's BLE stack).
        mask: streams to record (bit `stream - 1`).
        reconnect_s: give up after this long without a connection (WatchDisconnected).
        on_packet: called with every live packet (a live view).
        prepare: awaited with the client after each connection, before streaming (e.g. a model upload).
        on_state: called with the new state each time `stats.state` changes (a dashboard).
        ping_every_s: mean interval of the clock-sync pings (jittered by +-50 %).
        connect_s: give up on the first connection after this long (default `reconnect_s`).

    Everything it holds about the session's flash log lives in the database, so a Recorder
    made for the same session after a crash carries on where the last one committed.
    """

    def __init__(self, study: Study, session_id: int, address: Any, *, backend: type | None = None,
                 mask: int = 0x07, reconnect_s: float = 60.0,
                 on_packet: Callable[[str, Packet], None] | None = None,
                 prepare: Callable[[WatchClient], Awaitable[None]] | None = None,
                 on_state: Callable[[str], None] | None = None, ping_every_s: float = _PING_EVERY_S,
                 connect_s: float | None = None) -> None:
        self.study = study
        self.session_id = session_id
        self.address = address
        self.backend = backend
        self.mask = mask
        self.reconnect_s = reconnect_s
        self.prepare = prepare
        self.on_state = on_state
        self.ping_every_s = ping_every_s
        self.connect_s = reconnect_s if connect_s is None else connect_s
        self.writer = SessionWriter(study, session_id, on_packet)
        self.stats = self.writer.stats
        self.client: WatchClient | None = None
        self._link: WatchClient | None = None  # the client being connected or connected
        self._received = RangeSet()
        self._lost = RangeSet()
        self._start_lsn: int | None = None
        self._end_lsn = 0  # after the newest record known to exist on the watch
        self._acked = 0
        self._backfill_done = asyncio.Event()
        self._backfill_got = 0
        self._load()

    def _set_state(self, state: str) -> None:
        if state != self.stats.state:
            self.stats.state = state
            if self.on_state:
                self.on_state(state)

    # State in the database ----------------------------------------------------------------

    def _load(self) -> None:
        study, sid = self.study, self.session_id
        state = study.log_state(sid)
        if state is not None:
            self._start_lsn = state["start_lsn"]
            self._end_lsn = state["end_lsn"]
            self._acked = state["acked_lsn"]
            self.stats.boot = self.writer.boot = state["boot"]
            self.stats.backfilled = state["backfilled"]
            self.stats.duplicates = state["duplicates"]
            self.stats.reconnects = state["reconnects"]
        lsns = study.log_records(sid)
        if len(lsns):
            # Consecutive runs of lsns become one range each.
            breaks = [0, *(i for i in range(1, len(lsns)) if lsns[i] != lsns[i - 1] + 1), len(lsns)]
            for a, b in zip(breaks, breaks[1:]):
                self._received.add_range(int(lsns[a]), int(lsns[b - 1]) + 1)
        for a, b in study.log_lost(sid):
            self._lost.add_range(a, b)
        self.stats.lost_records = len(self._lost)
        for (stream, count) in study.conn.execute("SELECT stream, SUM(count) FROM chunks WHERE session_id=? "
                                                  "GROUP BY stream", (sid,)):
            self.stats.samples[stream] = count
        for (stream, boot, rate_mhz) in study.conn.execute("SELECT stream, boot, rate_mhz FROM stream_info "
                                                           "WHERE session_id=?", (sid,)):
            self.stats.rates[stream] = rate_mhz / 1000
        for stream, end in study.conn.execute("SELECT stream, MAX(first_index + count) FROM chunks "
                                              "WHERE session_id=? AND boot=? GROUP BY stream",
                                              (sid, self.stats.boot)):
            self.stats.next_index[stream] = end

    def _save(self) -> None:
        if self._start_lsn is None:
            return
        s = self.stats
        log = s.log
        self.study.set_log_state(self.session_id, start_lsn=self._start_lsn, end_lsn=self._end_lsn,
                                 acked_lsn=self._acked, boot=s.boot, overflow=log.overflow if log else 0,
                                 torn=log.torn if log else 0, backfilled=s.backfilled, duplicates=s.duplicates,
                                 reconnects=s.reconnects)

    def commit(self) -> None:
        self._save()
        self.writer.commit()

    # Packets ------------------------------------------------------------------------------

    def _record(self, rec: LogRecord) -> None:
        if rec.lsn is not None:
            if self._start_lsn is not None and rec.lsn < self._start_lsn:
                return  # an older session's record
            self._backfill_got += rec.backfilled  # what the running backfill delivered, new or not
            if not self._received.add(rec.lsn):
                self.stats.duplicates += 1
                return
            self.study.add_log_record(self.session_id, rec.lsn)
            self._end_lsn = max(self._end_lsn, rec.lsn + 1)
            self.stats.backfilled += rec.backfilled
        self.writer.store(rec.packet, rec.boot)

    def _packet(self, channel: str, packet: Packet) -> None:
        log = self._link.log if self._link is not None else None
        if log is not None:  # what a new boot sends as the link opens already belongs to it
            self._boot_seen(log.boot)
        if channel == "stream":
            self.writer.show(channel, packet)  # stored through _record already; a live view still sees it
            return
        if isinstance(packet, LogInfo):
            self.stats.log = packet
            self._end_lsn = max(self._end_lsn, packet.next_lsn)
            self._backfill_done.set()
        self.writer.handle(channel, packet)

    def _boot_seen(self, boot: int) -> None:
        """The watch says which boot it is in: a new one restarts its ticks and sample indices."""
        if boot != self.stats.boot:
            if self.stats.boot:
                self.study.add_event(self.session_id, 0, boot, source="host", boot=boot,
                                     text=f"the watch rebooted (boot {self.stats.boot} -> {boot})")
            self.stats.boot = self.writer.boot = boot
            self.stats.next_index.clear()

    # The recording ------------------------------------------------------------------------

    async def run(self, done: Callable[[RecordingStats], bool],
                  progress: Callable[[RecordingStats], None] | None = None) -> RecordingStats:
        """Record until `done(stats)`, then stop the streams and backfill every gap.

        Raises WatchDisconnected when no connection could be made for `reconnect_s`; all that
        arrived is committed and the session can be resumed.
        """
        finished = False
        link = Reconnection(self.address, reconnect_s=self.reconnect_s, connect_s=self.connect_s)

        async def attempt() -> None:
            nonlocal finished
            client = await self._connect()
            link.connected()
            try:
                if not finished:
                    await self._stream(client, done, progress)
                    finished = True
                await self._finish(client)
            finally:
                # Notifications the link delivered twice were dropped by the client: count them too.
                self.stats.duplicates += sum(t.duplicates for t in client.sequences.values())
                self.commit()
                await client.disconnect()

        def lost(_: Exception) -> bool:
            self.commit()
            complete = finished and self._next_gap(self._end_lsn) is None
            gone = self.client is not None and self.client.ended_by_watch
            # All that was asked for is stored; only the watch's acknowledgement may be missing
            # (it went away, e.g. powered off): its log keeps those records.
            return complete and (gone or self._acked >= self._end_lsn or link.away_s > _ACK_GRACE_S)

        def retrying(_: Exception) -> None:
            self.stats.reconnects += 1
            self._set_state("reconnecting")

        await link.run(attempt, lost=lost, retrying=retrying)
        return self.stats

    async def _connect(self) -> WatchClient:
        client = WatchClient(self.address, backend=self.backend, on_packet=self._packet,
                             on_bad_packet=self.writer.bad_packet, on_record=self._record, timeout=_COMMAND_TIMEOUT_S)
        self._backfill_got = 0
        self._link = client
        await client.connect()
        self.client = client
        log = client.log
        if log is None:
            raise WearsError(f"{_name(self.address)} keeps no flash log (firmware too old to record)")
        self.stats.log = log
        if self._start_lsn is None:
            self._start_lsn = log.next_lsn
        self._boot_seen(log.boot)
        self._end_lsn = max(self._end_lsn, log.next_lsn)
        self._save()
        if self.prepare:
            await self.prepare(client)
        return client

    async def _stream(self, client: WatchClient, done: Callable[[RecordingStats], bool],
                      progress: Callable[[RecordingStats], None] | None) -> None:
        await _again(lambda: client.start(self.mask))
        self._set_state("recording")
        pinger = asyncio.create_task(self._pings(client, progress))
        try:
            next_ack = 0.0
            while not done(self.stats):
                if client.disconnected.is_set():
                    raise WatchDisconnected(f"{_name(self.address)} disconnected")
                if pinger.done():
                    pinger.result()  # its error, if it failed
                if time.monotonic() >= next_ack:
                    await self._ack(client)
                    next_ack = time.monotonic() + _ACK_EVERY_S
                gap = self._next_gap(self._end_lsn - _IN_FLIGHT)
                if gap:
                    await self._backfill(client, *gap)
                else:
                    await asyncio.sleep(0.05)
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError, WearsError):
                await pinger
        if progress:
            progress(self.stats)

    async def _pings(self, client: WatchClient, progress: Callable[[RecordingStats], None] | None) -> None:
        """Ping at random moments: they meet the watch's loop at every phase, and the ones that
        arrive just before it wakes bound its clock tightly from below (clock.py)."""
        while True:
            await self._ping(client)
            if progress:
                progress(self.stats)
            await asyncio.sleep(self.ping_every_s * (0.5 + random.random()))

    async def _finish(self, client: WatchClient) -> None:
        """Stop the streams, then fetch every record of the session the host does not hold."""
        self._set_state("backfilling")
        await _again(lambda: client.stop(self.mask))
        log = await _again(client.log_info)
        self._end_lsn = max(self._end_lsn, log.next_lsn)
        await self._ping(client)
        while True:
            gap = self._next_gap(self._end_lsn)
            if gap is None:
                break
            await self._backfill(client, *gap)
        await self._ack(client, tries=_TRIES)

    async def _ping(self, client: WatchClient) -> None:
        try:
            sent, received, tick = await client.ping()
        except CommandTimeout:
            return  # the pong was lost: the next ping will do
        self.study.add_clock_sync(self.session_id, sent, received, tick, boot=self.stats.boot)

    async def _ack(self, client: WatchClient, tries: int = 1) -> None:
        """Commit, then tell the watch everything before the first record still missing is stored."""
        self.commit()
        if self._start_lsn is None:
            return
        mark = self._start_lsn
        while True:  # past what is held and what is lost for good
            nxt = self._lost.first_missing(self._received.first_missing(mark))
            if nxt == mark:
                break
            mark = nxt
        for _ in range(tries):
            if mark <= self._acked:
                break
            try:
                self._acked = await client.ack(mark)
            except CommandTimeout:
                pass  # the reply was lost: acknowledged again, now or with the next one

    def pending(self) -> int:
        """Records the watch logged that the host does not hold yet (nor knows to be lost)."""
        return sum(b - a for a, b in self._gaps(self._end_lsn))

    def _gaps(self, end: int) -> Iterator[tuple[int, int]]:
        """The ranges of the session's records before `end` neither held nor lost for good."""
        if self._start_lsn is None:
            return
        for a, b in self._received.missing(self._start_lsn, end):
            yield from self._lost.missing(a, b)

    def _next_gap(self, end: int) -> tuple[int, int] | None:
        for c, d in self._gaps(end):
            return c, min(d, c + _BACKFILL_MAX)
        return None

    async def _backfill(self, client: WatchClient, lo: int, hi: int) -> None:
        """Ask for [lo, hi) until every record the watch holds of it arrived; the rest is lost."""
        prev = self.stats.state
        self._set_state("backfilling")
        for _ in range(_BACKFILL_TRIES):
            self._backfill_done.clear()
            self._backfill_got = 0
            try:
                held = await client.backfill(lo, hi)
            except CommandTimeout:
                continue
            if held:
                try:
                    await asyncio.wait_for(self._backfill_done.wait(), 2.0 + 0.02 * held)
                except asyncio.TimeoutError:
                    pass  # the end marker was dropped: what is still missing is asked again
            if client.disconnected.is_set():
                raise WatchDisconnected(f"{_name(self.address)} disconnected while backfilling")
            if not held or (self._backfill_done.is_set() and self._backfill_got >= held):
                break  # all the watch holds of the range has come: the rest is gone
        self._give_up(lo, hi)
        self._set_state(prev)

    def _give_up(self, lo: int, hi: int) -> None:
        for a, b in list(self._received.missing(lo, hi)):
            for c, d in list(self._lost.missing(a, b)):
                self._lost.add_range(c, d)
                self.study.add_log_lost(self.session_id, c, d)
                self.study.add_event(self.session_id, 0, d - c, source="host", boot=self.stats.boot,
                                     text=f"flash log records {c}..{d - 1} are no longer on the watch")
        self.stats.lost_records = len(self._lost)

    def fit_clocks(self) -> dict[int, dict]:
        """Fit each boot's clock from its pings, store the fits, and return their figures."""
        pings = {boot: self.study.clock_sync(self.session_id, boot) for boot in self.study.boots(self.session_id)}
        for boot, fit in fit_boots(pings).items():
            self.study.set_clock_fit(self.session_id, boot, fit)
            self.stats.clock[boot] = fit.as_dict()
        self.study.commit()
        return self.stats.clock

    def count_lost_samples(self) -> int:
        """Samples missing inside each boot's run of each stream, from what is stored."""
        lost = 0
        for stream in P.STREAM_NAMES:
            prev = None
            for boot, first, count in self.study.chunk_keys(self.session_id, stream):
                if prev is not None and prev[0] == boot and first > prev[1]:
                    lost += first - prev[1]
                if prev is None or prev[0] != boot or first + count > prev[1]:
                    prev = (boot, first + count)
        self.stats.lost_samples = lost
        return lost


    def close(self, status: str, note: str | None = None) -> None:
        """End the session as `status`: commit, fit the clocks, count what the sequence numbers
        say was lost, store the collection's figures as provenance."""
        self.commit()
        try:
            self.fit_clocks()
        except WearsError:
            pass  # no pings: the session keeps its raw data without a fit
        self.count_lost_samples()
        study, sid, stats = self.study, self.session_id, self.stats
        study.count_packets(sid, lost=stats.lost_records)
        study.set_provenance(sid, "collection", {"backfilled": stats.backfilled, "duplicates": stats.duplicates,
                                                 "reconnects": stats.reconnects, "lost_records": stats.lost_records,
                                                 "lost_samples": stats.lost_samples, "clock": stats.clock})
        self._set_state(status)
        study.end_session(sid, status, note)


async def _again(command: Callable[[], Awaitable[Any]]) -> Any:
    """An idempotent command, sent again when its reply is lost."""
    for _ in range(_TRIES - 1):
        try:
            return await command()
        except CommandTimeout:
            pass
    return await command()


def _name(address: Any) -> str:
    return getattr(address, "address", None) or str(address)


def new_recording(study: Study, address: Any, participant: str, *, backend: type | None = None, board: str = "",
                  name: str = "") -> int:
    """A new session for recording the watch at `address` (an address, a name or a bleak
    device), its device row and source taken from the address and the backend."""
    name = name or getattr(address, "name", None) or ""
    addr = getattr(address, "address", address)
    source = getattr(backend, "session_source", "virtual") if backend is not None else "ble"
    return study.new_session(participant, device=(addr, name, board), source=source)


async def record(study: Study, address: Any, *, participant: str = "", duration_s: float | None = None,
                 until_s: float | None = None, backend: type | None = None,
                 annotations: list[tuple[float, float, str]] | None = None, board: str = "",
                 on_packet: Callable[[str, Packet], None] | None = None,
                 prepare: Callable[[WatchClient], Awaitable[None]] | None = None,
                 progress: Callable[[RecordingStats], None] | None = None, resume: int | None = None,
                 reconnect_s: float = 60.0, mask: int = 0x07) -> tuple[int, RecordingStats]:
    """Record `duration_s` seconds of the watch's own clock into a new session (or `resume` one).

    Args:
        study: the study database.
        address: the watch's address, advertised name, or bleak device.
        participant: pseudonymous participant id (not needed to resume).
        duration_s: how much to record, measured in PPG samples stored.
        until_s: instead, record until the PPG stream reaches this many seconds on the watch's
            sample timeline (e.g. the end of a replayed scenario).
        backend: bleak client backend class (the virtual watch's, or None for real BLE).
        annotations: labelled intervals (start_s, end_s, label) on the sample timeline.
        on_packet: called for every live packet (a live view).
        prepare: awaited with each connected client before streaming starts (e.g. a model upload).
        progress: called about once a second with the running stats.
        resume: a session id to carry on (after the host was killed): what it committed stays,
            the rest is backfilled from the watch's flash log.
        reconnect_s: give up after this long without a connection.
        mask: the streams to record.

    Returns:
        (session id, stats). Raises WatchDisconnected if the watch stays away; what arrived
        before that stays committed and the session is marked 'interrupted' (resumable).
    """
    if duration_s is None and until_s is None:
        raise WearsError("record needs duration_s or until_s")
    if resume is not None:
        session = study.session(resume)
        if session["status"] == "complete":
            raise WearsError(f"session {resume} is complete already; nothing to resume")
        sid = resume
        study.conn.execute("UPDATE sessions SET status='recording' WHERE id=?", (sid,))
        study.add_event(sid, 0, 0, source="host", text="recording resumed")
        study.commit()
    else:
        sid = new_recording(study, address, participant, backend=backend, board=board)
        study.set_provenance(sid, "host_clock", {"monotonic_s": time.monotonic(), "unix_s": time.time()})
        study.set_provenance(sid, "record_target", {"duration_s": duration_s, "until_s": until_s, "mask": mask})
        if annotations:
            study.add_annotations(sid, annotations)
        study.commit()  # what `--resume` needs, before anything can kill the host
    recorder = Recorder(study, sid, address, backend=backend, mask=mask, reconnect_s=reconnect_s,
                        on_packet=on_packet, prepare=prepare)

    def done(stats: RecordingStats) -> bool:
        if until_s is not None:
            return stats.position_s() >= until_s
        assert duration_s is not None  # checked on entry: one of them is given
        return stats.seconds() >= duration_s

    try:
        await recorder.run(done, progress)
    except WatchDisconnected as e:
        recorder.close("interrupted", f"watch disconnected after {recorder.stats.seconds():.1f} s of samples")
        raise WatchDisconnected(f"{e}; everything received is kept in {study.path}, session {sid} "
                                "(marked interrupted; wears record --resume carries it on)") from e
    except BaseException:
        recorder.close("interrupted", "recording stopped by the host")
        raise
    recorder.close("complete")
    return sid, recorder.stats

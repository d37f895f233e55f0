"""`WatchClient`: one WEARS watch over bleak, speaking docs/protocol.md.

Everything above bleak is the production path; the virtual watch differs only in the
`backend=` class handed to `BleakClient`.

Example:
    >>> async def show(address):
    ...     async with WatchClient(address) as watch:
    ...         print(await watch.status())
"""

from __future__ import annotations

import asyncio
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleak import BleakClient
from bleak.exc import BleakDeviceNotFoundError, BleakError

from watch import protocol as P
from watch import segments

from . import auth
from .errors import CommandRefused, CommandTimeout, ModelBlobError, ProtocolError, WatchDisconnected, WearsError
from .protocol import (AuthChallenge, Backfill, LogInfo, Packet, Pong, Result, SequenceTracker, Status, decode,
                       encode_command, unwrap)

_AUTH_TRIES = 3  # challenge-responses before a refusal is taken as a wrong key
_UPLOAD_WINDOW = 3  # model chunks per MODEL_RESUME barrier (the watch queues 4 host writes)
CHANNELS = {"stream": P.STREAM_UUID, "prediction": P.PREDICTION_UUID, "control": P.CONTROL_UUID,
            "event": P.EVENT_UUID}
PacketCallback = Callable[[str, Packet], None]
BadPacketCallback = Callable[[str, bytes, ProtocolError], None]


@dataclass(frozen=True)
class LogRecord:
    """A stream packet with its place in the watch's flash log.

    `lsn` is its log sequence number (None when the watch keeps no log), `boot` the watch
    boot that made it, `backfilled` whether it came back from the log rather than live.
    """

    lsn: int | None
    boot: int
    packet: Packet
    backfilled: bool = False


RecordCallback = Callable[[LogRecord], None]
_WATCH_HUNG_UP = (0x13, 0x15)  # HCI: remote user terminated; remote device powers off


class WatchClient:
    """A connected WEARS watch: commands with replies, and every packet it sends.

    Args:
        address: the watch's address (or a bleak `BLEDevice`).
        backend: a bleak client backend class; `wears.ble.virtual.VirtualBleakClient` for
            the virtual watch, None for the platform's BLE stack.
        on_packet: called with (channel, packet) for each decoded packet that is not a
            reply to a command (samples, predictions, events, status).
        on_bad_packet: called with (channel, bytes, error) for each packet that failed to
            decode; the packet is dropped and counted, the link stays up.
        on_record: called with a `LogRecord` for each stream packet, live or backfilled
            (`backfill`), with its flash log sequence number.
        timeout: seconds to wait for connecting and for each command's reply.
        key: the watch key; default: `wears.auth.find_key(address)` (the key folder, or the
            virtual watch's). With a key the client authenticates right after connecting,
            so control commands and model uploads work; without one they are refused.

    Packets that arrive before every subscription is in place (BlueZ delivers some) are held
    and handed on, in order, once the client knows the watch's log position.
    """

    def __init__(self, address: Any, *, backend: type | None = None, on_packet: PacketCallback | None = None,
                 on_bad_packet: BadPacketCallback | None = None, on_record: RecordCallback | None = None,
                 timeout: float = 10.0, key: bytes | None = None) -> None:
        self.address = getattr(address, "address", address)
        self.timeout = timeout
        self._backend = backend
        self._client = self._bleak_client(address)
        self._on_packet = on_packet
        self._on_bad = on_bad_packet
        self._on_record = on_record
        self._seq = 0
        self._pending: dict[tuple[int, int], asyncio.Future] = {}
        self.sequences = {name: SequenceTracker() for name in CHANNELS}
        self.bad_packets = 0
        self.disconnected = asyncio.Event()
        self._key = key
        self.authenticated = False
        self.log: LogInfo | None = None  # the watch's flash log, as it last reported it
        self._lsn_ref: int | None = None  # the last live stream packet's lsn: unwraps the next seq
        self._ready = False
        self._early: list[tuple[str, Packet]] = []

    def _bleak_client(self, device: Any) -> BleakClient:
        # backend None: bleak picks the platform's own.
        return BleakClient(device, disconnected_callback=self._on_disconnect, timeout=self.timeout,
                           backend=self._backend)

    async def __aenter__(self) -> "WatchClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected and not self.disconnected.is_set()

    @property
    def mtu(self) -> int:
        return self._client.mtu_size

    async def connect(self) -> None:
        """Connect, subscribe and learn where the watch's flash log stands."""
        try:
            await self._open_link()
            for name, uuid in CHANNELS.items():
                await self._client.start_notify(uuid, self._handler(name))
        except (BleakError, OSError, asyncio.TimeoutError) as e:
            raise WatchDisconnected(f"could not connect to {self.address}: {e}") from e
        key = self._key
        if key is None:  # by the name or address asked for, else by the address it resolved to
            key = auth.find_key(str(self.address)) or auth.find_key(str(self._client.address))
        if key:
            try:
                await self.authenticate(key)
            except BaseException:
                await self.disconnect()  # a refused key must not leave the link open
                raise
        await self._sync_log()  # after authenticating: the log commands need it
        self._ready = True
        early, self._early = self._early, []
        for channel, packet in early:
            self._dispatch(channel, packet)

    async def authenticate(self, key: bytes) -> None:
        """Prove to the watch that this host knows its key (HMAC challenge-response).

        A lost or late notification can leave the host answering a challenge the watch has
        already replaced: a refusal or a silence is tried again with a fresh challenge, up to
        `_AUTH_TRIES` times. Raises CommandRefused (reason E_AUTH_FAILED) when the key is not
        the watch's.
        """
        for attempt in range(_AUTH_TRIES):
            try:
                challenge = await self.command(P.CMD_AUTH_BEGIN)
                assert isinstance(challenge, AuthChallenge)
                host_nonce = os.urandom(P.NONCE_SIZE)
                await self.command(P.CMD_AUTH_PROOF, data=host_nonce + auth.proof(key, challenge.nonce, host_nonce))
            except CommandRefused as e:
                if e.reason != P.E_AUTH_FAILED or attempt == _AUTH_TRIES - 1:
                    raise
            except CommandTimeout:
                if attempt == _AUTH_TRIES - 1:
                    raise
            else:
                self.authenticated = True
                return

    async def _open_link(self) -> None:
        try:
            await self._client.connect()
        except BleakDeviceNotFoundError:
            # BlueZ forgets devices it has not seen for a while: find it again by scanning.
            from .scan import find_watch

            device = await find_watch(self.address, timeout=self.timeout, backend=self._backend)
            self._client = self._bleak_client(device)
            await self._client.connect()

    async def _sync_log(self) -> None:
        for _ in range(3):  # a lost notification (BlueZ drops some) costs a retry
            try:
                await self.command(P.CMD_LOG_INFO)
            except CommandRefused:
                self.log = None  # firmware without a flash log: records carry no lsn
                return
            except CommandTimeout:
                continue
            if self.log is not None:
                self._lsn_ref = self.log.next_lsn
                return
        raise WatchDisconnected(f"{self.address} did not say where its flash log stands")

    async def disconnect(self) -> None:
        if self._client.is_connected:
            try:
                await self._client.disconnect()
            except (BleakError, OSError):
                pass

    @property
    def ended_by_watch(self) -> bool:
        """The watch closed the link on purpose (it powers off, HCI reasons 0x13/0x15), as
        opposed to a link that broke; known where the backend reports reasons (the virtual one does)."""
        reason = getattr(getattr(self._client, "_backend", None), "disconnect_reason", None)
        return self.disconnected.is_set() and reason in _WATCH_HUNG_UP

    def _on_disconnect(self, _client: Any = None) -> None:
        self.disconnected.set()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(WatchDisconnected(f"{self.address} disconnected"))

    def _handler(self, channel: str) -> Callable[[Any, bytearray], None]:
        tracker = self.sequences[channel]
        joiner = segments.Reassembler(4096)  # watches on small-MTU stacks send packets in segments

        def handle(_char: Any, data: bytearray) -> None:
            if data and data[0] & segments.SEGMENT:
                n = joiner.feed(data)
                if n < 0:
                    self.bad_packets += 1
                    if self._on_bad:
                        self._on_bad(channel, bytes(data), ProtocolError("a segment out of order or too long"))
                if n <= 0:
                    return
                data = bytearray(joiner.buf[:n])
            try:
                packet = decode(data)
            except ProtocolError as e:
                self.bad_packets += 1
                if self._on_bad:
                    self._on_bad(channel, bytes(data), e)
                return
            if tracker.see(packet.seq) < 0:
                return  # a duplicate notification
            if isinstance(packet, LogInfo):
                self.log = packet
            if isinstance(packet, (Result, Pong, AuthChallenge)):
                if isinstance(packet, Pong):
                    key = (P.CMD_PING, packet.ping_seq)
                elif isinstance(packet, AuthChallenge):
                    key = (P.CMD_AUTH_BEGIN, packet.begin_seq)
                else:
                    key = (packet.command, packet.command_seq)
                fut = self._pending.pop(key, None)
                if fut and not fut.done():
                    fut.set_result(packet)
                    return
            if self._ready:
                self._dispatch(channel, packet)
            else:
                self._early.append((channel, packet))

        return handle

    def _dispatch(self, channel: str, packet: Packet) -> None:
        if isinstance(packet, Backfill):
            if self._on_record:
                self._on_record(LogRecord(packet.lsn, packet.boot, packet.record, True))
            return
        if channel == "stream" and self._on_record:
            lsn = None
            if self._lsn_ref is not None:
                lsn = unwrap(packet.seq, self._lsn_ref)
                self._lsn_ref = max(self._lsn_ref, lsn)
            self._on_record(LogRecord(lsn, self.log.boot if self.log else 0, packet))
        if self._on_packet:
            self._on_packet(channel, packet)

    # Commands ---------------------------------------------------------------------------

    async def _write(self, uuid: str, data: bytes) -> None:
        if self.disconnected.is_set():
            raise WatchDisconnected(f"{self.address} is not connected")
        room = self.mtu - 3
        parts = segments.count(len(data), room)
        try:
            if not parts:
                await self._client.write_gatt_char(uuid, data, response=True)
            for i in range(parts):  # a link too small for the packet: in segments (docs/protocol.md)
                segment = bytearray(room)
                n = segments.write_segment(segment, data, len(data), room, i)
                await self._client.write_gatt_char(uuid, bytes(segment[:n]), response=True)
        except (BleakError, OSError, EOFError) as e:
            raise WatchDisconnected(f"{self.address}: write failed: {e}") from e

    async def command(self, ptype: int, *fields: int, data: bytes = b"") -> Packet:
        """Send a command and wait for its RESULT (PONG for PING, AUTH_CHALLENGE for
        AUTH_BEGIN); a failed RESULT raises CommandRefused."""
        self._seq = (self._seq + 1) & 0xFFFF
        seq = self._seq
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[(ptype, seq)] = fut
        try:
            await self._write(P.CONTROL_UUID, encode_command(ptype, seq, *fields, data=data))
            reply = await asyncio.wait_for(fut, self.timeout)
        except asyncio.TimeoutError as e:
            raise CommandTimeout(f"{self.address} did not answer command 0x{ptype:02x} in {self.timeout} s") from e
        finally:
            self._pending.pop((ptype, seq), None)
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()  # a link lost during the write failed the reply too: retrieved here
        if isinstance(reply, Result) and reply.status != P.OK:
            raise CommandRefused(f"{self.address} refused command 0x{ptype:02x}: {reply.reason}", reply.status)
        return reply

    async def _value(self, ptype: int, *fields: int) -> int:
        """The value of the RESULT that answers a command (every command but PING and AUTH_BEGIN)."""
        result = await self.command(ptype, *fields)
        assert isinstance(result, Result)  # a reply is matched to its command by its type (`_handler`)
        return result.value

    async def start(self, mask: int = 0xFF) -> int:
        """Start streams (mask bit `stream - 1`); returns the mask now streaming."""
        return await self._value(P.CMD_START, mask)

    async def stop(self, mask: int = 0xFF) -> int:
        return await self._value(P.CMD_STOP, mask)

    async def ping(self) -> tuple[float, float, int]:
        """(host time sent, host time received, watch tick) for clock synchronisation."""
        sent = time.monotonic()
        pong = await self.command(P.CMD_PING, int(sent * 1000) & 0xFFFFFFFF)
        return sent, time.monotonic(), pong.tick

    async def set_rate(self, stream: int, rate_hz: int) -> None:
        """Change a sensor's sample rate (the IMU's streams share one); the watch answers
        with a new STREAM_INFO. Refused with E_BAD_RATE for a rate the part cannot run."""
        await self.command(P.CMD_SET_RATE, stream, rate_hz)

    async def log_info(self) -> LogInfo:
        """Where the watch's flash log stands now."""
        await self.command(P.CMD_LOG_INFO)
        assert self.log is not None  # LOG_INFO precedes its RESULT
        return self.log

    async def backfill(self, first_lsn: int, end_lsn: int) -> int:
        """Ask for the logged records [first_lsn, end_lsn) again; returns how many the watch still
        holds. They arrive through `on_record`, then a LOG_INFO marks the end."""
        return await self._value(P.CMD_BACKFILL, first_lsn, end_lsn)

    async def ack(self, lsn: int) -> int:
        """Tell the watch every record before `lsn` is stored; returns its acknowledged mark."""
        return await self._value(P.CMD_ACK, lsn)

    async def mark(self, code: int, arg: int = 0) -> None:
        await self.command(P.CMD_MARK, code, arg)

    async def status(self) -> Status:
        """Ask for STATUS; it arrives on the event channel, so wait for it there."""
        got: asyncio.Future = asyncio.get_running_loop().create_future()
        previous = self._on_packet

        def catch(channel: str, packet: Packet) -> None:
            if isinstance(packet, Status) and not got.done():
                got.set_result(packet)
            if previous:
                previous(channel, packet)

        self._on_packet = catch
        try:
            await self.command(P.CMD_STATUS)
            return await asyncio.wait_for(got, self.timeout)
        finally:
            self._on_packet = previous

    async def upload_model(self, blob: bytes, progress: Callable[[int, int], None] | None = None, *,
                           resume: bool = True, stop_after: int | None = None) -> int:
        """Upload a signed model blob; returns the model id the watch now runs.

        Each chunk carries its CRC32. With `resume`, an upload of the same blob that a
        disconnect interrupted continues from the bytes the watch already holds. The watch
        writes the blob into its inactive model slot and switches to it only once it checked
        it (docs/model-blob.md). `stop_after` (bytes) stops before the commit, for tests of
        interrupted uploads, and returns 0.

        Raises ModelBlobError with the watch's reason code when it refuses the blob; the
        watch then keeps its previous model.
        """
        room = min(self.mtu, 247) - 3
        if room < 64:  # a small-MTU link carries packets in segments: chunks as large as a large MTU's
            room = 244
        chunk = room - P.HEADER_SIZE - P.CMD_MODEL_CHUNK_CRC_SIZE
        crc = zlib.crc32(blob)
        try:
            offset = await self._upload_position(len(blob), crc) if resume else None
            if offset is None:
                await self.command(P.CMD_MODEL_BEGIN, len(blob), crc)
                offset = 0
            stalled = 0
            while offset < len(blob):
                if stop_after is not None and offset >= stop_after:
                    return 0
                # A window of chunks, then MODEL_RESUME as a barrier: its answer comes after the
                # watch handled every chunk before it (its queue of host writes is small and
                # drops what does not fit), and says where to go on from.
                sent = offset
                for _ in range(_UPLOAD_WINDOW):
                    if sent >= len(blob):
                        break
                    data = blob[sent:sent + chunk]
                    self._seq = (self._seq + 1) & 0xFFFF
                    await self._write(P.UPLOAD_UUID, encode_command(P.CMD_MODEL_CHUNK_CRC, self._seq, sent,
                                                                     zlib.crc32(data), data=data))
                    sent += len(data)
                held = await self._upload_position(len(blob), crc)
                if held is None:
                    raise WearsError(f"{self.address} dropped the upload")
                stalled = 0 if held > offset else stalled + 1
                if stalled > 5:
                    raise WearsError(f"{self.address} stopped taking model chunks at byte {held}")
                offset = held
                if progress:
                    progress(offset, len(blob))
            model_id = await self._value(P.CMD_MODEL_COMMIT)
        except CommandRefused as e:
            raise ModelBlobError(f"the watch refused the model ({P.REASONS.get(e.reason, e.reason)}); "
                                 "it keeps its previous model", e.reason) from e
        return model_id

    async def _upload_position(self, size: int, crc: int) -> int | None:
        """Bytes of this blob's upload the watch holds, or None when it has no such upload."""
        try:
            return await self._value(P.CMD_MODEL_RESUME, size, crc)
        except CommandRefused as e:
            if e.reason == P.E_NO_UPLOAD:
                return None
            raise

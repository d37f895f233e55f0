"""Decode the watch's packets and encode host commands (docs/protocol.md).

The layouts and constants come from the firmware's `watch.protocol`, never from a copy.

Example:
    >>> packet = decode(bytes.fromhex("01050600e8030000040005000000"))
    >>> packet.code, packet.arg
    (4, 5)
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from watch import protocol as P

from .errors import ProtocolError

_HEADER = struct.Struct(P.HEADER)
_SAMPLE_DTYPES = {
    P.PPG: np.dtype([("ir", "<u4"), ("red", "<u4")]),
    P.ACC: np.dtype([("x", "<i2"), ("y", "<i2"), ("z", "<i2")]),
    P.GYRO: np.dtype([("x", "<i2"), ("y", "<i2"), ("z", "<i2")]),
}


@dataclass(frozen=True)
class Packet:
    """Fields every packet has."""

    type: int
    seq: int
    tick: int


@dataclass(frozen=True)
class Samples(Packet):
    stream: int
    first_index: int
    samples: np.ndarray = field(repr=False)  # structured array, one record per sample

    @property
    def count(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class HeartRate(Packet):
    bpm_x10: int
    quality: int
    beats: int
    index: int

    @property
    def bpm(self) -> float:
        return self.bpm_x10 / 10


@dataclass(frozen=True)
class Prediction(Packet):
    index: int
    model_id: int
    flags: int
    label: int
    proba: tuple[int, ...]


@dataclass(frozen=True)
class Status(Packet):
    battery: int
    flags: int
    reserved: int
    heap_free: int
    flash_free: int
    model_id: int
    overflow: int
    i2c_errors: int
    dropped: int
    imu_lost: int
    boots: int
    streams: int  # mask of streams that have a sensor (bit `id - 1`)
    auth_failures: int


@dataclass(frozen=True)
class Event(Packet):
    code: int
    arg: int


@dataclass(frozen=True)
class Result(Packet):
    command: int
    status: int
    command_seq: int
    value: int

    @property
    def reason(self) -> str:
        return P.REASONS.get(self.status, f"reason {self.status}")


@dataclass(frozen=True)
class Pong(Packet):
    ping_seq: int
    token: int


@dataclass(frozen=True)
class StreamInfo(Packet):
    stream: int
    channels: int
    rate_mhz: int
    unit: float
    tick0: int

    @property
    def rate_hz(self) -> float:
        return self.rate_mhz / 1000


@dataclass(frozen=True)
class AuthChallenge(Packet):
    begin_seq: int
    nonce: bytes


@dataclass(frozen=True)
class LogInfo(Packet):
    """The watch's flash log: records [first_lsn, next_lsn) are held, those below `acked`
    acknowledged; `overflow` records were evicted unacknowledged, `torn` segments skipped at boot."""

    boot: int
    first_lsn: int
    next_lsn: int
    acked: int
    overflow: int
    torn: int


@dataclass(frozen=True)
class Backfill(Packet):
    """A stream packet re-sent from the flash log: its lsn, the boot that made it, the packet."""

    lsn: int
    boot: int
    record: Packet


_FIXED = {
    P.HEART_RATE: (HeartRate, struct.Struct(P.HEART_RATE_BODY)),
    P.STATUS: (Status, struct.Struct(P.STATUS_BODY)),
    P.EVENT: (Event, struct.Struct(P.EVENT_BODY)),
    P.RESULT: (Result, struct.Struct(P.RESULT_BODY)),
    P.PONG: (Pong, struct.Struct(P.PONG_BODY)),
    P.STREAM_INFO: (StreamInfo, struct.Struct(P.STREAM_INFO_BODY)),
    P.LOG_INFO: (LogInfo, struct.Struct(P.LOG_INFO_BODY)),
}
_BACKFILL_BODY = struct.Struct(P.BACKFILL_BODY)
_LOGGED = (P.SAMPLES, P.STREAM_INFO)  # the packet types the flash log keeps
_SAMPLES_BODY = struct.Struct(P.SAMPLES_BODY)
_PREDICTION_BODY = struct.Struct(P.PREDICTION_BODY)


def decode(data: bytes | bytearray) -> Packet:
    """Decode one packet from the watch. Raises ProtocolError, saying why, on any bad packet."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise ProtocolError(f"packet of {len(data)} bytes is shorter than the {_HEADER.size}-byte header")
    version, ptype, seq, tick = _HEADER.unpack_from(data)
    if version != P.VERSION:
        raise ProtocolError(f"protocol version {version}, expected {P.VERSION}")
    body = data[_HEADER.size:]
    if ptype == P.SAMPLES:
        return _decode_samples(body, ptype, seq, tick)
    if ptype == P.PREDICTION:
        if len(body) < _PREDICTION_BODY.size:
            raise ProtocolError(f"PREDICTION body of {len(body)} bytes is truncated")
        index, model_id, flags, label, n = _PREDICTION_BODY.unpack_from(body)
        proba = body[_PREDICTION_BODY.size:]
        if len(proba) != n or n == 0 or label >= n:
            raise ProtocolError(f"PREDICTION with {n} classes, label {label}, carries {len(proba)} probabilities")
        return Prediction(ptype, seq, tick, index, model_id, flags, label, tuple(proba))
    if ptype == P.AUTH_CHALLENGE:
        if len(body) != 2 + P.NONCE_SIZE:
            raise ProtocolError(f"AUTH_CHALLENGE body of {len(body)} bytes, expected {2 + P.NONCE_SIZE}")
        return AuthChallenge(ptype, seq, tick, struct.unpack_from(P.AUTH_CHALLENGE_BODY, body)[0], bytes(body[2:]))
    if ptype == P.BACKFILL:
        if len(body) < _BACKFILL_BODY.size:
            raise ProtocolError(f"BACKFILL body of {len(body)} bytes is truncated")
        lsn, boot = _BACKFILL_BODY.unpack_from(body)
        inner = body[_BACKFILL_BODY.size:]
        if len(inner) < _HEADER.size or inner[1] not in _LOGGED:
            raise ProtocolError(f"BACKFILL of lsn {lsn} does not carry a stream packet")
        return Backfill(ptype, seq, tick, lsn, boot, decode(inner))
    if ptype in _FIXED:
        cls, layout = _FIXED[ptype]
        if len(body) != layout.size:
            raise ProtocolError(f"{cls.__name__} body of {len(body)} bytes, expected {layout.size}")
        return cls(ptype, seq, tick, *layout.unpack(body))
    raise ProtocolError(f"unknown packet type 0x{ptype:02x}")


def _decode_samples(body: bytes, ptype: int, seq: int, tick: int) -> Samples:
    if len(body) < _SAMPLES_BODY.size:
        raise ProtocolError(f"SAMPLES body of {len(body)} bytes is truncated")
    stream, count, first_index = _SAMPLES_BODY.unpack_from(body)
    dtype = _SAMPLE_DTYPES.get(stream)
    if dtype is None:
        raise ProtocolError(f"SAMPLES for unknown stream {stream}")
    payload = body[_SAMPLES_BODY.size:]
    if count == 0 or len(payload) != count * dtype.itemsize:
        raise ProtocolError(f"SAMPLES says {count} samples but carries {len(payload)} bytes "
                            f"({dtype.itemsize} per sample)")
    return Samples(ptype, seq, tick, stream, first_index, np.frombuffer(payload, dtype=dtype).copy())


def encode_command(ptype: int, seq: int, *fields: int, data: bytes = b"", tick: int = 0) -> bytes:
    """One host command: START/STOP(mask), PING(token), STATUS(), MODEL_BEGIN(size, crc),
    MODEL_COMMIT(), MARK(code, arg), MODEL_CHUNK(offset, data=...), SET_RATE(stream, hz),
    AUTH_BEGIN(), AUTH_PROOF(data=host nonce + proof), MODEL_RESUME(size, crc),
    MODEL_CHUNK_CRC(offset, crc, data=...)."""
    layouts = {
        P.CMD_START: P.CMD_MASK_BODY, P.CMD_STOP: P.CMD_MASK_BODY, P.CMD_PING: P.CMD_PING_BODY,
        P.CMD_STATUS: "<", P.CMD_MODEL_BEGIN: P.CMD_MODEL_BEGIN_BODY, P.CMD_MODEL_COMMIT: "<",
        P.CMD_MARK: P.CMD_MARK_BODY, P.CMD_MODEL_CHUNK: P.CMD_MODEL_CHUNK_BODY,
        P.CMD_SET_RATE: P.CMD_SET_RATE_BODY, P.CMD_AUTH_BEGIN: "<", P.CMD_AUTH_PROOF: "<",
        P.CMD_MODEL_RESUME: P.CMD_MODEL_RESUME_BODY, P.CMD_MODEL_CHUNK_CRC: P.CMD_MODEL_CHUNK_CRC_BODY,
        P.CMD_LOG_INFO: "<", P.CMD_BACKFILL: P.CMD_BACKFILL_BODY, P.CMD_ACK: P.CMD_ACK_BODY,
    }
    if ptype not in layouts:
        raise ValueError(f"not a host command: 0x{ptype:02x}")
    return (_HEADER.pack(P.VERSION, ptype, seq & 0xFFFF, tick & 0xFFFFFFFF)
            + struct.pack(layouts[ptype], *fields) + bytes(data))


def unwrap(seq: int, reference: int) -> int:
    """The full number whose low 16 bits are `seq`, nearest to `reference` (an lsn)."""
    return reference + (((seq - reference) + 0x8000) & 0xFFFF) - 0x8000


class SequenceTracker:
    """Counts packets lost between sequence numbers on one characteristic, and duplicates.

    A packet that arrives late (reordered) fills the gap it left instead of counting as a
    duplicate; only a sequence number seen within the last `window` packets is one.
    """

    def __init__(self, window: int = 4096) -> None:
        self.last: int | None = None  # the highest sequence number seen, unwrapped
        self.lost = 0
        self.duplicates = 0
        self.reordered = 0
        self._window = window
        self._seen: set[int] = set()
        self._order: deque[int] = deque()

    def see(self, seq: int) -> int:
        """Record `seq`; returns how many packets are missing just before it (-1: a duplicate)."""
        if self.last is None:
            self.last = seq
            self._remember(seq)
            return 0
        full = unwrap(seq, self.last)
        if full in self._seen:
            self.duplicates += 1
            return -1
        self._remember(full)
        if full < self.last:
            self.reordered += 1
            self.lost = max(0, self.lost - 1)
            return 0
        gap = full - self.last - 1
        self.last = full
        self.lost += gap
        return gap

    def _remember(self, full: int) -> None:
        self._seen.add(full)
        self._order.append(full)
        if len(self._order) > self._window:
            self._seen.discard(self._order.popleft())

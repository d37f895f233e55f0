"""WEARS wire protocol, version 1: the one definition both the watch and the host use.

Specified in docs/protocol.md. Binary, little-endian. Every packet starts with the 8-byte
header `<BBHI`: protocol version, packet type, sequence number, device tick (ms).
The packers write into caller-owned buffers so the watch allocates nothing per packet.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host imports this module too
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import struct

VERSION = const(1)

# GATT layout: the WEARS service next to the standard Heart Rate, Battery and Device
# Information services. The radios read them once, at start-up, from UUIDS (one entry in the
# module's dictionary instead of 13); the host by name.
_SERVICE_UUID = const("57450001-7a3c-4b8e-9d2f-3e1c0a5b6d70")
_STREAM_UUID = const("57450002-7a3c-4b8e-9d2f-3e1c0a5b6d70")  # notify: _SAMPLES, STREAM_INFO
_PREDICTION_UUID = const("57450003-7a3c-4b8e-9d2f-3e1c0a5b6d70")  # notify: _PREDICTION, _HEART_RATE
_CONTROL_UUID = const("57450004-7a3c-4b8e-9d2f-3e1c0a5b6d70")  # write commands; notify replies
_EVENT_UUID = const("57450005-7a3c-4b8e-9d2f-3e1c0a5b6d70")  # notify: EVENT, STATUS
_UPLOAD_UUID = const("57450006-7a3c-4b8e-9d2f-3e1c0a5b6d70")  # write: MODEL_CHUNK
_HR_SERVICE_UUID = const(0x180D)
_HR_MEASUREMENT_UUID = const(0x2A37)
_BATTERY_SERVICE_UUID = const(0x180F)
_BATTERY_LEVEL_UUID = const(0x2A19)
_DEVICE_INFO_UUID = const(0x180A)
_MODEL_NUMBER_UUID = const(0x2A24)
_FIRMWARE_REVISION_UUID = const(0x2A26)

UUIDS = (_SERVICE_UUID, _STREAM_UUID, _PREDICTION_UUID, _CONTROL_UUID, _EVENT_UUID, _UPLOAD_UUID, _HR_SERVICE_UUID,
         _HR_MEASUREMENT_UUID, _BATTERY_SERVICE_UUID, _BATTERY_LEVEL_UUID, _DEVICE_INFO_UUID, _MODEL_NUMBER_UUID,
         _FIRMWARE_REVISION_UUID)

_HEADER = const("<BBHI")
HEADER_SIZE = const(8)

# Watch -> host packet types.
_SAMPLES = const(0x01)
_HEART_RATE = const(0x02)
_PREDICTION = const(0x03)
STATUS = const(0x04)
EVENT = const(0x05)
RESULT = const(0x06)
PONG = const(0x07)
STREAM_INFO = const(0x08)
LOG_INFO = const(0x0C)  # the flash log's state (issue 4 range 0x0C-0x0E)
BACKFILL = const(0x0D)  # one logged stream packet, re-sent from the flash log

# Host -> watch commands.
CMD_START = const(0x81)
CMD_STOP = const(0x82)
CMD_PING = const(0x83)
CMD_STATUS = const(0x84)
CMD_MODEL_BEGIN = const(0x85)
CMD_MODEL_COMMIT = const(0x86)
CMD_MARK = const(0x87)
CMD_MODEL_CHUNK = const(0x88)
# Model upload, resumable (issue 7's range 0x95-0x99).
CMD_MODEL_RESUME = const(0x95)  # size, CRC32: continue that upload; RESULT.value = bytes received
CMD_MODEL_CHUNK_CRC = const(0x96)  # offset, CRC32 of the data, then the data (UPLOAD characteristic)
CMD_LOG_INFO = const(0x90)  # answered by LOG_INFO and RESULT
CMD_BACKFILL = const(0x91)  # u32 first lsn, u32 end lsn (exclusive): re-send those records
CMD_ACK = const(0x92)  # u32 lsn: every record before it is stored on the host

# Streams: ids, sample layouts and the bit each one has in a START/STOP mask.
PPG = const(1)
ACC = const(2)
GYRO = const(3)
SAMPLE_FORMATS = {PPG: "<II", ACC: "<hhh", GYRO: "<hhh"}  # PPG: ir, red; IMU: x, y, z
SAMPLE_SIZES = {PPG: 8, ACC: 6, GYRO: 6}


def stream_bit(stream):
    return 1 << (stream - 1)


# Bodies after the header.
_SAMPLES_BODY = const("<BBI")  # stream, count, index of the first sample
SAMPLES_BODY_SIZE = const(6)
_HEART_RATE_BODY = const("<HBBI")  # bpm x10, quality 0..100, beats in window, PPG index of window end
_HEART_RATE_BODY_SIZE = const(8)
_PREDICTION_BODY_SIZE = const(11)
_PREDICTION_BODY = const("<IIBBB")  # window end (PPG index), model id, flags, label, n classes; then n x u8
STATUS_BODY = "<BBHIIIIIIIHBB"  # battery %, flags, reserved, heap free, flash free, model id,
#   ppg samples lost to FIFO overflow, I2C errors, packets dropped, IMU samples lost,
#   boots since the last stable run, streams that have a sensor (mask), auth failures (saturating)
EVENT_BODY = "<HI"  # code, argument
RESULT_BODY = "<BBHI"  # command, status (a reason code), command seq, value
PONG_BODY = "<HI"  # ping seq, host token (echoed)
STREAM_INFO_BODY = "<BBIfI"  # stream, channels, rate in mHz, unit per LSB, tick of index 0

CMD_MASK_BODY = "<B"  # START, STOP
CMD_PING_BODY = "<I"  # host token
CMD_MODEL_BEGIN_BODY = "<II"  # size, CRC32 of the whole blob
CMD_MARK_BODY = "<HI"  # code, argument
CMD_MODEL_CHUNK_BODY = "<I"  # offset; then the data
CMD_MODEL_RESUME_BODY = "<II"  # size, CRC32 of the whole blob (as MODEL_BEGIN's)
CMD_MODEL_CHUNK_CRC_BODY = "<II"  # offset, CRC32 of this chunk's data; then the data
CMD_MODEL_CHUNK_CRC_SIZE = const(8)
CMD_BACKFILL_BODY = "<II"  # first lsn, end lsn (exclusive)
CMD_ACK_BODY = "<I"  # every lsn below this one is stored on the host

# The flash log (docs/protocol.md, "Store and forward"). Every packet on the stream
# characteristic is a log record; its header's seq is the low 16 bits of its log sequence
# number (lsn), which never goes back, not even across reboots.
LOG_INFO_BODY = "<IIIIII"  # boot, oldest lsn held, next lsn, acked lsn, records lost unacked, torn segments
BACKFILL_BODY = "<IH"  # lsn, boot of the record; then the record (the packet as first sent)
BACKFILL_WRAP = const(14)  # header + BACKFILL_BODY: stream packets leave this much room for it

# Prediction flags.
FLAG_LOW_QUALITY = const(0x01)
# Status flags.
STATUS_MODEL_LOADED = const(0x01)
STATUS_STREAMING = const(0x02)
STATUS_SAFE_MODE = const(0x04)  # repeated crashes: radio and logging only
STATUS_AUTHENTICATED = const(0x08)  # this connection passed the challenge-response

# Reason codes, carried in RESULT.status and in model EVENTs.
OK = const(0)
_E_TRUNCATED = const(1)
_E_BAD_MAGIC = const(2)
_E_BAD_VERSION = const(3)
_E_BAD_CRC = const(4)
_E_BAD_SIGNATURE = const(5)
_E_UNSUPPORTED_KIND = const(6)
_E_FEATURE_MISMATCH = const(7)
_E_TOO_LARGE = const(8)
E_NO_UPLOAD = const(9)
_E_BAD_OFFSET = const(10)
E_UNKNOWN_COMMAND = const(11)
E_BAD_LENGTH = const(12)
_E_CHUNK_CRC = const(25)  # a chunk's data does not match its CRC32: nothing written, resend it
E_LOG_RANGE = const(20)  # a backfill range that ends before it starts
_E_NO_LOG = const(21)  # this watch keeps no flash log

# Event codes.
EV_BOOT = const(1)
EV_SENSOR_MISSING = const(2)  # argument: stream id
EV_MODEL_LOADED = const(3)  # argument: model id
EV_MODEL_REJECTED = const(4)  # argument: reason code
EV_MARK = const(5)  # argument: the host's marker argument
_EV_FIFO_OVERFLOW = const(6)  # argument: stream id
EV_MODEL_ROLLBACK = const(20)  # argument: reason code (0: the new model's boot was interrupted)

# Issue 3 (boards, radio, auth): commands 0x89-0x8F, packet types 0x09-0x0B, reasons 13-19, events 7-14.
AUTH_CHALLENGE = const(0x09)  # body: u16 seq of the AUTH_BEGIN it answers, then the 16-byte watch nonce
AUTH_CHALLENGE_BODY = "<H"
CMD_SET_RATE = const(0x89)
CMD_SET_RATE_BODY = "<BH"  # stream, rate in Hz (the IMU's streams share one rate)
CMD_AUTH_BEGIN = const(0x8A)  # no body: answered by AUTH_CHALLENGE on the control characteristic
CMD_AUTH_PROOF = const(0x8B)  # body: 16-byte host nonce, 16-byte proof
NONCE_SIZE = const(16)
PROOF_SIZE = const(16)
AUTH_LABEL = b"WEARS-AUTH-1"  # proof = HMAC-SHA256(key, label + watch nonce + host nonce)[:16]
E_NOT_AUTHENTICATED = const(13)
E_AUTH_FAILED = const(14)
E_BAD_RATE = const(15)
E_NO_SENSOR = const(16)
E_SAFE_MODE = const(17)
E_WINDOW_UNSUPPORTED = const(18)  # the model's window settings do not fit this watch (heap or range)
EV_SAFE_MODE = const(7)  # argument: boots without a stable run
EV_AUTH_FAILED = const(8)  # argument: failures since boot
EV_RATE_CHANGED = const(9)  # argument: stream << 16 | rate in Hz
EV_CRASHED = const(10)  # argument: boots without a stable run (the previous boot ended in a crash)
# Commands anyone may send; every other command (and every model upload write) needs an
# authenticated connection.
OPEN_COMMANDS = (CMD_PING, CMD_STATUS, CMD_AUTH_BEGIN, CMD_AUTH_PROOF)


def auth_message(buf, watch_nonce, host_nonce):
    """The bytes the proof signs, written into `buf` (len(AUTH_LABEL) + 32 bytes)."""
    n = len(AUTH_LABEL)
    buf[0:n] = AUTH_LABEL
    buf[n:n + NONCE_SIZE] = watch_nonce
    buf[n + NONCE_SIZE:n + 2 * NONCE_SIZE] = host_nonce
    return buf
EV_LOG_OVERFLOW = const(15)  # argument: unacknowledged records evicted so far (the log was full)
EV_LOG_TORN = const(16)  # argument: torn segments skipped at boot


def pack_header(buf, ptype, seq, tick):
    struct.pack_into(_HEADER, buf, 0, VERSION, ptype, seq & 0xFFFF, tick & 0xFFFFFFFF)


def pack_samples_header(buf, seq, tick, stream, count, first_index):
    """Header of a _SAMPLES packet; the caller writes `count` samples at SAMPLES_BODY_SIZE+8."""
    pack_header(buf, _SAMPLES, seq, tick)
    struct.pack_into(_SAMPLES_BODY, buf, HEADER_SIZE, stream, count, first_index & 0xFFFFFFFF)
    return HEADER_SIZE + SAMPLES_BODY_SIZE + count * SAMPLE_SIZES[stream]


def pack_heart_rate(buf, seq, tick, bpm_x10, quality, beats, index):
    """A _HEART_RATE packet (per window: no star-call, nothing allocated); returns its length."""
    pack_header(buf, _HEART_RATE, seq, tick)
    struct.pack_into(_HEART_RATE_BODY, buf, HEADER_SIZE, bpm_x10, quality, beats, index)
    return HEADER_SIZE + _HEART_RATE_BODY_SIZE


def pack_prediction(buf, seq, tick, index, model_id, flags, label, n_classes):
    """A _PREDICTION packet's header and body; the caller writes n_classes probabilities after."""
    pack_header(buf, _PREDICTION, seq, tick)
    struct.pack_into(_PREDICTION_BODY, buf, HEADER_SIZE, index, model_id, flags, label, n_classes)
    return HEADER_SIZE + _PREDICTION_BODY_SIZE


def pack_body(buf, ptype, seq, tick, body_format, *fields):
    """Any fixed-layout packet; returns its length."""
    pack_header(buf, ptype, seq, tick)
    struct.pack_into(body_format, buf, HEADER_SIZE, *fields)
    return HEADER_SIZE + struct.calcsize(body_format)


def unpack_header(buf):
    """(version, type, seq, tick) of a packet; raises ValueError when it is too short."""
    if len(buf) < HEADER_SIZE:
        raise ValueError("packet shorter than its header")
    return struct.unpack_from(_HEADER, buf, 0)


# The host imports every name. On a watch the ones only the host reads stay `_` constants,
# folded into the code and kept out of the module's dictionary (an entry each, in RAM even
# when frozen), and the host's tables of names and texts are not made at all.
if __import__("sys").implementation.name != "micropython":  # (no `sys` entry either)
    HEADER = _HEADER
    SERVICE_UUID = _SERVICE_UUID
    STREAM_UUID = _STREAM_UUID
    PREDICTION_UUID = _PREDICTION_UUID
    CONTROL_UUID = _CONTROL_UUID
    EVENT_UUID = _EVENT_UUID
    UPLOAD_UUID = _UPLOAD_UUID
    HR_SERVICE_UUID = _HR_SERVICE_UUID
    HR_MEASUREMENT_UUID = _HR_MEASUREMENT_UUID
    BATTERY_SERVICE_UUID = _BATTERY_SERVICE_UUID
    BATTERY_LEVEL_UUID = _BATTERY_LEVEL_UUID
    DEVICE_INFO_UUID = _DEVICE_INFO_UUID
    MODEL_NUMBER_UUID = _MODEL_NUMBER_UUID
    FIRMWARE_REVISION_UUID = _FIRMWARE_REVISION_UUID
    CHANNELS = {PPG: ("ir", "red"), ACC: ("x", "y", "z"), GYRO: ("x", "y", "z")}
    SAMPLES = _SAMPLES
    HEART_RATE = _HEART_RATE
    PREDICTION = _PREDICTION
    SAMPLES_BODY = _SAMPLES_BODY
    HEART_RATE_BODY = _HEART_RATE_BODY
    HEART_RATE_BODY_SIZE = _HEART_RATE_BODY_SIZE
    PREDICTION_BODY_SIZE = _PREDICTION_BODY_SIZE
    PREDICTION_BODY = _PREDICTION_BODY
    E_TRUNCATED = _E_TRUNCATED
    E_BAD_MAGIC = _E_BAD_MAGIC
    E_BAD_VERSION = _E_BAD_VERSION
    E_BAD_CRC = _E_BAD_CRC
    E_BAD_SIGNATURE = _E_BAD_SIGNATURE
    E_UNSUPPORTED_KIND = _E_UNSUPPORTED_KIND
    E_FEATURE_MISMATCH = _E_FEATURE_MISMATCH
    E_TOO_LARGE = _E_TOO_LARGE
    E_BAD_OFFSET = _E_BAD_OFFSET
    E_CHUNK_CRC = _E_CHUNK_CRC
    E_NO_LOG = _E_NO_LOG
    EV_FIFO_OVERFLOW = _EV_FIFO_OVERFLOW
    STREAM_NAMES = {PPG: "ppg", ACC: "acc", GYRO: "gyro"}
    REASONS = {
        OK: "ok",
        _E_TRUNCATED: "truncated",
        _E_BAD_MAGIC: "bad magic",
        _E_BAD_VERSION: "unsupported version",
        _E_BAD_CRC: "CRC mismatch",
        _E_BAD_SIGNATURE: "bad signature",
        _E_UNSUPPORTED_KIND: "unsupported model kind",
        _E_FEATURE_MISMATCH: "feature set does not match this watch",
        _E_TOO_LARGE: "too large",
        E_NO_UPLOAD: "no upload in progress",
        _E_BAD_OFFSET: "chunk offset out of order",
        E_UNKNOWN_COMMAND: "unknown command",
        E_BAD_LENGTH: "bad packet length",
        _E_CHUNK_CRC: "chunk CRC mismatch",
        E_LOG_RANGE: "backfill range ends before it starts",
        _E_NO_LOG: "no flash log on this watch",
        E_NOT_AUTHENTICATED: "not authenticated: this command needs the watch key",
        E_AUTH_FAILED: "authentication failed (wrong watch key or stale challenge)",
        E_BAD_RATE: "rate not supported by this sensor",
        E_NO_SENSOR: "this watch has no sensor for that stream",
        E_SAFE_MODE: "the watch is in safe mode (repeated crashes): sensors and model are off",
        E_WINDOW_UNSUPPORTED: "the model's feature window does not fit this watch's heap",
    }

"""Fuzzing the packet decoder: packets generated to the layouts of docs/protocol.md and then
mutated (bytes flipped, cut, extended, fields set to edge values), fed through the client's
own receive path. Needs hypothesis (the `test` extra); used by the tests (short) and by
tools/bench/faults.py (at least 100 000 packets).

The invariant: every packet is either decoded or rejected with ProtocolError and counted in
`WatchClient.bad_packets`; nothing else escapes, and the link goes on.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from watch import protocol as P

# Valid bodies, one strategy per packet type the watch sends.
_u8, _u16, _u32 = (st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))


@st.composite
def _samples(draw):
    stream = draw(st.sampled_from(sorted(P.SAMPLE_SIZES)))
    count = draw(st.integers(1, 28))
    body = struct.pack(P.SAMPLES_BODY, stream, count, draw(_u32))
    return P.SAMPLES, body + draw(st.binary(min_size=count * P.SAMPLE_SIZES[stream],
                                            max_size=count * P.SAMPLE_SIZES[stream]))


@st.composite
def _fixed(draw):
    ptype, layout = draw(st.sampled_from([(P.HEART_RATE, P.HEART_RATE_BODY), (P.STATUS, P.STATUS_BODY),
                                          (P.EVENT, P.EVENT_BODY), (P.RESULT, P.RESULT_BODY),
                                          (P.PONG, P.PONG_BODY), (P.STREAM_INFO, P.STREAM_INFO_BODY),
                                          (P.LOG_INFO, P.LOG_INFO_BODY)]))
    return ptype, draw(st.binary(min_size=struct.calcsize(layout), max_size=struct.calcsize(layout)))


@st.composite
def _prediction(draw):
    n = draw(st.integers(1, 8))
    body = struct.pack(P.PREDICTION_BODY, draw(_u32), draw(_u32), draw(_u8), draw(st.integers(0, n - 1)), n)
    return P.PREDICTION, body + draw(st.binary(min_size=n, max_size=n))


def _header(ptype, seq, tick):
    return struct.pack(P.HEADER, P.VERSION, ptype, seq, tick)


@st.composite
def valid_packets(draw) -> bytes:
    """A well-formed watch packet of any type, BACKFILL wrapping included."""
    ptype, body = draw(st.one_of(_samples(), _fixed(), _prediction()))
    packet = _header(ptype, draw(_u16), draw(_u32)) + body
    if ptype == P.SAMPLES and draw(st.booleans()):
        packet = _header(P.BACKFILL, draw(_u16), draw(_u32)) + struct.pack(P.BACKFILL_BODY, draw(_u32),
                                                                          draw(_u16)) + packet
    return packet


@st.composite
def mutated_packets(draw) -> bytes:
    """A valid packet, then damaged: bytes flipped, cut short, extended, or a field set to an
    edge value (version, type, stream, count, class count)."""
    data = bytearray(draw(valid_packets()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 4))
        if kind == 0 and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif kind == 1:
            del data[draw(st.integers(0, len(data))):]
        elif kind == 2:
            data += draw(st.binary(min_size=1, max_size=16))
        elif kind == 3 and len(data) > 9:
            data[draw(st.sampled_from([0, 1, 8, 9]))] = draw(st.sampled_from([0, 1, 2, 3, 4, 0x0D, 0x7F, 0xFF]))
        elif kind == 4 and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


def packets() -> st.SearchStrategy[bytes]:
    """What the fuzzer feeds: valid, mutated and random packets."""
    return st.one_of(valid_packets(), mutated_packets(), mutated_packets(), st.binary(max_size=260))

"""The watch encodes exactly the golden vectors of docs/protocol.md."""

import struct
from golden import vectors
from wire import protocol as p

V = vectors()
BODIES = {
    p.HEART_RATE: (p.HEART_RATE_BODY, ("bpm_x10", "quality", "beats", "index")),
    p.STATUS: (p.STATUS_BODY, ("battery", "flags", "reserved", "heap_free", "flash_free", "model_id",
                               "overflow", "i2c_errors", "dropped", "imu_lost", "boots", "streams",
                               "auth_failures")),
    p.EVENT: (p.EVENT_BODY, ("code", "arg")),
    p.RESULT: (p.RESULT_BODY, ("command", "status", "command_seq", "value")),
    p.PONG: (p.PONG_BODY, ("ping_seq", "token")),
    p.CMD_START: (p.CMD_MASK_BODY, ("mask",)),
    p.CMD_PING: (p.CMD_PING_BODY, ("token",)),
    p.CMD_MODEL_BEGIN: (p.CMD_MODEL_BEGIN_BODY, ("size", "crc")),
    p.CMD_SET_RATE: (p.CMD_SET_RATE_BODY, ("stream", "rate_hz")),
    p.LOG_INFO: (p.LOG_INFO_BODY, ("boot", "first_lsn", "next_lsn", "acked", "overflow", "torn")),
    p.CMD_BACKFILL: (p.CMD_BACKFILL_BODY, ("first", "end")),
    p.CMD_ACK: (p.CMD_ACK_BODY, ("lsn",)),
}


def _check(name, buf, n):
    expected = V[name][0]
    assert bytes(buf[:n]) == expected, name + ": " + bytes(buf[:n]).hex() + " != " + expected.hex()


def test_fixed_layout_packets_match_golden_vectors():
    buf = bytearray(64)
    checked = 0
    for name in V:
        packet, f = V[name]
        if f["type"] not in BODIES:
            continue
        fmt, names = BODIES[f["type"]]
        fields = [f.get(k, 0) for k in names]
        n = p.pack_body(buf, f["type"], f["seq"], f["tick"], fmt, *fields)
        _check(name, buf, n)
        checked += 1
    assert checked == 12, checked


def test_backfill_wraps_the_logged_packet_unchanged():
    packet, f = V["backfill"]
    record = V["samples_acc"][0]
    buf = bytearray(64)
    n = p.pack_body(buf, p.BACKFILL, f["seq"], f["tick"], p.BACKFILL_BODY, f["lsn"], f["boot"])
    assert n == p.BACKFILL_WRAP
    buf[n:n + len(record)] = record
    _check("backfill", buf, n + len(record))


def test_sample_packets_match_golden_vectors():
    buf = bytearray(64)
    for name in ("samples_ppg", "samples_acc"):
        f = V[name][1]
        n = p.pack_samples_header(buf, f["seq"], f["tick"], f["stream"], len(f["samples"]), f["first_index"])
        size = p.SAMPLE_SIZES[f["stream"]]
        for i, sample in enumerate(f["samples"]):
            struct.pack_into(p.SAMPLE_FORMATS[f["stream"]], buf, p.HEADER_SIZE + p.SAMPLES_BODY_SIZE + i * size, *sample)
        _check(name, buf, n)


def test_prediction_matches_golden_vector():
    f = V["prediction"][1]
    buf = bytearray(64)
    n = p.pack_body(buf, p.PREDICTION, f["seq"], f["tick"], p.PREDICTION_BODY, f["index"], f["model_id"],
                    f["flags"], f["label"], len(f["proba"]))
    for i, q in enumerate(f["proba"]):
        buf[n + i] = q
    _check("prediction", buf, n + len(f["proba"]))


def test_stream_info_matches_golden_vector():
    f = V["stream_info"][1]
    buf = bytearray(64)
    n = p.pack_body(buf, p.STREAM_INFO, f["seq"], f["tick"], p.STREAM_INFO_BODY, f["stream"], f["channels"],
                    f["rate_mhz"], f["unit"], f["tick0"])
    _check("stream_info", buf, n)


def test_header_of_every_golden_vector_decodes():
    for name in V:
        packet, f = V[name]
        version, ptype, seq, tick = p.unpack_header(packet)
        assert version == p.VERSION and ptype == f["type"] and seq == f["seq"] and tick == f["tick"], name


def test_short_packet_is_rejected():
    try:
        p.unpack_header(b"\x01\x01\x00")
    except ValueError:
        return
    raise AssertionError("a 3-byte packet decoded")

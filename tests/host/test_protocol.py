"""The host decodes exactly the golden vectors the firmware encodes."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tests.firmware.golden import vectors
from watch import protocol as P
from wears.errors import ProtocolError
from wears.protocol import SequenceTracker, decode, encode_command


@pytest.fixture(autouse=True)
def _repo_env(monkeypatch):
    from tests.conftest import REPO
    monkeypatch.setenv("WEARS_REPO", str(REPO))


def test_every_watch_packet_decodes_to_its_documented_fields():
    checked = 0
    for name, (packet, fields) in vectors().items():
        if fields["type"] >= 0x80:
            continue
        decoded = decode(packet)
        for key, value in fields.items():
            got = getattr(decoded, key)
            if isinstance(got, np.ndarray):
                got = [list(r) for r in got.tolist()]
            if isinstance(got, bytes):
                got = got.hex()
            if isinstance(value, float):
                assert got == pytest.approx(value, rel=1e-6), (name, key)
            else:
                assert (list(got) if isinstance(got, tuple) else got) == value, (name, key)
        checked += 1
    assert checked == 12


def test_commands_encode_to_golden_vectors():
    v = vectors()
    assert encode_command(P.CMD_START, 1, 7) == v["cmd_start"][0]
    assert encode_command(P.CMD_PING, 33, 0x01020304) == v["cmd_ping"][0]
    assert encode_command(P.CMD_MODEL_BEGIN, 2, 4096, 0xCAFEBABE) == v["cmd_model_begin"][0]
    assert encode_command(P.CMD_MODEL_CHUNK, 3, 512, data=b"WMDL") == v["cmd_model_chunk"][0]
    assert encode_command(P.CMD_SET_RATE, 4, 1, 50) == v["cmd_set_rate"][0]
    assert encode_command(P.CMD_BACKFILL, 4, 200, 264) == v["cmd_backfill"][0]
    assert encode_command(P.CMD_ACK, 5, 264) == v["cmd_ack"][0]


def test_a_backfilled_record_decodes_to_the_packet_it_carries():
    packet, _ = vectors()["backfill"]
    record = decode(packet).record
    assert record.type == P.SAMPLES and record.stream == P.ACC and record.first_index == 500
    assert decode(packet[14:]) == record or record.samples.tolist() == decode(packet[14:]).samples.tolist()


def test_a_backfill_must_carry_a_stream_packet():
    packet, _ = vectors()["backfill"]
    with pytest.raises(ProtocolError, match="does not carry a stream packet"):
        decode(packet[:14] + vectors()["event"][0])


@pytest.mark.parametrize("packet, why", [
    (b"\x01\x01", "shorter"),
    (bytes.fromhex("02050600e8030000040005000000"), "version"),
    (bytes.fromhex("017f0600e8030000040005000000"), "unknown packet type"),
    (bytes.fromhex("01050600e80300000400050000"), "expected"),
    (bytes.fromhex("0101070040e201000102e8030000a086010080380100d2860100"), "carries"),
    (bytes.fromhex("0101070040e201000902e8030000a086010080380100d28601008a380100"), "unknown stream"),
    (bytes.fromhex("01030400400d0300b80b0000efbeadde00010340bf"), "classes"),
])
def test_malformed_packets_are_rejected_with_a_reason(packet, why):
    with pytest.raises(ProtocolError, match=why):
        decode(packet)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_never_crashes_on_random_bytes(data):
    try:
        decode(data)
    except ProtocolError:
        pass


def test_sequence_tracker_counts_gaps_wraparound_and_duplicates():
    t = SequenceTracker()
    assert [t.see(s) for s in (65533, 65534, 1, 1, 65534, 2)] == [0, 0, 2, -1, -1, 0]
    assert t.lost == 2 and t.duplicates == 2


def test_a_late_packet_fills_its_gap_instead_of_counting_as_a_duplicate():
    t = SequenceTracker()
    assert [t.see(s) for s in (10, 12, 11, 13, 11)] == [0, 1, 0, 0, -1]
    assert t.lost == 0 and t.reordered == 1 and t.duplicates == 1

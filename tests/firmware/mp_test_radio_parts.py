"""Segments, the challenge-response and the boot counter, inside MicroPython."""

import os

from mp_world import temp_path
from watch import boot
from watch import protocol as P
from watch.auth import Auth
from watch.hmac_sha256 import hmac_sha256
from watch.segments import Reassembler, count, write_segment

KEY = b"k" * 32


def split(packet, room):
    out = []
    seg = bytearray(room)
    for i in range(count(len(packet), room)):
        n = write_segment(seg, packet, len(packet), room, i)
        out.append(bytes(seg[:n]))
    return out


def test_a_packet_longer_than_the_link_goes_in_segments_and_comes_back_whole():
    packet = bytes(range(1, 245))  # starts with the version byte like every packet
    parts = split(packet, 20)
    assert len(parts) == 13 and all(len(p) <= 20 for p in parts)
    assert parts[0][0] == 0xC0 | 13 and parts[1][0] == 0x81 and parts[12][0] == 0x80 | 12
    join = Reassembler(244)
    got = [join.feed(p) for p in parts]
    assert got[:-1] == [0] * 12 and got[-1] == 244 and bytes(join.buf[:244]) == packet
    assert count(20, 20) == 0  # fits: sent whole


def test_a_segment_out_of_order_drops_the_packet_and_the_next_one_still_arrives():
    packet = bytes(range(1, 61))
    parts = split(packet, 20)
    join = Reassembler(244)
    assert join.feed(parts[0]) == 0
    assert join.feed(parts[2]) == -1 and join.dropped == 1  # the second segment was lost
    assert join.feed(parts[1]) == -1  # nothing to continue
    for p in parts[:-1]:
        assert join.feed(p) == 0
    assert join.feed(parts[-1]) == 60 and bytes(join.buf[:60]) == packet


def proof(nonce, host):
    msg = bytearray(len(P.AUTH_LABEL) + 2 * P.NONCE_SIZE)
    return hmac_sha256(KEY, P.auth_message(msg, nonce, host))[:P.PROOF_SIZE]


def test_the_right_proof_trusts_that_connection_only_until_it_drops():
    auth = Auth(KEY)
    host = b"h" * 16
    nonce = auth.challenge(1)
    assert not auth.trusted(1)
    assert auth.prove(1, host, proof(nonce, host)) and auth.trusted(1)
    assert not auth.trusted(2) and not auth.trusted(-1)  # a new connection starts untrusted


def test_a_wrong_or_replayed_proof_is_refused_and_counted():
    auth = Auth(KEY)
    host = b"h" * 16
    nonce = auth.challenge(1)
    good = proof(nonce, host)
    assert not auth.prove(1, host, bytes(16)) and auth.failures == 1
    assert not auth.prove(1, host, good) and auth.failures == 2  # one answer per challenge
    nonce = auth.challenge(1)
    assert not auth.prove(2, host, proof(nonce, host))  # answered on another connection
    assert not Auth(None).prove(1, host, good)  # no key provisioned: nobody gets in


def test_boots_without_a_stable_run_lead_to_safe_mode_and_a_stable_run_clears_them():
    path = temp_path("boots")
    try:
        counts = [boot.begin(path) for _ in range(5)]
        assert counts == [1, 2, 3, 4, 5]
        assert not boot.safe_mode(3) and boot.safe_mode(4)
        boot.stable(path)
        assert boot.begin(path) == 1
    finally:
        os.remove(path)

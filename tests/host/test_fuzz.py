"""The decoder under fuzzing, through the client's receive path: every packet is decoded or
counted and rejected; nothing else escapes (the long run is tools/bench/faults.py)."""

from hypothesis import HealthCheck, given, settings

from watch import segments
from wears.ble.virtual import VirtualBleakClient
from wears.client import WatchClient
from wears.errors import ProtocolError
from wears.fuzz import mutated_packets, packets, valid_packets
from wears.protocol import decode


def _client():
    bad = []
    client = WatchClient("AA:BB:CC:DD:EE:FF", backend=VirtualBleakClient, on_bad_packet=lambda *a: bad.append(a),
                         on_record=lambda r: None)
    client._ready = True
    return client, bad


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_packets())
def test_every_generated_valid_packet_decodes(data):
    decode(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets())
def test_every_fuzzed_packet_is_decoded_or_counted_and_rejected(data):
    client, bad = _client()
    try:
        decode(data)
        rejected = False
    except ProtocolError:
        rejected = True
    for channel in ("stream", "control"):
        client._handler(channel)(None, bytearray(data))
    if data and data[0] & segments.SEGMENT:  # a segment of a longer packet: joined, or counted when it cannot be
        assert client.bad_packets == len(bad) <= 2
    else:
        assert client.bad_packets == len(bad) == (2 if rejected else 0)


def test_mutation_rejects_most_packets_so_the_fuzzer_reaches_the_error_paths():
    rejected = []

    @settings(max_examples=400, database=None, deadline=None)
    @given(mutated_packets())
    def feed(data):
        try:
            decode(data)
        except ProtocolError:
            rejected.append(1)

    feed()
    assert len(rejected) > 100

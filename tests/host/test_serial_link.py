"""USB serial link on the host: golden frames, malformed input, and the bleak backend against a
fake watch on a pseudo-terminal (the virtual watch's recordings over serial are in
test_serial_end_to_end.py)."""

import asyncio
import os
import tty

import pytest
from bleak import BleakClient
from bleak.exc import BleakError
from hypothesis import given, settings, strategies as st

from tests.firmware.golden import vectors
from watch import protocol as P
from watch import radio_serial as L
from wears.client import WatchClient
from wears.errors import WatchDisconnected
from wears.protocol import Pong
from wears.serial_link import FrameDecoder, SerialBleakClient, encode_frame, serial_backend


@pytest.fixture(autouse=True)
def _repo_env(monkeypatch):
    from tests.conftest import REPO
    monkeypatch.setenv("WEARS_REPO", str(REPO))


def _golden():
    return vectors("golden-serial")


def test_golden_frames_encode_and_decode_both_ways():
    golden = _golden()
    assert len(golden) == 10
    for name, (frame, f) in golden.items():
        value = bytes.fromhex(f["value"])
        assert encode_frame(f["op"], f["channel"], value) == frame, name
        assert FrameDecoder().feed(frame) == [(f["op"], f["channel"], value)], name


def test_a_stream_of_frames_split_anywhere_decodes_to_the_same_frames():
    golden = _golden()
    stream = b"".join(frame for frame, _ in golden.values())
    expected = [(f["op"], f["channel"], bytes.fromhex(f["value"])) for _, f in golden.values()]
    for cut in (1, 7, 64):
        decoder = FrameDecoder()
        got = []
        for i in range(0, len(stream), cut):
            got += decoder.feed(stream[i:i + cut])
        assert got == expected and decoder.bad == 0


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=600), flips=st.lists(st.integers(0, 10_000), max_size=4))
def test_garbage_and_flipped_bits_are_counted_never_crash_and_resync_at_the_next_delimiter(garbage, flips):
    frames = b"".join(frame for frame, _ in _golden().values())
    damaged = bytearray(garbage + frames)
    for position in flips:
        damaged[position % len(damaged)] ^= 1 << (position % 8)
    decoder = FrameDecoder()
    got = decoder.feed(bytes(damaged) + b"\x00" + _golden()["write_rsp"][0])
    # Whatever came through passed its CRC; the clean frame after a delimiter always does.
    assert got[-1] == (L.OP_WRITE_RSP, L.CH_CONTROL, b"\x00")
    for op, channel, value in got:
        assert encode_frame(op, channel, value)  # a well-formed frame
    # Garbage may swallow the first frame; a flip costs the frame it hits and, when it hits a
    # delimiter, the next one too. Every other frame comes through.
    assert len(got) >= 1 + max(0, len(_golden()) - 1 - 2 * len(flips))


def test_a_value_longer_than_a_frame_carries_is_refused():
    with pytest.raises(ValueError):
        encode_frame(L.OP_NOTIFY, 1, bytes(L.MAX_VALUE + 1))


# A fake watch on a pseudo-terminal ------------------------------------------------------------

class FakeWatch:
    """The watch side of a pseudo-terminal, scripted by the test: answers CONNECT, lets the
    test send any bytes, and records the host's frames."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.decoder = FrameDecoder()
        self.received: list[tuple[int, int, bytes]] = []
        self.answer_connect = True
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self):
        for frame in self.decoder.feed(os.read(self.master, 4096)):
            self.received.append(frame)
            if frame[0] == L.OP_CONNECT and self.answer_connect:
                self.send(encode_frame(L.OP_CONNECTED, 0, b"\x01\xf4\x00FAKE"))
            elif frame[0] == L.OP_WRITE and frame[2][:1] == b"\x01":
                self.send(encode_frame(L.OP_WRITE_RSP, frame[1], b"\x00"))
                packet = frame[2][1:]
                if len(packet) >= 4 and packet[1] == P.CMD_LOG_INFO:  # a watch without a flash log
                    answer = bytearray(16)
                    n = P.pack_body(answer, P.RESULT, 0, 0, P.RESULT_BODY, P.CMD_LOG_INFO, P.E_UNKNOWN_COMMAND,
                                    int.from_bytes(packet[2:4], "little"), 0)
                    self.send(encode_frame(L.OP_NOTIFY, L.CH_CONTROL, bytes(answer[:n])))
                    continue
                self.on_write(frame[1], packet)

    def on_write(self, channel, data):
        pass

    def send(self, data):
        os.write(self.master, data)

    def close(self):
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


def test_backend_reports_the_watchs_name_packet_size_and_gatt_table():
    async def run():
        watch = FakeWatch()
        try:
            async with BleakClient(watch.port, backend=SerialBleakClient, timeout=5) as client:
                uuids = {c.uuid for s in client.services for c in s.characteristics}
                return client.name, client.mtu_size, uuids, watch.received[0]
        finally:
            watch.close()

    name, mtu, uuids, first = asyncio.run(run())
    assert name == "FAKE" and mtu == 247
    assert len(uuids) == len(L.CHANNELS) and "00002a19-0000-1000-8000-00805f9b34fb" in uuids
    assert first == (L.OP_CONNECT, 0, bytes((L.LINK_VERSION,)))


def test_watch_client_commands_work_and_malformed_frames_are_counted_not_fatal():
    pong = vectors()["pong"][0]  # answers ping seq 33

    async def run():
        watch = FakeWatch()

        def on_write(channel, data):
            # Garbage, a frame with a broken CRC and an unknown op before the real answer.
            bad = bytearray(encode_frame(L.OP_NOTIFY, L.CH_CONTROL, pong))
            bad[3] ^= 0xFF
            watch.send(b"\x13\x37garbage\x00" + bytes(bad) + encode_frame(0x7E, 1, b"?"))
            watch.send(encode_frame(L.OP_NOTIFY, L.CH_CONTROL, pong))

        watch.on_write = on_write
        try:
            client = WatchClient(watch.port, backend=SerialBleakClient, timeout=5)
            async with client:
                client._seq = 32  # the next command is ping seq 33, which the golden PONG answers
                reply = await client.command(0x83, 0x01020304)
                return reply, client._client._backend.bad_frames
        finally:
            watch.close()

    reply, bad = asyncio.run(run())
    assert isinstance(reply, Pong) and reply.ping_seq == 33
    assert bad == 3


def test_goodbye_from_the_watch_disconnects_with_its_reason():
    async def run():
        watch = FakeWatch()
        lost = asyncio.Event()
        try:
            client = BleakClient(watch.port, backend=SerialBleakClient, timeout=5,
                                 disconnected_callback=lambda _: lost.set())
            await client.connect()
            watch.send(_golden()["goodbye"][0])
            await asyncio.wait_for(lost.wait(), 5)
            return client.is_connected, client._backend.disconnect_reason
        finally:
            watch.close()

    connected, reason = asyncio.run(run())
    assert not connected and reason == L.HCI_POWER_OFF


def test_a_silent_port_or_a_missing_one_fails_with_a_clear_error():
    async def silent():
        watch = FakeWatch()
        watch.answer_connect = False
        try:
            async with WatchClient(watch.port, backend=SerialBleakClient, timeout=3):  # CONNECT every 0.5 s
                pass
        finally:
            watch.close()
            tries.append(len([f for f in watch.received if f[0] == L.OP_CONNECT]))

    tries: list[int] = []
    with pytest.raises(WatchDisconnected, match="no WEARS watch answered"):
        asyncio.run(silent())
    assert tries[0] >= 2  # CONNECT again while the watch may still be booting
    with pytest.raises(WatchDisconnected, match="cannot open serial port /nonexistent"):
        asyncio.run(WatchClient("/nonexistent/ttyACM9", backend=SerialBleakClient, timeout=1).connect())


def test_serial_backend_carries_another_line_rate():
    backend = serial_backend(115200)
    assert issubclass(backend, SerialBleakClient)
    assert backend("/dev/null")._args["baudrate"] == 115200
    assert serial_backend() is SerialBleakClient


def test_writes_longer_than_a_frame_are_refused_before_they_reach_the_port():
    async def run():
        watch = FakeWatch()
        try:
            async with BleakClient(watch.port, backend=SerialBleakClient, timeout=5) as client:
                with pytest.raises(BleakError, match="at most"):
                    await client.write_gatt_char("57450004-7a3c-4b8e-9d2f-3e1c0a5b6d70", bytes(600), response=True)
        finally:
            watch.close()

    asyncio.run(run())

"""The watch's serial link: golden frames, the connection, commands, and frames it must refuse."""

from golden import vectors
from watch import protocol as P
from watch import radio_serial as L

V = vectors("golden-serial")


class FakePort:
    """A port whose received bytes the test queues and whose sent bytes it reads back."""

    def __init__(self):
        self.rx = bytearray()
        self.tx = bytearray()

    def any(self):
        return len(self.rx)

    def readinto(self, buf, n):
        n = min(n, len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def write(self, buf):
        self.tx.extend(buf)
        return len(buf)

    def frames(self):
        """The frames the watch sent since the last call, decoded: [(op, channel, value)]."""
        reader = L.FrameReader()
        out = []
        for b in self.tx:
            n = reader.feed(b)
            if n >= 0:
                out.append((reader.buf[0], reader.buf[1], bytes(reader.buf[2:n])))
        self.tx = bytearray()
        assert reader.bad == 0
        return out


def _frame(op, channel, value=b""):
    out = bytearray(L.MAX_ENCODED)
    n = L.pack_frame(bytearray(L.MAX_RAW), op, channel, value, len(value), out)
    return bytes(out[:n])


def _connected_radio():
    port = FakePort()
    radio = L.SerialRadio("WEARS-VW01", "esp32s3-wrist", "0.1.0", port=port)
    radio.start()
    port.rx.extend(_frame(L.OP_CONNECT, 0, b"\x01"))
    assert radio.poll_command() is None
    return radio, port


def test_crc_is_ccitt_false():
    assert L.crc16(b"123456789", 9) == 0x29B1


def test_frames_encode_to_golden_vectors():
    for name in V:
        frame, f = V[name]
        got = _frame(f["op"], f["channel"], bytes.fromhex(f["value"]))
        assert got == frame, name + ": " + got.hex()
    assert len(V) == 10


def test_golden_frames_decode_to_their_fields():
    reader = L.FrameReader()
    for name in V:
        frame, f = V[name]
        results = [reader.feed(b) for b in frame]
        n = results[-1]
        assert all(r < 0 for r in results[:-1]) and n >= 2, name
        assert reader.buf[0] == f["op"] and reader.buf[1] == f["channel"], name
        assert bytes(reader.buf[2:n]) == bytes.fromhex(f["value"]), name
    assert reader.bad == 0


def test_nothing_is_sent_before_a_host_connects():
    port = FakePort()
    radio = L.SerialRadio("W", "m", "1", port=port)
    assert not radio.connected
    assert radio.notify_stream(bytearray(20)) is False
    assert port.tx == b""


def test_connect_is_answered_with_version_packet_size_and_name():
    radio, port = _connected_radio()
    assert radio.connected and radio.max_payload == 244
    assert port.frames() == [(L.OP_CONNECTED, 0, b"\x01\xf4\x00WEARS-VW01")]


def test_a_command_is_handed_to_the_app_and_its_write_answered():
    radio, port = _connected_radio()
    port.frames()
    command = V["write_start"][0]
    port.rx.extend(command)
    channel, data = radio.poll_command()
    assert channel == 1 and bytes(data) == bytes.fromhex("018101000000000007")
    assert port.frames() == [(L.OP_WRITE_RSP, L.CH_CONTROL, b"\x00")]
    port.rx.extend(_frame(L.OP_WRITE, L.CH_UPLOAD, b"\x00" + b"chunk"))
    channel, data = radio.poll_command()
    assert channel == 2 and bytes(data) == b"chunk"
    assert port.frames() == []  # a write without response is not answered
    assert radio.poll_command() is None


def test_notifications_carry_the_packet_on_its_channel():
    radio, port = _connected_radio()
    port.frames()
    packet = V["notify_pong"][1]["value"]
    buf = bytearray(64)
    buf[:14] = bytes.fromhex(packet)
    assert radio.notify_control(buf, 14)
    assert port.tx == V["notify_pong"][0]
    assert radio.notify_stream(bytearray(245)) is False and radio.oversize == 1


def test_corrupted_cut_and_overlong_frames_are_counted_and_the_next_one_still_works():
    radio, port = _connected_radio()
    port.frames()
    good = V["write_start"][0]
    flipped = bytearray(good)
    flipped[4] ^= 0x10
    port.rx.extend(flipped)  # CRC fails
    port.rx.extend(good[:5] + b"\x00")  # cut short
    port.rx.extend(b"\x05" * (L.MAX_ENCODED + 10) + b"\x00")  # longer than any frame
    port.rx.extend(b"\x00\x00")  # empty frames: delimiters in a row are not errors
    port.rx.extend(good)
    channel, data = radio.poll_command()
    assert channel == 1 and bytes(data) == bytes.fromhex("018101000000000007")
    assert radio.bad_frames == 3


def test_writes_to_read_only_unknown_or_too_long_are_refused_with_their_status():
    radio, port = _connected_radio()
    port.frames()
    port.rx.extend(_frame(L.OP_WRITE, L.CH_STREAM, b"\x01abc"))
    port.rx.extend(_frame(L.OP_WRITE, 99, b"\x01abc"))
    port.rx.extend(_frame(L.OP_WRITE, L.CH_CONTROL, b"\x01" + b"x" * 300))
    assert radio.poll_command() is None
    assert port.frames() == [(L.OP_WRITE_RSP, L.CH_STREAM, b"\x03"), (L.OP_WRITE_RSP, 99, b"\x01"),
                             (L.OP_WRITE_RSP, L.CH_CONTROL, b"\x0d")]
    assert radio.writes_dropped == 1


def test_reads_answer_device_information_battery_and_last_prediction():
    radio, port = _connected_radio()
    port.frames()
    radio.battery(87)
    radio.notify_prediction(bytearray(b"\x01\x02\x03"), 3)
    port.frames()
    for channel in (L.CH_FIRMWARE_REVISION, L.CH_MODEL_NUMBER, L.CH_BATTERY, L.CH_PREDICTION, L.CH_EVENT, 42):
        port.rx.extend(_frame(L.OP_READ, channel))
    assert radio.poll_command() is None
    assert port.frames() == [
        (L.OP_READ_RSP, L.CH_FIRMWARE_REVISION, b"\x000.1.0"), (L.OP_READ_RSP, L.CH_MODEL_NUMBER, b"\x00esp32s3-wrist"),
        (L.OP_READ_RSP, L.CH_BATTERY, b"\x00\x57"), (L.OP_READ_RSP, L.CH_PREDICTION, b"\x00\x01\x02\x03"),
        (L.OP_READ_RSP, L.CH_EVENT, b"\x02"), (L.OP_READ_RSP, 42, b"\x01")]


def test_battery_is_notified_only_when_it_changes():
    radio, port = _connected_radio()
    port.frames()
    assert radio.battery(50) and not radio.battery(50) and radio.battery(49)
    assert [f[2] for f in port.frames()] == [b"\x32", b"\x31"]


def test_frames_outside_a_connection_are_counted_not_obeyed():
    port = FakePort()
    radio = L.SerialRadio("W", "m", "1", port=port)
    port.rx.extend(V["write_start"][0])
    assert radio.poll_command() is None and radio.bad_frames == 1 and port.tx == b""


def test_disconnect_stops_sending_and_power_off_says_goodbye():
    radio, port = _connected_radio()
    port.rx.extend(V["disconnect"][0])
    assert radio.poll_command() is None and not radio.connected
    assert radio.notify_event(bytearray(14)) is False
    port.rx.extend(V["connect"][0])
    radio.poll_command()
    port.frames()
    radio.on_power_off()
    assert port.frames() == [(L.OP_GOODBYE, 0, bytes((L.HCI_POWER_OFF,)))]
    port.rx.extend(V["connect"][0])
    radio.poll_command()
    assert not radio.connected  # powered off: no new connection


def test_command_path_header_and_type_come_through_unchanged():
    radio, port = _connected_radio()
    cmd = bytearray(12)
    P.pack_header(cmd, P.CMD_PING, 33, 0)
    cmd[8:12] = b"\x04\x03\x02\x01"
    port.rx.extend(_frame(L.OP_WRITE, L.CH_CONTROL, b"\x01" + bytes(cmd)))
    _, data = radio.poll_command()
    assert P.unpack_header(data)[1] == P.CMD_PING and bytes(data[8:]) == b"\x04\x03\x02\x01"


class BrokenPort(FakePort):
    def write(self, buf):
        raise OSError(5)


def test_a_port_that_fails_ends_the_connection_and_the_packet_stays_with_the_app():
    radio, port = _connected_radio()
    radio.port = BrokenPort()
    assert radio.notify_stream(bytearray(20)) is False and not radio.connected

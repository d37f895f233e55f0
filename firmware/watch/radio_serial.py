"""USB serial link of the watch: the WEARS packets of docs/protocol.md over a byte stream.

`SerialRadio` has the surface of `watch.radio.Radio`, so the app runs unchanged over either.
Each frame is COBS-encoded and ends with a 0x00 byte, so a receiver finds the next frame
after any lost or corrupted byte:

    u8 op | u8 channel | value ... | u16 CRC-16/CCITT-FALSE of op..value (little-endian)

A channel stands for one characteristic of the GATT layout (`CHANNELS`); the ops mirror
ATT: the host connects, writes, reads and disconnects, the watch notifies and answers.
The port is a `machine.UART` or `StdioPort` (USB CDC through `sys.stdin`/`sys.stdout`),
chosen by the board profile's `serial` entry (`open_port`).
"""

try:
    from micropython import const
except ImportError:  # CPython: the host imports the frame codec from here
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

from array import array
from watch.buffers import zeros

from watch import protocol as P

# Ops, host to watch.
OP_CONNECT = const(0x81)  # value: u8 link version; answered by CONNECTED
OP_WRITE = const(0x82)  # value: u8 flags (bit 0: with response), then the data
OP_READ = const(0x83)  # answered by READ_RSP
OP_DISCONNECT = const(0x84)  # no answer; the watch stops sending
# Ops, watch to host.
OP_CONNECTED = const(0x02)  # value: u8 link version, u16 largest packet, then the watch's name
OP_NOTIFY = const(0x03)  # value: one packet (or a characteristic's new value)
OP_READ_RSP = const(0x05)  # value: u8 ATT status, then the characteristic's value
OP_WRITE_RSP = const(0x06)  # value: u8 ATT status
OP_GOODBYE = const(0x08)  # value: u8 HCI reason (0x13 the watch ended the link, 0x15 power off)

LINK_VERSION = const(1)

# Channels: one per characteristic of the GATT layout (docs/protocol.md).
CH_STREAM = const(1)
CH_PREDICTION = const(2)
CH_CONTROL = const(3)
CH_EVENT = const(4)
CH_UPLOAD = const(5)
CH_BATTERY = const(6)
CH_MODEL_NUMBER = const(7)
CH_FIRMWARE_REVISION = const(8)

# GATT properties bytes, as on BLE.
_READ = const(0x02)
_WRITE = const(0x08)
_NOTIFY = const(0x10)


def _channels():
    """(channel, service UUID, characteristic UUID, properties): the host builds its GATT table from this."""
    (service, stream, prediction, control, event, upload, _, _, battery_service,
     battery_level, device_info, model_number, firmware_revision) = P.UUIDS
    return (
        (CH_STREAM, service, stream, _NOTIFY),
        (CH_PREDICTION, service, prediction, _NOTIFY | _READ),
        (CH_CONTROL, service, control, _WRITE | _NOTIFY),
        (CH_EVENT, service, event, _NOTIFY),
        (CH_UPLOAD, service, upload, _WRITE),
        (CH_BATTERY, battery_service, battery_level, _READ | _NOTIFY),
        (CH_MODEL_NUMBER, device_info, model_number, _READ),
        (CH_FIRMWARE_REVISION, device_info, firmware_revision, _READ),
    )


CHANNELS = _channels()

# ATT status codes (Core spec Vol 3, Part F, 3.4.1.1) the link answers with.
ATT_OK = const(0)
ATT_INVALID_HANDLE = const(0x01)
ATT_READ_NOT_PERMITTED = const(0x02)
ATT_WRITE_NOT_PERMITTED = const(0x03)
ATT_INVALID_LENGTH = const(0x0D)
HCI_USER = const(0x13)
HCI_POWER_OFF = const(0x15)

MAX_VALUE = const(512)  # longest value in a frame: ATT's longest attribute
OVERHEAD = const(4)  # op, channel, CRC
MAX_RAW = const(MAX_VALUE + OVERHEAD)
MAX_ENCODED = const(MAX_RAW + MAX_RAW // 254 + 2)  # COBS: one code byte per 254, the first, the 0x00
_MAX_PACKET = const(244)  # largest packet the app makes: the same as over BLE at MTU 247
_MAX_WRITE = const(244)  # largest host write the watch takes, as over BLE
_CHUNK = const(64)  # bytes read from the port at a time

# CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection (check "123456789" = 0x29B1).
_CRC_TABLE = zeros("H", 256)
for _i in range(256):
    _c = _i << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x1021) if _c & 0x8000 else _c << 1
    _CRC_TABLE[_i] = _c & 0xFFFF


def crc16(buf, n, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of buf[:n], continuing from `crc`."""
    table = _CRC_TABLE
    for i in range(n):
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ buf[i]) & 0xFF]
    return crc


def cobs_encode(src, n, dst):
    """COBS of src[:n] into dst, then the 0x00 delimiter; returns the bytes written."""
    code_at = 0
    out = 1
    code = 1
    for i in range(n):
        b = src[i]
        if b:
            dst[out] = b
            out += 1
            code += 1
        if not b or code == 0xFF:
            dst[code_at] = code
            code_at = out
            out += 1
            code = 1
    dst[code_at] = code
    dst[out] = 0
    return out + 1


def cobs_decode(buf, n):
    """Decode the COBS frame buf[:n] (without its delimiter) in place; its length, or -1."""
    i = 0
    out = 0
    while i < n:
        code = buf[i]
        if code == 0:
            return -1
        end = i + code
        if end > n:
            return -1
        i += 1
        while i < end:
            buf[out] = buf[i]
            out += 1
            i += 1
        if code != 0xFF and i < n:
            buf[out] = 0
            out += 1
    return out


def pack_frame(raw, op, channel, value, n, dst, off=0):
    """The encoded frame (op, channel, value[off:off + n], CRC) into dst via the scratch buffer
    `raw`; returns its length in dst, delimiter included."""
    raw[0] = op
    raw[1] = channel
    for i in range(n):
        raw[2 + i] = value[off + i]
    crc = crc16(raw, n + 2)
    raw[n + 2] = crc & 0xFF
    raw[n + 3] = crc >> 8
    return cobs_encode(raw, n + OVERHEAD, dst)


class FrameReader:
    """Collects bytes into frames. `feed(byte)` returns the decoded length of a complete,
    intact frame in `buf` (op, channel, value; CRC stripped), or -1. Frames that are too long,
    not valid COBS or fail their CRC are counted in `bad` and skipped."""

    def __init__(self, size=MAX_ENCODED):
        self.buf = bytearray(size)
        self._n = 0
        self._overflow = False
        self.bad = 0

    def feed(self, b):
        if b:
            if self._n < len(self.buf):
                self.buf[self._n] = b
                self._n += 1
            else:
                self._overflow = True
            return -1
        n = self._n
        self._n = 0
        if self._overflow:
            self._overflow = False
            self.bad += 1
            return -1
        if n == 0:
            return -1  # an empty frame: delimiters in a row (line noise, or a resync on purpose)
        n = cobs_decode(self.buf, n)
        if n < OVERHEAD or crc16(self.buf, n - 2) != self.buf[n - 2] | self.buf[n - 1] << 8:
            self.bad += 1
            return -1
        return n - 2


class StdioPort:
    """USB CDC (the REPL's port) as a port: non-blocking reads through `select.poll`.

    The REPL's Ctrl-C (0x03) must not interrupt the app on a binary link: `kbd_intr(-1)`.
    """

    def __init__(self):
        import select
        import sys
        try:
            import micropython
            micropython.kbd_intr(-1)
        except (ImportError, AttributeError):
            pass
        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)

    def any(self):
        return 1 if self._poll.poll(0) else 0

    def readinto(self, buf, n):
        # One byte per ready poll: a blocking stream reads until its buffer is full.
        got = 0
        while got < n and self._poll.poll(0):
            b = self._in.read(1)
            if not b:  # end of input: the host hung up
                break
            buf[got] = b[0]
            got += 1
        return got

    def write(self, buf):
        return self._out.write(buf)


def open_port(profile):
    """The port the board profile's `serial` entry names: {"port": "usb"} for USB CDC, or
    {"port": "uart", "id": 1, "baudrate": 921600, "tx": 17, "rx": 18}."""
    cfg = profile.get("serial") or {"port": "usb"}
    if cfg.get("port", "usb") == "usb":
        return StdioPort()
    import machine
    kwargs = {"baudrate": cfg.get("baudrate", 115200), "rxbuf": cfg.get("rxbuf", 1024), "timeout": 0}
    if "tx" in cfg:
        kwargs["tx"] = cfg["tx"]
        kwargs["rx"] = cfg["rx"]
    return machine.UART(cfg.get("id", 1), **kwargs)


class SerialRadio:
    """The watch's side of the serial link, with the methods of `watch.radio.Radio`.

    The host is connected from its CONNECT until its DISCONNECT (or the next CONNECT, after a
    host that vanished). Host writes are taken when the app polls; a write with response is
    answered once the app has it, so a host never overruns the port's receive buffer.
    The standard Heart Rate Measurement is not carried: the WEARS HEART_RATE packet is.
    """

    def __init__(self, name, model_number, firmware_revision, profile=None, port=None):
        self.name = name
        self.profile = profile or {}
        self.model_number = model_number
        self.firmware_revision = firmware_revision
        self.port = port
        self._conn = False
        self._links = 0  # connections so far: a new host is a new link for authentication
        self._off = False
        self.congested = 0  # kept for the app's counters: a serial port takes every packet
        self.oversize = 0  # notifications refused for being longer than a packet can be
        self.writes_dropped = 0  # host writes refused for being too long
        self._reader = FrameReader()
        self._raw = bytearray(MAX_RAW)
        self._tx = bytearray(MAX_ENCODED)
        self._txv = memoryview(self._tx)
        self._chunk = bytearray(_CHUNK)
        self._chunk_n = 0
        self._chunk_i = 0
        self._battery = bytearray(1)
        self._battery_known = False
        self._prediction = bytearray(_MAX_PACKET)
        self._prediction_n = 0
        self._status = bytearray(1)
        name = name.encode() if isinstance(name, str) else name
        self._hello = bytes((LINK_VERSION, _MAX_PACKET & 0xFF, _MAX_PACKET >> 8)) + name

    # Set-up ---------------------------------------------------------------------------

    def start(self):
        if self.port is None:
            self.port = open_port(self.profile)

    def on_power_off(self):
        """Say goodbye: tell a connected host the watch is going away."""
        self._off = True
        if self._conn:
            self._goodbye(HCI_POWER_OFF)

    def disconnect(self):
        """End the link from the watch's side."""
        if self._conn:
            self._goodbye(HCI_USER)

    def _goodbye(self, reason):
        self._status[0] = reason
        self._send(OP_GOODBYE, 0, self._status, 1)
        self._conn = False

    # State ----------------------------------------------------------------------------

    @property
    def connected(self):
        return self._conn

    @property
    def link(self):
        """The current connection's number, -1 without one (as `Radio.link`)."""
        return self._links if self._conn else -1

    @property
    def mtu(self):
        return _MAX_PACKET + 3

    @property
    def max_payload(self):
        return _MAX_PACKET

    @property
    def bad_frames(self):
        """Frames from the host that were cut, corrupted or unknown."""
        return self._reader.bad

    # Sending --------------------------------------------------------------------------

    def _send(self, op, channel, value, n, off=0):
        m = pack_frame(self._raw, op, channel, value, n, self._tx, off)
        self.port.write(self._txv[:m])  # pyright: ignore[reportOptionalMemberAccess] (start() opened it)

    def _notify(self, channel, buf, n, off=0):
        if not self._conn:
            return False
        if n is None or n < 0:
            n = len(buf)
        if n > _MAX_PACKET:
            self.oversize += 1
            return False
        try:
            self._send(OP_NOTIFY, channel, buf, n, off)
        except OSError:  # the port went away (cable pulled): the packet stays queued for the next host
            self._conn = False
            return False
        return True

    def notify_stream(self, buf, n=-1, off=0):
        """SAMPLES and STREAM_INFO: the `n` bytes at buf[off:] (all of `buf` when n < 0)."""
        return self._notify(CH_STREAM, buf, n, off)

    def notify_prediction(self, buf, n=-1):
        """PREDICTION and HEART_RATE; also becomes the channel's value for reads."""
        if n is None or n < 0:
            n = len(buf)
        if n <= _MAX_PACKET:
            for i in range(n):
                self._prediction[i] = buf[i]
            self._prediction_n = n
        return self._notify(CH_PREDICTION, buf, n)

    def notify_control(self, buf, n=-1):
        """RESULT and PONG."""
        return self._notify(CH_CONTROL, buf, n)

    def notify_event(self, buf, n=-1):
        """EVENT and STATUS."""
        return self._notify(CH_EVENT, buf, n)

    def heart_rate(self, bpm, contact, rr=None, n_rr=0):
        """The standard Heart Rate Measurement exists on BLE only."""
        return False

    def heart_rate_add(self, bpm, contact, rr, n_rr):
        pass  # BLE only, as `heart_rate`

    def heart_rate_send(self):
        return False

    def battery(self, pct):
        """Battery Level (0..100 %): the readable value, notified when it changes."""
        pct = 0 if pct < 0 else (100 if pct > 100 else int(pct))
        if self._battery_known and self._battery[0] == pct:
            return False
        self._battery[0] = pct
        self._battery_known = True
        return self._notify(CH_BATTERY, self._battery, 1)

    # Receiving ------------------------------------------------------------------------

    def _next_byte(self):
        if self._chunk_i == self._chunk_n:
            if self.port is None or not self.port.any():
                return -1
            self._chunk_n = self.port.readinto(self._chunk, _CHUNK) or 0
            self._chunk_i = 0
            if not self._chunk_n:
                return -1
        b = self._chunk[self._chunk_i]
        self._chunk_i += 1
        return b

    def poll_command(self):
        """(channel, memoryview) of the next host write to control or upload, or None;
        channel is `watch.radio.CONTROL` (1) or `UPLOAD` (2) as from `Radio`.

        Link frames (connect, reads, disconnect) are answered on the way. The memoryview
        stays valid until the next call.
        """
        reader = self._reader
        while True:
            b = self._next_byte()
            if b < 0:
                return None
            n = reader.feed(b)
            if n < 0:
                continue
            got = self._dispatch(reader.buf, n)
            if got is not None:
                return got

    def _dispatch(self, frame, n):
        op = frame[0]
        channel = frame[1]
        if op == OP_CONNECT:
            self._conn = not self._off
            self._links += 1
            self._send(OP_CONNECTED, 0, self._hello, len(self._hello))
            return None
        if op == OP_DISCONNECT:
            self._conn = False
            return None
        if not self._conn:
            self._reader.bad += 1  # a frame outside a connection: the host lost track
            return None
        if op == OP_READ:
            self._read(channel)
            return None
        if op != OP_WRITE or n < 3:
            self._reader.bad += 1
            return None
        respond = frame[2] & 1
        size = n - 3
        if channel != CH_CONTROL and channel != CH_UPLOAD:
            status = ATT_INVALID_HANDLE if channel > CH_FIRMWARE_REVISION or channel == 0 else ATT_WRITE_NOT_PERMITTED
        elif size > _MAX_WRITE:
            self.writes_dropped += 1
            status = ATT_INVALID_LENGTH
        else:
            status = ATT_OK
        if respond:
            self._status[0] = status
            self._send(OP_WRITE_RSP, channel, self._status, 1)
        if status != ATT_OK:
            return None
        return (1 if channel == CH_CONTROL else 2), memoryview(frame)[3:n]

    def _read(self, channel):
        value = None
        n = 0
        if channel == CH_BATTERY:
            value, n = self._battery, 1
        elif channel == CH_PREDICTION:
            value, n = self._prediction, self._prediction_n
        elif channel == CH_MODEL_NUMBER:
            value = self.model_number.encode() if isinstance(self.model_number, str) else self.model_number
            n = len(value)
        elif channel == CH_FIRMWARE_REVISION:
            value = self.firmware_revision.encode() if isinstance(self.firmware_revision, str) \
                else self.firmware_revision
            n = len(value)
        answer = bytearray(1 + n)  # a read is rare: its answer may allocate
        if value is None:
            answer[0] = ATT_INVALID_HANDLE if channel > CH_FIRMWARE_REVISION or channel == 0 \
                else ATT_READ_NOT_PERMITTED
        else:
            answer[1:] = value[:n]
        self._send(OP_READ_RSP, channel, answer, len(answer))

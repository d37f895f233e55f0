"""BLE radio of the watch: the GATT layout of docs/protocol.md on MicroPython's `bluetooth` API."""

try:
    from micropython import const
except ImportError:  # CPython: the host imports the pure encoders below
    def const(x):
        return x

import time
from array import array

try:
    import bluetooth
except ImportError:  # CPython has no `bluetooth`; only Radio needs it
    bluetooth = None

from watch import protocol as P

# IRQ events and characteristic flags, as numbered by MicroPython's `bluetooth` module.
_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_CONNECTION_UPDATE = const(27)
_FLAG_READ = const(0x0002)
_FLAG_WRITE = const(0x0008)
_FLAG_NOTIFY = const(0x0010)
_IO_NO_INPUT_OUTPUT = const(3)  # pairing IO capability: no display, no keyboard

# Advertising data types (Bluetooth Core Specification Supplement, Part A, section 1).
_ADV_FLAGS = const(0x01)
_ADV_UUID16_COMPLETE = const(0x03)
_ADV_UUID128_COMPLETE = const(0x07)
_ADV_NAME_SHORT = const(0x08)
_ADV_NAME_COMPLETE = const(0x09)
_ADV_FLAGS_LE_ONLY = const(0x06)  # LE General Discoverable, BR/EDR not supported
_ADV_MAX = const(31)  # legacy advertising and scan response payloads are 31 bytes each
_ADV_INTERVAL_US = const(100000)  # 100 ms: found within a second by any scanner, cheap enough on a watch

# Heart Rate Measurement flags (Heart Rate Service 1.0, section 3.1.1.1).
_HR_UINT16 = const(0x01)
_HR_CONTACT_SUPPORTED = const(0x04)
_HR_CONTACT_DETECTED = const(0x02)
_HR_RR_PRESENT = const(0x10)
_RR_KEEP = const(16)  # RR intervals waiting for a notification: 16 beats is 5 s even at 190 bpm

_MTU = const(247)  # ATT MTU asked for: fills one 251-byte LE data-length PDU (247 + 4-byte L2CAP header)
_MTU_DEFAULT = const(23)  # every link starts at the minimum ATT MTU until the exchange completes
_MAX_WRITE = const(244)  # largest write the host sends: _MTU minus the 3-byte ATT write header
_QUEUE = const(4)  # host writes waiting for the app; the one poll_command handed out is one of them
_WRAP = const(8)  # queue positions count modulo 2 x _QUEUE so that full and empty differ
_NOTIFY_BUDGET = const(6)  # notifications per connection event: NimBLE on the ESP32 sends 6-7 with DLE
_INTERVAL_MS = const(30)  # connection interval until the central tells: BlueZ's default minimum

CONTROL = const(1)  # poll_command channel: a command written to the control characteristic
UPLOAD = const(2)  # poll_command channel: a model chunk written to the upload characteristic


def uuid128_le(text):
    """The 16 little-endian bytes of a 128-bit UUID string, as advertising payloads carry it."""
    return bytes(reversed(bytes.fromhex(text.replace("-", ""))))


def adv_payload(flags=None, name=None, uuids16=(), uuids128=()):
    """An advertising (or scan response) payload of AD structures: flags, service UUIDs, name.

    `uuids16` are ints, `uuids128` UUID strings. A name that would overflow the 31 bytes is
    shortened and marked so (AD type "Shortened Local Name").
    """
    fields = []
    if flags is not None:
        fields.append((_ADV_FLAGS, bytes((flags,))))
    if uuids128:
        fields.append((_ADV_UUID128_COMPLETE, b"".join(uuid128_le(u) for u in uuids128)))
    if uuids16:
        fields.append((_ADV_UUID16_COMPLETE, b"".join(bytes((u & 0xFF, u >> 8)) for u in uuids16)))
    if name:
        name = name.encode() if isinstance(name, str) else name
        room = _ADV_MAX - 2 - sum(2 + len(v) for _, v in fields)
        fields.append((_ADV_NAME_COMPLETE if len(name) <= room else _ADV_NAME_SHORT, name[:room]))
    out = bytearray()
    for kind, value in fields:
        out.append(len(value) + 1)
        out.append(kind)
        out.extend(value)
    if len(out) > _ADV_MAX:
        raise ValueError("advertising payload over 31 bytes")
    return bytes(out)


def encode_heart_rate(buf, bpm, contact, rr, n_rr, max_len=20):
    """Heart Rate Measurement (0x2A37) value into `buf`; returns its length.

    bpm: beats per minute (uint8 format up to 255, uint16 above).
    contact: None when the sensor cannot tell, else whether the skin contact is good.
    rr: RR intervals in 1/1024 s, oldest first; the first `n_rr` are candidates and the
        oldest that fit in `max_len` bytes are written (the spec sends the rest next time).
    """
    max_len = min(max_len, len(buf))
    bpm = int(bpm)
    bpm = 0 if bpm < 0 else (0xFFFF if bpm > 0xFFFF else bpm)
    flags = 0
    if contact is not None:
        flags = _HR_CONTACT_SUPPORTED | (_HR_CONTACT_DETECTED if contact else 0)
    if bpm > 0xFF:
        flags |= _HR_UINT16
        buf[1] = bpm & 0xFF
        buf[2] = bpm >> 8
        i = 3
    else:
        buf[1] = bpm
        i = 2
    k = 0
    while k < n_rr and i + 2 <= max_len:
        v = int(rr[k])
        v = 0 if v < 0 else (0xFFFF if v > 0xFFFF else v)
        buf[i] = v & 0xFF
        buf[i + 1] = v >> 8
        i += 2
        k += 1
    if k:
        flags |= _HR_RR_PRESENT
    buf[0] = flags
    return i


def _services():
    uuid = bluetooth.UUID
    notify, read, write = (_FLAG_NOTIFY,), (_FLAG_READ,), (_FLAG_WRITE,)
    return (
        (uuid(P.HR_SERVICE_UUID), ((uuid(P.HR_MEASUREMENT_UUID),) + notify,)),
        (uuid(P.BATTERY_SERVICE_UUID), ((uuid(P.BATTERY_LEVEL_UUID), _FLAG_READ | _FLAG_NOTIFY),)),
        (uuid(P.DEVICE_INFO_UUID), ((uuid(P.MODEL_NUMBER_UUID),) + read, (uuid(P.FIRMWARE_REVISION_UUID),) + read)),
        (uuid(P.SERVICE_UUID), (
            (uuid(P.STREAM_UUID),) + notify,
            (uuid(P.PREDICTION_UUID), _FLAG_NOTIFY | _FLAG_READ),
            (uuid(P.CONTROL_UUID), _FLAG_WRITE | _FLAG_NOTIFY),
            (uuid(P.EVENT_UUID),) + notify,
            (uuid(P.UPLOAD_UUID),) + write,
        )),
    )


class Radio:
    """The watch's GATT server: standard Heart Rate, Battery and Device Information services
    next to the WEARS service, advertising while no central is connected.

    Host writes to control and upload are copied by the IRQ into a small preallocated queue;
    the app drains it with `poll_command()`. Each `notify_*` returns False instead of sending
    when no central is connected or the link has used its budget for this connection event;
    the app keeps the packet and tries again later.
    """

    def __init__(self, name, model_number, firmware_revision):
        self.name = name
        self.model_number = model_number
        self.firmware_revision = firmware_revision
        self._ble = None
        self._conn = None
        self.link = -1  # number of the current connection since boot; -1 while none
        self._links = 0
        self._mtu = _MTU_DEFAULT
        self._off = False
        self._interval_ms = _INTERVAL_MS
        self._credits = 0
        self._event_t = 0
        self.congested = 0  # notifications refused for pacing or full stack buffers
        self.oversize = 0  # notifications refused for not fitting in mtu - 3
        self.writes_dropped = 0  # host writes lost because the queue was full
        self._q = [bytearray(_MAX_WRITE) for _ in range(_QUEUE)]
        self._qv = [memoryview(b) for b in self._q]
        self._q_len = array("H", bytes(2 * _QUEUE))
        self._q_chan = bytearray(_QUEUE)
        self._q_head = 0  # written by the app only
        self._q_tail = 0  # written by the IRQ only
        self._q_held = False
        self._hr = bytearray(3 + 2 * _RR_KEEP)
        self._rr = array("H", bytes(2 * _RR_KEEP))
        self._n_rr = 0
        self._battery = bytearray(1)
        self._battery_known = False

    # Set-up ---------------------------------------------------------------------------

    def start(self):
        ble = bluetooth.BLE()
        self._ble = ble
        ble.active(True)
        ble.config(gap_name=self.name, mtu=_MTU)
        try:
            # LE Secure Connections bonding, Just Works: a watch has no passkey display.
            ble.config(bond=True, le_secure=True, mitm=False, io=_IO_NO_INPUT_OUTPUT)
        except (ValueError, OSError):
            pass  # a build without pairing support: the HMAC challenge-response still holds
        ble.irq(self._irq)
        (
            (self._h_hr,),
            (self._h_battery,),
            (h_model, h_firmware),
            (self._h_stream, self._h_prediction, self._h_control, self._h_event, self._h_upload),
        ) = ble.gatts_register_services(_services())
        # Client writes are truncated to the value buffer (20 bytes unless set otherwise).
        ble.gatts_set_buffer(self._h_control, _MAX_WRITE)
        ble.gatts_set_buffer(self._h_upload, _MAX_WRITE)
        ble.gatts_set_buffer(self._h_prediction, _MAX_WRITE)
        ble.gatts_write(h_model, self.model_number)
        ble.gatts_write(h_firmware, self.firmware_revision)
        ble.gatts_write(self._h_battery, self._battery)
        self._adv = adv_payload(_ADV_FLAGS_LE_ONLY, uuids16=(P.HR_SERVICE_UUID,), uuids128=(P.SERVICE_UUID,))
        self._resp = adv_payload(name=self.name)
        self._advertise()

    def _advertise(self):
        self._ble.gap_advertise(_ADV_INTERVAL_US, adv_data=self._adv, resp_data=self._resp)

    def on_power_off(self):
        """Say goodbye: stop advertising and end the connection cleanly."""
        self._off = True
        if self._ble is None:
            return
        try:
            self._ble.gap_advertise(None)
            if self._conn is not None:
                self._ble.gap_disconnect(self._conn)
        except OSError:
            pass

    # State ----------------------------------------------------------------------------

    @property
    def connected(self):
        return self._conn is not None

    @property
    def mtu(self):
        return self._mtu

    @property
    def max_payload(self):
        """Largest notification the link carries now: mtu - 3."""
        return self._mtu - 3

    # IRQ: runs between the app's bytecodes; copies and flags only -------------------

    def _irq(self, event, data):
        if event == _IRQ_GATTS_WRITE:
            handle = data[1]
            if handle == self._h_control:
                channel = CONTROL
            elif handle == self._h_upload:
                channel = UPLOAD
            else:
                return
            tail = self._q_tail
            if (tail - self._q_head) % _WRAP >= _QUEUE:
                self.writes_dropped += 1
                return
            value = self._ble.gatts_read(handle)
            n = len(value)
            if n > _MAX_WRITE:
                self.writes_dropped += 1
                return
            i = tail % _QUEUE
            self._q[i][0:n] = value
            self._q_len[i] = n
            self._q_chan[i] = channel
            self._q_tail = (tail + 1) % _WRAP
        elif event == _IRQ_CENTRAL_CONNECT:
            self._conn = data[0]
            self._links += 1
            self.link = self._links
            self._mtu = _MTU_DEFAULT
            self._interval_ms = _INTERVAL_MS
            self._credits = _NOTIFY_BUDGET
            self._event_t = time.ticks_ms()
            self._n_rr = 0
            try:
                self._ble.gattc_exchange_mtu(self._conn)
            except OSError:
                pass  # the central started the exchange first
        elif event == _IRQ_CENTRAL_DISCONNECT:
            if data[0] == self._conn:
                self._conn = None
                self.link = -1
                self._mtu = _MTU_DEFAULT
            if not self._off:
                self._advertise()
        elif event == _IRQ_MTU_EXCHANGED:
            if data[0] == self._conn:
                self._mtu = data[1]
        elif event == _IRQ_CONNECTION_UPDATE:
            if data[0] == self._conn and data[4] == 0:
                self._interval_ms = max(1, data[1] * 5 // 4)  # units of 1.25 ms

    # App side -------------------------------------------------------------------------

    def poll_command(self):
        """(channel, memoryview) of the oldest host write, or None; CONTROL or UPLOAD.

        The memoryview stays valid until the next call, which hands its slot back.
        """
        if self._q_held:
            self._q_head = (self._q_head + 1) % _WRAP
            self._q_held = False
        if self._q_head == self._q_tail:
            return None
        i = self._q_head % _QUEUE
        self._q_held = True
        return self._q_chan[i], self._qv[i][:self._q_len[i]]

    def _credit(self):
        # The link carries _NOTIFY_BUDGET notifications per connection event; the budget
        # starts afresh once an interval has passed since the current event began.
        now = time.ticks_ms()
        if time.ticks_diff(now, self._event_t) >= self._interval_ms:
            self._event_t = now
            self._credits = _NOTIFY_BUDGET
        if self._credits <= 0:
            return False
        self._credits -= 1
        return True

    def _notify(self, handle, buf, n):
        conn = self._conn
        if conn is None:
            return False
        if n is None or n < 0:
            n = len(buf)
        if n > self._mtu - 3:
            self.oversize += 1
            return False
        if not self._credit():
            self.congested += 1
            return False
        try:
            self._ble.gatts_notify(conn, handle, buf if n == len(buf) else memoryview(buf)[:n])
        except OSError:  # the stack's buffers are full (or the link just went away)
            self.congested += 1
            return False
        return True

    def notify_stream(self, buf, n=-1):
        """SAMPLES and STREAM_INFO; the first `n` bytes of `buf` (all of it when n < 0)."""
        return self._notify(self._h_stream, buf, n)

    def notify_prediction(self, buf, n=-1):
        """PREDICTION and HEART_RATE; also becomes the characteristic's value for reads."""
        if self._ble is None:
            return False
        if n is None or n < 0:
            n = len(buf)
        self._ble.gatts_write(self._h_prediction, buf if n == len(buf) else memoryview(buf)[:n])
        return self._notify(self._h_prediction, buf, n)

    def notify_control(self, buf, n=-1):
        """RESULT and PONG."""
        return self._notify(self._h_control, buf, n)

    def notify_event(self, buf, n=-1):
        """EVENT and STATUS."""
        return self._notify(self._h_event, buf, n)

    def heart_rate(self, bpm, contact, rr=None, n_rr=0):
        """Notify a Heart Rate Measurement; RR intervals (1/1024 s, oldest first) that do not
        fit wait for the next call, as the Heart Rate Service asks."""
        keep = self._rr
        for k in range(n_rr):
            if self._n_rr == _RR_KEEP:  # full: drop the oldest
                for j in range(1, _RR_KEEP):
                    keep[j - 1] = keep[j]
                self._n_rr -= 1
            v = rr[k]
            keep[self._n_rr] = 0 if v < 0 else (0xFFFF if v > 0xFFFF else v)
            self._n_rr += 1
        if self._conn is None:
            self._n_rr = 0
            return False
        n = encode_heart_rate(self._hr, bpm, contact, keep, self._n_rr, self._mtu - 3)
        if not self._notify(self._h_hr, self._hr, n):
            return False
        sent = (n - (3 if self._hr[0] & _HR_UINT16 else 2)) // 2
        for j in range(sent, self._n_rr):
            keep[j - sent] = keep[j]
        self._n_rr -= sent
        return True

    def battery(self, pct):
        """Battery Level (0..100 %): the readable value, notified when it changes."""
        pct = 0 if pct < 0 else (100 if pct > 100 else int(pct))
        if self._battery_known and self._battery[0] == pct:
            return False
        self._battery[0] = pct
        self._battery_known = True
        if self._ble is None:
            return False
        self._ble.gatts_write(self._h_battery, self._battery)
        return self._notify(self._h_battery, self._battery, 1)

"""What the watch's two BLE stacks share: the GATT layout of docs/protocol.md, advertising
and Heart Rate encoders, the queue of host writes, notification pacing, segments.

`GattServer` holds everything but the calls into the stack; `watch.radio` (`bluetooth`,
ESP32) and `watch.radio_ubluepy` (`ubluepy`, nRF port) each add those.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host imports the pure encoders below
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import time
from array import array

from watch import protocol as P

# Advertising data types (Bluetooth Core Specification Supplement, Part A, section 1).
_ADV_FLAGS = const(0x01)
_ADV_UUID16_COMPLETE = const(0x03)
_ADV_UUID128_COMPLETE = const(0x07)
_ADV_NAME_SHORT = const(0x08)
_ADV_NAME_COMPLETE = const(0x09)
ADV_FLAGS_LE_ONLY = const(0x06)  # LE General Discoverable, BR/EDR not supported
_ADV_MAX = const(31)  # legacy advertising and scan response payloads are 31 bytes each

# Heart Rate Measurement flags (Heart Rate Service 1.0, section 3.1.1.1).
_HR_UINT16 = const(0x01)
_HR_CONTACT_SUPPORTED = const(0x04)
_HR_CONTACT_DETECTED = const(0x02)
_HR_RR_PRESENT = const(0x10)
_RR_KEEP = const(16)  # RR intervals waiting for a notification: 16 beats is 5 s even at 190 bpm

MTU_DEFAULT = const(23)  # every link starts at the minimum ATT MTU until the exchange completes
MAX_WRITE = const(244)  # largest packet the host writes: ATT MTU 247 minus the 3-byte write header
_NOTIFY_BUDGET = const(6)  # notifications per connection event: NimBLE and the SoftDevice send 6 or so
_INTERVAL_MS = const(30)  # connection interval until the central tells: BlueZ's default minimum
_CCCD_MAX = const(3)  # a 2-byte write whose first byte is at most 3 is a CCCD, not a command
_FIRST = const(0x40)  # segments.FIRST: a packet's first segment

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


def advertising():
    """(advertising data, scan response) of a WEARS watch: flags and both service UUIDs; the name."""
    uuids = P.UUIDS  # [6]: the Heart Rate service; [0]: the WEARS service
    return adv_payload(ADV_FLAGS_LE_ONLY, uuids16=(uuids[6],), uuids128=(uuids[0],))


class GattServer:
    """The watch's GATT server, whatever the stack: standard Heart Rate, Battery and Device
    Information services next to the WEARS service, advertising while no central is connected.

    Host writes are copied by the stack's IRQ into a small preallocated queue; the app drains
    it with `poll_command()`. Each `notify_*` returns False instead of sending when no
    central is connected or the link has used its budget for this connection event; the app
    keeps the packet and tries again later. A subclass sets `segmenting` (links too small
    for whole packets) and implements `start`, `on_power_off`, `_send(handle, data)` (raises
    OSError when the stack refuses) and `_keep(handle, data)` (the value reads return).
    """

    segmenting = False
    piles = 1  # connection events' budgets that pile up while the app is away
    queue = 4  # host writes waiting for the app; the one poll_command handed out is one of them
    # The stack's handles (or characteristic objects), set by the subclass's start().
    _h_hr = _h_battery = _h_stream = _h_prediction = _h_control = _h_event = None

    def __init__(self, name, model_number, firmware_revision):
        self.name = name
        self.model_number = model_number
        self.firmware_revision = firmware_revision
        self._conn = None
        self.link = -1  # number of the current connection since boot; -1 while none
        self._links = 0
        self._mtu = MTU_DEFAULT
        self._off = False
        self._interval_ms = _INTERVAL_MS
        self._credits = 0
        self._event_t = 0
        self.congested = 0  # notifications refused for pacing or full stack buffers
        self.oversize = 0  # notifications refused for not fitting in mtu - 3
        self.writes_dropped = 0  # host writes lost because the queue was full
        n = self.queue
        self._wrap = 2 * n  # queue positions count modulo twice its length so that full and empty differ
        # A segmenting stack's writes carry 20 bytes at most: its queue's slots hold that much,
        # and a packet put together from segments waits in one of two buffers of its own. The
        # slots are one buffer; per slot three bytes in _q_info: the write's length (at most
        # MAX_WRITE, 244), its channel, and 1 + the join buffer its packet is in (0: in the slot).
        self._q_size = MTU_DEFAULT - 3 if self.segmenting else MAX_WRITE
        self._q = bytearray(n * self._q_size)
        self._q_info = bytearray(3 * n)
        self._q_head = 0  # written by the app only
        self._q_tail = 0  # written by the IRQ only
        self._q_held = False
        self._hr = bytearray(3 + 2 * _RR_KEEP)
        self._rr = array("H", bytes(2 * _RR_KEEP))
        self._n_rr = 0
        self._bpm = 0
        self._contact = None
        self._hr_pending = False
        self._battery = bytearray(1)
        self._battery_known = False
        if self.segmenting:
            from watch import segments  # only stacks that need it pay its heap

            self._segments = segments
            self._segment = bytearray(MTU_DEFAULT - 3)
            # A view of the segment buffer for every length: what the stack is handed is one
            # of them, so a notification allocates nothing (a slice would, per segment).
            whole = memoryview(self._segment)
            self._seg_views = tuple(whole[:k] for k in range(MTU_DEFAULT - 2))
            self._joins = (bytearray(MAX_WRITE), bytearray(MAX_WRITE))
            self._join_busy = bytearray(2)  # set while a queued packet is in that buffer
            self._join = segments.Reassembler(0)
            self._join.buf = self._joins[0]
            self._jk = 0  # the join buffer being filled
        else:
            # A notification goes out as a view of exactly its length (the stack sends what
            # the buffer holds): the packet is copied into _tx and one of these views of it is
            # handed over, so nothing is allocated per packet (a slice would make a memoryview
            # each time). 245 views: 3.9 KB on a 32-bit ESP32, which has the room.
            self._tx = bytearray(MAX_WRITE)
            whole = memoryview(self._tx)
            self._tx_views = tuple(whole[:k] for k in range(MAX_WRITE + 1))
        self._seg_bit = 0x80  # segments.SEGMENT: the first byte of a segment, never of a packet

    # What each stack implements ---------------------------------------------------------

    def start(self):
        raise NotImplementedError

    def on_power_off(self):
        raise NotImplementedError

    def _started(self):
        return False

    def _send(self, handle, data):
        """Notify `data` on `handle`; raises OSError when the stack refuses."""
        raise NotImplementedError

    def _keep(self, handle, data):
        """Make `data` the value that reads of `handle` return."""
        raise NotImplementedError

    # State ----------------------------------------------------------------------------

    @property
    def connected(self):
        return self._conn is not None

    @property
    def mtu(self):
        return self._mtu

    @property
    def max_payload(self):
        """Largest packet the link carries now: mtu - 3, or a whole packet in segments."""
        return MAX_WRITE if self.segmenting else self._mtu - 3

    # IRQ side: copies and flags only --------------------------------------------------

    def _connected(self, conn):
        self._conn = conn
        self._links += 1
        self.link = self._links
        self._mtu = MTU_DEFAULT
        self._interval_ms = _INTERVAL_MS
        self._credits = _NOTIFY_BUDGET
        self._event_t = time.ticks_ms()
        self._n_rr = 0

    def _disconnected(self, conn):
        if conn == self._conn:
            self._conn = None
            self.link = -1
            self._mtu = MTU_DEFAULT

    def _receive(self, channel, value):
        """A host write: queued whole, or (segmenting stacks) put together first."""
        n = len(value)
        k = -1  # the join buffer holding a packet put together from segments
        if self.segmenting:
            if n and value[0] & self._seg_bit:
                if value[0] & _FIRST:  # a new packet: into a join buffer no queued packet is in
                    k = 0 if not self._join_busy[0] else 1 if not self._join_busy[1] else -1
                    if k < 0:
                        self.writes_dropped += 1
                        return
                    self._jk = k
                    self._join.buf = self._joins[k]
                n = self._join.feed(value)
                if n <= 0:
                    return
                k = self._jk
            elif n == 2 and value[0] <= _CCCD_MAX:
                return  # the central (un)subscribing: the stack keeps the CCCD itself
        tail = self._q_tail
        i = tail % self.queue
        size = self._q_size
        if (tail - self._q_head) % self._wrap >= self.queue or (k < 0 and n > size):
            self.writes_dropped += 1
            return
        if k >= 0:
            self._join_busy[k] = 1
        else:
            q = self._q
            at = i * size
            for j in range(n):
                q[at + j] = value[j]
        info = self._q_info
        info[3 * i] = n
        info[3 * i + 1] = channel
        info[3 * i + 2] = k + 1
        self._q_tail = (tail + 1) % self._wrap

    # App side -------------------------------------------------------------------------

    def poll_command(self):
        """(channel, memoryview) of the oldest host write, or None; CONTROL or UPLOAD.

        The memoryview stays valid until the next call, which hands its slot back.
        """
        info = self._q_info
        if self._q_held:
            k = info[3 * (self._q_head % self.queue) + 2]
            if k:
                self._join_busy[k - 1] = 0
            self._q_head = (self._q_head + 1) % self._wrap
            self._q_held = False
        if self._q_head == self._q_tail:
            return None
        i = self._q_head % self.queue
        self._q_held = True
        n = info[3 * i]
        k = info[3 * i + 2]
        if k:
            return info[3 * i + 1], memoryview(self._joins[k - 1])[:n]  # (a command, not a sample: it may allocate)
        at = i * self._q_size
        return info[3 * i + 1], memoryview(self._q)[at:at + n]

    def _credit(self, cost):
        # The link carries _NOTIFY_BUDGET notifications per connection event; the budget
        # comes back once an interval has passed since the current event began. A packet
        # in several segments may overdraw it: the next events then send nothing.
        now = time.ticks_ms()
        events = time.ticks_diff(now, self._event_t) // self._interval_ms
        if events > 0:
            self._event_t = now
            cap = _NOTIFY_BUDGET * self.piles
            self._credits = min(self._credits + _NOTIFY_BUDGET * events, cap)
        if self._credits <= 0:
            return False
        self._credits -= cost
        return True

    def _notify(self, handle, buf, n, whole=False, off=0):
        """Notify the n bytes at buf[off:]; `whole`: a standard characteristic, never segmented."""
        if self._conn is None:
            return False
        if n is None or n < 0:
            n = len(buf)
        room = self._mtu - 3
        parts = 0 if whole or not self.segmenting else self._segments.count(n, room)
        if not parts and n > room:
            self.oversize += 1
            return False
        if not self._credit(parts or 1):
            self.congested += 1
            return False
        try:
            if parts:
                for i in range(parts):
                    self._send(handle, self._seg_views[self._segments.write_segment(self._segment, buf, n, room, i,
                                                                                    off)])
            else:  # carried whole: copied into a buffer of the stack's, sent through a view of its length
                self._send(handle, self._view(buf, n, off))
        except OSError:  # the stack's buffers are full (or the link just went away)
            self.congested += 1
            return False
        return True

    def _view(self, buf, n, off):
        """buf[off:off + n] copied into the segment buffer (segmenting stacks, n fits one) or
        _tx, as a view of exactly n bytes; allocates nothing."""
        if self.segmenting:
            out, views = self._segment, self._seg_views
        else:
            out, views = self._tx, self._tx_views
        for i in range(n):
            out[i] = buf[off + i]
        return views[n]

    def notify_stream(self, buf, n=-1, off=0):
        """SAMPLES and STREAM_INFO: the `n` bytes at buf[off:] (all of `buf` when n < 0)."""
        return self._notify(self._h_stream, buf, n, False, off)

    def notify_prediction(self, buf, n=-1):
        """PREDICTION and HEART_RATE; also becomes the characteristic's value for reads."""
        if n is None or n < 0:
            n = len(buf)
        if not self.segmenting:  # the segmenting stack's notification is the value too: nothing to keep
            if n > MAX_WRITE:
                self.oversize += 1
                return False
            self._keep(self._h_prediction, self._view(buf, n, 0))
        return self._notify(self._h_prediction, buf, n)

    def notify_control(self, buf, n=-1):
        """RESULT, PONG and AUTH_CHALLENGE."""
        return self._notify(self._h_control, buf, n)

    def notify_event(self, buf, n=-1):
        """EVENT and STATUS."""
        return self._notify(self._h_event, buf, n)

    def heart_rate(self, bpm, contact, rr=(), n_rr=0):
        """Notify a Heart Rate Measurement; RR intervals (1/1024 s, oldest first) that do not
        fit wait for the next call, as the Heart Rate Service asks."""
        self.heart_rate_add(bpm, contact, rr, n_rr)
        return self.heart_rate_send()

    def heart_rate_add(self, bpm, contact, rr, n_rr):
        """Keep a window's heart rate and RR intervals for `heart_rate_send`; allocates nothing."""
        self._bpm = bpm
        self._contact = contact
        keep = self._rr
        for k in range(n_rr):
            if self._n_rr == _RR_KEEP:  # full: drop the oldest
                for j in range(1, _RR_KEEP):
                    keep[j - 1] = keep[j]
                self._n_rr -= 1
            v = rr[k]
            keep[self._n_rr] = 0 if v < 0 else (0xFFFF if v > 0xFFFF else v)
            self._n_rr += 1
        self._hr_pending = True

    def heart_rate_send(self):
        """Notify the kept heart rate, if one waits; False when it could not go yet."""
        if not self._hr_pending:
            return False
        keep = self._rr
        if self._conn is None:
            self._n_rr = 0
            self._hr_pending = False
            return False
        n = encode_heart_rate(self._hr, self._bpm, self._contact, keep, self._n_rr, self._mtu - 3)
        if not self._notify(self._h_hr, self._hr, n, True):
            return False
        sent = (n - (3 if self._hr[0] & _HR_UINT16 else 2)) // 2
        for j in range(sent, self._n_rr):
            keep[j - sent] = keep[j]
        self._n_rr -= sent
        self._hr_pending = False
        return True

    def battery(self, pct):
        """Battery Level (0..100 %): the readable value, notified when it changes."""
        pct = 0 if pct < 0 else (100 if pct > 100 else int(pct))
        if self._battery_known and self._battery[0] == pct:
            return False
        self._battery[0] = pct
        self._battery_known = True
        if not self._started():
            return False
        self._keep(self._h_battery, self._battery)
        return self._notify(self._h_battery, self._battery, 1, True)

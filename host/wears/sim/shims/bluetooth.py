"""MicroPython's `bluetooth` module for the virtual watch: the GATT server is kept here and
one host central reaches it over a local TCP socket (bridge protocol: docs/virtual-watch.md).

The peripheral subset of `bluetooth.BLE` with the real IRQ numbers and argument tuples.
Socket I/O runs in a poller of the virtual clock, i.e. while the firmware sleeps, so IRQs
arrive between the app's statements as the real stack's scheduled callbacks do. The clock
is held until the first central connects (unless WEARS_SIM_AUTOSTART=1) and while
notifications wait for the host, so a slow host never costs the watch a packet.
Lean on purpose: it shares the board's heap budget with the firmware, and on a real watch
this module is C code that costs the heap nothing.
"""

import json
import os
import select
import socket
import struct
import sys
import time
from binascii import hexlify

from micropython import const

FLAG_READ = const(0x0002)
FLAG_WRITE_NO_RESPONSE = const(0x0004)
FLAG_WRITE = const(0x0008)
FLAG_NOTIFY = const(0x0010)
FLAG_INDICATE = const(0x0020)

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_INDICATE_DONE = const(20)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_CONNECTION_UPDATE = const(27)

# Bridge frames: u16 length of what follows, u8 op, u16 argument, then the op's payload.
_HELLO = const(0x01)
_CONNECTED = const(0x02)
_NOTIFY = const(0x03)
_INDICATE = const(0x04)
_READ_RSP = const(0x05)
_WRITE_RSP = const(0x06)
_DISCONNECT = const(0x08)
_H_CONNECT = const(0x81)
_H_WRITE = const(0x82)
_H_READ = const(0x83)
_H_DISCONNECT = const(0x84)
_BRIDGE_VERSION = const(1)

_ATT_INVALID_HANDLE = const(0x01)
_ATT_READ_NOT_PERMITTED = const(0x02)
_ATT_WRITE_NOT_PERMITTED = const(0x03)
# Disconnection reasons (HCI error codes) as the other side of the link reports them.
_HCI_TIMEOUT = const(0x08)  # the link broke without a goodbye
_HCI_USER = const(0x13)  # "remote user terminated connection": gap_disconnect, or the central
_HCI_POWER_OFF = const(0x15)  # "remote device terminated connection due to power off"

_MTU_MIN = const(23)
_ATTR_DEFAULT = const(20)  # MicroPython's default value buffer: client writes are truncated to it
_INTERVAL = const(24)  # the virtual central's connection interval in 1.25 ms units: BlueZ's 30 ms
_SUPERVISION = const(420)  # its supervision timeout in 10 ms units: BlueZ's 4.2 s
_RX_SIZE = const(520)  # largest host frame: a 512-byte write plus its 6-byte header
_TX_SIZE = const(1024)  # notifications batched between flushes; full means flush now
# Attribute record: [value buffer, length, FLAG_* | _APPEND, CCCD bits the central wrote]
_BUF = const(0)
_LEN = const(1)
_FLAGS = const(2)
_SUB = const(3)
_APPEND = const(0x10000)

_ENOTCONN = const(107)
_EALREADY = const(114)
_EINVAL = const(22)


class UUID:
    """A 16-bit (int) or 128-bit (str) UUID, kept as given; the host normalises it."""

    def __init__(self, value):
        self.value = value.value if isinstance(value, UUID) else value

    def __eq__(self, other):
        return isinstance(other, UUID) and other.value == self.value

    def __hash__(self):
        return hash(self.value)


def _proc(key):
    """A number from /proc/self/status (Pid, Uid): MicroPython's os has neither getter."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _ad_uuids(payload, out):
    """Service UUIDs (hex, most significant byte first) of advertising AD structures."""
    i = 0
    while i + 1 < len(payload):
        n, kind = payload[i], payload[i + 1]
        if kind in (0x02, 0x03, 0x06, 0x07):
            w = 2 if kind < 4 else 16
            for j in range(i + 2, i + 1 + n - w + 1, w):
                out.append(hexlify(bytes(reversed(payload[j:j + w]))).decode())
        i += 1 + n
    return out


class _BLE:
    def __init__(self):
        addr = os.getenv("WEARS_SIM_ADDRESS")
        self._mac = bytes(int(x, 16) for x in addr.split(":")) if addr else bytes(
            (os.urandom(1)[0] | 0xC0,)) + os.urandom(5)  # random static address: top bits set
        self.address = ":".join("%02X" % b for b in self._mac)
        self._cfg = {"gap_name": b"MPY unix", "mtu": _MTU_MIN, "bond": False, "le_secure": False, "mitm": False, "io": 3}
        self._active = self._connected = self._started = self._down = self._hooked = self._busy = False
        self._handler = self._listen = self._sock = self._adv = self._entry = None
        self._attrs = {}
        self._table = []
        self._poll = select.poll()
        self._rx = bytearray(_RX_SIZE)
        self._rxv = memoryview(self._rx)
        self._tx = bytearray(_TX_SIZE)
        self._rx_n = self._tx_n = 0
        self._peer = memoryview(bytearray(6))
        self._mtu = self._peer_mtu = _MTU_MIN
        self._mtu_done = self._mtu_asked = self._lost = False
        self._indicated = 0
        self._adv_data = self._resp_data = b""
        self._advertised = False
        self._autostart = os.getenv("WEARS_SIM_AUTOSTART") == "1"
        self._faults = None
        if os.getenv("WEARS_SIM_FAULTS"):  # test harness only: broken links, lost and shuffled notifications
            from sim_faults import Faults
            self._faults = Faults(os.getenv("WEARS_SIM_FAULTS"))

    # Stack state ----------------------------------------------------------------------

    def active(self, *state):
        if state and bool(state[0]) != self._active:
            if state[0]:
                self._open()
            else:
                self._close(_HCI_POWER_OFF)
            self._active = bool(state[0])
        return self._active

    def config(self, *name, **values):
        if name:
            if name[0] == "mac":
                return (0, self._mac)
            return self._cfg[name[0]]
        for key, value in values.items():
            if key not in self._cfg or key == "mtu" and not _MTU_MIN <= value <= 517:
                raise ValueError(key)
            self._cfg[key] = value.encode() if isinstance(value, str) else value

    def irq(self, handler):
        self._handler = handler

    def _irq(self, event, data):
        if self._handler and not self._down:
            try:
                self._handler(event, data)
            except Exception as e:  # as mp_call_function_2_protected: report, keep running
                print("Uncaught exception in IRQ callback handler", file=sys.stderr)
                sys.print_exception(e, sys.stderr)

    # GATT server ----------------------------------------------------------------------

    def gatts_register_services(self, definitions):
        if not self._active:
            raise OSError(_EINVAL)
        # NimBLE's layout: service declaration, then per characteristic its declaration,
        # its value and (notify/indicate) its CCCD, then its descriptors.
        self._attrs = {}
        self._table = []
        h = 0  # the last handle given out
        result = []
        for service_uuid, characteristics in definitions:
            h += 1
            chars = []
            self._table.append([UUID(service_uuid).value, h, chars])
            handles = []
            for c in characteristics:
                h += 2
                handles.append(h)
                self._attrs[h] = [bytearray(_ATTR_DEFAULT), 0, c[1], 0]
                chars.append([UUID(c[0]).value, h, c[1] & 0xFF, h + 1 if c[1] & 0x30 else 0])
                if c[1] & 0x30:
                    h += 1  # the CCCD, always the value's handle + 1
                for d in c[2] if len(c) > 2 else ():
                    h += 1
                    handles.append(h)
                    self._attrs[h] = [bytearray(_ATTR_DEFAULT), 0, d[1], 0]
            result.append(tuple(handles))
        return tuple(result)

    def _attr(self, handle):
        a = self._attrs.get(handle)
        if a is None:
            raise OSError(_EINVAL)
        return a

    def gatts_read(self, handle):
        a = self._attr(handle)
        return bytes(a[_BUF][:a[_LEN]])

    def gatts_write(self, handle, data, send_update=False):
        a = self._attr(handle)
        if isinstance(data, str):
            data = data.encode()
        if len(data) > len(a[_BUF]):  # the value store grows to what the app writes
            a[_BUF] = bytearray(len(data))
        a[_BUF][0:len(data)] = data
        a[_LEN] = len(data)
        if send_update and self._connected and a[_SUB]:
            (self.gatts_notify if a[_SUB] & 1 else self.gatts_indicate)(0, handle)

    def gatts_set_buffer(self, handle, length, append=False):
        a = self._attr(handle)
        a[_LEN] = min(a[_LEN], length)
        buf = bytearray(length)
        buf[0:a[_LEN]] = a[_BUF][0:a[_LEN]]
        a[_BUF] = buf
        a[_FLAGS] = a[_FLAGS] & ~_APPEND | (_APPEND if append else 0)

    def gatts_notify(self, conn, handle, data=None, op=_NOTIFY):
        if not self._connected or conn != 0:
            raise OSError(_ENOTCONN)
        a = self._attr(handle)
        # The central drops notifications it did not subscribe to; dropping them here saves
        # the bridge the bytes, and the firmware cannot tell the difference.
        if a[_SUB]:
            data = memoryview(a[_BUF])[:a[_LEN]] if data is None else data
            if self._faults:
                self._faults.notify(self._put, op, handle, data)
            else:
                self._put(op, handle, -1, data)

    def gatts_indicate(self, conn, handle, data=None):
        self.gatts_notify(conn, handle, data, _INDICATE)
        self._indicated = handle  # confirmed at the next poll

    # GAP ------------------------------------------------------------------------------

    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        if not self._active:
            raise OSError(_EINVAL)
        if adv_data is not None:
            self._adv_data = bytes(adv_data)
        if resp_data is not None:
            self._resp_data = bytes(resp_data)
        self._adv = None if interval_us is None else connectable
        self._advertised = self._advertised or interval_us is not None
        if not self._hooked:  # the machine shim powers off at the scenario's end: say goodbye then
            hook = getattr(sys.modules.get("machine"), "on_power_off", None)
            if hook:
                self._hooked = True
                hook(self._power_off)
        self._registry_write()

    def gap_disconnect(self, conn):
        if not self._connected or conn != 0:
            return False
        self._drop(_HCI_USER, True)
        return True

    def gattc_exchange_mtu(self, conn):
        if not self._connected or conn != 0:
            raise OSError(_ENOTCONN)
        if self._mtu_done:
            raise OSError(_EALREADY)
        self._mtu_asked = True  # done right after the connect IRQ returns

    # Bridge: the listening socket, the registry entry, frames -------------------------

    def _open(self):
        port = int(os.getenv("WEARS_SIM_PORT") or "0")
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(1 if port else 50):
            # MicroPython's socket cannot say which port the OS picked: pick one ourselves.
            self._port = port or 20000 + int.from_bytes(os.urandom(2), "little") % 40000
            try:
                s.bind(socket.getaddrinfo("127.0.0.1", self._port)[0][-1])
                break
            except OSError:
                pass  # taken: listen() below fails if every try was
        s.listen(1)
        s.setblocking(False)
        self._listen = s
        self._poll.register(s, select.POLLIN)
        if not self._entry:
            folder = os.getenv("WEARS_SIM_REGISTRY") or "/tmp/wears-sim-%d" % _proc("Uid:")
            try:
                os.mkdir(folder)
            except OSError:
                pass  # it exists
            self._entry = "%s/%s.json" % (folder, self.address.replace(":", "-"))
            if hasattr(time, "add_poller"):
                time.add_poller(self._poller)
            self._prev_atexit = sys.atexit(self._atexit)

    def _close(self, reason):
        self._drop(reason, True)
        try:
            os.remove(self._entry)
        except OSError:
            pass
        if self._listen:
            self._poll.unregister(self._listen)
            self._listen.close()
            self._listen = self._adv = None

    def _power_off(self, *args):
        self._down = True  # no more IRQs: the firmware is going away
        self.active(False)

    def _atexit(self):
        self._power_off()
        if self._prev_atexit:
            self._prev_atexit()

    def _registry_write(self):
        if self._down or not self._advertised:
            return
        advertising = self._adv is not None and not self._connected
        info = {"name": self._cfg["gap_name"].decode(), "address": self.address, "port": self._port,
                "pid": _proc("Pid:"), "rssi": int(os.getenv("WEARS_SIM_RSSI") or "-55"),
                "advertising": advertising, "connectable": advertising and self._adv,
                "services": _ad_uuids(self._resp_data, _ad_uuids(self._adv_data, [])),
                "adv": hexlify(self._adv_data).decode(), "resp": hexlify(self._resp_data).decode()}
        with open(self._entry + ".tmp", "w") as f:
            json.dump(info, f)
        os.rename(self._entry + ".tmp", self._entry)

    def _poller(self, timeout_ms):
        if self._busy:  # an IRQ handler slept: the stack does not call itself again
            return
        self._busy = True
        try:
            if not self._started and self._listen and self._advertised and not self._autostart:
                while not self._started and self._listen:
                    self._service(-1)  # the watch's time stands still until a host comes
                time.hold()
            else:
                self._service(timeout_ms)
        finally:
            self._busy = False

    def _service(self, timeout_ms):
        if self._faults and self._connected and self._faults.cut_due():
            self._drop(_HCI_TIMEOUT, False)
        self._events()
        link = accept = False
        for obj, _ in self._poll.ipoll(timeout_ms):
            if obj is self._listen:
                accept = True
            else:
                link = True
        while link and self._sock and self._read_frame():
            pass
        self._events()  # a central that just left lets the firmware advertise before the next comes
        if accept:
            self._accept()
        self._flush()

    def _events(self):
        """Flush, then raise the IRQs that follow earlier calls (disconnection, indication)."""
        self._flush()
        if self._lost:
            self._lost = False
            self._irq(_IRQ_CENTRAL_DISCONNECT, (0, 0, self._peer))
        if self._indicated:
            self._irq(_IRQ_GATTS_INDICATE_DONE, (0, self._indicated, 0))
            self._indicated = 0

    def _accept(self):
        try:
            sock, _ = self._listen.accept()
        except OSError:
            return
        if self._sock or not self._adv:  # one central at a time, and only while connectable
            sock.close()
            return
        body = json.dumps({"name": self._cfg["gap_name"].decode(), "address": self.address,
                           "services": self._table})
        try:
            sock.write(struct.pack("<HBH", len(body) + 3, _HELLO, _BRIDGE_VERSION))
            sock.write(body)
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        self._sock = sock
        self._rx_n = self._tx_n = 0
        self._poll.register(sock, select.POLLIN)

    def _put(self, op, arg, status, data):
        size = 5 + (status >= 0) + (len(data) if data is not None else 0)
        if self._tx_n + size > _TX_SIZE:
            self._flush()
        if not self._sock:
            return
        n = self._tx_n
        struct.pack_into("<HBH", self._tx, n, size - 2, op, arg)
        if status >= 0:
            self._tx[n + 5] = status
        if data is not None:
            self._tx[n + size - len(data):n + size] = data
        self._tx_n = n + size

    def _flush(self):
        """Hand every queued byte to the OS, waiting in real time for a slow host."""
        if self._sock and self._tx_n:
            try:
                self._sock.setblocking(True)
                sent = 0
                while sent < self._tx_n:
                    sent += self._sock.write(self._tx, sent, self._tx_n - sent)
                self._sock.setblocking(False)
            except OSError:
                self._drop(_HCI_TIMEOUT, False)
        self._tx_n = 0

    def _read_frame(self):
        rx, n = self._rx, self._rx_n
        want = 2 + (rx[0] | rx[1] << 8) if n >= 2 else 2
        if not 2 < want <= _RX_SIZE and n >= 2:
            self._drop(_HCI_TIMEOUT, False)  # not a bridge frame: hang up
            return False
        if n == want:
            self._rx_n = 0
            self._dispatch(rx[2], rx[3] | rx[4] << 8, want)
            return True
        try:
            got = self._sock.readinto(self._rxv[n:want])
        except OSError:
            got = 0
        if got == 0:  # the host went away without a goodbye
            self._drop(_HCI_TIMEOUT, False)
        if not got:
            return False
        self._rx_n = n + got
        return True

    def _dispatch(self, op, arg, end):
        if op == _H_CONNECT and not self._connected:
            self._connect(arg, end)
        elif op == _H_DISCONNECT:
            self._drop(_HCI_USER, False)
        elif op == _H_WRITE and self._connected:
            self._write(arg, self._rx[5] & 1, self._rxv[6:end])
        elif op == _H_READ and self._connected:
            a = self._attrs.get(arg)
            c = self._attrs.get(arg - 1)
            if a:
                ok = a[_FLAGS] & FLAG_READ
                self._put(_READ_RSP, arg, 0 if ok else _ATT_READ_NOT_PERMITTED,
                          memoryview(a[_BUF])[:a[_LEN]] if ok else None)
            elif c and c[_FLAGS] & 0x30:  # a CCCD
                self._put(_READ_RSP, arg, 0, bytes((c[_SUB], 0)))
            else:
                self._put(_READ_RSP, arg, _ATT_INVALID_HANDLE, None)

    def _connect(self, peer_mtu, end):
        if end >= 11:
            self._peer[0:6] = self._rx[5:11]
        self._connected = self._started = True
        if self._faults:
            self._faults.connected()
        self._adv = None  # NimBLE stops advertising when a central connects
        self._mtu = _MTU_MIN
        self._peer_mtu = peer_mtu
        self._mtu_done = self._mtu_asked = False
        for a in self._attrs.values():
            a[_SUB] = 0
        self._registry_write()
        self._irq(_IRQ_CENTRAL_CONNECT, (0, 0, self._peer))
        self._irq(_IRQ_CONNECTION_UPDATE, (0, _INTERVAL, 0, _SUPERVISION, 0))
        if self._connected and (self._mtu_asked or peer_mtu > _MTU_MIN):
            # The central asks for its MTU on connecting (BlueZ does); the lower one wins.
            self._mtu = max(_MTU_MIN, min(peer_mtu, self._cfg["mtu"]))
            self._mtu_done = True
            self._irq(_IRQ_MTU_EXCHANGED, (0, self._mtu))
        self._put(_CONNECTED, self._mtu, -1, None)

    def _write(self, handle, response, data):
        a = self._attrs.get(handle)
        c = self._attrs.get(handle - 1)
        status = 0
        if a is None and c and c[_FLAGS] & 0x30:  # a CCCD: the central (un)subscribes
            c[_SUB] = data[0] if len(data) else 0
        elif a is None:
            status = _ATT_INVALID_HANDLE
        elif not a[_FLAGS] & (FLAG_WRITE if response else FLAG_WRITE_NO_RESPONSE):
            status = _ATT_WRITE_NOT_PERMITTED
        else:
            start = a[_LEN] if a[_FLAGS] & _APPEND else 0
            n = min(len(data), len(a[_BUF]) - start)
            a[_BUF][start:start + n] = data[:n]
            a[_LEN] = start + n
            self._irq(_IRQ_GATTS_WRITE, (0, handle))
        if response:
            self._put(_WRITE_RSP, handle, status, None)

    def _drop(self, reason, goodbye):
        """End the link, telling the host why when `goodbye`. The IRQ follows at the next
        poll, as the real stack's event arrives after the call that caused it."""
        if goodbye:
            self._put(_DISCONNECT, reason, -1, None)
            self._flush()
        if self._sock:
            self._poll.unregister(self._sock)
            self._sock.close()
            self._sock = None
        self._tx_n = self._rx_n = 0
        self._lost = self._lost or self._connected
        self._connected = False


# Built at import: a real stack's buffers are C memory outside the MicroPython heap, so the
# shim's should not land between the firmware's objects, fragmenting what the firmware has.
_ble = _BLE()


def BLE():
    """The one radio of the virtual watch."""
    return _ble

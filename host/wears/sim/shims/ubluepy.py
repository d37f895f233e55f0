"""MicroPython's `ubluepy` (nRF port) for the virtual watch, bridged like the `bluetooth` shim.

The peripheral subset of ubluepy as the nRF port has it: UUID, Service, Characteristic,
Peripheral (addService, setConnectionHandler, advertise, advertise_stop, getServices),
constants. It drives the `bluetooth` shim's stack, so the host reaches it over the same
bridge (docs/virtual-watch.md). As on the real port: the ATT MTU stays 23, attribute values
hold 20 bytes, events go to the connection handler as (id, handle, data) with the written
bytes for EVT_GATTS_WRITE, Characteristic.write notifies a characteristic that can notify
(OSError when that fails: no connection, too long) and sets the value of one that cannot.
"""

import bluetooth
from micropython import const

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_VALUE_MAX = const(20)  # GATT_MTU_SIZE_DEFAULT - 3: the port's max_len of every value
_ADV_MAX = const(31)
_ENOTCONN = const(107)
_EINVAL = const(22)


class constants:
    EVT_GAP_CONNECTED = const(16)
    EVT_GAP_DISCONNECTED = const(17)
    EVT_GATTS_WRITE = const(80)
    UUID_CCCD = const(0x2902)
    ADDR_TYPE_PUBLIC = const(0)
    ADDR_TYPE_RANDOM_STATIC = const(1)


class UUID:
    def __init__(self, value):
        self.value = value.value if isinstance(value, UUID) else value


class Characteristic:
    PROP_BROADCAST = const(0x01)
    PROP_READ = const(0x02)
    PROP_WRITE_WO_RESP = const(0x04)
    PROP_WRITE = const(0x08)
    PROP_NOTIFY = const(0x10)
    PROP_INDICATE = const(0x20)
    PROP_AUTH_SIGNED_WR = const(0x40)
    ATTR_CCCD = const(0x01)

    def __init__(self, uuid, props=0x0A, attrs=0):
        if not isinstance(uuid, UUID):
            raise ValueError("Invalid UUID parameter")
        self._uuid = uuid
        self._props = props
        self._attrs = attrs
        self._handle = 0
        self._value = b""
        self._peripheral = None

    def uuid(self):
        return self._uuid

    def properties(self):
        return self._props

    def write(self, data, with_response=False):
        if isinstance(data, str):  # the port takes any buffer, str included
            data = data.encode()
        p = self._peripheral
        if p is None or not p._ble:
            self._value = bytes(data)  # before advertise(): kept for registration
            return
        ble = p._ble
        if len(data) > _VALUE_MAX:
            raise OSError(_EINVAL)
        if self._props & Characteristic.PROP_NOTIFY:
            if not ble._connected:
                raise OSError(_ENOTCONN)
            ble.gatts_write(self._handle, data)
            ble.gatts_notify(0, self._handle)
        else:
            ble.gatts_write(self._handle, data)

    def read(self):
        return None  # a peripheral's read gives None on the nRF port


class Service:
    PRIMARY = const(1)
    SECONDARY = const(2)

    def __init__(self, uuid, type=1):
        if not isinstance(uuid, UUID):
            raise ValueError("Invalid UUID parameter")
        self._uuid = uuid
        self._chars = []

    def addCharacteristic(self, c):
        self._chars.append(c)

    def getCharacteristics(self):
        return self._chars

    def getCharacteristic(self, uuid):
        for c in self._chars:
            if c._uuid.value == uuid.value:
                return c
        return None

    def uuid(self):
        return self._uuid


class Peripheral:
    def __init__(self, device_addr=None, addr_type=None):
        self._services = []
        self._handler = None
        self._ble = None

    def addService(self, service):
        self._services.append(service)

    def getServices(self):
        return self._services

    def setConnectionHandler(self, fn):
        self._handler = fn

    def setNotificationHandler(self, fn):
        pass  # central role only

    def _register(self):
        ble = bluetooth.BLE()
        ble.active(True)
        ble.irq(self._irq)
        defs = tuple((bluetooth.UUID(s._uuid.value), tuple(
            (bluetooth.UUID(c._uuid.value), c._props) for c in s._chars)) for s in self._services)
        handles = ble.gatts_register_services(defs)
        for s, hs in zip(self._services, handles):
            for c, h in zip(s._chars, hs):
                c._handle = h
                c._peripheral = self
                if c._value:
                    ble.gatts_write(h, c._value)
        self._ble = ble

    def advertise(self, device_name=None, services=None, data=None, connectable=None):
        if self._ble is None:
            self._register()
        payload = bytearray()
        if device_name:
            name = device_name.encode()
            payload += bytes((len(name) + 1, 0x09)) + name
            self._ble.config(gap_name=device_name)
        if not data:
            payload += b"\x02\x01\x06"
        for s in services or ():
            v = s._uuid.value
            if isinstance(v, int):
                payload += bytes((3, 0x03, v & 0xFF, v >> 8))
            else:
                raw = bytes(reversed(bytes.fromhex(v.replace("-", ""))))
                payload += bytes((17, 0x07)) + raw
        if data:
            payload += bytes(data)
            i = 0
            while i + 1 < len(data):  # scanners show the advertised name: the registry too
                if data[i + 1] in (0x08, 0x09):
                    self._ble.config(gap_name=bytes(data[i + 2:i + 1 + data[i]]).decode())
                i += 1 + data[i]
        if len(payload) > _ADV_MAX:
            raise OSError(_EINVAL)  # "Can not fit ... in the advertisment packet"
        self._ble.gap_advertise(100000, adv_data=payload, connectable=connectable is None or bool(connectable))

    def advertise_stop(self):
        if self._ble:
            self._ble.gap_advertise(None)

    def disconnect(self):
        pass  # as on the nRF port: not implemented there

    def _irq(self, event, data):
        fn = self._handler
        if fn is None:
            return
        if event == _IRQ_GATTS_WRITE:
            fn(constants.EVT_GATTS_WRITE, data[1], bytearray(self._ble.gatts_read(data[1])))
        elif event == _IRQ_CENTRAL_CONNECT:
            fn(constants.EVT_GAP_CONNECTED, data[0], None)
        elif event == _IRQ_CENTRAL_DISCONNECT:
            fn(constants.EVT_GAP_DISCONNECTED, data[0], None)

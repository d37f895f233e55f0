"""BLE radio of the watch on `ubluepy` (MicroPython's nRF port): watch.radio_gatt's layout.

ubluepy keeps the ATT MTU at 23 and attribute values at 20 bytes, offers no pairing, and
tells the app neither characteristic handles nor which characteristic a write went to. So
here WEARS packets longer than 20 bytes travel in segments (watch.segments) both ways, the
app tells commands apart by their packet type, and only the HMAC challenge-response
guards control. Characteristic.write notifies when the characteristic can notify (and the
SoftDevice keeps that as its value), else it sets the value reads return.
"""

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import ubluepy

from watch import protocol as P
from watch.radio_gatt import ADV_FLAGS_LE_ONLY, CONTROL, GattServer, adv_payload

_EVT_GAP_CONNECTED = const(16)
_EVT_GAP_DISCONNECTED = const(17)
_EVT_GATTS_WRITE = const(80)


def _char(service, uuid, props, cccd=False):
    C = ubluepy.Characteristic
    c = C(ubluepy.UUID(uuid), props=props, attrs=C.ATTR_CCCD if cccd else 0)
    service.addCharacteristic(c)
    return c


class Radio(GattServer):
    segmenting = True
    # ble_drv_attr_s_notify waits for room among its 6 buffers instead of refusing: what the
    # link carried while the app slept is room again (a 100 ms loop spans 3 events of 30 ms).
    piles = 4

    def __init__(self, name, model_number, firmware_revision):
        GattServer.__init__(self, name, model_number, firmware_revision)
        self._p = None

    def start(self):
        C = ubluepy.Characteristic
        notify = C.PROP_NOTIFY
        p = ubluepy.Peripheral()
        (service, stream, prediction, control, event, upload, hr_service, hr_measurement, battery_service,
         battery_level, device_info, model_number, firmware_revision) = P.UUIDS
        hr = ubluepy.Service(ubluepy.UUID(hr_service))
        self._h_hr = _char(hr, hr_measurement, notify, True)
        battery = ubluepy.Service(ubluepy.UUID(battery_service))
        self._h_battery = _char(battery, battery_level, C.PROP_READ | notify, True)
        info = ubluepy.Service(ubluepy.UUID(device_info))
        _char(info, model_number, C.PROP_READ).write(self.model_number)
        _char(info, firmware_revision, C.PROP_READ).write(self.firmware_revision)
        wears = ubluepy.Service(ubluepy.UUID(service))
        self._h_stream = _char(wears, stream, notify, True)
        self._h_prediction = _char(wears, prediction, notify | C.PROP_READ, True)
        self._h_control = _char(wears, control, C.PROP_WRITE | notify, True)
        self._h_event = _char(wears, event, notify, True)
        _char(wears, upload, C.PROP_WRITE)
        for s in (hr, battery, info, wears):
            p.addService(s)
        p.setConnectionHandler(self._event)
        self._p = p
        # One 31-byte payload and no scan response: the name and the Heart Rate service fit,
        # the 128-bit WEARS service does not (a host finds it after connecting).
        self._adv = adv_payload(ADV_FLAGS_LE_ONLY, name=self.name, uuids16=(hr_service,))
        self._advertise()

    def _started(self):
        return self._p is not None

    def _advertise(self):
        p = self._p
        if p is not None:
            p.advertise(data=self._adv)

    def on_power_off(self):
        """Stop advertising; ubluepy cannot end a connection (its disconnect does nothing)."""
        self._off = True
        if self._p is not None:
            try:
                self._p.advertise_stop()
            except OSError:
                pass

    def _send(self, char, data):
        char.write(data)

    def _keep(self, char, data):
        pass  # a notification is the value too (sd_ble_gatts_hvx); nothing to keep apart

    # Events: run in the SoftDevice's interrupt; copies and flags only ----------------

    def _event(self, event, handle, data):
        if event == _EVT_GATTS_WRITE:
            if data is not None:
                self._receive(CONTROL, data)  # the packet type tells a model chunk from a command
        elif event == _EVT_GAP_CONNECTED:
            self._connected(handle)
        elif event == _EVT_GAP_DISCONNECTED:
            self._disconnected(handle)
            if not self._off:
                self._advertise()

"""BLE radio of the watch on MicroPython's `bluetooth` API (ESP32): watch.radio_gatt's layout."""

try:
    from micropython import const
except ImportError:  # CPython: the host imports the pure encoders
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

try:
    import bluetooth
except ImportError:  # CPython has no `bluetooth`; only Radio needs it
    bluetooth = None  # pyright: ignore[reportAssignmentType]

from watch import protocol as P
from watch.radio_gatt import (CONTROL, MAX_WRITE, UPLOAD, GattServer, adv_payload, advertising,  # noqa: F401
                              encode_heart_rate, uuid128_le)

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

_MTU = const(247)  # ATT MTU asked for: fills one 251-byte LE data-length PDU (247 + 4-byte L2CAP header)
_ADV_INTERVAL_US = const(100000)  # 100 ms: found within a second by any scanner, cheap enough on a watch


def _services():
    if bluetooth is None:
        raise OSError(19)  # ENODEV: this port has no `bluetooth`
    uuid = bluetooth.UUID
    notify, read, write = (_FLAG_NOTIFY,), (_FLAG_READ,), (_FLAG_WRITE,)
    (service, stream, prediction, control, event, upload, hr_service, hr_measurement, battery_service,
     battery_level, device_info, model_number, firmware_revision) = P.UUIDS
    return (
        (uuid(hr_service), ((uuid(hr_measurement),) + notify,)),
        (uuid(battery_service), ((uuid(battery_level), _FLAG_READ | _FLAG_NOTIFY),)),
        (uuid(device_info), ((uuid(model_number),) + read, (uuid(firmware_revision),) + read)),
        (uuid(service), (
            (uuid(stream),) + notify,
            (uuid(prediction), _FLAG_NOTIFY | _FLAG_READ),
            (uuid(control), _FLAG_WRITE | _FLAG_NOTIFY),
            (uuid(event),) + notify,
            (uuid(upload),) + write,
        )),
    )


class Radio(GattServer):
    """The GATT server on `bluetooth.BLE`: the MTU is negotiated up to 247, LE Secure
    Connections bonding is asked for, writes are told apart by their characteristic."""

    def __init__(self, name, model_number, firmware_revision):
        GattServer.__init__(self, name, model_number, firmware_revision)
        self._ble = None

    def start(self):
        if bluetooth is None:
            raise OSError(19)  # ENODEV: this port has no `bluetooth` (watch.radio_ubluepy serves the nRF port)
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
        ble.gatts_set_buffer(self._h_control, MAX_WRITE)
        ble.gatts_set_buffer(self._h_upload, MAX_WRITE)
        ble.gatts_set_buffer(self._h_prediction, MAX_WRITE)
        ble.gatts_write(h_model, self.model_number)
        ble.gatts_write(h_firmware, self.firmware_revision)
        ble.gatts_write(self._h_battery, bytes(self._battery))
        self._adv = advertising()
        self._resp = adv_payload(name=self.name)
        self._advertise()

    def _started(self):
        return self._ble is not None

    def _advertise(self):
        ble = self._ble
        if ble is not None:
            ble.gap_advertise(_ADV_INTERVAL_US, self._adv, resp_data=self._resp)

    def on_power_off(self):
        """Say goodbye: stop advertising and end the connection cleanly."""
        self._off = True
        ble = self._ble
        if ble is None:
            return
        try:
            ble.gap_advertise(None)  # pyright: ignore[reportArgumentType] (None stops: the stub says int)
            if self._conn is not None:
                ble.gap_disconnect(self._conn)
        except OSError:
            pass

    def _send(self, handle, data):
        ble = self._ble
        if ble is None:
            raise OSError(107)  # ENOTCONN
        # The stub lacks gatts_notify's first argument, the connection handle.
        ble.gatts_notify(self._conn, handle, data)  # pyright: ignore[reportCallIssue]

    def _keep(self, handle, data):
        ble = self._ble
        if ble is not None:
            ble.gatts_write(handle, data)

    # IRQ: runs between the app's bytecodes; copies and flags only -------------------

    def _irq(self, event, data):
        ble = self._ble
        if ble is None:
            return
        if event == _IRQ_GATTS_WRITE:
            handle = data[1]
            if handle == self._h_control:
                self._receive(CONTROL, ble.gatts_read(handle))
            elif handle == self._h_upload:
                self._receive(UPLOAD, ble.gatts_read(handle))
        elif event == _IRQ_CENTRAL_CONNECT:
            self._connected(data[0])
            try:
                ble.gattc_exchange_mtu(data[0])
            except OSError:
                pass  # the central started the exchange first
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self._disconnected(data[0])
            if not self._off:
                self._advertise()
        elif event == _IRQ_MTU_EXCHANGED:
            if data[0] == self._conn:
                self._mtu = data[1]
        elif event == _IRQ_CONNECTION_UPDATE:
            if data[0] == self._conn and data[4] == 0:
                self._interval_ms = max(1, data[1] * 5 // 4)  # units of 1.25 ms

"""USB serial as a second transport: a bleak client backend that speaks the serial link.

`BleakClient(port, backend=SerialBleakClient)` reaches a watch on a serial port (a USB
cable, a UART bridge, or a virtual watch's pseudo-terminal) with the same GATT surface as
over BLE, so `WatchClient`, `record` and everything above them run unchanged. The frames
(COBS, CRC-16) and channels are defined once, in `firmware/watch/radio_serial.py`
(docs/protocol.md, "USB serial link").

Example:
    >>> async def firmware_revision(port):
    ...     async with BleakClient(port, backend=SerialBleakClient) as client:
    ...         return await client.read_gatt_char("2a26")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Optional, TypedDict

import serial
from bleak.args import SizedBuffer
from bleak.assigned_numbers import gatt_char_props_to_strs
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bleak.uuids import normalize_uuid_16, normalize_uuid_str

from watch import radio_serial as L

logger = logging.getLogger(__name__)

__all__ = ["SerialBleakClient", "SerialClientArgs", "serial_backend", "encode_frame", "FrameDecoder"]

DEFAULT_BAUDRATE = 921600  # what the virtual watch's UART runs at; USB CDC ignores it
_CCCD = normalize_uuid_16(0x2902)
_CONNECT_RETRY_S = 0.5  # CONNECT is sent again until the watch answers (it may be booting)
_REQUEST_TIMEOUT_S = 30.0  # as an ATT transaction
_READ_TIMEOUT_S = 0.05  # the reader thread looks at its stop flag this often
_WRITE_TIMEOUT_S = 5.0
_HCI_TIMEOUT = 0x08  # the link broke without a word
_CCCD_OFFSET = 0x100  # descriptor handles: channel + this (a serial link has no real CCCDs)


class SerialClientArgs(TypedDict, total=False):
    """Options of `SerialBleakClient`, passed as `BleakClient(..., serial={...})`."""

    baudrate: int
    """Line rate for a UART bridge (default 921600); USB CDC ports ignore it."""


def encode_frame(op: int, channel: int, value: bytes = b"") -> bytes:
    """One frame as it goes on the wire: COBS of (op, channel, value, CRC-16), then 0x00."""
    if len(value) > L.MAX_VALUE:
        raise ValueError(f"a serial frame carries at most {L.MAX_VALUE} bytes, not {len(value)}")
    out = bytearray(L.MAX_ENCODED)
    n = L.pack_frame(bytearray(L.MAX_RAW), op, channel, value, len(value), out)
    return bytes(out[:n])


class FrameDecoder:
    """Bytes in, frames out: `feed(data)` returns the intact (op, channel, value) frames in it.

    A frame cut short, corrupted or too long is skipped and counted in `bad`; decoding
    resumes after the next 0x00, so one bad byte costs at most one frame.
    """

    def __init__(self) -> None:
        self._reader = L.FrameReader()

    @property
    def bad(self) -> int:
        return self._reader.bad

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        frames = []
        reader = self._reader
        for b in data:
            n = reader.feed(b)
            if n >= 0:
                frames.append((reader.buf[0], reader.buf[1], bytes(reader.buf[2:n])))
        return frames


def _uuid(value: int | str) -> str:
    return normalize_uuid_16(value) if isinstance(value, int) else normalize_uuid_str(value)


def _services() -> BleakGATTServiceCollection:
    """The GATT table a watch presents on its serial link: `radio_serial.CHANNELS`."""
    collection = BleakGATTServiceCollection()
    services: dict[str, BleakGATTService] = {}
    for channel, service_uuid, char_uuid, props in L.CHANNELS:
        uuid = _uuid(service_uuid)
        service = services.get(uuid)
        if service is None:
            service = services[uuid] = BleakGATTService(None, 0x200 + len(services), uuid)
            collection.add_service(service)
        char = BleakGATTCharacteristic(None, channel, _uuid(char_uuid), sorted(gatt_char_props_to_strs(props)),
                                       lambda: L.MAX_VALUE, service)
        collection.add_characteristic(char)
        if props & 0x30:
            collection.add_descriptor(BleakGATTDescriptor(None, channel + _CCCD_OFFSET, _CCCD, char))
    return collection


class SerialBleakClient(BaseBleakClient):
    """Bleak client backend for a watch on a serial port; see `BaseBleakClient` for the contract.

    The address is the port (`/dev/ttyACM0`, `COM3`, a virtual watch's `serial_port`).
    Frames that fail their CRC or make no sense are counted in `bad_frames` and logged;
    the link stays up.

    Keyword Args:
        serial (SerialClientArgs): line settings.
    """

    session_source = "serial"
    """What `wears.record` stores as the session's source."""

    def __init__(self, address_or_ble_device: BLEDevice | str, *,
                 disconnected_callback: Optional[Callable[[], None]] = None, services: Optional[set[str]] = None,
                 timeout: float = 10.0, serial: SerialClientArgs | None = None, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self._args: SerialClientArgs = serial or {}
        self._port: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._decoder = FrameDecoder()
        self._connected = False
        self._closing = False
        self._name: str | None = None
        self._max_packet = 20
        self._callbacks: dict[int, NotifyCallback] = {}
        self._hello: asyncio.Future[bytes] | None = None
        self._pending: asyncio.Future[tuple[int, int, bytes]] | None = None
        self._lock = asyncio.Lock()
        self.unexpected_frames = 0
        """Intact frames that made no sense here (unknown op, an answer nobody asked for)."""
        self.disconnect_reason: int | None = None
        """HCI reason of the last disconnection (0x13 ended by either side, 0x15 the watch
        powered off, 0x08 the port broke)."""

    @property
    def name(self) -> str:
        return self._name or self.address

    @property
    def mtu_size(self) -> int:
        return self._max_packet + 3  # what a BLE link carrying the same packets would have

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def bad_frames(self) -> int:
        """Frames that were cut, corrupted, too long or not for this link, since connecting."""
        return self._decoder.bad + self.unexpected_frames

    # Connection -------------------------------------------------------------------------

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._connected:
            return
        try:
            self._port = serial.Serial(self.address, baudrate=self._args.get("baudrate", DEFAULT_BAUDRATE),
                                       timeout=_READ_TIMEOUT_S, write_timeout=_WRITE_TIMEOUT_S)
        except (serial.SerialException, ValueError, OSError) as e:
            raise BleakError(f"cannot open serial port {self.address}: {e}") from e
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._decoder = FrameDecoder()
        self.unexpected_frames = 0
        self._hello = self._loop.create_future()
        self._thread = threading.Thread(target=self._read_port, name=f"serial-{self.address}", daemon=True)
        self._thread.start()
        try:
            async with asyncio.timeout(self._timeout):
                while not self._hello.done():
                    # A 0x00 first ends whatever half frame the watch holds from an earlier host.
                    self._port_write(b"\x00" + encode_frame(L.OP_CONNECT, 0, bytes((L.LINK_VERSION,))))
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._hello), _CONNECT_RETRY_S)
                hello = self._hello.result()
        except TimeoutError as e:
            self._close_port()
            raise BleakError(f"no WEARS watch answered on {self.address} within {self._timeout:g} s") from e
        except BaseException:
            self._close_port()
            raise
        if len(hello) < 3 or hello[0] != L.LINK_VERSION:
            self._close_port()
            raise BleakError(f"the watch on {self.address} speaks serial link version "
                             f"{hello[0] if hello else '?'}, this host {L.LINK_VERSION}")
        self._max_packet = hello[1] | hello[2] << 8
        self._name = hello[3:].decode(errors="replace") or None
        self.services = _services()
        self._connected = True
        self._closing = False
        self.disconnect_reason = None

    async def disconnect(self) -> None:
        if not self._connected:
            self._close_port()
            return
        self._closing = True
        with contextlib.suppress(BleakError):
            self._port_write(encode_frame(L.OP_DISCONNECT, 0))
        self._link_lost(L.HCI_USER)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        logger.debug("a serial link needs no pairing")

    async def unpair(self) -> None:
        logger.debug("a serial link keeps no pairing to remove")

    # The port ---------------------------------------------------------------------------

    def _read_port(self) -> None:
        """Reader thread: hands every byte to the event loop; a broken port ends the link."""
        port, loop = self._port, self._loop
        assert loop is not None
        try:
            while not self._stop.is_set():
                data = port.read(max(1, port.in_waiting))
                if data:
                    loop.call_soon_threadsafe(self._on_bytes, data)
        except (serial.SerialException, OSError, TypeError) as e:  # TypeError: pyserial after close()
            if not self._stop.is_set():
                logger.warning("serial port %s failed: %s", self.address, e)
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._link_lost, _HCI_TIMEOUT)

    def _port_write(self, data: bytes) -> None:
        if self._port is None:
            raise BleakError("Not connected")
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as e:
            raise BleakError(f"writing to {self.address} failed: {e}") from e

    def _close_port(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        self._thread = None
        if self._port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._port.close()
        self._port = None

    def _on_bytes(self, data: bytes) -> None:
        bad = self._decoder.bad
        for op, channel, value in self._decoder.feed(data):
            self._on_frame(op, channel, value)
        if self._decoder.bad > bad:
            logger.warning("%s: %d malformed serial frame(s) skipped", self.address, self._decoder.bad - bad)

    def _on_frame(self, op: int, channel: int, value: bytes) -> None:
        if op == L.OP_CONNECTED:
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(value)
            return
        if not self._connected:
            return  # frames for an earlier host, still in the port's buffer
        if op == L.OP_NOTIFY:
            callback = self._callbacks.get(channel)
            if callback is not None:
                try:
                    callback(bytearray(value))
                except Exception:
                    logger.exception("notification callback for channel %d failed", channel)
        elif op in (L.OP_READ_RSP, L.OP_WRITE_RSP) and self._pending is not None and not self._pending.done():
            self._pending.set_result((op, channel, value))
        elif op == L.OP_GOODBYE:
            self._link_lost(value[0] if value else _HCI_TIMEOUT)
        else:
            self.unexpected_frames += 1
            logger.warning("%s: unexpected serial frame op %#x on channel %d", self.address, op, channel)

    def _link_lost(self, reason: int) -> None:
        was_connected = self._connected
        self._connected = False
        self.disconnect_reason = L.HCI_USER if self._closing else reason
        self._close_port()
        for future in (self._pending, self._hello):
            if future is not None and not future.done():
                future.set_exception(BleakError(f"the watch on {self.address} disconnected"))
        if was_connected and not self._closing and self._disconnected_callback is not None:
            try:
                self._disconnected_callback()
            except Exception:
                logger.exception("disconnected callback for %s failed", self.address)

    # GATT -------------------------------------------------------------------------------

    async def _request(self, op: int, channel: int, value: bytes, answer: int) -> bytes:
        """One request at a time, as ATT allows; returns the answer after its status byte."""
        if not self._connected:
            raise BleakError("Not connected")
        async with self._lock:
            future: asyncio.Future[tuple[int, int, bytes]] = asyncio.get_running_loop().create_future()
            self._pending = future
            try:
                self._port_write(encode_frame(op, channel, value))
                async with asyncio.timeout(_REQUEST_TIMEOUT_S):
                    got, got_channel, data = await future
            except TimeoutError as e:
                raise BleakError(f"request to channel {channel} on {self.address} timed out") from e
            finally:
                self._pending = None
        if got != answer or got_channel != channel or not data:
            raise BleakError(f"expected op {answer:#x} for channel {channel}, got op {got:#x} for {got_channel}")
        if data[0] != L.ATT_OK:
            raise BleakGATTProtocolError(data[0])
        return data[1:]

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs: Any) -> bytearray:
        return bytearray(await self._request(L.OP_READ, characteristic.handle, b"", L.OP_READ_RSP))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False,
                                   **kwargs: Any) -> bytearray:
        channel = descriptor.handle - _CCCD_OFFSET
        return bytearray(b"\x01\x00" if channel in self._callbacks else b"\x00\x00")

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer,
                              response: bool) -> None:
        value = bytes(data)
        if len(value) + 1 > L.MAX_VALUE:
            raise BleakError(f"a serial write carries at most {L.MAX_VALUE - 1} bytes, not {len(value)}")
        if response:
            await self._request(L.OP_WRITE, characteristic.handle, b"\x01" + value, L.OP_WRITE_RSP)
        elif not self._connected:
            raise BleakError("Not connected")
        else:
            self._port_write(encode_frame(L.OP_WRITE, characteristic.handle, b"\x00" + value))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        raise BleakError("a serial link has no descriptors to write; use start_notify")

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        # The watch sends every notification over its serial link; subscribing is the host's business.
        if "notify" not in characteristic.properties and "indicate" not in characteristic.properties:
            raise BleakError(f"characteristic {characteristic.uuid} does not notify or indicate")
        self._callbacks[characteristic.handle] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._callbacks.pop(characteristic.handle, None)


def serial_backend(baudrate: int = DEFAULT_BAUDRATE) -> type[SerialBleakClient]:
    """`SerialBleakClient` with another line rate, for `WatchClient(..., backend=...)`."""
    if baudrate == DEFAULT_BAUDRATE:
        return SerialBleakClient

    class _Client(SerialBleakClient):
        def __init__(self, *args: Any, serial: SerialClientArgs | None = None, **kwargs: Any) -> None:
            super().__init__(*args, serial={"baudrate": baudrate, **(serial or {})}, **kwargs)

    _Client.__name__ = _Client.__qualname__ = f"SerialBleakClient{baudrate}"
    return _Client

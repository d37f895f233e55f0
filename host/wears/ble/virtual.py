"""Bleak backend that reaches virtual watches: `BleakClient(..., backend=VirtualBleakClient)`
and `BleakScanner(..., backend=VirtualBleakScanner)`.

A virtual watch (`wears.sim.runner.VirtualWatch`) is the firmware in the MicroPython binary
with a `bluetooth` shim that serves its GATT table over a local TCP socket and advertises by
writing a JSON entry into a registry folder. The scanner reads that folder; the client speaks
the bridge protocol of docs/virtual-watch.md. Everything above these two classes is bleak's
own `BleakClient` / `BleakScanner`, exactly as with a real watch.

Example:
    >>> async def first_watch():
    ...     devices = await BleakScanner.discover(2.0, service_uuids=[SERVICE_UUID],
    ...                                           backend=VirtualBleakScanner)
    ...     async with BleakClient(devices[0], backend=VirtualBleakClient) as client:
    ...         return await client.read_gatt_char("2a24")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypedDict

from bleak.args import SizedBuffer
from bleak.assigned_numbers import gatt_char_props_to_strs
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bleak.uuids import normalize_uuid_16, normalize_uuid_str

logger = logging.getLogger(__name__)

__all__ = [
    "VirtualBleakClient", "VirtualBleakScanner", "VirtualClientArgs", "VirtualScannerArgs",
    "registry_dir", "read_registry", "find_watch", "parse_advertising",
]

# Bridge frames (docs/virtual-watch.md): u16 length of what follows, u8 op, u16 argument, payload.
HELLO = 0x01
CONNECTED = 0x02
NOTIFY = 0x03
INDICATE = 0x04
READ_RSP = 0x05
WRITE_RSP = 0x06
DISCONNECT = 0x08
CONNECT = 0x81
WRITE = 0x82
READ = 0x83
HOST_DISCONNECT = 0x84
BRIDGE_VERSION = 1

_CCCD = normalize_uuid_16(0x2902)
_ATT_TIMEOUT_S = 30.0  # an ATT transaction times out after 30 s (Core spec Vol 3, Part F, 3.3.3)
_GOODBYE_TIMEOUT_S = 5.0  # how long disconnect() waits for the watch to close its side
_RETRY_S = 0.05  # a refused connection is tried again after this (an advertising interval or two)
_HCI_REMOTE_USER = 0x13  # reason the central gives when it ends the connection
_DEFAULT_MTU = 517  # the ATT MTU BlueZ asks for


class VirtualClientArgs(TypedDict, total=False):
    """Options of `VirtualBleakClient`, passed as `BleakClient(..., virtual={...})`."""

    registry: str
    """Registry folder (default: `WEARS_SIM_REGISTRY`, else `/tmp/wears-sim-<uid>`)."""
    mtu: int
    """The ATT MTU the central asks for (default 517, as BlueZ does)."""


class VirtualScannerArgs(TypedDict, total=False):
    """Options of `VirtualBleakScanner`, passed as `BleakScanner(..., virtual={...})`."""

    registry: str
    """Registry folder (default: `WEARS_SIM_REGISTRY`, else `/tmp/wears-sim-<uid>`)."""
    interval: float
    """Seconds between two looks at the registry (default 0.1: an advertising interval)."""


# Registry -----------------------------------------------------------------------------------

def registry_dir(registry: str | os.PathLike[str] | None = None) -> Path:
    """The folder where running virtual watches advertise: one `<address>.json` each."""
    if registry:
        return Path(registry)
    return Path(os.environ.get("WEARS_SIM_REGISTRY") or f"/tmp/wears-sim-{os.getuid()}")


def _alive(pid: int) -> bool:
    """Whether the process that wrote a registry entry still runs (a killed watch leaves its
    entry behind); True when the entry could not say (pid 0)."""
    if pid <= 0:
        return True
    if Path("/proc").is_dir():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")  # a zombie has powered off already
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def read_registry(registry: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Entries of the virtual watches that are running, advertising or not."""
    entries = []
    folder = registry_dir(registry)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # removed or replaced while we looked
        if _alive(int(entry.get("pid") or 0)):
            entries.append(entry)
    return entries


def find_watch(address: str, registry: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The registry entry of the running virtual watch with this address, or None."""
    path = registry_dir(registry) / (address.upper().replace(":", "-") + ".json")
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if _alive(int(entry.get("pid") or 0)) else None


def parse_advertising(payload: bytes) -> dict[str, Any]:
    """Fields of an advertising or scan response payload (AD structures, Core Specification
    Supplement Part A): local_name, service_uuids, manufacturer_data, service_data, tx_power."""
    out: dict[str, Any] = {"local_name": None, "service_uuids": [], "manufacturer_data": {},
                           "service_data": {}, "tx_power": None}
    i = 0
    while i + 1 < len(payload):
        n, kind = payload[i], payload[i + 1]
        if n == 0:
            break
        value = bytes(payload[i + 2:i + 1 + n])
        if kind in (0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
            width = {0x02: 2, 0x03: 2, 0x04: 4, 0x05: 4}.get(kind, 16)
            for j in range(0, len(value) - width + 1, width):
                out["service_uuids"].append(normalize_uuid_str(value[j:j + width][::-1].hex()))
        elif kind == 0x09 or (kind == 0x08 and out["local_name"] is None):
            out["local_name"] = value.decode(errors="replace")
        elif kind == 0x0A and value:
            out["tx_power"] = struct.unpack("<b", value[:1])[0]
        elif kind in (0x16, 0x20, 0x21):
            width = {0x16: 2, 0x20: 4}.get(kind, 16)
            out["service_data"][normalize_uuid_str(value[:width][::-1].hex())] = value[width:]
        elif kind == 0xFF and len(value) >= 2:
            out["manufacturer_data"][value[0] | value[1] << 8] = value[2:]
        i += 1 + n
    return out


# Client -------------------------------------------------------------------------------------

def _frame(op: int, arg: int, payload: bytes = b"") -> bytes:
    return struct.pack("<HBH", 3 + len(payload), op, arg) + payload


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    (size,) = struct.unpack("<H", await reader.readexactly(2))
    body = await reader.readexactly(size)
    if size < 3:
        raise BleakError(f"malformed bridge frame of {size} bytes")
    return body[0], body[1] | body[2] << 8, body[3:]


class VirtualBleakClient(BaseBleakClient):
    """Bleak client backend for a virtual watch; see `BaseBleakClient` for the contract.

    Keyword Args:
        virtual (VirtualClientArgs): registry folder and requested MTU.
    """

    def __init__(self, address_or_ble_device: BLEDevice | str, *,
                 disconnected_callback: Optional[Callable[[], None]] = None, services: Optional[set[str]] = None,
                 timeout: float = 10.0, virtual: VirtualClientArgs | None = None, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        details = address_or_ble_device.details if isinstance(address_or_ble_device, BLEDevice) else None
        self._entry: dict[str, Any] | None = details if isinstance(details, dict) else None
        self._args: VirtualClientArgs = virtual or {}
        self._wanted_services = services
        self._name: str | None = self._entry.get("name") if self._entry else None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._connected = False
        self._closing = False
        self._mtu = 23
        self._callbacks: dict[int, NotifyCallback] = {}
        self._pending: asyncio.Future[tuple[int, int, bytes]] | None = None
        self._lock = asyncio.Lock()
        self.disconnect_reason: int | None = None
        """HCI reason of the last disconnection (0x13: we ended it, 0x15: the watch powered off)."""

    @property
    def name(self) -> str:
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._connected

    # Connection -------------------------------------------------------------------------

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._connected:
            return
        registry = self._args.get("registry")
        if pair:
            logger.debug("virtual watches need no pairing; connecting to %s without", self.address)
        try:
            async with asyncio.timeout(self._timeout):
                while True:
                    entry = self._lookup(registry)
                    reader, writer = await asyncio.open_connection("127.0.0.1", int(entry["port"]))
                    try:
                        if await self._handshake(reader, writer):
                            break
                    except BaseException:
                        writer.close()
                        raise
                    # Refused: another central is connected (or the watch does not advertise as
                    # connectable). A central waits for the next connectable advertisement.
                    writer.close()
                    await asyncio.sleep(_RETRY_S)
        except TimeoutError as e:
            raise BleakError(f"virtual watch {self.address} did not accept a connection within "
                             f"{self._timeout:g} s: another central is connected, or it does not "
                             "advertise as connectable") from e
        except OSError as e:
            raise BleakError(f"cannot reach virtual watch {self.address}: {e}") from e
        self._reader, self._writer = reader, writer
        self._connected = True
        self._closing = False
        self.disconnect_reason = None
        self._receiver = asyncio.create_task(self._receive(), name=f"virtual-ble-{self.address}")

    def _lookup(self, registry: str | None) -> dict[str, Any]:
        entry = find_watch(self.address, registry)
        if entry is None and self._entry and _alive(int(self._entry.get("pid") or 0)):
            entry = self._entry
        if entry is None:
            raise BleakDeviceNotFoundError(
                self.address, f"Virtual watch {self.address} was not found in {registry_dir(registry)}")
        self._entry = entry
        return entry

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """HELLO, CONNECT, CONNECTED; False when the watch refused the connection."""
        try:
            op, version, payload = await _read_frame(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return False
        if op != HELLO or version != BRIDGE_VERSION:
            raise BleakError(f"virtual watch {self.address} speaks bridge op {op:#x} version {version}, "
                             f"expected HELLO version {BRIDGE_VERSION}")
        hello = json.loads(payload)
        self._name = hello.get("name") or self._name
        self.services = self._service_collection(hello["services"])
        central = os.getpid().to_bytes(4, "little") + b"\x00\xc0"
        writer.write(_frame(CONNECT, self._args.get("mtu", _DEFAULT_MTU), central))
        await writer.drain()
        try:
            op, mtu, _ = await _read_frame(reader)
        except asyncio.IncompleteReadError as e:
            raise BleakError(f"virtual watch {self.address} went away while connecting") from e
        if op != CONNECTED:
            raise BleakError(f"virtual watch {self.address} answered CONNECT with op {op:#x}")
        self._mtu = mtu
        return True

    def _service_collection(self, table: list[Any]) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for service_uuid, handle, characteristics in table:
            uuid = _uuid(service_uuid)
            if self._wanted_services is not None and uuid not in self._wanted_services:
                continue
            service = BleakGATTService(None, handle, uuid)
            collection.add_service(service)
            for char_uuid, value_handle, props, cccd in characteristics:
                char = BleakGATTCharacteristic(
                    None, value_handle, _uuid(char_uuid), sorted(gatt_char_props_to_strs(props)),
                    lambda: self._mtu - 3, service)
                collection.add_characteristic(char)
                if cccd:
                    collection.add_descriptor(BleakGATTDescriptor(None, cccd, _CCCD, char))
        return collection

    async def disconnect(self) -> None:
        if not self._connected or self._writer is None:
            return
        self._closing = True
        try:
            self._writer.write(_frame(HOST_DISCONNECT, _HCI_REMOTE_USER))
            await self._writer.drain()
            if self._receiver is not None:
                # The watch hangs up once it has handled the disconnection.
                await asyncio.wait_for(asyncio.shield(self._receiver), _GOODBYE_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            await self._close()

    async def _close(self) -> None:
        self._connected = False
        if self._receiver is not None and self._receiver is not asyncio.current_task():
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
        self._receiver = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._writer = self._reader = None

    async def _receive(self) -> None:
        assert self._reader is not None
        reason = 0x08  # connection timeout: the link broke without a word
        try:
            while True:
                op, arg, data = await _read_frame(self._reader)
                if op in (NOTIFY, INDICATE):
                    callback = self._callbacks.get(arg)
                    if callback is not None:
                        try:
                            callback(bytearray(data))
                        except Exception:
                            logger.exception("notification callback for handle %d failed", arg)
                elif op in (READ_RSP, WRITE_RSP):
                    if self._pending is not None and not self._pending.done():
                        self._pending.set_result((op, arg, data))
                elif op == DISCONNECT:
                    reason = arg
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError, BleakError):
            pass
        self._link_lost(reason)

    def _link_lost(self, reason: int) -> None:
        was_connected = self._connected
        self._connected = False
        self.disconnect_reason = _HCI_REMOTE_USER if self._closing else reason
        if self._writer is not None:
            self._writer.close()
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(BleakError(f"virtual watch {self.address} disconnected"))
        if was_connected and not self._closing and self._disconnected_callback is not None:
            try:
                self._disconnected_callback()
            except Exception:
                logger.exception("disconnected callback for %s failed", self.address)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        logger.debug("virtual watches need no pairing")

    async def unpair(self) -> None:
        logger.debug("virtual watches keep no pairing to remove")

    # GATT -------------------------------------------------------------------------------

    def _send(self, op: int, handle: int, payload: bytes = b"") -> None:
        if not self._connected or self._writer is None:
            raise BleakError("Not connected")
        self._writer.write(_frame(op, handle, payload))

    async def _request(self, op: int, handle: int, payload: bytes, answer: int) -> bytes:
        """One ATT request at a time, as ATT allows; returns the response after its status."""
        async with self._lock:
            future: asyncio.Future[tuple[int, int, bytes]] = asyncio.get_running_loop().create_future()
            self._pending = future
            try:
                self._send(op, handle, payload)
                assert self._writer is not None
                await self._writer.drain()
                async with asyncio.timeout(_ATT_TIMEOUT_S):
                    got, got_handle, data = await future
            except TimeoutError as e:
                raise BleakError(f"ATT request to handle {handle} timed out") from e
            except OSError as e:
                raise BleakError(f"virtual watch {self.address} disconnected: {e}") from e
            finally:
                self._pending = None
        if got != answer or got_handle != handle:
            raise BleakError(f"expected op {answer:#x} for handle {handle}, got op {got:#x} for {got_handle}")
        if data[:1] != b"\x00":
            raise BleakGATTProtocolError(data[0])
        return data[1:]

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs: Any) -> bytearray:
        return bytearray(await self._request(READ, characteristic.handle, b"", READ_RSP))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False,
                                   **kwargs: Any) -> bytearray:
        return bytearray(await self._request(READ, descriptor.handle, b"", READ_RSP))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer,
                              response: bool) -> None:
        value = bytes(data)
        if response:
            if len(value) > 512:
                raise BleakError(f"a write with response carries at most 512 bytes, not {len(value)}")
            await self._request(WRITE, characteristic.handle, b"\x01" + value, WRITE_RSP)
            return
        if len(value) > self._mtu - 3:
            raise BleakError(f"a write without response carries at most {self._mtu - 3} bytes at MTU "
                             f"{self._mtu}, not {len(value)}")
        self._send(WRITE, characteristic.handle, b"\x00" + value)
        assert self._writer is not None
        await self._writer.drain()

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        await self._request(WRITE, descriptor.handle, b"\x01" + bytes(data), WRITE_RSP)

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        if "notify" in characteristic.properties:
            value = b"\x01\x00"
        elif "indicate" in characteristic.properties:
            value = b"\x02\x00"
        else:
            raise BleakError(f"characteristic {characteristic.uuid} does not notify or indicate")
        cccd = characteristic.get_descriptor(_CCCD)
        if cccd is None:
            raise BleakError(f"characteristic {characteristic.uuid} has no CCCD")
        self._callbacks[characteristic.handle] = callback
        try:
            await self._request(WRITE, cccd.handle, b"\x01" + value, WRITE_RSP)
        except BaseException:
            self._callbacks.pop(characteristic.handle, None)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        cccd = characteristic.get_descriptor(_CCCD)
        if cccd is None:
            raise BleakError(f"characteristic {characteristic.uuid} has no CCCD")
        await self._request(WRITE, cccd.handle, b"\x01\x00\x00", WRITE_RSP)
        self._callbacks.pop(characteristic.handle, None)


def _uuid(value: int | str) -> str:
    return normalize_uuid_16(value) if isinstance(value, int) else normalize_uuid_str(value)


# Scanner ------------------------------------------------------------------------------------

class VirtualBleakScanner(BaseBleakScanner):
    """Bleak scanner backend that discovers running virtual watches; see `BaseBleakScanner`.

    Each look at the registry reports every advertising watch, as each advertising interval
    would. Passive scanning sees the advertising payload only, without the scan response.

    Keyword Args:
        virtual (VirtualScannerArgs): registry folder and how often to look.
    """

    def __init__(self, detection_callback: Optional[AdvertisementDataCallback],
                 service_uuids: Optional[list[str]], scanning_mode: str = "active", *,
                 virtual: VirtualScannerArgs | None = None, **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        if self._service_uuids is not None:
            self._service_uuids = [normalize_uuid_str(u) for u in self._service_uuids]
        self._args: VirtualScannerArgs = virtual or {}
        self._active = scanning_mode != "passive"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._look()
        self._task = asyncio.create_task(self._run(), name="virtual-ble-scanner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        interval = self._args.get("interval", 0.1)
        while True:
            await asyncio.sleep(interval)
            self._look()

    def _look(self) -> None:
        for entry in read_registry(self._args.get("registry")):
            if not entry.get("advertising"):
                continue
            adv = parse_advertising(bytes.fromhex(entry.get("adv", "")))
            if self._active:
                resp = parse_advertising(bytes.fromhex(entry.get("resp", "")))
                adv["service_uuids"] += [u for u in resp["service_uuids"] if u not in adv["service_uuids"]]
                adv["local_name"] = adv["local_name"] or resp["local_name"]
                adv["manufacturer_data"].update(resp["manufacturer_data"])
                adv["service_data"].update(resp["service_data"])
                adv["tx_power"] = adv["tx_power"] if adv["tx_power"] is not None else resp["tx_power"]
            data = AdvertisementData(local_name=adv["local_name"], manufacturer_data=adv["manufacturer_data"],
                                     service_data=adv["service_data"], service_uuids=adv["service_uuids"],
                                     tx_power=adv["tx_power"], rssi=int(entry.get("rssi", -60)),
                                     platform_data=(entry,))
            if not self.is_allowed_uuid(data.service_uuids):
                continue
            device = self.create_or_update_device(entry["address"], entry["address"],
                                                  data.local_name or entry.get("name"), entry, data)
            self.call_detection_callbacks(device, data)

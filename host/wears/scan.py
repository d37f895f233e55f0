"""Finding WEARS watches: a scan filtered by the WEARS service, and one watch by address or name.

Example:
    >>> async def first():
    ...     return (await scan(3.0))[0]
"""

from __future__ import annotations

from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice

from watch import protocol as P

from .errors import WatchDisconnected


def _scanner_backend(client_backend: type | None) -> type | None:
    """The scanner that goes with a client backend (the virtual watch's, or the platform's)."""
    if client_backend is None:
        return None
    from .ble.virtual import VirtualBleakClient, VirtualBleakScanner

    return VirtualBleakScanner if issubclass(client_backend, VirtualBleakClient) else None


def watch_filter(scanner_backend: type | None) -> BleakScanner.ExtraArgs:
    """`BleakScanner` keyword arguments that find WEARS watches through `scanner_backend` (a
    bleak scanner backend class; None: the platform's BLE stack)."""
    args: BleakScanner.ExtraArgs = {"service_uuids": [P.SERVICE_UUID]}
    if scanner_backend is not None:
        args["backend"] = scanner_backend
    return args


async def scan(timeout: float = 5.0, *, backend: type | None = None) -> list[tuple[BLEDevice, Any]]:
    """Every watch that advertises the WEARS service: (device, advertisement data) pairs.

    `backend` is the client backend class (None: the platform's BLE stack).
    """
    found = await BleakScanner.discover(timeout=timeout, return_adv=True, **watch_filter(_scanner_backend(backend)))
    return list(found.values())


async def find_watch(address_or_name: str, *, timeout: float = 10.0, backend: type | None = None) -> BLEDevice:
    """The WEARS watch with this address (any case) or advertised name; WatchDisconnected if
    none shows up within `timeout` seconds."""
    wanted = address_or_name.upper()

    def match(device: BLEDevice, adv: Any) -> bool:
        names = {device.address.upper(), (device.name or "").upper(), (adv.local_name or "").upper()}
        return wanted in names

    device = await BleakScanner.find_device_by_filter(match, timeout=timeout,
                                                      **watch_filter(_scanner_backend(backend)))
    if device is None:
        raise WatchDisconnected(f"no WEARS watch {address_or_name!r} advertised within {timeout:g} s")
    return device

"""BLE access through bleak, and the bleak backend that reaches the virtual watch."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bleak.backends.client import BaseBleakClient
    from bleak.backends.scanner import BaseBleakScanner


def backends(virtual: bool) -> tuple[type[BaseBleakClient] | None, type[BaseBleakScanner] | None]:
    """The (client, scanner) backend classes to hand to `BleakClient` / `BleakScanner`.

    (None, None) selects bleak's platform backends (real BLE); `virtual=True` gives the
    backends that reach virtual watches (`wears.ble.virtual`).

    Example:
        >>> client_backend, scanner_backend = backends(virtual=True)
        >>> scanner = BleakScanner(backend=scanner_backend)  # doctest: +SKIP
    """
    if not virtual:
        return None, None
    from .virtual import VirtualBleakClient, VirtualBleakScanner

    return VirtualBleakClient, VirtualBleakScanner

"""The host's side of the watch's HMAC challenge-response (docs/protocol.md, "Authentication").

A watch obeys control commands and model uploads only on a connection that proved it knows
the watch key provisioned at flash time. `WatchClient` does this by itself with the key it
is given, or the one `find_key` finds for the watch's address.

Example:
    >>> proof(b"k" * 32, bytes(16), bytes(16)).hex()[:8]
    '6b6ee6e5'
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from watch import protocol as P

from .ble.virtual import registry_dir

KEY_DIR_ENV = "WEARS_KEYS"


def proof(key: bytes, watch_nonce: bytes, host_nonce: bytes) -> bytes:
    """HMAC-SHA256(key, label + watch nonce + host nonce), cut to the proof size."""
    message = P.AUTH_LABEL + bytes(watch_nonce) + bytes(host_nonce)
    return hmac.new(key, message, "sha256").digest()[:P.PROOF_SIZE]


def key_dir() -> Path:
    """Where watch keys live: `WEARS_KEYS`, else `~/.config/wears/keys` (one `<ADDRESS>.bin` each)."""
    return Path(os.environ.get(KEY_DIR_ENV) or Path.home() / ".config" / "wears" / "keys")


def key_file_name(address: str) -> str:
    """A BLE address or a serial port path as a file name."""
    return address.upper().replace(":", "-").replace("/", "_") + ".bin"


def find_key(address: str) -> bytes | None:
    """The key of the watch at `address`: from the key folder, else from the registry of
    virtual watches (a `VirtualWatch` leaves its key there), else None."""
    for folder in (key_dir(), registry_dir(None)):
        path = folder / key_file_name(address)
        try:
            key = path.read_bytes()
        except OSError:
            continue
        if key:
            return key
    return None

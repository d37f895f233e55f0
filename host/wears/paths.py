"""Where the firmware tree, the shims and the board profiles live.

The host ships the firmware tree: `wears flash` and the virtual watch use exactly these
files, and the host imports the shared contracts from the `watch` package in it.
"""

from __future__ import annotations

import json
from pathlib import Path

import watch

FIRMWARE = Path(watch.__file__).resolve().parent.parent
REPO = FIRMWARE.parent
HARDWARE = REPO / "hardware"
SHIMS = Path(__file__).resolve().parent / "sim" / "shims"
DEFAULT_BOARD = "esp32s3-wrist"


def board_profile(board: str = DEFAULT_BOARD) -> dict:
    """The board profile `hardware/<board>.json`, or a path to one."""
    path = Path(board)
    if not path.suffix:
        path = HARDWARE / f"{board}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in HARDWARE.glob("*.json")))
        raise FileNotFoundError(f"no board profile {board!r} (known boards: {known})")
    return json.loads(path.read_text())


def micropython_path() -> str:
    """MICROPYPATH for the virtual watch: shims first so they replace built-in modules."""
    return f"{SHIMS}:{FIRMWARE}"

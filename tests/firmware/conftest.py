"""Collects `mp_test_*.py`: firmware tests that run inside the MicroPython binary.

Each file runs once in MicroPython at the board's heap budget (mprunner.py calls every
`test_*` function in it); each function becomes one pytest item with its own outcome.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.conftest import run_micropython
from wears.paths import FIRMWARE, SHIMS, board_profile
from wears.sim.runner import compiled_tree

HERE = Path(__file__).resolve().parent


def pytest_collect_file(file_path: Path, parent):
    if file_path.name.startswith("mp_test_") and file_path.suffix == ".py":
        return MicroPythonFile.from_parent(parent, path=file_path)
    return None


@functools.cache
def _run(path: Path) -> dict[str, str]:
    heap = board_profile()["heap_budget_bytes"]
    for line in path.read_text().splitlines()[:20]:
        if line.startswith("# heapsize: "):  # a test of the whole firmware: the virtual watch's heap
            heap = int(line.split(":")[1])
    # The shims stand for C modules that cost a real watch no heap: load them precompiled,
    # as the virtual watch does, so their compilation does not eat the firmware's budget.
    # So is the firmware, as it is deployed: compiling a large module from source needs its
    # parse tree at once, which a watch never pays.
    shims = compiled_tree(SHIMS)
    firmware = compiled_tree(FIRMWARE, native=True)
    proc = run_micropython([str(HERE / "mprunner.py"), path.stem], heapsize=heap,
                           extra_path=[HERE, *([shims] if shims else []), *([firmware] if firmware else [])])
    results: dict[str, str] = {}
    current = None
    for line in proc.stdout.splitlines():
        if line.startswith(("PASS ", "FAIL ", "SKIP ")):
            status, current = line.split(" ", 1)
            results[current] = status
        elif current and results[current].startswith("FAIL"):
            results[current] += "\n" + line
    results["__process__"] = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return results


class MicroPythonFile(pytest.File):
    def collect(self):
        for line in self.path.read_text().splitlines():
            if line.startswith("def test_"):
                yield MicroPythonItem.from_parent(self, name=line[4:line.index("(")])


class MicroPythonItem(pytest.Item):
    def runtest(self):
        results = _run(self.path)
        outcome = results.get(self.name)
        if outcome is None:
            raise AssertionError(f"{self.name} did not run in MicroPython:\n{results['__process__']}")
        if outcome.startswith("SKIP"):
            pytest.skip("skipped inside MicroPython")
        if outcome != "PASS":
            raise AssertionError(f"inside MicroPython:\n{outcome}")

    def reportinfo(self):
        return self.path, 0, f"micropython: {self.name}"

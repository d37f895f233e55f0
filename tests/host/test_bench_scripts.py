"""Every benchmark script imports against the current host and firmware API.

The benchmarks run outside the suite (they take minutes to an hour), so a renamed function
would otherwise break one silently: `ingest.py` did once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "tools" / "bench"


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_bench_script_imports(script: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import their shared helpers (mp_cost)
    spec = importlib.util.spec_from_file_location(f"bench_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)  # runs the imports and definitions, not main()
    assert module.__doc__, f"{script.name} says what it measures in its docstring"

"""The pre-flight check names each thing that is not ready, before any watch or screen exists."""

from __future__ import annotations

import asyncio

import pytest

from wears.db import Study
from wears.errors import WearsError
from wears.session.clips import write_trial_study
from wears.session.engine import SessionEngine
from wears.session.protocol import load_protocol
from wears.session.store import RunStore



def test_preflight_names_each_thing_that_is_not_ready(tmp_path):
    protocol_path = write_trial_study(tmp_path, per_language=1, seconds=0.5)
    protocol = load_protocol(protocol_path)
    study = Study.open(tmp_path / "study.db")
    store = RunStore.create(study, protocol, "P09", "hi", seed=1)
    (tmp_path / "clips" / "en" / "clip-1.webm").unlink()
    (tmp_path / "clips" / "hi" / "clip-1.webm").write_bytes(b"not the clip that was set up")
    engine = SessionEngine(study, protocol, store)
    report = asyncio.run(engine.preflight())
    failed = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
    assert not report["ok"]
    assert "missing" in failed["clip en-1"] and "changed" in failed["clip hi-1"]
    assert "participant screen" in failed["clips play"]
    assert failed["watch connected"] == "no watch connected"
    with pytest.raises(WearsError, match="pre-flight"):
        asyncio.run(engine.start())

"""`wears session` on the command line: --reconnect-s reaches the session engine (how long a
watch that went away is reconnected before the run pauses); nonsense is refused by the parser."""

from __future__ import annotations

from pathlib import Path

import pytest

import wears.session.app as app
from wears.cli import build_parser, main
from wears.errors import WearsError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "study" / "protocol.toml"


def _session(tmp_path, *more):
    return ["session", str(EXAMPLE), "--db", str(tmp_path / "s.db"), "--participant", "P01", *more]


def test_reconnect_s_defaults_to_a_minute_and_takes_seconds(tmp_path):
    assert build_parser().parse_args(_session(tmp_path)).reconnect_s == 60.0
    assert build_parser().parse_args(_session(tmp_path, "--reconnect-s", "7.5")).reconnect_s == 7.5


@pytest.mark.parametrize("bad", ["0", "-3", "soon"])
def test_reconnect_s_that_is_not_a_positive_time_is_refused(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(_session(tmp_path, f"--reconnect-s={bad}"))
    assert exited.value.code == 2
    assert "expected seconds above 0" in capsys.readouterr().err


def test_reconnect_s_reaches_the_session_engine(tmp_path, monkeypatch, capsys):
    seen = {}

    class Engine:  # stands in for SessionEngine: notes what it was given, then stops the command
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            raise WearsError("engine reached")

    monkeypatch.setattr(app, "SessionEngine", Engine)
    assert main(_session(tmp_path, "--reconnect-s", "12")) == 1
    assert "engine reached" in capsys.readouterr().err
    assert seen["reconnect_s"] == 12.0
    assert main(_session(tmp_path)) == 1
    assert seen["reconnect_s"] == 60.0

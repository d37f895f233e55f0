"""The study protocol file: parsing, clear errors, clip orders and label thresholds."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from wears.errors import WearsError
from wears.session.protocol import ProtocolFileError, balanced_latin_square_row, load_protocol
from wears.session.steps import build_steps

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "study" / "protocol.toml"


def test_example_protocol_loads_with_clips_resolved_next_to_it():
    protocol = load_protocol(EXAMPLE)
    assert protocol.clips["hi-sad-1"].file == EXAMPLE.parent / "clips" / "hi" / "sad-1.webm"
    assert protocol.clips_for("hi") == ["hi-funny-1", "hi-sad-1", "en-funny-1", "en-sad-1"]
    assert protocol.clips_for("en") == ["en-funny-1", "en-sad-1"]
    assert protocol.scales == ("valence", "arousal") and protocol.points == 9


def test_random_order_is_rebuilt_from_its_seed():
    protocol = load_protocol(EXAMPLE)
    orders = {tuple(protocol.clip_order("hi", seed=s)) for s in range(30)}
    assert len(orders) > 5
    assert protocol.clip_order("hi", seed=11) == protocol.clip_order("hi", seed=11)
    assert all(sorted(o) == sorted(protocol.clips_for("hi")) for o in orders)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_balanced_latin_square_puts_each_clip_at_each_position_and_after_each_other(n):
    rows = [balanced_latin_square_row(n, r) for r in range(n if n % 2 == 0 else 2 * n)]
    for row in rows:
        assert sorted(row) == list(range(n))
    for position in range(n):
        counts = [sum(row[position] == clip for row in rows) for clip in range(n)]
        assert len(set(counts)) == 1
    pairs = [(row[i], row[i + 1]) for row in rows for i in range(n - 1)]
    assert {pairs.count(p) for p in itertools.permutations(range(n), 2)} == {len(rows) * (n - 1) // (n * (n - 1))}


def test_steps_follow_the_protocol(tmp_path):
    protocol = load_protocol(EXAMPLE)
    kinds = [s.kind for s in build_steps(protocol, protocol.clips_for("en"))]
    assert kinds == ["instructions", "baseline", "clip", "rating", "washout", "clip", "rating", "attention", "end"]


def test_valence_labels_follow_the_thresholds(tmp_path):
    protocol = load_protocol(EXAMPLE)
    assert [protocol.label_for(v) for v in range(1, 10)] == ["unpleasant"] * 4 + [None] + ["pleasant"] * 4
    text = EXAMPLE.read_text().replace("pleasant_at_least = 6", "pleasant_at_least = 7")
    (tmp_path / "p.toml").write_text(text)
    assert load_protocol(tmp_path / "p.toml").label_for(6) is None


@pytest.mark.parametrize("change, message", [
    (("en = [\"en-funny-1\", \"en-sad-1\"]", "en = [\"en-funny-1\", \"nope\"]"), "unknown clips: nope"),
    (("hi = [\"hi\", \"en\"]", "fr = [\"hi\"]"), "instructions in"),
    (("id = \"en-sad-1\"", "id = \"en-funny-1\""), "appears twice"),
    (("pleasant_at_least = 6", "pleasant_at_least = 3"), "unpleasant_at_most < pleasant_at_least"),
    (("answer = 3", "answer = 12"), "off the 1..9 scale"),
    (("method = \"random\"", "method = \"shuffled\""), "method must be one of"),
    (("scales = [\"valence\", \"arousal\"]", "scales = [\"arousal\"]"), "must include valence"),
    (("[study]", "[study"), "not valid TOML"),
    (("min_battery_pct = 30", "min_batery_pct = 30"), "min_batery_pct"),
])
def test_bad_protocol_files_get_a_clear_error(tmp_path, change, message):
    text = EXAMPLE.read_text()
    assert change[0] in text
    (tmp_path / "p.toml").write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ProtocolFileError, match=message):
        load_protocol(tmp_path / "p.toml")


def test_missing_protocol_file_is_a_wears_error(tmp_path):
    with pytest.raises(WearsError, match="No such file"):
        load_protocol(tmp_path / "missing.toml")


def test_wears_session_reports_a_bad_protocol_without_a_traceback(tmp_path, capsys):
    from wears.cli import main

    bad = tmp_path / "p.toml"
    bad.write_text("[study\n")
    assert main(["session", str(bad), "--db", str(tmp_path / "s.db"), "--participant", "P01"]) == 1
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["session", str(EXAMPLE), "--db", str(tmp_path / "s.db"), "--participant", "Asha V"]) == 1
    assert "pseudonymous" in capsys.readouterr().err

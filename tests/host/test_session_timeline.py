"""Host instants onto the watch's clock and the samples' timeline; trials into labels."""

from __future__ import annotations

import numpy as np
import pytest

from watch import protocol as P
from wears.db import Study
from wears.errors import WearsError
from wears.session.protocol import load_protocol
from wears.session.store import RunStore, check_participant_id
from wears.session.timeline import SessionTimeline, host_to_tick

from .test_session_protocol import EXAMPLE


def _pings(rng, n, *, offset_ms, rate, loop_s=0.1, span_s=120.0):
    """Pings to a watch that answers at its next 100 ms loop step and stamps the step's start."""
    sent = np.sort(rng.uniform(0, span_s, n))
    stamped = np.ceil(sent / loop_s) * loop_s  # the watch handles the command at its next step
    received = stamped + rng.uniform(0.001, 0.03, n)  # its work and the radio on the way back
    tick = offset_ms + rate * stamped
    return np.column_stack([sent, received, np.round(tick)])


@pytest.mark.parametrize("rate", [1000.0, 1000.05, 5000.0])
def test_host_time_maps_onto_the_watch_clock_despite_late_stamping(rate):
    rng = np.random.default_rng(1)
    pings = _pings(rng, 400, offset_ms=123456.0, rate=rate)
    for t in (10.0, 60.0, 110.0):
        truth = 123456.0 + rate * t
        assert abs(host_to_tick(pings, t) - truth) < 0.012 * rate  # within 12 ms of the watch's clock
    # The midpoints of all pings, as a naive fit would use them, are off by more than that.
    mid = (pings[:, 0] + pings[:, 1]) / 2
    naive = np.mean(pings[:, 2] - rate * mid) + rate * 60.0
    assert abs(naive - (123456.0 + rate * 60.0)) > 0.015 * rate


def test_a_few_pings_over_two_seconds_still_give_a_sped_up_clock_its_rate():
    """Six pings just after a (re)connection: the fast round trips alone span under a second,
    too little for a line; the rate must not fall back to real time (a 5x clock is then 5x off)."""
    rng = np.random.default_rng(3)
    pings = _pings(rng, 6, offset_ms=1000.0, rate=5000.0, span_s=1.8)
    truth = 1000.0 + 5000.0 * 4.0
    assert abs(host_to_tick(pings, 4.0) - truth) < 0.05 * 5000.0


def test_one_ping_gives_the_offset_and_no_ping_an_error():
    assert host_to_tick(np.array([[10.0, 10.002, 5000]]), 11.0) == pytest.approx(5999.0)
    with pytest.raises(WearsError, match="no clock-sync pings"):
        host_to_tick(np.empty((0, 3)), 1.0)


def _study_with_recording(tmp_path, participant="P01"):
    study = Study.open(tmp_path / "study.db")
    protocol = load_protocol(EXAMPLE)
    store = RunStore.create(study, protocol, participant, "en", seed=3)
    sid = study.new_session(participant, device=("VW:01", "WEARS-VW01", "esp32s3-wrist"), source="virtual")
    store.attach_session(sid)
    study.add_stream_info(sid, P.PPG, 2, 100000, 1.0, tick0=2000)
    for k in range(200):  # the watch's clock = host clock + 1 s, in ms
        t = k * 0.5
        study.add_clock_sync(sid, t, t + 0.002, int(1000 * (t + 1.001)))
    study.commit()
    return study, protocol, store, sid


def test_rated_clips_become_annotations_and_a_5_is_left_out(tmp_path):
    study, protocol, store, sid = _study_with_recording(tmp_path)
    base = store.begin_trial(1, "baseline", None, 10.0)
    store.end_trial(base, 40.0, "done")
    for n, (clip, valence) in enumerate(zip(["en-funny-1", "en-sad-1", "en-funny-1"], [8, 2, 5])):
        trial = store.begin_trial(2 + 3 * n, "clip", clip, 50.0 + 20 * n)
        store.end_trial(trial, 60.0 + 20 * n, "done")
        store.add_report(3 + 3 * n, trial, "valence", valence, 61.0 + 20 * n)
    cut = store.begin_trial(20, "clip", "en-sad-1", 95.0)
    store.interrupt_running(96.0)
    assert store.write_labels(protocol) == 3
    assert store.write_labels(protocol) == 3  # rewriting changes nothing
    # Host s -> watch ms (+1 s) -> PPG timeline (tick0 2 s): host 10 s is 9 s of samples.
    got = study.annotations(sid)
    assert [label for *_, label in got] == ["rest", "pleasant", "unpleasant"]
    np.testing.assert_allclose([(a, b) for a, b, _ in got], [(9, 39), (49, 59), (69, 79)], atol=0.002)
    assert study.conn.execute("SELECT status FROM trials WHERE id=?", (cut,)).fetchone()[0] == "interrupted"
    assert SessionTimeline(study, sid).seconds(100.0) == pytest.approx(99.0, abs=0.002)


def test_run_keeps_its_protocol_order_seed_and_clip_digests(tmp_path):
    study, protocol, store, _ = _study_with_recording(tmp_path)
    run = store.run()
    assert run.order_seed == 3 and run.clip_order == protocol.clip_order("en", seed=3)
    assert store.protocol_source() == EXAMPLE.read_text()
    rows = study.conn.execute("SELECT clip_id, sha256 FROM stimuli WHERE run_id=?", (run.id,)).fetchall()
    assert {r[0] for r in rows} == set(run.clip_order)


def test_counterbalanced_runs_take_the_next_row(tmp_path):
    text = EXAMPLE.read_text().replace('method = "random"', 'method = "counterbalanced"')
    (tmp_path / "p.toml").write_text(text.replace('file = "clips/', f'file = "{EXAMPLE.parent}/clips/'))
    protocol = load_protocol(tmp_path / "p.toml")
    study = Study.open(tmp_path / "study.db")
    runs = [RunStore.create(study, protocol, f"P0{i}", "hi").run() for i in range(4)]
    assert [r.order_seed for r in runs] == [0, 1, 2, 3]
    assert len({tuple(r.clip_order) for r in runs}) == 4


@pytest.mark.parametrize("bad", ["Asha Verma", "", "x" * 33, "P01;DROP"])
def test_participant_ids_are_pseudonymous_codes(bad):
    with pytest.raises(WearsError, match="pseudonymous"):
        check_participant_id(bad)



def test_after_a_reboot_instants_stay_on_the_first_boots_timeline(tmp_path):
    study, _, _, sid = _study_with_recording(tmp_path)  # boot 0: watch clock = host clock + 1 s
    # The watch reboots at host second 100: boot 1's clock starts at 0 then, its samples at tick 40.
    study.add_stream_info(sid, P.PPG, 2, 100000, 1.0, tick0=40, boot=1)
    for k in range(100):
        t = 100.0 + k * 0.5
        study.add_clock_sync(sid, t, t + 0.002, int(1000 * (t - 100.0) + 1), boot=1)
    study.commit()
    timeline = SessionTimeline(study, sid)
    assert timeline.tick0() == 2000 and len(timeline.pings()) == 200  # the first boot's
    # Host second 120 is at boot 0's tick 121000, 119 s after its tick0 (and not boot 1's 20 s).
    assert timeline.seconds(120.0) == pytest.approx(119.0, abs=0.005)

"""Training on a session during which the watch rebooted: every boot's labelled windows are in
the training set, each with the label of where it truly lies on the session's timeline (the
first boot's clock, continued, as the labels are), and no window spans the reboot."""

from __future__ import annotations

import numpy as np
import pytest

from watch import protocol as P
from wears.train import build_dataset, session_windows, window_labels

from .rebooting import SPEED, record_across_a_reboot, true_host_seconds

pytestmark = pytest.mark.slow

WINDOW_S, STEP_S = 10, 5
MAPPING = {"calm": 0, "tense": 1}
# A window this close (watch seconds) to a label's edge may fall either way within the clock
# fits' error (a few pings per boot at SPEED: tens of ms of host time, times SPEED).
EDGE_S = 0.5


@pytest.fixture(scope="module")
def rebooted(tmp_path_factory):
    work = tmp_path_factory.mktemp("training-reboot")
    study, sid = record_across_a_reboot(work, duration_s=90)  # watch seconds: about 65 s after the reboot
    return study, sid, work


def _true_session_s(study, sid, work, boot, ticks_ms):
    """Where ticks of `boot` truly lie on the session's timeline: seconds of boot 1's watch clock
    since its PPG sample 0, through the simulator's true clocks."""
    first = study.first_boot(sid)
    tick0 = study.stream(sid, P.PPG, first).tick0
    at = true_host_seconds(study, sid, work, np.array([first, first]), np.array([tick0, tick0 + 1000.0]))
    host = true_host_seconds(study, sid, work, np.full(len(ticks_ms), boot), ticks_ms)
    return (host - at[0]) / (at[1] - at[0])


def test_the_later_boots_labelled_windows_are_trained_on_with_their_true_labels(rebooted):
    study, sid, work = rebooted
    boot1, boot2 = study.boots(sid)
    ppg1, ppg2 = study.stream(sid, P.PPG, boot1), study.stream(sid, P.PPG, boot2)
    rate = ppg1.rate_hz
    # Boot 2 on the session timeline, from the true clock: where its samples begin and end.
    b2_first, b2_last = _true_session_s(study, sid, work, boot2, ppg2.tick0 + 1000.0 * np.array(
        [ppg2.first_index, ppg2.first_index + len(ppg2.samples)]) / rate)
    assert b2_first > (ppg1.first_index + len(ppg1.samples)) / rate  # after boot 1's last sample
    middle = (b2_first + b2_last) / 2
    # Labels on the session timeline: calm until the middle of boot 2, tense after.
    study.add_annotations(sid, [(0.0, middle, "calm"), (middle, b2_last + 60.0, "tense")])

    windows = session_windows(study, sid, window_s=WINDOW_S, step_s=STEP_S)
    in2 = windows.boot == boot2
    assert set(windows.boot) == {boot1, boot2} and in2.sum() >= 4
    # No window spans the reboot: each lies inside its own boot's samples.
    for boot, ppg in ((boot1, ppg1), (boot2, ppg2)):
        ends = windows.table.window_end[windows.boot == boot]
        assert ends.min() - WINDOW_S * rate >= ppg.first_index and ends.max() <= ppg.first_index + len(ppg.samples)
    # Boot 2's windows, where they truly are on the session timeline.
    true_end = _true_session_s(study, sid, work, boot2, ppg2.tick0 + 1000.0 * windows.table.window_end[in2] / rate)
    np.testing.assert_allclose(windows.end_s[in2], true_end, rtol=0, atol=SPEED * 0.1)
    assert np.all(windows.end_s[in2] - WINDOW_S >= b2_first - SPEED * 0.1)
    labels = window_labels(windows.end_s, WINDOW_S, study.annotations(sid), MAPPING)
    truth = window_labels(true_end, WINDOW_S, study.annotations(sid), MAPPING)
    clear = np.abs(true_end - middle) > EDGE_S
    clear &= np.abs(true_end - WINDOW_S - middle) > EDGE_S
    np.testing.assert_array_equal(labels[in2][clear], truth[clear])
    assert set(truth[clear]) == {-1, 0, 1}  # calm, tense, and the windows across the labels' edge
    # The training set: every labelled window of both boots, the tense ones all from boot 2.
    data = build_dataset(study, window_s=WINDOW_S, step_s=STEP_S, sessions=[sid], mapping=MAPPING, keep="all")
    labelled = labels >= 0
    np.testing.assert_array_equal(data.y, labels[labelled])
    np.testing.assert_array_equal(data.X, windows.table.X[labelled])
    assert (data.y == 1).sum() == (labels[in2] == 1).sum() > 0
    assert (labels[in2] == 0).sum() > 0 and (labels[~in2] == 0).sum() > 0

"""The whole firmware's per-sample and per-window paths allocate nothing, on each board."""
# heapsize: 400000

import json
import os
import time

import machine
import micropython
from mp_world import temp_path, write_scenario

REPO = os.getenv("WEARS_REPO")


def still_then_beats(i):
    # a pulse of 72 bpm on IR at 100 Hz records: enough for the beat detector to find beats
    phase = (i * 72 * 4) // (60 * 100) % 4
    return (110000 + (3000 if phase == 0 else 0), 90000)


def watch_on(board, seconds=60):
    """A Watch of `board` in a fresh flash folder, its bus fed by a scenario of `seconds`."""
    folder = temp_path("flash_" + board)
    os.mkdir(folder)
    os.chdir(folder)
    with open(REPO + "/hardware/" + board + ".json") as f:
        profile = json.load(f)
    with open("board.json", "w") as f:
        json.dump(profile, f)
    with open("key.bin", "wb") as f:
        f.write(b"k" * 32)
    path = folder + "/s.wscn"
    write_scenario(path, 100, seconds * 100, 104, seconds * 104, still_then_beats)
    machine.sim_reset(scenario=path, missing="", error_rate=0.0, sensors=profile["sensors"])
    from watch.app import Watch

    w = Watch()
    w.streaming = 0b111
    return w


def locked(fn):
    micropython.heap_lock()
    try:
        return fn()
    finally:
        micropython.heap_unlock()


def run_windows(w, seconds):
    """Step the watch for `seconds`: sample (and poll) every 100 ms, compute ready windows
    under heap_lock; returns the windows computed."""
    done = 0
    for _ in range(seconds * 10):
        locked(lambda: w.wait(100))
        # A full flash-log segment is written to a file (a file object each time, about once a
        # second): that I/O is left out of the lock, the sampling itself is not.
        w.log.flush()
        locked(w.sample)
        before = w.engine.window_end
        locked(w.windows)
        done += w.engine.window_end != before
    return done


def test_esp32_sampling_streaming_and_windows_allocate_nothing():
    w = watch_on("esp32s3-wrist")
    assert w.ppg and w.imu and w.has_gyro
    time.sleep_ms(100)
    w.sample()  # the first read sets the streams' origins
    assert run_windows(w, 40) >= 2  # 30 s window, 5 s step
    assert len(w.streams) > 0  # samples went into packets


def test_pinetime_polling_sampling_and_windows_allocate_nothing():
    w = watch_on("pinetime")
    assert w.ppg.driver.polled and not w.has_gyro
    locked(lambda: w.wait(100))
    w.sample()
    assert run_windows(w, 40) >= 2
    assert w.ppg.index > 900  # 25 Hz for 40 s, polled between the periods


def test_a_crash_is_logged_counted_and_resets_the_watch():
    import watch.app as app

    folder = temp_path("crash")
    os.mkdir(folder)
    os.chdir(folder)
    resets = []

    class Crashing:
        def __init__(self, boots):
            raise RuntimeError("sensor bus on fire")

    real_watch, real_reset = app.Watch, machine.reset
    app.Watch, machine.reset = Crashing, lambda: resets.append(1)
    try:
        app.main()
        app.main()
    finally:
        app.Watch, machine.reset = real_watch, real_reset
    assert resets == [1, 1]
    with open("crash.txt") as f:
        assert "sensor bus on fire" in f.read()
    with open("boots.txt") as f:
        assert f.read() == "2"  # two boots, neither stable

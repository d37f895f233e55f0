"""The whole firmware's per-sample and per-window paths allocate nothing, on each board."""
# heapsize: 400000

import json
import os
import struct
import time

import machine
import micropython
from mp_world import temp_path, write_scenario

REPO = os.getenv("WEARS_REPO")


def still_then_beats(i):
    # a pulse of 72 bpm on IR at 100 Hz records: enough for the beat detector to find beats
    phase = (i * 72 * 4) // (60 * 100) % 4
    return (110000 + (3000 if phase == 0 else 0), 90000)


def watch_on(board, seconds=60, boots=1, flash=None):
    """A Watch of `board` in a fresh flash folder, its bus fed by a scenario of `seconds`;
    `flash()` writes more files into the folder first."""
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
    if flash:
        flash()
    from watch.app import Watch

    w = Watch(boots)
    w.streaming = 0b111
    return w


def locked(fn):
    micropython.heap_lock()
    try:
        return fn()
    finally:
        micropython.heap_unlock()


def locked_but_seals(w, fn):
    """fn() under heap_lock but for the flash log's seals: a seal closes a segment's file and
    opens the next (a file object and its name, once a segment; mp_test_flashlog_live tests
    that they do not pile up). Every record between seals is kept without allocating."""
    seal = w.log.flush

    def unlocked_seal():
        micropython.heap_unlock()
        try:
            seal()
        finally:
            micropython.heap_lock()
    w.log.flush = unlocked_seal
    try:
        return locked(fn)
    finally:
        del w.log.flush


def run_windows(w, seconds):
    """Step the watch for `seconds`: sample (and poll) every 100 ms, compute ready windows
    under heap_lock; returns the windows computed."""
    done = 0
    for _ in range(seconds * 10):
        locked_but_seals(w, lambda: w.wait(100))
        locked_but_seals(w, w.sample)  # flash-log segments sealed on the way (about once a second)
        before = w.engine.window_end
        locked(w.windows)
        done += w.engine.window_end != before
    return done


def test_esp32_sampling_streaming_and_windows_allocate_nothing():
    w = watch_on("esp32s3-wrist")
    assert w.ppg and w.imu and w.has_gyro
    time.sleep_ms(100)
    w.sample()  # the first read sets the streams' origins
    written = w.log.bytes_used
    assert run_windows(w, 40) >= 2  # 30 s window, 5 s step
    assert w.log.live_pending > 0  # samples went into packets, waiting for a connection
    assert w.log.bytes_used >= written + 10 * w.log.segment_bytes  # and segments to flash


def test_pinetime_polling_sampling_and_windows_allocate_nothing():
    w = watch_on("pinetime")
    assert w.ppg.driver.polled and not w.has_gyro
    locked(lambda: w.wait(100))
    w.sample()
    assert run_windows(w, 40) >= 2
    assert w.ppg.index > 900  # 25 Hz for 40 s, polled between the periods


def test_pinetime_notifications_allocate_nothing_in_segments_or_whole():
    from watch.segments import Reassembler

    w = watch_on("pinetime")
    radio = w.radio
    sent = bytearray(200)  # what the stack was handed, back to back
    lens = [0] * 8
    got = [0, 0]  # bytes, notifications

    def send(handle, data):
        n = len(data)
        for i in range(n):
            sent[got[0] + i] = data[i]
        got[0] += n
        lens[got[1]] = n
        got[1] += 1

    radio._send = send
    radio._connected(1)
    packet = bytearray(range(1, 61))
    assert locked(lambda: radio.notify_stream(packet, 60))  # 60 bytes: 4 segments of at most 20
    assert locked(lambda: radio.notify_control(packet, 12))  # 12 bytes: whole
    assert locked(lambda: radio.notify_prediction(packet, 20))  # exactly what a notification carries
    assert got[1] == 6 and lens[:6] == [20, 20, 20, 4, 12, 20], lens
    join = Reassembler(64)
    pos = n = 0
    for k in range(4):
        n = join.feed(sent[pos:pos + lens[k]])
        pos += lens[k]
    assert n == 60 and join.buf[:60] == packet
    assert sent[pos:pos + 12] == packet[:12] and sent[pos + 12:pos + 32] == packet[:20]


def test_pinetime_writes_in_segments_wait_in_join_buffers_and_whole_ones_in_the_queue():
    # ubluepy writes carry 20 bytes: the queue's slots hold that much, and a packet put
    # together from segments waits in one of two join buffers until the app has taken it.
    from watch.radio_gatt import CONTROL
    from watch.segments import count, write_segment

    w = watch_on("pinetime")
    radio = w.radio
    assert radio._q_size == 20 and len(radio._q) == 20 * radio.queue

    def write_packet(packet):
        seg = bytearray(20)
        for i in range(count(len(packet), 20)):
            k = write_segment(seg, packet, len(packet), 20, i)
            radio._receive(CONTROL, bytes(seg[:k]))

    first, second, third = bytes(range(60)), bytes(range(100, 160)), bytes(range(200, 250))
    write_packet(first)
    radio._receive(CONTROL, b"\x01" + bytes(11))  # a whole command between them
    write_packet(second)
    write_packet(third)  # both join buffers hold queued packets: dropped, counted
    assert radio.writes_dropped == 1
    got = []
    while True:
        cmd = radio.poll_command()
        if cmd is None:
            break
        got.append(bytes(cmd[1]))
    assert got == [first, b"\x01" + bytes(11), second]
    write_packet(third)  # the app took them: room again
    assert bytes(radio.poll_command()[1]) == third and radio.poll_command() is None


def test_esp32_notifications_go_out_at_their_length_without_allocating():
    # The `bluetooth` stack sends what the buffer it gets holds: a packet shorter than its slot
    # (or lying inside the flash log's segment) goes out through a view of exactly its length.
    w = watch_on("esp32s3-wrist")
    radio = w.radio
    got = bytearray(600)
    lens = [0] * 8
    count = [0, 0]

    def record(data):
        n = len(data)
        for i in range(n):
            got[count[0] + i] = data[i]
        count[0] += n
        lens[count[1]] = n
        count[1] += 1

    radio._send = lambda handle, data: record(data)
    radio._connected(0)
    radio._mtu = 247
    slot = bytearray(range(200))
    assert locked(lambda: radio.notify_control(slot, 12))  # a reply in its 32-byte slot
    assert locked(lambda: radio.notify_stream(slot, 150, 40))  # a record inside a segment
    assert locked(lambda: radio.notify_prediction(slot, 31))
    assert count[1] == 3 and lens[:3] == [12, 150, 31], lens
    assert got[:12] == slot[:12] and got[12:162] == slot[40:190] and got[162:193] == slot[:31]


def test_stream_packets_go_live_from_the_flash_logs_sealed_segments_without_allocating():
    w = watch_on("pinetime")
    radio = w.radio
    sent = [0, 0]  # notifications, bytes

    def send(handle, data):
        sent[0] += 1
        sent[1] += len(data)

    radio._send = send
    radio._connected(1)
    time.sleep_ms(100)
    w.sample()
    run_windows(w, 6)
    pending = w.log.live_pending - w.log._count  # the sealed segments' (the open one waits)
    assert pending > 1
    radio._credits = 1000  # the pacing's budget out of the way
    radio._interval_ms = 1000000
    notify = radio.notify_stream  # (a bound method is made where it is looked up)
    assert w.log.send_live(notify, 1) == 1  # the queue opens its segment's file (allocates)
    rest = w.log._lcount  # the rest of that segment go without allocating
    assert locked(lambda: w.log.send_live(notify, rest)) == rest
    assert w.log.send_live(notify, 100) == pending - 1 - rest
    assert w.log.live_pending == w.log._count and sent[0] >= pending
    assert w.log.send_live(notify, 100) == 0  # nothing sent twice


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


def test_safe_mode_runs_radio_and_log_only_and_goes_back_to_the_previous_model():
    from watch import protocol as P
    from watch import slots

    def new_model_on_trial():  # slot B uploaded and being tried, slot A the model before it
        for name in ("model.wbl", "model_b.wbl"):
            with open(name, "wb") as f:
                f.write(b"blob " + name)
        slots.ModelSlots("model.wbl").write(slots.B, slots.TRYING, slots.A)

    w = watch_on("pinetime", boots=4, flash=new_model_on_trial)  # three crashes in a row
    assert w.safe and w.ppg is None and w.imu is None and w.engine is None and w.model is None
    assert w.slots.read() == (slots.A, slots.CONFIRMED, slots.NONE)
    assert w.slots.active_path() == "model.wbl"
    with open("model_b.wbl", "rb") as f:
        assert f.read() == b"blob model_b.wbl"  # nothing deleted: only the pointer moved back
    codes = []
    w.events.flush(lambda buf, n: codes.append(struct.unpack_from(P.EVENT_BODY, buf, P.HEADER_SIZE)[0]) or True, 8)
    assert P.EV_SAFE_MODE in codes and P.EV_MODEL_ROLLBACK in codes, codes
    assert w.set_rate(P.PPG, 50) == P.E_SAFE_MODE


class _Model:
    """What the watch reads of a loaded model to set its feature window (issue 7's blob fields)."""

    def __init__(self, spec, window_s=None, step_s=None, baseline_windows=None):
        self.feature_spec = spec
        if window_s is not None:
            self.window_s, self.step_s, self.baseline_windows = window_s, step_s, baseline_windows


def test_the_feature_window_follows_the_model_or_the_model_is_refused():
    import gc

    from watch import protocol as P
    from watch.features import spec_for

    w = watch_on("pinetime")
    assert (w.engine.window_s, w.engine.step_s) == (30, 5)  # the board profile's
    assert w._engine_for(_Model(w.spec_id)) == P.OK and w.engine.window_s == 30  # an older blob: no settings
    assert w._engine_for(_Model(w.spec_id, 60, 5, 0)) == P.OK
    assert (w.engine.window_s, w.engine.step_s) == (60, 5)
    w.model = _Model(spec_for(False, True)[0], 60, 5, 0)
    w._fit_baseline()
    # 0 (a version-1 blob says nothing): the board profile's calibration length
    assert w.baseline.windows == 12  # the profile says none: 12
    w.model = _Model(spec_for(False, True)[0], 60, 5, 7)
    w._fit_baseline()
    assert w.baseline.windows == 7
    assert w._engine_for(_Model(w.spec_id, 7, 5, 0)) == P.E_WINDOW_UNSUPPORTED  # not a multiple of the step
    assert (w.engine.window_s, w.engine.step_s) == (60, 5)
    assert w._engine_for(_Model(w.spec_id, 30, 5, 0)) == P.OK
    # A window the heap cannot hold: refused, and the engine stays at the window it had (or,
    # when the attempt split the heap too much for that, none until the next boot).
    w.model = w.baseline = None
    gc.collect()
    longer = _Model(w.spec_id, 60, 5, 0)
    blocks = [None] * 3000  # (no list growth on the way: it would fail first, leaving holes)
    k = 0
    for size in (256, 16):  # the holes between the large blocks too: only what the engine frees is free
        try:
            while True:
                blocks[k] = bytearray(size)
                k += 1
        except MemoryError:
            pass
    assert w._engine_for(longer) == P.E_WINDOW_UNSUPPORTED
    assert w.engine is None or w.engine.window_s == 30
    assert w.window_s == 30
    blocks = None
    gc.collect()
    assert w._engine_for(_Model(w.spec_id, 60, 5, 0)) == P.OK and w.engine.window_s == 60


def test_a_refused_commit_goes_on_with_the_engine_at_the_running_window():
    from binascii import crc32

    from wire import protocol as P

    w = watch_on("pinetime")
    w.commit_model(1)  # no upload in progress: refused, and the windows and heart rate go on
    assert w.model is None and w.engine is not None and w.hr is not None and w.engine.window_s == 30
    # A blob with a 60 s window: the engine is built for it before the blob is checked; signed
    # with another key, it is refused and the engine goes back to the board profile's 30 s.
    with open(REPO + "/models/pinetime.wbl", "rb") as f:
        data = f.read()
    up = w._uploader()
    assert up.begin(len(data), crc32(data)) == P.OK and up.chunk(0, data) == P.OK
    assert up.read_window() is up and (up.window_s, up.step_s) == (60, 5)
    w.commit_model(2)
    assert w.model is None and w.engine is not None and w.hr is not None
    assert (w.engine.window_s, w.window_s) == (30, 30)
    assert (P.EV_MODEL_REJECTED, P.E_BAD_SIGNATURE) in _events(w)


def _held(*names):
    import sys

    return [n for n in names if "watch." + n in sys.modules or n in sys.modules["watch"].__dict__]


def test_a_commit_drops_the_upload_and_loader_modules_and_the_next_upload_imports_them_again():
    # Frozen on a watch, a module's state is all it holds in RAM: the upload's and the loader's
    # go after a commit, the runtime (watch.model) stays; the chunks need no loader.
    import sys
    from binascii import crc32

    from wire import protocol as P

    def distribution_key():
        with open("key.bin", "wb") as f:
            f.write(bytes(32))

    w = watch_on("pinetime", flash=distribution_key)
    with open(REPO + "/models/pinetime.wbl", "rb") as f:
        data = f.read()
    up = w._uploader()
    assert up.begin(len(data), crc32(data)) == P.OK and up.chunk(0, data) == P.OK
    assert _held("upload", "blob", "loader", "model") == ["upload", "blob"]
    w.commit_model(1)
    assert w.model is not None and (P.EV_MODEL_LOADED, w.model.model_id) in _events(w)
    assert _held("upload", "blob", "loader", "trees_v1", "model") == ["model"]
    assert w._uploader().begin(len(data), crc32(data)) == P.OK and "watch.upload" in sys.modules
    w.commit_model(2)  # the same blob again: refused (an upload of a model running) or loaded
    assert _held("upload", "blob", "loader", "trees_v1") == [] and w.model is not None


def _shipped_model():
    # The esp32s3-wrist's shipped model in slot A, signed with the distribution key (the
    # watch's key here): what `wears flash firmware` leaves on a watch.
    with open(REPO + "/models/esp32s3-wrist.wbl", "rb") as f:
        data = f.read()
    with open("model.wbl", "wb") as f:
        f.write(data)
    with open("key.bin", "wb") as f:
        f.write(bytes(32))


def _events(w):
    from watch import protocol as P

    got = []
    w.events.flush(lambda buf, n: got.append(struct.unpack_from(P.EVENT_BODY, buf, P.HEADER_SIZE)) or True, 8)
    return got


def test_predictions_read_the_model_from_flash_without_allocating_and_a_changed_file_stops_them():
    from wire import protocol as P

    w = watch_on("esp32s3-wrist", seconds=120, flash=_shipped_model)
    assert w.model is not None and w.model.n_nodes > 100  # its nodes stay in the file
    assert _held("blob", "loader", "trees_v1", "model") == ["model"]  # a loaded model needs its runtime only
    model_id = w.model.model_id
    assert w.engine.window_s == 60 and (P.EV_MODEL_LOADED, model_id) in _events(w)  # the model's window
    time.sleep_ms(100)
    w.sample()
    kinds = []
    for _ in range(75):  # predictions under heap_lock, each reading every tree from flash
        run_windows(w, 1)
        w.preds.flush(lambda buf, n: kinds.append(buf[1]) or True, 8)
    assert kinds.count(P.PREDICTION) >= 2, kinds
    with open("model.wbl", "r+b") as f:  # another blob written over it (here: its model id)
        f.seek(16)
        f.write(b"\x00\x00\x00\x00")
    for _ in range(100):  # 10 s, not locked: dropping the model sends an event (which allocates)
        w.wait(100)
        w.sample()
        w.windows()
    assert w.model is None
    assert run_windows(w, 10) >= 1  # the windows go on, without the model
    assert w.model is None and (P.EV_MODEL_REJECTED, P.E_BAD_CRC) in _events(w)


def test_a_status_report_fills_an_event_slot_exactly():
    # The event outbox's slots are as large as its largest packet, STATUS, and no larger.
    from wire import protocol as P

    w = watch_on("pinetime")
    w.status()
    box = w.events
    i = (box._head + len(box) - 1) % box._slots
    assert box._lens[i] == box.slot_size == P.HEADER_SIZE + struct.calcsize(P.STATUS_BODY)

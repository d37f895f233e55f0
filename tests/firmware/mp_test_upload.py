"""Model upload into A/B slots: a valid blob switches the slot pointer atomically; a refused,
corrupt or interrupted upload (at every chunk boundary) leaves the running model untouched;
uploads resume after a disconnect or a reboot; a new model that fails its first boot is rolled
back to the previous one."""

import os
from array import array
from binascii import crc32

from watch import blob, loader, slots, upload
from wire import protocol as p
from mp_blobs import FlashDir as _Dir, documented_example, sign

KEY, BLOB, _ = documented_example()
SPEC = 1
N_FEATURES = 2


def _other_model(row0=(0, 255)):
    # The example with leaf row 0 changed: a valid blob with another model id.
    body = bytearray(BLOB[:-blob.TRAILER_SIZE])
    body[72], body[73] = row0
    return sign(body, KEY)


NEW = _other_model()


def _upload(up, data, crc=None, step=20):
    assert up.begin(len(data), crc32(data) if crc is None else crc) == p.OK
    for at in range(0, len(data), step):
        assert up.chunk(at, data[at:at + step], crc32(data[at:at + step])) == p.OK, at
    return up.commit(KEY, SPEC, N_FEATURES)


def _loader(path):
    return loader.load(path, KEY, SPEC, N_FEATURES)


def _boot(d):
    """What a rebooting watch loads: (model id or None, rolled back)."""
    m, rolled, _ = slots.ModelSlots(d.file("model.wbl")).boot(_loader)
    if m:
        m.close()  # (a model reads its file at every prediction)
    return (m.model_id if m else None), rolled


def _id(data):
    return int.from_bytes(data[16:20], "little")


def test_valid_upload_goes_to_the_inactive_slot_and_switches_pending_its_first_boot():
    with _Dir() as d:
        d.write("model.wbl", BLOB)
        up = upload.ModelUpload(d.file("model.wbl"))
        reason, m = _upload(up, NEW)
        assert reason == p.OK and m.model_id == _id(NEW)
        assert d.read("model.wbl") == BLOB and d.read("model_b.wbl") == NEW
        assert up.slots.read() == (slots.B, slots.PENDING, slots.A) and not d.exists("upload.inf")
        assert _boot(d) == (_id(NEW), False)
        assert up.slots.read() == (slots.B, slots.TRYING, slots.A)  # on trial until the run is stable
        up.slots.confirm()
        assert up.slots.read() == (slots.B, slots.CONFIRMED, slots.NONE)
        reason, _ = _upload(upload.ModelUpload(d.file("model.wbl")), _other_model((128, 127)))
        assert reason == p.OK, reason
        assert up.slots.read() == (slots.A, slots.PENDING, slots.B)  # the next upload goes back to A


def test_refused_uploads_leave_the_running_model_and_its_slot_untouched():
    wrong_key = sign(BLOB[:-blob.TRAILER_SIZE], bytes(32))
    flipped = bytearray(NEW)
    flipped[50] ^= 4
    other_spec = bytearray(NEW[:-blob.TRAILER_SIZE])
    other_spec[6] = 9
    cases = ((bytes(flipped), None, p.E_BAD_CRC),  # announced CRC matches, the blob's does not
             (wrong_key, None, p.E_BAD_SIGNATURE),
             (NEW, 1234, p.E_BAD_CRC),  # the transfer itself went wrong
             (sign(other_spec, KEY), None, p.E_FEATURE_MISMATCH))
    with _Dir() as d:
        d.write("model.wbl", BLOB)
        for data, crc, reason in cases:
            up = upload.ModelUpload(d.file("model.wbl"))
            assert _upload(up, data, crc) == (reason, None), reason
            assert d.read("model.wbl") == BLOB and not d.exists("model_b.wbl"), reason
            assert up.slots.read() == (slots.A, slots.CONFIRMED, slots.NONE)
        up = upload.ModelUpload(d.file("model.wbl"))
        assert up.begin(len(BLOB), crc32(BLOB)) == p.OK
        assert up.chunk(0, BLOB[:50]) == p.OK
        assert up.commit(KEY, SPEC, N_FEATURES) == (p.E_TRUNCATED, None)
        assert _boot(d) == (_id(BLOB), False)
        up = upload.ModelUpload(d.file("model.wbl"), max_bytes=100)
        assert up.begin(len(NEW), crc32(NEW)) == p.E_TOO_LARGE and not up.active


def test_upload_answers_out_of_order_steps_and_bad_chunks_with_their_reasons():
    with _Dir() as d:
        up = upload.ModelUpload(d.file("model.wbl"), max_bytes=1000)
        assert up.chunk(0, b"WMDL") == p.E_NO_UPLOAD
        assert up.commit(KEY, SPEC, N_FEATURES) == (p.E_NO_UPLOAD, None)
        assert up.begin(1001, 0) == p.E_TOO_LARGE and not up.active
        assert up.begin(len(BLOB), crc32(BLOB)) == p.OK and d.exists("model_b.wbl")
        assert up.chunk(4, BLOB[4:8]) == p.E_BAD_OFFSET
        assert up.chunk(0, BLOB[:100], crc32(BLOB[:99])) == p.E_CHUNK_CRC and up.received == 0
        assert up.chunk(0, BLOB[:100], crc32(BLOB[:100])) == p.OK
        assert up.chunk(0, BLOB[:100]) == p.E_BAD_OFFSET
        assert up.chunk(100, BLOB[100:] + b"xx") == p.E_TOO_LARGE
        assert up.chunk(100, BLOB[100:]) == p.OK and up.received == len(BLOB)
        up.abort()
        assert not up.active and not d.exists("model_b.wbl") and not d.exists("upload.inf")
        assert up.chunk(0, b"W") == p.E_NO_UPLOAD


def test_interrupting_at_every_chunk_boundary_keeps_a_working_model():
    # Power cut after k chunks: the watch boots the old model; resuming finishes the upload.
    step = 16
    bounds = list(range(0, len(NEW), step)) + [len(NEW)]
    with _Dir() as d:
        d.write("model.wbl", BLOB)
        for k in bounds:
            up = upload.ModelUpload(d.file("model.wbl"))
            assert up.begin(len(NEW), crc32(NEW)) == p.OK
            for at in range(0, k, step):
                assert up.chunk(at, NEW[at:min(at + step, k)]) == p.OK
            del up  # the power goes: no commit, no abort
            assert _boot(d) == (_id(BLOB), False), k
            again = upload.ModelUpload(d.file("model.wbl"))  # after the reboot
            assert again.resume(len(NEW), crc32(NEW)) == (p.OK, k), k
            assert again.resume(len(NEW), crc32(NEW) ^ 1) == (p.E_NO_UPLOAD, 0)  # another blob
            again.abort()
        # Interrupted between the pointer's new file and its rename: the old pointer holds.
        up = upload.ModelUpload(d.file("model.wbl"))
        with open(up.slots.pointer + ".new", "wb") as f:
            f.write(bytes((1, 1, 0, 0x5C)))
        assert _boot(d) == (_id(BLOB), False)
        # The last step, done: the new model runs.
        assert _upload(upload.ModelUpload(d.file("model.wbl")), NEW)[0] == p.OK
        assert _boot(d) == (_id(NEW), False)


def test_upload_resumes_after_a_disconnect_from_the_bytes_received():
    with _Dir() as d:
        d.write("model.wbl", BLOB)
        up = upload.ModelUpload(d.file("model.wbl"))
        assert up.resume(len(NEW), crc32(NEW)) == (p.E_NO_UPLOAD, 0)
        assert up.begin(len(NEW), crc32(NEW)) == p.OK
        assert up.chunk(0, NEW[:40]) == p.OK
        assert up.resume(len(NEW), crc32(NEW)) == (p.OK, 40)  # same session: still open
        up2 = upload.ModelUpload(d.file("model.wbl"))  # state lost (reboot): from flash
        assert up2.resume(len(NEW), crc32(NEW)) == (p.OK, 40)
        assert up2.chunk(40, NEW[40:]) == p.OK
        reason, m = up2.commit(KEY, SPEC, N_FEATURES)
        assert reason == p.OK and m.model_id == _id(NEW)


def test_new_model_failing_its_first_boot_is_rolled_back():
    with _Dir() as d:
        d.write("model.wbl", BLOB)
        up = upload.ModelUpload(d.file("model.wbl"))
        assert _upload(up, NEW)[0] == p.OK
        broken = bytearray(NEW)
        broken[60] ^= 1  # flash went bad after the commit
        d.write("model_b.wbl", bytes(broken))
        m, rolled, reason = up.slots.boot(_loader)
        assert (m.model_id, rolled, reason) == (_id(BLOB), True, p.E_BAD_CRC)
        assert up.slots.read() == (slots.A, slots.CONFIRMED, slots.NONE)


def test_boot_interrupted_while_trying_the_new_model_rolls_back():
    with _Dir() as d:
        d.write("model.wbl", BLOB)
        up = upload.ModelUpload(d.file("model.wbl"))
        assert _upload(up, NEW)[0] == p.OK

        def crash(path):
            assert up.slots.read() == (slots.B, slots.TRYING, slots.A)
            raise KeyboardInterrupt  # stands for a reset in the middle of the first boot

        try:
            up.slots.boot(crash)
        except KeyboardInterrupt:
            pass
        assert _boot(d) == (_id(BLOB), True)
        assert _boot(d) == (_id(BLOB), False)


def test_new_model_that_crashes_the_watch_before_a_stable_run_is_rolled_back():
    with _Dir() as d:
        d.write("model.wbl", BLOB)
        assert _upload(upload.ModelUpload(d.file("model.wbl")), NEW)[0] == p.OK
        assert _boot(d) == (_id(NEW), False)  # it loads, then the watch crashes before STABLE_MS
        assert _boot(d) == (_id(BLOB), True)
        assert _boot(d) == (_id(BLOB), False)
        assert d.read("model_b.wbl") == NEW  # kept on flash: only the pointer moved


def test_safe_mode_goes_back_to_the_previous_model_and_keeps_a_confirmed_one():
    with _Dir() as d:
        d.write("model.wbl", BLOB)
        s = slots.ModelSlots(d.file("model.wbl"))
        assert not s.safe()  # nothing on trial: the model stays
        assert _upload(upload.ModelUpload(d.file("model.wbl")), NEW)[0] == p.OK
        assert s.safe()  # uploaded, not yet run for long: the crashes may be its doing
        assert s.read() == (slots.A, slots.CONFIRMED, slots.NONE)
        assert _boot(d) == (_id(BLOB), False)
        assert _upload(upload.ModelUpload(d.file("model.wbl")), NEW)[0] == p.OK
        _boot(d)
        s.confirm()  # ran long enough
        assert not s.safe() and _boot(d) == (_id(NEW), False)


def test_damaged_pointer_falls_back_to_slot_a():
    with _Dir() as d:
        d.write("model.wbl", BLOB)
        d.write("model.slot", bytes((1, 0, 255, 0)))  # bad checksum
        assert _boot(d) == (_id(BLOB), False)


class _RamDisk:
    """Block device in RAM for a real littlefs (the ESP32 and nRF ports' filesystem)."""

    def __init__(self, blocks, size=256):
        self.size = size
        self.blocks = [bytearray(size) for _ in range(blocks)]

    def readblocks(self, n, buf, offset=0):
        buf[:] = memoryview(self.blocks[n])[offset:offset + len(buf)]

    def writeblocks(self, n, buf, offset=0):
        self.blocks[n][offset:offset + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return len(self.blocks)
        if op == 5:  # block size
            return self.size
        if op == 6:  # erase: nothing to do in RAM
            return 0
        return None


def test_upload_switches_slots_on_littlefs():
    disk = _RamDisk(32)
    os.VfsLfs2.mkfs(disk)
    mount = "/wears-lfs-" + "".join("%02x" % b for b in os.urandom(4))
    os.mount(os.VfsLfs2(disk), mount)
    try:
        with open(mount + "/model.wbl", "wb") as f:
            f.write(BLOB)
        up = upload.ModelUpload(mount + "/model.wbl")
        bad = bytearray(NEW)
        bad[40] ^= 1
        assert _upload(up, bytes(bad))[0] == p.E_BAD_CRC
        assert sorted(os.listdir(mount)) == ["model.wbl"]
        reason, running = _upload(up, NEW)
        assert reason == p.OK
        x, proba = array("i", [1200, -20]), bytearray(2)
        assert running.predict(x, proba) == 1  # read from slot B on littlefs
        running.close()  # what the watch does once the next model runs: the upload writes slot A
        reason, running = _upload(upload.ModelUpload(mount + "/model.wbl"), _other_model((128, 127)))
        assert reason == p.OK and running.predict(x, proba) == 1
        running.close()
        m, _, _ = slots.ModelSlots(mount + "/model.wbl").boot(_loader)
        assert m.model_id == _id(_other_model((128, 127))) and m.predict(x, proba) == 1
        m.close()  # before the filesystem goes: its file would be closed on an unmounted one
        assert sorted(os.listdir(mount)) == ["model.slot", "model.wbl", "model_b.wbl"]
    finally:
        os.umount(mount)


def test_a_model_the_watch_cannot_run_is_refused_before_the_switch():
    # The watch's last check (its feature window fits the heap) refuses the model: the
    # running model's slot stays active and the upload is dropped.
    with _Dir() as d:
        d.write("model.wbl", BLOB)
        up = upload.ModelUpload(d.file("model.wbl"))
        assert up.begin(len(NEW), crc32(NEW)) == p.OK
        assert up.chunk(0, NEW) == p.OK
        seen = []
        reason, m = up.commit(KEY, SPEC, N_FEATURES, lambda model: seen.append(model.model_id) or p.E_WINDOW_UNSUPPORTED)
        assert (reason, m, seen) == (p.E_WINDOW_UNSUPPORTED, None, [_id(NEW)])
        assert up.slots.read() == (slots.A, slots.CONFIRMED, slots.NONE) and not d.exists("model_b.wbl")
        assert _boot(d) == (_id(BLOB), False)


def test_the_uploads_window_settings_are_read_from_its_header_before_any_check():
    with _Dir() as d:
        up = upload.ModelUpload(d.file("model.wbl"))
        assert up.begin(len(NEW), crc32(NEW)) == p.OK and up.chunk(0, NEW[:20]) == p.OK
        assert up.read_window() is up and (up.window_s, up.step_s, up.baseline_windows) == (0, 0, 0)  # too short
        assert up.chunk(20, NEW[20:]) == p.OK
        assert (up.read_window().window_s, up.step_s, up.baseline_windows) == (60, 5, 0)  # the example's
        _, v1, _ = documented_example("blob-example-v1")
        assert up.begin(len(v1), crc32(v1)) == p.OK and up.chunk(0, v1) == p.OK
        assert (up.read_window().window_s, up.step_s) == (0, 0)  # version 1 says nothing
        up.abort()

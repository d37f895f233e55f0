"""The flash log across boots: a power cut mid-seal or while a segment is open loses at most
that segment, torn or misplaced segments are found and skipped, numbers never repeat, the
logs of earlier firmware go."""

import os
import struct

from mp_logs import SEG, folder, packet, read_all, wipe
from watch.flashlog import FlashLog


class PowerCut(FlashLog):
    """Power fails half way through the write `cut(offset, n)` picks (offset in the segment's file)."""

    cut = None

    def _write(self, offset, buf, n):
        if PowerCut.cut and PowerCut.cut(offset, n):
            PowerCut.cut = None
            FlashLog._write(self, offset, buf, n // 2)
            raise OSError(5)
        FlashLog._write(self, offset, buf, n)


def _cut_at(nth, where):
    """Cut the nth write with `where(offset in the file, n)` true."""
    seen = [0]

    def cut(offset, n):
        if where(offset, n):
            seen[0] += 1
        return seen[0] == nth
    return cut


def _run_until_cut(log):
    lsn = 0
    try:
        while True:
            lsn = log.append(packet(lsn), 40) + 1
    except OSError:
        pass  # the power went: nothing after this runs
    return lsn


def test_a_power_cut_mid_seal_loses_only_that_segment_and_numbers_never_repeat():
    # A seal writes the head after the records, then the CRC: cut in the head or in the CRC,
    # boot finds the file torn, removes it, and reads every sealed segment before it back.
    for where in (lambda off, n: n == 24, lambda off, n: n == 4):
        path = folder("powercut")
        try:
            PowerCut.cut = _cut_at(3, where)
            log = PowerCut(path, 64 * SEG, SEG)
            lsn = _run_until_cut(log)
            assert log._entry(log._nseg - 1) >= 0  # the newest sealed segment, read back from its head
            durable = log._efirst + log._ecount
            after = FlashLog(path, 64 * SEG, SEG)
            assert after.torn == 1, after.torn
            assert after.boot == 2
            got = read_all(after, 0, 10000)
            assert [g[0] for g in got] == list(range(durable)), got[-3:]
            assert all(b == 1 for _, b in got)
            assert after.next_lsn >= lsn, (after.next_lsn, lsn)  # the lost records' numbers are not reused
            first_new = after.append(packet(after.next_lsn), 40)
            assert read_all(after, first_new, first_new + 1) == [(first_new, 2)]
        finally:
            wipe(path)


def test_a_power_cut_in_an_open_segment_loses_only_its_records_and_no_evicted_one_comes_back():
    # Records go to the open segment's file as they come, in the slot of a segment the ring
    # let go (its file removed): after the cut boot removes the file without a trailer
    # (counted torn: some of it reached the file) and reads every sealed record back.
    path = folder("opencut")
    try:
        per_segment = (SEG - 28) // 42
        PowerCut.cut = _cut_at(6 * per_segment + 3, lambda off, n: n == 40)  # in the ring's second turn
        log = PowerCut(path, 4 * SEG, SEG)
        lsn = _run_until_cut(log)
        assert log._count == 2 and log._nseg == 3  # two records in the open segment, on flash
        assert log._entry(log._nseg - 1) >= 0
        durable = log._efirst + log._ecount
        oldest = log.first_lsn
        log._f.close()
        after = FlashLog(path, 4 * SEG, SEG)
        assert after.torn == 1 and after.overflow == log.overflow
        assert [g[0] for g in read_all(after, 0, 10000)] == list(range(oldest, durable))
        assert after.next_lsn >= lsn
        kept = ["%d.wlg" % ((after._oldest + k) % 4) for k in range(3)]
        open_one = "%d.wlg" % ((after._oldest + after._nseg) % 4)
        assert sorted(os.listdir(path)) == sorted(["state.bin", open_one] + kept)
    finally:
        wipe(path)


def test_a_clean_shutdown_keeps_the_open_segment_and_numbers_on_without_a_gap():
    path = folder("clean")
    try:
        log = FlashLog(path, 64 * SEG, SEG)
        for i in range(30):
            log.append(packet(i), 40)
        log.close()
        again = FlashLog(path, 64 * SEG, SEG)
        assert again.next_lsn == 30 and again.torn == 0 and again.boot == 2
        assert [g[0] for g in read_all(again, 0, 30)] == list(range(30))
    finally:
        wipe(path)


def test_a_copy_of_the_log_reads_back_with_the_geometry_it_was_made_with():
    # The host reads a copy of a watch's log without knowing its budget or segment size.
    path = folder("copy")
    try:
        log = FlashLog(path, 16 * SEG, SEG)
        for i in range(60):
            log.append(packet(i), 40)
        log.close()
        again = FlashLog(path, None, None)
        assert (again.segment_bytes, again.max_segments) == (SEG, 16)
        assert [g[0] for g in read_all(again, 0, 60)] == list(range(60))
    finally:
        wipe(path)


def test_a_smaller_budget_or_other_segments_keep_the_newest_and_count_what_goes():
    path = folder("shrink")
    try:
        log = FlashLog(path, 8 * SEG, SEG)
        for i in range(120):
            log.append(packet(i), 40)
        log.close()
        small = FlashLog(path, 3 * SEG, SEG)
        assert small._nseg <= 3 and small.overflow > 0
        kept = read_all(small, 0, 200)
        assert [g[0] for g in kept] == list(range(small.first_lsn, 120))
        assert small.first_lsn == small.overflow  # nothing was acknowledged: every record gone is counted
        small.close()
        other = FlashLog(path, 8 * SEG, 2 * SEG)
        assert other.overflow == 120 and other.next_lsn == 120 and other.available(0, 120) == 0
    finally:
        wipe(path)


def test_the_logs_of_earlier_firmware_go_at_boot_their_unacknowledged_records_counted():
    # The segment files of the first log, and the ring file of the next (a slot per segment,
    # its head first: "WLG2", first lsn, records, ...): nothing of them is read back, the
    # records not acknowledged are counted in overflow and their numbers never come again.
    path = folder("legacy")
    try:
        with open(path + "/00000000.seg", "wb") as f:
            f.write(b"WLG1" + bytes(60))
        with open(path + "/notes.wlg", "wb") as f:  # not a segment: left alone
            f.write(b"x")
        with open(path + "/state.bin", "wb") as f:  # boot 4, acked 12, the ring's 1 KB segments
            f.write(struct.pack("<IIIIIII", 4, 12, 0, 0, 0, 1024, 4))
        with open(path + "/ring.bin", "wb") as f:
            for first, count in ((10, 5), (15, 5), (0, 0)):
                seg = bytearray(1024)
                if count:
                    struct.pack_into("<IIHHIII", seg, 0, 0x32474C57, first, count, 4, 0, 0, 0)
                f.write(seg)
        log = FlashLog(path, 4 * SEG, SEG)
        assert sorted(os.listdir(path)) == ["0.wlg", "notes.wlg", "state.bin"]  # and the open segment's file
        assert log.overflow == 8 and log.acked == 12 and log.next_lsn >= 20 and log.boot == 5
        assert log.append(packet(log.next_lsn), 40) >= 20
    finally:
        wipe(path)


def test_a_damaged_segment_mid_ring_is_a_hole_the_reads_and_the_eviction_step_over():
    # RAM keeps no index of the segments: reads find them from their heads on flash, in ring order.
    path = folder("hole")
    try:
        log = FlashLog(path, 8 * SEG, SEG)
        per_segment = (SEG - 28) // 42
        total = 6 * per_segment
        for i in range(total):
            log.append(packet(i), 40)
        log.close()
        with open(path + "/2.wlg", "r+b") as f:  # a flipped bit in the third segment
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes((b[0] ^ 1,)))
        again = FlashLog(path, 8 * SEG, SEG)
        hole = range(2 * per_segment, 3 * per_segment)
        held = [i for i in range(total) if i not in hole]
        assert again.torn == 1 and again.first_lsn == 0
        assert [g[0] for g in read_all(again, 0, total)] == held
        assert [g[0] for g in read_all(again, 2 * per_segment - 1, 3 * per_segment + 2)] == [
            2 * per_segment - 1, 3 * per_segment, 3 * per_segment + 1]
        assert again.available(0, total) == len(held)
        assert again.available(hole[0], hole[-1] + 1) == 0
        again.ack(total)
        for i in range(total, total + 8 * per_segment):  # the ring turns over, past the hole
            again.append(packet(i), 40)
        # eight slots: seven sealed segments and the open one, all of the ring's second turn
        assert again.overflow == 0 and again.first_lsn == total and again.bytes_used == 8 * SEG
        # (reading into the open segment seals it, which lets the oldest go: read it first)
        assert [g[0] for g in read_all(again, total, again.next_lsn)] == list(range(total, again.next_lsn))
    finally:
        wipe(path)


def test_boot_keeps_the_newest_segments_in_ring_order_and_counts_one_out_of_it():
    # Reads find segments by walking the slots from the oldest; a segment out of lsn order
    # (a ring written some other way) would break that: boot lets it go, counted.
    path = folder("order")
    try:
        log = FlashLog(path, 8 * SEG, SEG)
        per_segment = (SEG - 28) // 42
        for i in range(4 * per_segment):
            log.append(packet(i), 40)
        log.close()
        os.rename(path + "/1.wlg", path + "/x")  # the second and third segments swap slots
        os.rename(path + "/2.wlg", path + "/1.wlg")
        os.rename(path + "/x", path + "/2.wlg")
        again = FlashLog(path, 8 * SEG, SEG)
        gone = range(2 * per_segment, 3 * per_segment)
        assert again.overflow == per_segment and again.torn == 0
        assert [g[0] for g in read_all(again, 0, 4 * per_segment)] == [i for i in range(4 * per_segment) if i not in gone]
        assert again.available(0, 4 * per_segment) == 3 * per_segment
    finally:
        wipe(path)

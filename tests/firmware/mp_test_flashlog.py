"""The flash log keeps every record until it is acknowledged, survives a power cut mid-write
with at most the segment being written lost, stays within its budget, and appends without
allocating."""

import os
import struct

import micropython

from wire import protocol as P
from watch.backfill import Backfill
from watch.flashlog import FlashLog
from watch.outbox import Outbox

_SEG = 512  # small segments: many of them in a short test


def _folder(name):
    path = "/tmp/wears-mp-flashlog-%s-%d" % (name, struct.unpack("<I", os.urandom(4))[0])
    os.mkdir(path)
    return path


def _wipe(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)


def _packet(lsn, n=40):
    """A stream packet whose bytes say which record it is."""
    buf = bytearray(n)
    struct.pack_into("<BBHI", buf, 0, P.VERSION, P.SAMPLES, lsn & 0xFFFF, lsn * 10)
    for i in range(8, n):
        buf[i] = (lsn + i) & 0xFF
    return buf


def _read_all(log, lo, hi):
    out = bytearray(300)
    got = []
    log.seek(lo, hi)
    while True:
        n = log.read(out, 0)
        if not n:
            return got
        assert out[:n] == _packet(log.lsn), (log.lsn, bytes(out[:n]))
        got.append((log.lsn, log.record_boot))


def test_records_come_back_byte_for_byte_from_flash_and_from_the_open_segment():
    path = _folder("roundtrip")
    try:
        log = FlashLog(path, 64 * _SEG, _SEG)
        for i in range(100):
            assert log.append(_packet(i), 40) == i
        assert log.bytes_used > 0 and log._count > 0  # some on flash, some still open
        assert log.available(0, 100) == 100
        got = _read_all(log, 0, 100)
        assert [g[0] for g in got] == list(range(100))
        assert [g[0] for g in _read_all(log, 37, 41)] == [37, 38, 39, 40]
        assert _read_all(log, 100, 200) == []
    finally:
        _wipe(path)


def test_a_backfill_reads_the_open_segment_as_it_grows_and_on_past_its_seal():
    # The open segment is on flash, not in RAM: a replay in it sees records appended after
    # it began, and goes on in the same slot once the segment is sealed.
    path = _folder("growing")
    try:
        log = FlashLog(path, 16 * _SEG, _SEG)
        per_segment = (_SEG - 28) // 42
        for i in range(per_segment + 2):
            log.append(_packet(i), 40)
        out = bytearray(300)
        log.seek(per_segment, 1000)
        got = []
        for _ in range(2):
            got.append(log.read(out, 0) and log.lsn)
        for i in range(per_segment + 2, 3 * per_segment):  # the open one fills and is sealed
            log.append(_packet(i), 40)
            if i == per_segment + 4:
                got.append(log.read(out, 0) and log.lsn)
                assert out[:40] == _packet(log.lsn)
        while log.read(out, 0):
            assert out[:40] == _packet(log.lsn), log.lsn
            got.append(log.lsn)
        assert got == list(range(per_segment, 3 * per_segment)), got
    finally:
        _wipe(path)


class PowerCut(FlashLog):
    """Power fails half way through the write `cut(offset, n)` picks (offset in the slot)."""

    cut = None

    def _write(self, offset, buf, n):
        if PowerCut.cut and PowerCut.cut(offset % self.segment_bytes, n):
            PowerCut.cut = None
            FlashLog._write(self, offset, buf, n // 2)
            raise OSError(5)
        FlashLog._write(self, offset, buf, n)


def _cut_at(nth, where):
    """Cut the nth write with `where(offset in slot, n)` true."""
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
            lsn = log.append(_packet(lsn), 40) + 1
    except OSError:
        pass  # the power went: nothing after this runs
    return lsn


def test_a_power_cut_mid_seal_loses_only_that_segment_and_numbers_never_repeat():
    # A seal writes the head, zeros after the records, and the CRC last: cut in the head or in
    # the CRC, boot finds the slot torn and reads every sealed segment before it back.
    for where in (lambda off, n: off == 0 and n == 24, lambda off, n: off == _SEG - 4):
        path = _folder("powercut")
        try:
            PowerCut.cut = _cut_at(3, where)
            log = PowerCut(path, 64 * _SEG, _SEG)
            lsn = _run_until_cut(log)
            assert log._entry(log._nseg - 1) >= 0  # the newest sealed segment, read back from its head
            durable = log._efirst + log._ecount
            after = FlashLog(path, 64 * _SEG, _SEG)
            assert after.torn == 1, after.torn
            assert after.boot == 2
            got = _read_all(after, 0, 10000)
            assert [g[0] for g in got] == list(range(durable)), got[-3:]
            assert all(b == 1 for _, b in got)
            assert after.next_lsn >= lsn, (after.next_lsn, lsn)  # the lost records' numbers are not reused
            first_new = after.append(_packet(after.next_lsn), 40)
            assert _read_all(after, first_new, first_new + 1) == [(first_new, 2)]
        finally:
            _wipe(path)


def test_a_power_cut_in_an_open_segment_leaves_an_empty_slot_not_a_stale_segment():
    # Records go to flash as they come, over the slot of a segment the ring let go: its head
    # is zeroed first, so after the cut boot finds an empty slot (nothing torn, the old
    # segment not back) and every sealed record.
    path = _folder("opencut")
    try:
        per_segment = (_SEG - 28) // 42
        PowerCut.cut = _cut_at(6 * per_segment + 3, lambda off, n: n == 40)  # in the ring's second turn
        log = PowerCut(path, 4 * _SEG, _SEG)
        lsn = _run_until_cut(log)
        assert log._count == 2 and log._nseg == 3  # two records in the open segment, on flash
        assert log._entry(log._nseg - 1) >= 0
        durable = log._efirst + log._ecount
        oldest = log.first_lsn
        after = FlashLog(path, 4 * _SEG, _SEG)
        assert after.torn == 0 and after.overflow == log.overflow
        assert [g[0] for g in _read_all(after, 0, 10000)] == list(range(oldest, durable))
        assert after.next_lsn >= lsn
    finally:
        _wipe(path)


def test_a_clean_shutdown_keeps_the_open_segment_and_numbers_on_without_a_gap():
    path = _folder("clean")
    try:
        log = FlashLog(path, 64 * _SEG, _SEG)
        for i in range(30):
            log.append(_packet(i), 40)
        log.close()
        again = FlashLog(path, 64 * _SEG, _SEG)
        assert again.next_lsn == 30 and again.torn == 0 and again.boot == 2
        assert [g[0] for g in _read_all(again, 0, 30)] == list(range(30))
    finally:
        _wipe(path)


def test_a_full_log_evicts_acknowledged_data_first_and_counts_unacknowledged_overflow():
    path = _folder("bounded")
    try:
        log = FlashLog(path, 4 * _SEG, _SEG)
        per_segment = (_SEG - 28) // 42
        for i in range(6 * per_segment):
            log.append(_packet(i), 40)
            if i == 3 * per_segment:
                log.ack(i)  # the host has everything before i
        assert log._nseg <= 4 and os.stat(path + "/ring.bin")[6] <= 4 * _SEG
        assert log.overflow == 0, log.overflow  # what went so far was acknowledged
        for i in range(6 * per_segment, 12 * per_segment):
            log.append(_packet(i), 40)
        assert log.overflow > 0
        first = log.first_lsn
        assert first - 3 * per_segment == log.overflow, (first, log.overflow)
        assert _read_all(log, 0, first) == []
        assert log.available(0, log.next_lsn) == log.next_lsn - first
    finally:
        _wipe(path)


def test_append_allocates_nothing_also_when_it_writes_segments():
    path = _folder("heap")
    try:
        log = FlashLog(path, 4 * _SEG, _SEG)
        pkt = _packet(1)
        log.append(pkt, 40)
        micropython.heap_lock()
        try:
            for _ in range(100):  # segments written to flash, the oldest evicted
                log.append(pkt, 40)
        finally:
            micropython.heap_unlock()
        assert log.bytes_used == 4 * _SEG and log.overflow > 0 and log.next_lsn == 101
    finally:
        _wipe(path)


def test_segments_carry_zlibs_crc32_built_as_records_come_without_an_int_object():
    # binascii.crc32 hands back an int, a heap object on a 32-bit port above 2**30 (the 64-bit
    # binary cannot show that allocation): the log keeps CRC registers in a buffer instead,
    # takes the records' on as they come, and joins the head's in at the seal (CRC32 is
    # linear). Whatever the value, the slot ends with zlib's CRC32 of everything before it.
    from binascii import crc32

    from watch import flashlog

    reg = bytearray(8)
    high = 0
    for n in (0, 1, 7, 64, 500, 2044):
        data = bytearray(os.urandom(n))
        reg[4:8] = b"\xff\xff\xff\xff"  # zlib's start, in the second register
        assert flashlog._crc_run(reg, 4, data, n) is None
        (raw,) = struct.unpack_from("<I", reg, 4)
        assert raw ^ 0xFFFFFFFF == crc32(data) & 0xFFFFFFFF, n
        reg[4:8] = b"\xff\xff\xff\xff"
        flashlog._crc_run(reg, 4, reg, -n)  # n zero bytes
        (raw,) = struct.unpack_from("<I", reg, 4)
        assert raw ^ 0xFFFFFFFF == crc32(bytes(n)) & 0xFFFFFFFF, n
    path = _folder("crc")
    try:
        log = FlashLog(path, 16 * _SEG, _SEG)
        for i in range(120):
            log.append(_packet(i, 30 + i % 20), 30 + i % 20)  # records of every length: tails of every size
        log.close()
        seen = 0
        for slot in range(log._nseg):
            with open(path + "/ring.bin", "rb") as f:
                f.seek(slot * _SEG)
                seg = f.read(_SEG)
            (stored,) = struct.unpack_from("<I", seg, _SEG - 4)
            assert stored == crc32(seg[:_SEG - 4]) & 0xFFFFFFFF, slot
            high += stored >= 0x80000000
            (first, count) = struct.unpack_from("<IH", seg, 4)
            pos = 24
            for lsn in range(first, first + count):
                n = seg[pos] | seg[pos + 1] << 8
                assert seg[pos + 2:pos + 2 + n] == _packet(lsn, 30 + lsn % 20)
                pos += 2 + n
            assert seg[pos:_SEG - 4] == bytes(_SEG - 4 - pos)  # zeros after the records
            seen += count
        assert seen == 120
        assert high  # some of them above 2**31: the values a 32-bit port could not keep small
        again = FlashLog(path, 16 * _SEG, _SEG)  # boot checks each slot a piece at a time
        assert again.torn == 0 and again.available(0, 120) == 120
        out = bytearray(300)
        again.seek(0, 120)
        while again.read(out, 0):
            assert out[:30 + again.lsn % 20] == _packet(again.lsn, 30 + again.lsn % 20)
    finally:
        _wipe(path)


def test_the_live_queue_sends_every_record_once_in_order_from_ram_or_flash():
    # Stream packets wait for the radio in the log itself: the open segment, and the unsent
    # records of the segment written last (read back from flash). Older ones are dropped,
    # counted, and left to a backfill.
    path = _folder("live")
    try:
        log = FlashLog(path, 16 * _SEG, _SEG)
        got = []
        refuse = [False]

        def send(buf, n, off):
            if refuse[0]:
                return False
            got.append(bytes(buf[off:off + n]))
            return True

        per_segment = (_SEG - 28) // 42
        for i in range(per_segment + 3):  # a segment to flash, three records in the next
            log.append(_packet(i), 40)
        assert log.live_pending == per_segment + 3
        assert log.send_live(send, 2) == 2  # the budget
        assert log.send_live(send, 100) == per_segment + 1
        assert got == [_packet(i) for i in range(per_segment + 3)] and log.live_pending == 0
        refuse[0] = True
        for i in range(per_segment + 3, 3 * per_segment + 5):  # two more segments to flash, unsent
            log.append(_packet(i), 40)
        # the segment after the sent ones went before its turn came: all but its first three
        assert log.send_live(send, 100) == 0 and log.live_dropped == per_segment - 3
        first = 2 * per_segment  # the segment written last, then the open one
        out = bytearray(42 * (per_segment + 5))
        fill = [0, 0]

        def keep(buf, n, off):  # allocates nothing: the queue's sending is measured under the lock
            for i in range(n):
                out[fill[0] + i] = buf[off + i]
            fill[0] += n
            fill[1] += 1
            return True

        micropython.heap_lock()
        try:
            sent = log.send_live(keep, 1000)
        finally:
            micropython.heap_unlock()
        assert sent == fill[1] == 3 * per_segment + 5 - first
        assert out[:fill[0]] == b"".join(_packet(i) for i in range(first, 3 * per_segment + 5))
    finally:
        _wipe(path)


def test_records_past_lsn_65536_come_back():
    path = _folder("wrap")
    try:
        with open(path + "/state.bin", "wb") as f:  # a log that ended cleanly just below 2**16
            f.write(struct.pack("<IIIIIII", 3, 65000, 0, 0, 65500, _SEG, 16))
        log = FlashLog(path, 16 * _SEG, _SEG)
        assert log.next_lsn == 65500
        for i in range(65500, 65650):  # all of them held: 16 segments of 11
            assert log.append(_packet(i), 40) == i
        assert log.first_lsn == 65500 and log.available(0, 70000) == 150
        out = bytearray(300)
        lsns = []
        log.seek(0, 70000)
        while log.read(out, 0):  # each record's bytes, without holding 150 tuples in a small heap
            assert out[:40] == _packet(log.lsn), log.lsn
            lsns.append(log.lsn)
        assert len(lsns) == 150 and lsns[0] == 65500 and lsns[-1] == 65649
    finally:
        _wipe(path)


def test_a_copy_of_the_log_reads_back_with_the_geometry_it_was_made_with():
    # The host reads a copy of a watch's log without knowing its budget or segment size.
    path = _folder("copy")
    try:
        log = FlashLog(path, 16 * _SEG, _SEG)
        for i in range(60):
            log.append(_packet(i), 40)
        log.close()
        again = FlashLog(path, None, None)
        assert (again.segment_bytes, again.max_segments) == (_SEG, 16)
        assert [g[0] for g in _read_all(again, 0, 60)] == list(range(60))
    finally:
        _wipe(path)


def test_a_smaller_budget_or_other_segments_keep_the_newest_and_count_what_goes():
    path = _folder("shrink")
    try:
        log = FlashLog(path, 8 * _SEG, _SEG)
        for i in range(120):
            log.append(_packet(i), 40)
        log.close()
        small = FlashLog(path, 3 * _SEG, _SEG)
        assert small._nseg <= 3 and small.overflow > 0
        kept = _read_all(small, 0, 200)
        assert [g[0] for g in kept] == list(range(small.first_lsn, 120))
        assert small.first_lsn == small.overflow  # nothing was acknowledged: every record gone is counted
        small.close()
        other = FlashLog(path, 8 * _SEG, 2 * _SEG)
        assert other.overflow == 120 and other.next_lsn == 120 and other.available(0, 120) == 0
    finally:
        _wipe(path)


def _command(ptype, seq, *fields):
    layout = {P.CMD_LOG_INFO: "<", P.CMD_BACKFILL: P.CMD_BACKFILL_BODY, P.CMD_ACK: P.CMD_ACK_BODY}[ptype]
    return struct.pack(P.HEADER, P.VERSION, ptype, seq, 0) + struct.pack(layout, *fields)


def test_backfill_replays_a_range_then_marks_its_end_with_log_info_a_refused_record_again():
    path = _folder("backfill")
    try:
        log = FlashLog(path, 64 * _SEG, _SEG)
        for i in range(50):
            log.append(_packet(i), 40)
        replies = Outbox(8, 32)
        bf = Backfill(log, replies)
        answers = []
        bf.command(P.CMD_BACKFILL, 7, _command(P.CMD_BACKFILL, 7, 10, 20), 1000,
                   lambda c, s, st, v=0: answers.append((c, s, st, v)))
        assert answers == [(P.CMD_BACKFILL, 7, P.OK, 10)]
        sent = []
        refused = []

        def radio(buf, n):
            if len(sent) == 4 and not refused:  # a congested link refuses one
                refused.append(1)
                return False
            sent.append(bytes(buf[:n]))
            return True
        live = []
        while bf.active:  # the live queue reads back into the buffer the replay reads into
            log.send_live(lambda buf, n, off: live.append(bytes(buf[off:off + n])) or True, 1)
            bf.flush(radio, 3, 1000, 244)
        assert live and all(pkt == _packet(struct.unpack_from("<H", pkt, 2)[0]) for pkt in live)
        lsns = []
        seqs = []
        for pkt in sent:
            _, ptype, seq, _ = struct.unpack_from(P.HEADER, pkt, 0)
            seqs.append(seq)
            lsn, boot = struct.unpack_from(P.BACKFILL_BODY, pkt, P.HEADER_SIZE)
            assert ptype == P.BACKFILL and boot == 1
            assert pkt[P.BACKFILL_WRAP:] == _packet(lsn)
            lsns.append(lsn)
        assert lsns == list(range(10, 20)), lsns
        assert seqs == list(range(seqs[0], seqs[0] + 10)), seqs  # the refused one went again as itself
        assert len(replies) == 1  # LOG_INFO marks the end
        bf.command(P.CMD_ACK, 8, _command(P.CMD_ACK, 8, 20), 0, lambda c, s, st, v=0: answers.append((c, st, v)))
        assert answers[-1] == (P.CMD_ACK, P.OK, 20) and log.acked == 20
        bf.command(P.CMD_BACKFILL, 9, _command(P.CMD_BACKFILL, 9, 20, 10), 0,
                   lambda c, s, st, v=0: answers.append((c, st, v)))
        assert answers[-1] == (P.CMD_BACKFILL, P.E_LOG_RANGE, 0)
    finally:
        _wipe(path)


def test_segment_files_of_the_earlier_log_are_removed_at_boot():
    path = _folder("legacy")
    try:
        with open(path + "/00000000.seg", "wb") as f:
            f.write(b"WLG1" + bytes(60))
        log = FlashLog(path, 4 * _SEG, _SEG)
        assert sorted(os.listdir(path)) == ["ring.bin", "state.bin"] and log.next_lsn == 0
    finally:
        _wipe(path)


def test_a_damaged_segment_mid_ring_is_a_hole_the_reads_and_the_eviction_step_over():
    # RAM keeps no index of the segments: reads find them from their heads on flash, in ring order.
    path = _folder("hole")
    try:
        log = FlashLog(path, 8 * _SEG, _SEG)
        per_segment = (_SEG - 28) // 42
        total = 6 * per_segment
        for i in range(total):
            log.append(_packet(i), 40)
        log.close()
        with open(path + "/ring.bin", "r+b") as f:  # a flipped bit in the third segment
            f.seek(2 * _SEG + 100)
            b = f.read(1)
            f.seek(2 * _SEG + 100)
            f.write(bytes((b[0] ^ 1,)))
        again = FlashLog(path, 8 * _SEG, _SEG)
        hole = range(2 * per_segment, 3 * per_segment)
        held = [i for i in range(total) if i not in hole]
        assert again.torn == 1 and again.first_lsn == 0
        assert [g[0] for g in _read_all(again, 0, total)] == held
        assert [g[0] for g in _read_all(again, 2 * per_segment - 1, 3 * per_segment + 2)] == [
            2 * per_segment - 1, 3 * per_segment, 3 * per_segment + 1]
        assert again.available(0, total) == len(held)
        assert again.available(hole[0], hole[-1] + 1) == 0
        again.ack(total)
        for i in range(total, total + 8 * per_segment):  # the ring turns over, past the hole
            again.append(_packet(i), 40)
        # eight slots: seven sealed segments and the open one, all of the ring's second turn
        assert again.overflow == 0 and again.first_lsn == total and again.bytes_used == 8 * _SEG
        assert [g[0] for g in _read_all(again, total, again.next_lsn)] == list(range(again.first_lsn, again.next_lsn))
    finally:
        _wipe(path)


def test_boot_keeps_the_newest_segments_in_ring_order_and_counts_one_out_of_it():
    # Reads find segments by walking the slots from the oldest; a segment out of lsn order
    # (a ring written some other way) would break that: boot lets it go, counted.
    path = _folder("order")
    try:
        log = FlashLog(path, 8 * _SEG, _SEG)
        per_segment = (_SEG - 28) // 42
        for i in range(4 * per_segment):
            log.append(_packet(i), 40)
        log.close()
        with open(path + "/ring.bin", "r+b") as f:  # the second and third segments swap slots
            f.seek(_SEG)
            second = f.read(_SEG)
            third = f.read(_SEG)
            f.seek(_SEG)
            f.write(third + second)
        again = FlashLog(path, 8 * _SEG, _SEG)
        gone = range(2 * per_segment, 3 * per_segment)
        assert again.overflow == per_segment and again.torn == 0
        assert [g[0] for g in _read_all(again, 0, 4 * per_segment)] == [i for i in range(4 * per_segment) if i not in gone]
        assert again.available(0, 4 * per_segment) == 3 * per_segment
    finally:
        _wipe(path)

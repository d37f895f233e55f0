"""The flash log keeps every record until it is acknowledged, stays within its budget, serves
the live queue and backfills from flash, and appends without allocating."""

import os
import struct

import micropython

from mp_logs import SEG, folder, packet, read_all, wipe
from wire import protocol as P
from watch.backfill import Backfill
from watch.flashlog import FlashLog
from watch.outbox import Outbox


def test_records_come_back_byte_for_byte_from_flash_and_from_the_open_segment():
    path = folder("roundtrip")
    try:
        log = FlashLog(path, 64 * SEG, SEG)
        for i in range(100):
            assert log.append(packet(i), 40) == i
        assert log.bytes_used > 0 and log._count > 0  # some on flash, some still open
        assert log.available(0, 100) == 100
        got = read_all(log, 0, 100)
        assert [g[0] for g in got] == list(range(100))
        assert [g[0] for g in read_all(log, 37, 41)] == [37, 38, 39, 40]
        assert read_all(log, 100, 200) == []
    finally:
        wipe(path)


def test_the_largest_stream_packet_reads_back_whole_and_a_longer_one_is_refused():
    # read_buf holds a BACKFILL's wrap and the largest record: 244 bytes, the link's largest packet.
    from watch.flashlog import MAX_RECORD, READ_ROOM

    path = folder("largest")
    try:
        log = FlashLog(path, 16 * SEG, SEG)
        assert READ_ROOM + MAX_RECORD == 244 == len(log.read_buf)
        for i in range(5):  # two segments of two, and one open
            log.append(packet(i, MAX_RECORD), MAX_RECORD)
        try:
            log.append(bytearray(MAX_RECORD + 1), MAX_RECORD + 1)
            raise AssertionError("a record longer than read_buf took")
        except ValueError:
            pass
        assert log.next_lsn == 5
        live = []  # the sealed records: the open segment's go once it is sealed
        assert log.send_live(lambda buf, n, off: live.append(bytes(buf[off:off + n])) or True, 10) == 4
        assert live == [packet(i, MAX_RECORD) for i in range(4)] and log.live_dropped == 0
        log.seek(0, 5)
        got = []
        while log.read(log.read_buf, READ_ROOM):
            assert log.read_buf[READ_ROOM:] == packet(log.lsn, MAX_RECORD)
            got.append(log.lsn)
        assert got == [0, 1, 2, 3, 4]
    finally:
        wipe(path)


def test_a_backfill_that_reaches_the_open_segment_seals_it_and_reads_on():
    # The open segment's file is never read while it is written (littlefs would copy it): a
    # replay that reaches it seals it (fewer records) and reads it as a sealed one; records
    # appended after that go to the next segment, where the replay carries on. The records
    # it sends do not go live as well: it takes the live queue over.
    path = folder("growing")
    try:
        log = FlashLog(path, 16 * SEG, SEG)
        per_segment = (SEG - 28) // 42
        for i in range(per_segment + 2):
            log.append(packet(i), 40)
        live = []  # the first segment went live: the host backfills from the next one on
        log.send_live(lambda buf, n, off: live.append(buf[off + 2] | buf[off + 3] << 8) or True, 1000)
        out = bytearray(300)
        log.seek(per_segment, 1000)
        got = []
        for _ in range(2):
            got.append(log.read(out, 0) and log.lsn)
        for i in range(per_segment + 2, 3 * per_segment):  # the open one fills and is sealed
            log.append(packet(i), 40)
            if i == per_segment + 4:
                got.append(log.read(out, 0) and log.lsn)
                assert out[:40] == packet(log.lsn)
        while log.read(out, 0):
            assert out[:40] == packet(log.lsn), log.lsn
            got.append(log.lsn)
        assert got == list(range(per_segment, 3 * per_segment)), got
        # the backfill took the live queue over: none of its records goes live as well
        log.send_live(lambda buf, n, off: live.append(buf[off + 2] | buf[off + 3] << 8) or True, 1000)
        assert sorted(live + got) == list(range(3 * per_segment)), (live, got)
    finally:
        wipe(path)


def test_a_full_log_evicts_acknowledged_data_first_and_counts_unacknowledged_overflow():
    path = folder("bounded")
    try:
        log = FlashLog(path, 4 * SEG, SEG)
        per_segment = (SEG - 28) // 42
        for i in range(6 * per_segment):
            log.append(packet(i), 40)
            if i == 3 * per_segment:
                log.ack(i)  # the host has everything before i
        on_flash = sum(os.stat(path + "/" + f)[6] for f in os.listdir(path) if f.endswith(".wlg"))
        assert log._nseg <= 4 and on_flash <= 4 * SEG
        assert log.overflow == 0, log.overflow  # what went so far was acknowledged
        for i in range(6 * per_segment, 12 * per_segment):
            log.append(packet(i), 40)
        assert log.overflow > 0
        first = log.first_lsn
        assert first - 3 * per_segment == log.overflow, (first, log.overflow)
        assert read_all(log, 0, first) == []
        assert log.available(0, log.next_lsn) == log.next_lsn - first
    finally:
        wipe(path)


def _length(lsn):
    """Records of every length; the first five put the sixth's length across the first piece
    boot reads of a slot (bytes 243 and 244 of 244)."""
    return (41, 41, 41, 41, 45)[lsn] if lsn < 5 else 30 + lsn % 20


def test_segments_carry_zlibs_crc32_built_as_records_come_without_an_int_object():
    # binascii.crc32 hands back an int, a heap object on a 32-bit port above 2**30 (the 64-bit
    # binary cannot show that allocation): the log keeps the CRC register in a buffer and
    # takes the records' on as they come, then the head's at the seal. Whatever the value,
    # a segment file ends with zlib's CRC32 of everything before it.
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
    path = folder("crc")
    try:
        log = FlashLog(path, 16 * SEG, SEG)
        for i in range(120):
            log.append(packet(i, _length(i)), _length(i))  # records of every length
        log.close()
        seen = 0
        for slot in range(log._nseg):
            with open("%s/%d.wlg" % (path, slot), "rb") as f:
                seg = f.read()
            assert len(seg) <= SEG
            (stored,) = struct.unpack_from("<I", seg, len(seg) - 4)
            assert stored == crc32(seg[:-4]) & 0xFFFFFFFF, slot
            high += stored >= 0x80000000
            (magic, first, count) = struct.unpack_from("<IIH", seg, len(seg) - 28)
            assert magic == 0x33474C57
            pos = 0
            for lsn in range(first, first + count):
                n = seg[pos] | seg[pos + 1] << 8
                assert seg[pos + 2:pos + 2 + n] == packet(lsn, _length(lsn))
                pos += 2 + n
            assert pos == len(seg) - 28  # the trailer right after the records
            seen += count
        assert seen == 120
        assert high  # some of them above 2**31: the values a 32-bit port could not keep small
        again = FlashLog(path, 16 * SEG, SEG)  # boot checks each file a piece at a time
        assert again.torn == 0 and again.available(0, 120) == 120
        out = bytearray(300)
        again.seek(0, 120)
        while again.read(out, 0):
            assert out[:_length(again.lsn)] == packet(again.lsn, _length(again.lsn))
    finally:
        wipe(path)


def test_records_past_lsn_65536_come_back():
    path = folder("wrap")
    try:
        with open(path + "/state.bin", "wb") as f:  # a log that ended cleanly just below 2**16
            f.write(struct.pack("<IIIIIII", 3, 65000, 0, 0, 65500, SEG, 16))
        log = FlashLog(path, 16 * SEG, SEG)
        assert log.next_lsn == 65500
        for i in range(65500, 65650):  # all of them held: 16 segments of 11
            assert log.append(packet(i), 40) == i
        assert log.first_lsn == 65500 and log.available(0, 70000) == 150
        out = bytearray(300)
        lsns = []
        log.seek(0, 70000)
        while log.read(out, 0):  # each record's bytes, without holding 150 tuples in a small heap
            assert out[:40] == packet(log.lsn), log.lsn
            lsns.append(log.lsn)
        assert len(lsns) == 150 and lsns[0] == 65500 and lsns[-1] == 65649
    finally:
        wipe(path)


def _command(ptype, seq, *fields):
    layout = {P.CMD_LOG_INFO: "<", P.CMD_BACKFILL: P.CMD_BACKFILL_BODY, P.CMD_ACK: P.CMD_ACK_BODY}[ptype]
    return struct.pack(P.HEADER, P.VERSION, ptype, seq, 0) + struct.pack(layout, *fields)


def test_backfill_replays_a_range_then_marks_its_end_with_log_info_a_refused_record_again():
    path = folder("backfill")
    try:
        log = FlashLog(path, 64 * SEG, SEG)
        for i in range(50):
            log.append(packet(i), 40)
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
        assert live and all(pkt == packet(struct.unpack_from("<H", pkt, 2)[0]) for pkt in live)
        lsns = []
        seqs = []
        for pkt in sent:
            _, ptype, seq, _ = struct.unpack_from(P.HEADER, pkt, 0)
            seqs.append(seq)
            lsn, boot = struct.unpack_from(P.BACKFILL_BODY, pkt, P.HEADER_SIZE)
            assert ptype == P.BACKFILL and boot == 1
            assert pkt[P.BACKFILL_WRAP:] == packet(lsn)
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
        wipe(path)



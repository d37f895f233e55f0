"""The flash log's live queue: sealed segments go out to the radio once each, in order, the
open one after a wait; between seals nothing is allocated, and what seals allocate does not
pile up."""

import micropython

from mp_logs import SEG, folder, packet, wipe
from watch.flashlog import FlashLog


def test_append_allocates_nothing_between_seals_and_seals_leave_nothing_behind():
    # A seal closes the segment's file and opens the next one (a file object and its name: a
    # few allocations a segment, documented); the records in between and the
    # live queue's sending within a segment allocate nothing, and what seals allocate is
    # garbage that a collection takes back whole, however many segments go by.
    import gc

    path = folder("heap")
    try:
        log = FlashLog(path, 4 * SEG, SEG)
        pkt = packet(1)
        per_segment = (SEG - 28) // 42
        sent = [0]

        def send(buf, n, off):
            sent[0] += 1
            return True
        free = [0] * 30  # whole beforehand: a growing list would be what the heap shows
        for turn in range(30):
            log.append(pkt, 40)  # the segment's first record: the one before is sealed
            log.send_live(send, 1)  # the live queue opens the segment sealed before it
            micropython.heap_lock()
            try:
                for _ in range(per_segment - 1):
                    log.append(pkt, 40)
                log.send_live(send, 1)  # within the segment the live queue has open
            finally:
                micropython.heap_unlock()
            assert log._count == per_segment
            log.send_live(send, 100)
            gc.collect()
            free[turn] = gc.mem_free()
        assert log.bytes_used == 4 * SEG and log.overflow > 0 and log.next_lsn == 30 * per_segment
        assert sent[0] == 29 * per_segment  # every sealed record went live
        assert max(free[10:]) - min(free[10:]) <= 64, free  # nothing piles up seal after seal
    finally:
        wipe(path)


def test_the_live_queue_sends_every_sealed_record_once_in_order_and_the_open_one_after_a_wait():
    # Stream packets wait for the radio in the log itself: the segment sealed last and the
    # one before it, read back from their files. Older ones are dropped, counted, and left
    # to a backfill. An open segment goes out once it is sealed, early when its first
    # record has waited _LIVE_MS with nothing else to send.
    import time

    from wire import host_view

    live_ms = host_view("flashlog").LIVE_MS

    path = folder("live")
    try:
        log = FlashLog(path, 16 * SEG, SEG)
        got = []
        refuse = [False]

        def send(buf, n, off):
            if refuse[0]:
                return False
            got.append(bytes(buf[off:off + n]))
            return True

        per_segment = (SEG - 28) // 42
        for i in range(per_segment + 3):  # a segment sealed, three records in the next
            log.append(packet(i), 40)
        assert log.live_pending == per_segment + 3
        assert log.send_live(send, 2) == 2  # the budget
        assert log.send_live(send, 100) == per_segment - 2  # the open segment waits
        assert got == [packet(i) for i in range(per_segment)] and log.live_pending == 3
        time.sleep_ms(live_ms + 10)
        assert log.send_live(send, 100) == 3  # sealed early: three records in their segment
        assert got == [packet(i) for i in range(per_segment + 3)] and log.live_pending == 0
        refuse[0] = True
        start = per_segment + 3
        for i in range(start, start + 3 * per_segment + 5):  # three more segments sealed, unsent
            log.append(packet(i), 40)
        # the first of them went before its turn came: the queue keeps the last two
        assert log.send_live(send, 100) == 0 and log.live_dropped == per_segment
        refuse[0] = False
        assert log.send_live(send, 100) == 2 * per_segment
        assert got[per_segment + 3:] == [packet(i) for i in range(start + per_segment, start + 3 * per_segment)]
        assert log.live_pending == 5
    finally:
        wipe(path)

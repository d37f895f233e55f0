"""The flash log over the radio: the LOG_INFO, BACKFILL and ACK commands, and the replay of
logged records as BACKFILL packets on the control characteristic (docs/protocol.md)."""

import struct

from watch import protocol as P
from watch.flashlog import READ_ROOM


class Backfill:
    """Answers the log commands into the `replies` outbox and replays a requested range.

    A replay sends records only while no reply waits, so the control characteristic's
    sequence numbers go out in order; LOG_INFO after the last record marks its end.
    """

    def __init__(self, log, replies):
        self.log = log
        self.replies = replies
        if P.BACKFILL_WRAP > READ_ROOM:
            raise ValueError("a BACKFILL's wrap does not fit before the log's records")
        self._seq = -1  # the sequence number of a packet the radio refused, kept for its next try
        self.active = False
        self.skipped = 0  # records too big for the link they were asked for on

    def info(self, tick):
        log, box = self.log, self.replies
        box.seal(P.pack_body(box.open_buf(), P.LOG_INFO, box.next_seq(), tick, P.LOG_INFO_BODY,
                             log.boot, log.first_lsn, log.next_lsn, log.acked, log.overflow, log.torn))

    def command(self, ptype, seq, data, tick, reply):
        """Handle CMD_LOG_INFO, CMD_BACKFILL or CMD_ACK; `reply(command, seq, status, value)`."""
        log = self.log
        if ptype == P.CMD_LOG_INFO:
            self.info(tick)
            reply(ptype, seq, P.OK, log.next_lsn)
        elif ptype == P.CMD_BACKFILL:
            lo, hi = struct.unpack_from(P.CMD_BACKFILL_BODY, data, P.HEADER_SIZE)
            if hi < lo:
                reply(ptype, seq, P.E_LOG_RANGE)
                return
            hi = min(hi, log.next_lsn)
            log.seek(lo, hi)
            self._seq = -1
            self.active = True
            reply(ptype, seq, P.OK, log.available(lo, hi))
        elif ptype == P.CMD_ACK:
            (lsn,) = struct.unpack_from(P.CMD_ACK_BODY, data, P.HEADER_SIZE)
            reply(ptype, seq, P.OK, log.ack(lsn))
        else:
            reply(ptype, seq, P.E_UNKNOWN_COMMAND)

    def flush(self, send, budget, tick, max_payload):
        """Send up to `budget` records with `send(buf, n) -> bool`; returns how many went.

        A record too big for the link's current MTU (made under a larger one) is skipped:
        the host counts it lost after asking again.
        """
        sent = 0
        log, box = self.log, self.replies
        buf = log.read_buf  # the live queue reads into it too: a refused packet is read again next time
        while self.active and sent < budget and not len(box):
            n = log.read(buf, P.BACKFILL_WRAP)
            if not n:
                self.active = False
                self.info(tick)
                break
            if P.BACKFILL_WRAP + n > max_payload:
                self.skipped += 1
                continue
            seq = self._seq if self._seq >= 0 else box.next_seq()
            P.pack_body(buf, P.BACKFILL, seq, tick, P.BACKFILL_BODY, log.lsn, log.record_boot)
            if not send(buf, P.BACKFILL_WRAP + n):
                log.unread()
                self._seq = seq
                break
            self._seq = -1
            sent += 1
        return sent

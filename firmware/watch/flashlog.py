"""Store-and-forward flash log: every stream packet, kept on flash until the host has it.

Records are whole packets, numbered by a log sequence number (lsn) that never goes back,
not even across reboots. Each segment is a file of its own, written once from its start to
its end and never written inside: the records as they come (no RAM copy of the segment),
then at the seal a trailer (the segment's head and the CRC32 of everything before it) and a
close. On littlefs (the ESP32 and nRF ports' file system) that is the cheap case: a file
appended to is programmed once, a removed file is a metadata change, and nothing is copied
(writing inside a file, or reading the file being written, makes littlefs copy it:
tools/bench/flashlog_flash.py). So the live queue reads sealed segments only: a record goes
out live once its segment is sealed, and a segment whose first record has waited `_LIVE_MS`
(0.5 s) with nothing else to send is sealed early (fewer records), so that a slow stream is
not held back; while a host is connected, that is a seal (on littlefs, a block erased) at
most every 0.5 s. A backfill that reaches the open segment seals it too, and takes the live
queue over (the host asked for every record from its first missing one). littlefs gives a
file whole blocks: segments smaller than a block take more flash than `max_bytes`.

A power cut loses at most the open segment: a file without a whole trailer is removed at
boot (counted in `torn` when any of it reached flash; on littlefs nothing of a file reaches
it before its close), and boot moves the next lsn past it, so no number is given twice.

The CRC is built as the records go (a 4-byte register in a buffer, not an int object).

Opening a segment's file allocates (a file object and its name): once per segment, at its
seal (the next segment's file opens), and likewise where the live queue, a backfill or an
eviction opens a sealed one. Between seals, `append` and `send_live` allocate nothing. The
log holds at most `max_bytes` of segments (the board profile's `flash_log_bytes`), in
`max_bytes // segment_bytes` slots. A seal that would leave no slot free evicts the oldest segment
(its file removed): records the host had acknowledged go silently, others are counted in
`overflow`, which the watch reports (LOG_INFO, EVENT 15).

Segments take the slots in turn, so the slots from the oldest segment's on hold them in lsn
order (a slot emptied at boot stays a hole). RAM keeps only where the ring starts and how
many slots it spans: a segment's first lsn and count are read back from its trailer when a
backfill, LOG_INFO or an eviction needs them (rare paths).

Segment file `<folder>/<slot>.wlg`: records (u16 length, then the packet), then the head
    u32 magic "WLG3", u32 first lsn, u16 records, u16 boot, u32 acked lsn, u32 overflow,
    u32 torn,
then the CRC32 (zlib's) of everything before it. The counters in a segment's head are the
log's when it was sealed, so the newest segment carries them across a power cut. State file
`<folder>/state.bin` (written at boot and at a clean shutdown): u32 boot, acked lsn,
overflow, torn segments, the next lsn if the last shutdown was clean (0 otherwise), segment
bytes, slots. Logs of earlier firmware (`*.seg` files, `ring.bin`) are removed at boot, their
unacknowledged records counted in `overflow`.
"""

import os
import struct
import time

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)
_MAGIC = const(0x33474C57)  # "WLG3" read little-endian
_OLD_MAGIC = const(0x32474C57)  # "WLG2": a segment of the ring file of earlier firmware
_HEAD = "<IIHHIII"  # magic, first lsn, records, boot, acked, overflow, torn
_HEAD_SIZE = const(24)
_CRC_SIZE = const(4)
_TRAILER = const(28)  # the head and the CRC after the records
_STATE = "<IIIIIII"  # boot, acked lsn, overflow, torn, next lsn after a clean shutdown, segment bytes, slots
_MIN_RECORD = const(16)  # length prefix + the smallest packet: bounds the records one segment holds
READ_ROOM = const(14)  # bytes before a record read back into `read_buf`: a BACKFILL's header and body
MAX_RECORD = const(230)  # the largest stream packet: 244 (ATT MTU 247's) minus its BACKFILL's room
_LIVE_MS = const(500)  # an open segment is sealed early for the live queue once its first record is this old
_EMPTY = const(0)  # what _check finds in a segment file
_TORN = const(1)
_WHOLE = const(2)

# _crc_run(reg, at, buf, n): the CRC32 register reg[at:at + 4] (little-endian, without zlib's
# inversions) taken on over buf[:n]. The register lives in a buffer: a CRC above 2**30 as an
# int is a heap object on a 32-bit port, and every record would allocate. _write_part(f, buf,
# n) writes buf[:n] at the file's position.
try:
    import micropython

    @micropython.viper
    def _crc_run(reg: ptr8, at: int, buf: ptr8, n: int):  # noqa: F821
        poly = (uint(0xEDB8) << 16) | uint(0x8320)  # 0xEDB88320, reflected; built from halves: no big literal
        c = uint(reg[at]) | (uint(reg[at + 1]) << 8) | (uint(reg[at + 2]) << 16) | (uint(reg[at + 3]) << 24)
        i = 0
        while i < n:
            c ^= uint(buf[i])
            k = 0
            while k < 8:
                if c & uint(1):
                    c = (c >> 1) ^ poly
                else:
                    c = c >> 1
                k += 1
            i += 1
        reg[at] = int(c & uint(0xFF))
        reg[at + 1] = int((c >> 8) & uint(0xFF))
        reg[at + 2] = int((c >> 16) & uint(0xFF))
        reg[at + 3] = int((c >> 24) & uint(0xFF))

    def _write_part(f, buf, n):
        f.write(buf, 0, n)  # MicroPython's stream write takes an offset and a length: no slice
except (ImportError, AttributeError, NameError):  # CPython (the host reads a watch's log copy)
    from binascii import crc32

    def _crc_py(reg, at, buf, n):
        (r,) = struct.unpack_from("<I", reg, at)
        struct.pack_into("<I", reg, at, ~crc32(memoryview(buf)[:n], ~r & 0xFFFFFFFF) & 0xFFFFFFFF)

    def _write_py(f, buf, n):
        f.write(memoryview(buf)[:n])

    _crc_run = _crc_py
    _write_part = _write_py


class FlashLog:
    """The log in `folder`, at most `max_bytes` of `segment_bytes` segments (None for either:
    what the log on flash was made with, to read a copy of a watch's log).

    `append` keeps a packet and returns its lsn; `send_live` hands sealed records to the
    radio; `ack` moves the acknowledged mark; `available`, `seek` and `read` serve a
    backfill; `close` seals the open segment at a clean shutdown.
    """

    def __init__(self, folder="log", max_bytes=262144, segment_bytes=4096):
        self.folder = folder
        try:
            os.mkdir(folder)
        except OSError:
            pass  # it exists
        boot, acked, overflow, torn, clean_next, old_segment, old_slots = self._load_state()
        if segment_bytes is None:
            segment_bytes = old_segment or 4096
        if max_bytes is None:
            slots = old_slots or 2
        else:
            slots = max(2, max_bytes // segment_bytes)
        self.segment_bytes = segment_bytes
        self.max_segments = slots
        self.acked, self.overflow, self.torn = acked, overflow, torn
        # A segment's head (packed at the seal, read back from a trailer); also a record's
        # length prefix as it is appended or read back.
        self._head = bytearray(_HEAD_SIZE)
        # Two CRC32 registers: a check (the seal's, or a file's at boot) at 0, the open
        # segment's records at 4.
        self._crc = bytearray(2 * _CRC_SIZE)
        self._opened = 0  # ticks_ms of the open segment's first record
        self._efirst = self._ecount = self._eboot = 0  # the ring entry _entry read last
        self._oldest = 0  # the slot of the oldest segment
        self._nseg = 0  # slots from it to the newest sealed segment's (holes included)
        self.live_dropped = 0  # records that did not go out live in time (the host backfills them)
        # The live queue: the sealed segment being sent (its file while open, the offset and
        # count of its unsent records) and the one sealed after it, not begun (its count).
        # They are the newest sealed segments: their slots are the ring's last.
        self._lpos = self._lcount = self._bcount = 0
        self._lf = None
        # Records read back from flash: by the live queue (length and record at 0, nothing kept
        # there between calls) and by a backfill (`read` at READ_ROOM; it reads a record again
        # after `unread` rather than keep it), so one buffer serves both. Also boot's check of
        # a segment, a piece at a time.
        self.read_buf = bytearray(READ_ROOM + MAX_RECORD)
        self._rseg = -1  # backfill cursor: the slot being read (its file), the lsn and offset of its next record
        self._rf = None
        self._rnext_file = self._rfile_end = self._rfile_boot = self._rpos = 0
        self._rnext = 0  # the next lsn of the range being read, and the range's end
        self._rend = 0
        self.lsn = 0  # lsn of the record `read` returned last, and its length
        self._rlen = 0
        self.record_boot = 0
        self.boot = (boot + 1) & 0xFFFF
        top = self._retire_earlier_logs(old_segment)
        end = self._scan(old_segment in (0, segment_bytes))
        base = max(end, top, self.acked)
        if clean_next >= base or boot == 0:
            self.next_lsn = max(clean_next, base)
        else:  # records of the segment lost to the power cut had numbers from `end` on
            self.next_lsn = base + segment_bytes // _MIN_RECORD
        if self._nseg == self.max_segments:  # no slot free yet for the open segment
            self._evict()
        self._start_segment()
        self._save_state(0)  # with the counters of what boot removed or evicted

    # Writing ------------------------------------------------------------------------------

    def append(self, buf, n):
        """Keep the packet buf[:n] as the next record; returns its lsn. Allocates nothing but
        in `flush` (when the segment is full)."""
        if n > MAX_RECORD:
            raise ValueError("record too long")  # it would not read back into read_buf
        if self._fill + 2 + n > self.segment_bytes - _TRAILER:
            self.flush()
        if not self._count:
            self._opened = time.ticks_ms()
        h = self._head
        h[0] = n & 0xFF
        h[1] = n >> 8
        self._write(self._fill, h, 2)
        self._write(self._fill + 2, buf, n)
        _crc_run(self._crc, _CRC_SIZE, h, 2)  # pyright: ignore[reportArgumentType] (viper takes buffers)
        _crc_run(self._crc, _CRC_SIZE, buf, n)  # pyright: ignore[reportArgumentType]
        self._fill += 2 + n
        self._count += 1
        lsn = self.next_lsn
        self.next_lsn = lsn + 1
        return lsn

    def send_live(self, send, budget):
        """Send up to `budget` sealed records that have not gone out live yet, oldest first,
        with `send(buf, n, off) -> bool` (a record read back from flash into `read_buf`);
        stops when it refuses. Returns how many went. Allocates only to open a segment's file.

        The log is the stream packets' queue for the radio: the segment sealed last and the
        one before it. A record still unsent when the second segment after its own is sealed
        is counted in `live_dropped` and reaches the host by backfill. An open segment whose
        first record has waited _LIVE_MS while the queue is empty is sealed now."""
        sent = 0
        b = self.read_buf
        while sent < budget:
            if not self._lcount:
                if not self._bcount:
                    if self._count and time.ticks_diff(time.ticks_ms(), self._opened) >= _LIVE_MS:
                        self.flush()
                        continue
                    break
                self._lpos, self._lcount, self._bcount = 0, self._bcount, 0
            f = self._lf
            if f is None:  # the queue's segment: the newest sealed, or the one before when both wait
                slot = (self._oldest + self._nseg - 1 - (self._bcount > 0)) % self.max_segments
                f = self._lf = open(self._name(slot), "rb")
            f.seek(self._lpos)
            f.readinto(b)  # the record and what follows it in the file (or less at its end)
            n = b[0] | b[1] << 8
            if not send(b, n, 2):
                break
            self._lpos += 2 + n
            self._lcount -= 1
            sent += 1
            if not self._lcount:
                self._live_close()
        return sent

    @property
    def live_pending(self):
        """Records not yet sent live: the queue's and the open segment's."""
        return self._lcount + self._bcount + self._count

    def flush(self):
        """Seal the open segment (when it holds records): its trailer, then its file closed;
        the next segment's file opens. What the log allocates while appending, it allocates
        here: the next file (its object and name), and an eviction's look at the oldest."""
        if not self._count:
            return
        if self._nseg + 2 > self.max_segments:  # keep a slot free for the next open segment
            self._evict()
        h = self._head
        struct.pack_into(_HEAD, h, 0, _MAGIC, self._first, self._count, self.boot, self.acked,
                         self.overflow, self.torn)
        c = self._crc
        _crc_run(c, _CRC_SIZE, h, _HEAD_SIZE)  # pyright: ignore[reportArgumentType] (viper takes buffers)
        for i in range(_CRC_SIZE):
            c[i] = c[_CRC_SIZE + i] ^ 0xFF
        self._write(self._fill, h, _HEAD_SIZE)
        self._write(self._fill + _HEAD_SIZE, c, _CRC_SIZE)
        self._f.close()  # littlefs: the file is there, whole, from here on
        self._live_add(self._count)
        self._nseg += 1
        self._start_segment()

    def close(self):
        """A clean shutdown: the open segment is sealed and the next boot numbers on."""
        self.flush()
        self._f.close()
        self._remove((self._oldest + self._nseg) % self.max_segments)  # the next segment's file: empty
        self._close_reader()
        self._live_close()
        self._save_state(self.next_lsn)

    def ack(self, lsn):
        """The host holds every record before `lsn`; returns the acknowledged mark."""
        if self.acked < lsn <= self.next_lsn:
            self.acked = lsn
        return self.acked

    @property
    def first_lsn(self):
        """The oldest record the log still holds (next_lsn when it holds none)."""
        for k in range(self._nseg):
            if self._entry(k) >= 0:
                return self._efirst
        return self._first if self._count else self.next_lsn

    @property
    def bytes_used(self):
        return (self._nseg + (self._count > 0)) * self.segment_bytes

    def _name(self, slot):
        return "%s/%d.wlg" % (self.folder, slot)

    def _entry(self, k):
        """Read the head of ring entry k (the k-th slot from the oldest): its first lsn and
        record count into `_efirst` and `_ecount`, its boot into `_eboot`; returns its slot,
        -1 for a hole."""
        slot = (self._oldest + k) % self.max_segments
        try:
            f = open(self._name(slot), "rb")
        except OSError:
            return -1
        h = self._head
        try:
            size = f.seek(0, 2)
            if size < _TRAILER:
                return -1
            f.seek(size - _TRAILER)
            if (f.readinto(h) or 0) < _HEAD_SIZE or h[0] | h[1] << 8 | h[2] << 16 | h[3] << 24 != _MAGIC:
                return -1
        finally:
            f.close()
        self._efirst = h[4] | h[5] << 8 | h[6] << 16 | h[7] << 24
        self._ecount = h[8] | h[9] << 8
        self._eboot = h[10] | h[11] << 8
        return slot

    def _start_segment(self):
        self._first = self.next_lsn
        self._count = 0
        self._fill = 0
        self._f = open(self._name((self._oldest + self._nseg) % self.max_segments), "wb")  # a free slot
        c = self._crc
        for i in range(_CRC_SIZE, 2 * _CRC_SIZE):
            c[i] = 0xFF  # zlib's start

    def _evict(self):
        """Let the oldest segment go (its file removed): its slot is free for a segment to
        open in. The seal that evicts writes the counters after it: a power cut before the
        seal's close leaves the evicted records uncounted."""
        slot = self._oldest
        if self._entry(0) >= 0:
            self._lost(self._efirst, self._ecount)
        if self._rseg == slot:
            self._close_reader()
        if self._lcount and self._nseg - 1 - (self._bcount > 0) == 0:  # the live queue's (a ring of 2 or 3 slots)
            self.live_dropped += self._lcount
            self._lcount = 0
            self._live_close()
        elif self._bcount and self._nseg == 1:
            self.live_dropped += self._bcount
            self._bcount = 0
        self._remove(slot)
        self._oldest = (slot + 1) % self.max_segments
        self._nseg -= 1

    def _live_add(self, count):
        """The segment just sealed joins the live queue; the older of two already there is
        dropped."""
        if self._bcount:
            self.live_dropped += self._lcount
            self._live_close()
            self._lpos, self._lcount, self._bcount = 0, self._bcount, count
        elif self._lcount:
            self._bcount = count
        else:
            self._live_close()
            self._lpos, self._lcount = 0, count

    def _live_close(self):
        if self._lf is not None:
            self._lf.close()
            self._lf = None

    def _write(self, offset, buf, n):
        """buf[:n] into the open segment's file, at `offset` (its end: tests replace this to
        cut the power half way)."""
        _write_part(self._f, buf, n)

    def _remove(self, slot):
        try:
            os.remove(self._name(slot))
        except OSError:
            pass  # a hole

    # State and boot -----------------------------------------------------------------------

    def _load_state(self):
        try:
            with open(self.folder + "/state.bin", "rb") as f:
                return struct.unpack(_STATE, f.read())
        except (OSError, ValueError):
            return 0, 0, 0, 0, 0, 0, 0

    def _save_state(self, clean_next):
        with open(self.folder + "/state.bin", "wb") as f:
            f.write(struct.pack(_STATE, self.boot, self.acked, self.overflow, self.torn, clean_next,
                                self.segment_bytes, self.max_segments))

    def _retire_earlier_logs(self, old_segment):
        """Remove the logs of earlier firmware: the segment files of the first one, and the
        ring file (a slot per segment, the head first) of the next, its unacknowledged
        records counted in overflow. Returns the lsn after the ring's last record."""
        top = 0
        for name in os.listdir(self.folder):
            if name.endswith(".seg"):
                os.remove(self.folder + "/" + name)
        path = self.folder + "/ring.bin"
        try:
            f = open(path, "rb")
        except OSError:
            return top
        h = self._head
        size = f.seek(0, 2)
        step = old_segment or 4096
        for at in range(0, size, step):
            f.seek(at)
            if (f.readinto(h) or 0) == _HEAD_SIZE and struct.unpack_from("<I", h, 0)[0] == _OLD_MAGIC:
                _, first, count, _, _, _, _ = struct.unpack_from(_HEAD, h, 0)
                self._lost(first, count)
                top = max(top, first + count)
        f.close()
        os.remove(path)
        return top

    def _lost(self, first, count):
        if first + count > self.acked:
            self.overflow += first + count - max(first, self.acked)

    def _scan(self, keep):
        """Check every segment file, remove torn ones (and all of them unless `keep`: other
        segments than the last boot's), find where the ring starts; returns the lsn after
        the last record."""
        n = self.max_segments
        newest = -1
        end = top = 0
        for name in os.listdir(self.folder):
            if not name.endswith(".wlg") or not name[:-4].isdigit():
                continue  # not a segment of this log's
            slot = int(name[:-4])
            kind, first, count, _, acked, overflow, torn = self._check(slot)
            if kind == _TORN:
                self.torn += 1
            elif kind == _WHOLE:
                self.acked = max(self.acked, acked)  # counters carried by the newest segment
                self.overflow = max(self.overflow, overflow)
                self.torn = max(self.torn, torn)
                top = max(top, first + count)
                if keep and slot < n:
                    if first + count > end:
                        newest, end = slot, first + count
                    continue
                self._lost(first, count)  # a smaller budget or other segments than the last boot's
            self._remove(slot)
        if newest < 0:
            return top
        # Back from the newest slot: each segment older than the one after it belongs to the
        # ring; one out of that order (a ring written otherwise, or a smaller budget's) goes.
        self._oldest, self._nseg = (newest + 1) % n, n
        bound = self._efirst if self._entry(n - 1) >= 0 else end
        oldest = newest
        for k in range(n - 2, -1, -1):
            if self._entry(k) < 0:
                continue
            if self._efirst + self._ecount <= bound:
                bound = self._efirst
                oldest = (newest + 1 + k) % n
            else:
                self._lost(self._efirst, self._ecount)
                self._remove((newest + 1 + k) % n)
        self._oldest = oldest
        self._nseg = (newest - oldest) % n + 1
        return max(end, top)

    def _check(self, slot):
        """(_WHOLE, first lsn, records, boot, acked, overflow, torn) of the segment file of
        `slot`; (_EMPTY, 0...) for an empty one, (_TORN, 0...) for one whose trailer, CRC or
        records do not hold. Reads the file a piece at a time into `read_buf`."""
        b = self.read_buf
        with open(self._name(slot), "rb") as f:
            size = f.seek(0, 2)
            end = size - _TRAILER  # where the records end
            if not size:
                return _EMPTY, 0, 0, 0, 0, 0, 0
            if end < 0:
                return _TORN, 0, 0, 0, 0, 0, 0
            f.seek(end)
            f.readinto(b)
            magic, first, count, boot, acked, overflow, torn = struct.unpack_from(_HEAD, b, 0)
            if magic != _MAGIC:
                return _TORN, 0, 0, 0, 0, 0, 0
            crc_end = size - _CRC_SIZE
            c = self._crc
            for i in range(_CRC_SIZE):
                c[i] = 0xFF
            pos = 0  # the file offset of b[0]
            walk = 0  # the file offset of the next record's length
            left = count
            while pos < crc_end:
                f.seek(pos)
                m = min(f.readinto(b) or 0, crc_end - pos)
                while left and walk + 2 <= min(pos + m, end):
                    walk += 2 + (b[walk - pos] | b[walk - pos + 1] << 8)
                    left -= 1
                if left and walk + 1 == pos + m < end:
                    m = walk - pos  # a length split by the piece's end: the next piece starts with it
                if m <= 0:
                    break
                _crc_run(c, 0, b, m)  # pyright: ignore[reportArgumentType] (viper takes buffers)
                pos += m
            if left or walk != end or pos != crc_end:
                return _TORN, 0, 0, 0, 0, 0, 0
            f.seek(crc_end)
            f.readinto(b)
        if c[0] ^ 0xFF != b[0] or c[1] ^ 0xFF != b[1] or c[2] ^ 0xFF != b[2] or c[3] ^ 0xFF != b[3]:
            return _TORN, 0, 0, 0, 0, 0, 0
        return _WHOLE, first, count, boot, acked, overflow, torn

    # Reading back (backfill) ---------------------------------------------------------------

    def available(self, lo, hi):
        """How many records in [lo, hi) the log still holds."""
        total = 0
        k = self._find(lo)
        while k < self._nseg:
            if self._entry(k) >= 0:
                if self._efirst >= hi:
                    break
                total += max(0, min(hi, self._efirst + self._ecount) - max(lo, self._efirst))
            k += 1
        if self._count:
            total += max(0, min(hi, self._first + self._count) - max(lo, self._first))
        return total

    def _find(self, lsn):
        """The ring entry whose segment may hold `lsn`: the last one starting at or before it
        (0 when none does), by binary search over the trailers on flash (holes skipped)."""
        lo, hi = 0, self._nseg
        best = 0
        while lo < hi:
            mid = (lo + hi) // 2
            k = mid
            while k < hi and self._entry(k) < 0:
                k += 1
            if k == hi:
                hi = mid
            elif self._efirst <= lsn:
                best = k
                lo = k + 1
            else:
                hi = mid
        return best

    def seek(self, lo, hi):
        """Start reading the records of [lo, hi) with `read`."""
        self._close_reader()
        self._rnext = lo
        self._rend = hi

    def read(self, out, offset):
        """Copy the next held record of the range into out[offset:]; returns its length, 0 at
        the end. Sets `lsn` and `record_boot` to the record's."""
        while self._rnext < self._rend:
            n = self._read_slot(self._rnext, out, offset)
            if n:
                return n
        self._close_reader()
        return 0

    def _read_slot(self, lsn, out, offset):
        """The record `lsn` from its segment's file; 0 (and `_rnext` moved on) when it is gone."""
        if self._rseg < 0 or lsn < self._rnext_file or lsn >= self._rfile_end:
            if not self._place_reader(lsn):
                return 0
        f = self._rf
        if f is None:
            return 0
        word = self._head
        while True:
            f.seek(self._rpos)
            f.readinto(word)
            n = word[0] | word[1] << 8
            if self._rnext_file == lsn:
                break
            self._rpos += 2 + n
            self._rnext_file += 1
        f.seek(self._rpos + 2)
        f.readinto(memoryview(out)[offset:offset + n])
        self._rpos += 2 + n
        self._rnext_file += 1
        self.lsn = lsn
        self.record_boot = self._rfile_boot
        self._rnext = lsn + 1
        self._rlen = n
        return n

    def _place_reader(self, lsn):
        """Put the backfill cursor on the segment holding `lsn`; False (and `_rnext` moved on to
        the next one held) when none does. The open one is sealed first (its file is not read
        while written), and the backfill takes over the live queue: the host asked for every
        record from its first missing one, so the queue's unsent records are in the range it
        reads (or in a range the host asks for next), not sent twice."""
        if self._count and self._first <= lsn < self._first + self._count:
            self.flush()
            self._lcount = self._bcount = 0  # the live queue's records are the backfill's now
            self._live_close()
        k = -1
        if self._rseg >= 0:  # a replay goes on in the segment after the one it read
            k = (self._rseg - self._oldest) % self.max_segments + 1
            if k >= self._nseg or self._entry(k) < 0 or not self._efirst <= lsn < self._efirst + self._ecount:
                k = -1
        self._close_reader()
        if k < 0:
            k = self._find(lsn)
            if k >= self._nseg or self._entry(k) < 0 or not self._efirst <= lsn < self._efirst + self._ecount:
                self._rnext = self._next_first(lsn)  # evicted, torn or never written: the next one held
                return False
        self._rseg = (self._oldest + k) % self.max_segments
        self._rf = open(self._name(self._rseg), "rb")
        self._rnext_file = self._efirst
        self._rfile_end = self._efirst + self._ecount
        self._rfile_boot = self._eboot
        self._rpos = 0
        return True

    def unread(self):
        """The next `read` returns the record `read` returned last again."""
        lsn = self.lsn
        self._rnext = lsn
        if self._rseg >= 0 and self._rnext_file == lsn + 1:  # step back over it
            self._rnext_file = lsn
            self._rpos -= 2 + self._rlen

    def _next_first(self, lsn):
        """The first lsn held after `lsn` (the range's end when none is)."""
        best = self._rend
        for k in range(self._find(lsn), self._nseg):
            if self._entry(k) >= 0 and lsn < self._efirst:
                best = min(best, self._efirst)
                break
        if lsn < self._first < best and self._count:
            best = self._first
        return best

    def _close_reader(self):
        self._rseg = -1
        self._rnext_file = 0
        self._rfile_end = 0
        if self._rf is not None:
            self._rf.close()
            self._rf = None

"""Store-and-forward flash log: every stream packet, kept on flash until the host has it.

Records are whole packets, numbered by a log sequence number (lsn) that never goes back,
not even across reboots. They fill a segment in RAM; a full segment is written in one go
into a slot of the ring file, its CRC32 last, so a power cut mid-write leaves a slot whose
CRC fails: boot clears it and counts it as torn. A power cut loses at most the segment being
filled or written; boot moves the next lsn past it, so no number is ever given to two records.

The ring file is opened once at boot and stays open: writing a segment (about once a second
at the top rates) seeks and writes a preallocated buffer, so the sampling path allocates
nothing (no file object, no file name, no slice). It holds at most `max_bytes` of segments
(the board profile's `flash_log_bytes`). When it is full the oldest segment's slot is
written over: records the host had acknowledged go silently, others are counted in
`overflow`, which the watch reports (LOG_INFO, EVENT 15).

Segments go into the ring file's slots in turn, so the slots from the oldest segment's on
hold them in lsn order (a slot cleared at boot stays a hole). RAM keeps only where the ring
starts and how many slots it spans: a segment's first lsn and count are read back from its
head on flash when a backfill, LOG_INFO or an eviction needs them (rare paths), which keeps
a 256-segment log's index (over 1 KB) off the heap.

Ring file `<folder>/ring.bin`: slot i at i * segment_bytes, each
    u32 magic "WLG2", u32 first lsn, u16 records, u16 boot, u32 acked lsn, u32 overflow,
    u32 torn, records (u16 length, then the packet), and in the slot's last 4 bytes the CRC32
    of everything before them (bytes after the records included: the whole buffer is written).
The counters in a segment's head are the log's when it was written, so the newest segment
carries them across a power cut. State file `<folder>/state.bin` (written at boot and at a
clean shutdown): u32 boot, acked lsn, overflow, torn segments, the next lsn if the last
shutdown was clean (0 otherwise), segment bytes, slots.
"""

import os
import struct
from array import array
from binascii import crc32

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

_MAGIC = const(0x32474C57)  # "WLG2" read little-endian
_HEAD = "<IIHHIII"  # magic, first lsn, records, boot, acked, overflow, torn
_HEAD_SIZE = const(24)
_CRC_SIZE = const(4)
_STATE = "<IIIIIII"  # boot, acked lsn, overflow, torn, next lsn after a clean shutdown, segment bytes, slots
_MIN_RECORD = const(16)  # length prefix + the smallest packet: bounds the records one segment holds
MAX_RECORD = const(256)
READ_ROOM = const(14)  # bytes before a record read back into `read_buf`: a BACKFILL's header and body
_EMPTY = const(0)  # what _check finds in a slot
_TORN = const(1)
_WHOLE = const(2)


def _crc_py(buf, n, out, at):
    struct.pack_into("<I", out, at, crc32(memoryview(buf)[:n]) & 0xFFFFFFFF)


# The CRC32 (zlib's) of buf[:n], written little-endian into out[at:at + 4]. binascii.crc32
# returns it as an int, and one above 2**30 is a heap object on a 32-bit port: a segment's
# every write would allocate. Bit by bit over a 2 KB segment: 75 us on the virtual watch.
try:
    import micropython

    @micropython.viper
    def _crc_into(buf: ptr8, n: int, out: ptr8, at: int):  # noqa: F821
        poly = (uint(0xEDB8) << 16) | uint(0x8320)  # 0xEDB88320, reflected; built from halves: no big literal
        ones = (uint(0xFFFF) << 16) | uint(0xFFFF)
        c = ones
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
        c ^= ones
        out[at] = int(c & uint(0xFF))
        out[at + 1] = int((c >> 8) & uint(0xFF))
        out[at + 2] = int((c >> 16) & uint(0xFF))
        out[at + 3] = int((c >> 24) & uint(0xFF))
except (ImportError, AttributeError, NameError):  # CPython (the host reads a watch's log copy)
    _crc_into = _crc_py


class FlashLog:
    """The log in `folder`, at most `max_bytes` of `segment_bytes` segments (None for either:
    what the log on flash was made with, to read a copy of a watch's log).

    `append` keeps a packet and returns its lsn (nothing allocated, also when it writes a
    full segment); `ack` moves the acknowledged mark; `available`, `seek` and `read` serve a
    backfill; `close` writes the open segment at a clean shutdown.
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
        self._buf = bytearray(segment_bytes)
        # A segment's head read back from flash; also a record's length prefix as a backfill
        # reads it, and at boot a slot's CRC as computed (to compare with its stored one).
        self._head = bytearray(_HEAD_SIZE)
        self._efirst = self._ecount = self._eboot = 0  # the ring entry _entry read last
        self._oldest = 0  # the ring file slot of the oldest segment
        self._nseg = 0  # slots from it to the newest segment's (holes included)
        self.live_dropped = 0  # records that did not go out live in time (the host backfills them)
        # The live queue's part on flash: the _lcount unsent records of the segment written
        # last, from file offset _lfile + _lpos on, read back one at a time into read_buf.
        self._lfile = self._lpos = self._lcount = 0
        # Records read back from flash: by the live queue (length and record at 0, nothing kept
        # there between calls) and by a backfill (`read` at READ_ROOM; it reads a record again
        # after `unread` rather than keep it), so one buffer serves both.
        self.read_buf = bytearray(READ_ROOM + MAX_RECORD)
        self._rseg = -1  # backfill cursor: the slot being read, the lsn and file offset of its next record
        self._rnext_file = self._rfile_end = self._rfile_boot = self._rpos = 0
        self._rnext = 0  # the next lsn of the range being read, and the range's end
        self._rend = 0
        self.lsn = 0  # lsn of the record `read` returned last, and its length
        self._rlen = 0
        self.record_boot = 0
        self.boot = (boot + 1) & 0xFFFF
        self._f = self._open_ring(old_segment)
        end = self._scan()
        base = max(end, self.acked)
        if clean_next >= base or boot == 0:
            self.next_lsn = max(clean_next, base)
        else:  # records of the segment lost to the power cut had numbers from `end` on
            self.next_lsn = base + segment_bytes // _MIN_RECORD
        self._start_segment()
        self._save_state(0)

    # Writing ------------------------------------------------------------------------------

    def append(self, buf, n):
        """Keep the packet buf[:n] as the next record; returns its lsn."""
        if self._fill + 2 + n > self.segment_bytes - _CRC_SIZE:
            self.flush()
        b = self._buf
        pos = self._fill
        b[pos] = n & 0xFF
        b[pos + 1] = n >> 8
        pos += 2
        for i in range(n):
            b[pos + i] = buf[i]
        self._fill = pos + n
        self._count += 1
        lsn = self.next_lsn
        self.next_lsn = lsn + 1
        return lsn

    def send_live(self, send, budget):
        """Send up to `budget` records that have not gone out live yet, oldest first, with
        `send(buf, n, off) -> bool` (a record where it lies in the open segment, or read back
        from flash: nothing allocated); stops when it refuses. Returns how many went.

        The log is the stream packets' queue for the radio: the open segment, and the unsent
        records of the segment written last, read back from flash. A record still unsent when
        the segment after its own goes to flash is counted in `live_dropped` and reaches the
        host by backfill."""
        sent = 0
        f = self._f
        b = self.read_buf
        while sent < budget and self._lcount:
            f.seek(self._lfile + self._lpos)
            f.readinto(b)  # the record and what follows it in the slot (or less at the ring's end)
            n = b[0] | b[1] << 8
            if not send(b, n, 2):
                return sent
            self._lpos += 2 + n
            self._lcount -= 1
            sent += 1
        b = self._buf
        while sent < budget and self._live < self._fill:
            pos = self._live
            n = b[pos] | b[pos + 1] << 8
            if not send(b, n, pos + 2):
                break
            self._live = pos + 2 + n
            self._live_count += 1
            sent += 1
        return sent

    @property
    def live_pending(self):
        """Records of the open segment not yet sent live."""
        return self._lcount + self._count - self._live_count

    def flush(self):
        """Write the open segment into a slot of the ring file (when it holds records) and
        start the next one; allocates nothing."""
        if not self._count:
            return
        self.live_dropped += self._lcount  # the segment before: its turn is over
        if self._nseg == self.max_segments:
            self._evict()
        slot = (self._oldest + self._nseg) % self.max_segments
        struct.pack_into(_HEAD, self._buf, 0, _MAGIC, self._first, self._count, self.boot, self.acked,
                         self.overflow, self.torn)
        end = self.segment_bytes - _CRC_SIZE
        _crc_into(self._buf, end, self._buf, end)  # pyright: ignore[reportArgumentType] (viper takes buffers)
        self._write(slot * self.segment_bytes, self._buf)
        self._lfile = slot * self.segment_bytes  # its unsent records go on from flash
        self._lpos = self._live
        self._lcount = self._count - self._live_count
        self._nseg += 1
        self._start_segment()

    def close(self):
        """A clean shutdown: the open segment goes to flash and the next boot numbers on."""
        self.flush()
        self._close_reader()
        self._save_state(self.next_lsn)
        self._f.close()

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
        return self._nseg * self.segment_bytes

    def _entry(self, k):
        """Read the head of ring entry k (the k-th slot from the oldest): its first lsn and
        record count into `_efirst` and `_ecount`, its boot into `_eboot`; returns its slot,
        -1 for a hole (nothing allocated: the flush path evicts through it)."""
        slot = (self._oldest + k) % self.max_segments
        f = self._f
        f.seek(slot * self.segment_bytes)
        h = self._head
        if (f.readinto(h) or 0) < _HEAD_SIZE or h[0] | h[1] << 8 | h[2] << 16 | h[3] << 24 != _MAGIC:
            return -1
        self._efirst = h[4] | h[5] << 8 | h[6] << 16 | h[7] << 24
        self._ecount = h[8] | h[9] << 8
        self._eboot = h[10] | h[11] << 8
        return slot

    def _start_segment(self):
        self._first = self.next_lsn
        self._count = 0
        self._fill = _HEAD_SIZE
        self._live = _HEAD_SIZE  # send_live's next record
        self._live_count = 0

    def _evict(self):
        if self._entry(0) >= 0:
            self._lost(self._efirst, self._ecount)
        if self._rseg == self._oldest:
            self._close_reader()
        self._oldest = (self._oldest + 1) % self.max_segments  # the next segment written goes there
        self._nseg -= 1

    def _write(self, offset, data):
        """One segment into the ring file (tests replace this to cut the power half way)."""
        f = self._f
        f.seek(offset)
        f.write(data)
        f.flush()

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

    def _open_ring(self, old_segment):
        """The ring file, open for reading and writing; a ring made with other segments is
        emptied (its unacknowledged records counted in overflow)."""
        path = self.folder + "/ring.bin"
        for name in os.listdir(self.folder):
            if name.endswith(".seg"):  # the one-file-per-segment log of earlier firmware: gone
                os.remove(self.folder + "/" + name)
        try:
            f = open(path, "r+b")
        except OSError:
            return open(path, "w+b")
        if old_segment in (0, self.segment_bytes):
            return f
        size = f.seek(0, 2)
        buf = bytearray(old_segment)
        for slot in range(-(-size // old_segment)):
            kind, first, count, _, _, _, _ = self._check(f, slot, buf)
            if kind == _WHOLE:
                self._lost(first, count)
        f.close()
        return open(path, "w+b")

    def _lost(self, first, count):
        if first + count > self.acked:
            self.overflow += first + count - max(first, self.acked)

    def _scan(self):
        """Check every slot of the ring file, clear torn ones, find where the ring starts;
        returns the lsn after the last record."""
        f = self._f
        size = f.seek(0, 2)
        n = self.max_segments
        newest = -1
        end = 0
        for slot in range(-(-size // self.segment_bytes)):  # a slot cut short at the end too
            kind, first, count, _, acked, overflow, torn = self._check(f, slot, self._buf)
            if kind == _EMPTY:
                continue
            if kind == _TORN:
                self.torn += 1
            else:
                self.acked = max(self.acked, acked)  # counters carried by the newest segment
                self.overflow = max(self.overflow, overflow)
                self.torn = max(self.torn, torn)
                if slot < n:
                    if first + count > end:
                        newest, end = slot, first + count
                    continue
                self._lost(first, count)  # a smaller budget than the last boot had
            self._clear(slot)
        if newest < 0:
            return 0
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
                self._clear((newest + 1 + k) % n)
        self._oldest = oldest
        self._nseg = (newest - oldest) % n + 1
        return end

    def _clear(self, slot):
        self._write(slot * self.segment_bytes, bytes(_CRC_SIZE))  # its magic gone

    def _check(self, f, slot, buf):
        """(_WHOLE, first lsn, records, boot, acked, overflow, torn) of the segment in `slot`;
        (_EMPTY, 0...) for a slot without one, (_TORN, 0...) for one whose CRC or records do not hold."""
        size = len(buf)
        f.seek(slot * size)
        n = f.readinto(buf) or 0
        if n < _HEAD_SIZE or struct.unpack_from("<I", buf, 0)[0] != _MAGIC:
            return _EMPTY, 0, 0, 0, 0, 0, 0
        if n != size:
            return _TORN, 0, 0, 0, 0, 0, 0  # the write of the ring's last slot was cut short
        magic, first, count, boot, acked, overflow, torn = struct.unpack_from(_HEAD, buf, 0)
        end = size - _CRC_SIZE
        crc = self._head
        _crc_into(buf, end, crc, 0)  # pyright: ignore[reportArgumentType] (viper takes buffers)
        if crc[0] != buf[end] or crc[1] != buf[end + 1] or crc[2] != buf[end + 2] or crc[3] != buf[end + 3]:
            return _TORN, 0, 0, 0, 0, 0, 0
        pos = _HEAD_SIZE
        for _ in range(count):
            pos += 2 + (buf[pos] | buf[pos + 1] << 8)
            if pos > size - _CRC_SIZE:
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
        (0 when none does), by binary search over the heads on flash (holes skipped)."""
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
            lsn = self._rnext
            if self._first <= lsn < self._first + self._count:
                return self._read_open(lsn, out, offset)
            n = self._read_file(lsn, out, offset)
            if n:
                return n
        self._close_reader()
        return 0

    def _read_open(self, lsn, out, offset):
        self._close_reader()
        b = self._buf
        pos = _HEAD_SIZE
        for _ in range(lsn - self._first):
            pos += 2 + (b[pos] | b[pos + 1] << 8)
        n = b[pos] | b[pos + 1] << 8
        out[offset:offset + n] = memoryview(b)[pos + 2:pos + 2 + n]
        return self._served(lsn, self.boot, n)

    def _read_file(self, lsn, out, offset):
        """The record `lsn` from its slot; 0 (and `_rnext` moved on) when it is gone."""
        f = self._f
        if self._rseg < 0 or lsn < self._rnext_file or lsn >= self._rfile_end:
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
                    return 0
            slot = (self._oldest + k) % self.max_segments
            self._rseg = slot
            self._rnext_file = self._efirst
            self._rfile_end = self._efirst + self._ecount
            self._rfile_boot = self._eboot
            self._rpos = slot * self.segment_bytes + _HEAD_SIZE
        word = self._head
        while True:  # the writer moves the file position between reads: seek every time
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
        return self._served(lsn, self._rfile_boot, n)

    def _served(self, lsn, boot, n):
        self.lsn = lsn
        self.record_boot = boot
        self._rnext = lsn + 1
        self._rlen = n
        return n

    def unread(self):
        """The next `read` returns the record `read` returned last again."""
        lsn = self.lsn
        self._rnext = lsn
        if self._rseg >= 0 and self._rnext_file == lsn + 1:  # it came from a slot: step back over it
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

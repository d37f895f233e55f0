"""Store-and-forward flash log: every stream packet, kept on flash until the host has it.

Records are whole packets, numbered by a log sequence number (lsn) that never goes back,
not even across reboots. They go straight into the open segment's slot of the ring file as
they come (no RAM copy of the segment); a full segment is sealed: its head, zeros after its
records, and its CRC32 last, so a power cut mid-seal leaves a slot whose CRC fails: boot
clears it and counts it as torn. The open segment's slot is always a free one, its head
zeroed (an evicted segment's is zeroed as it goes), so a power cut while a segment is open
leaves an empty slot: its records are lost, never a stale head over them. A power cut loses
at most the segment being filled or sealed; boot moves the next lsn past it, so no number is
ever given to two records.

The CRC is built as the records go (a 4-byte register, not a copy of them): CRC32 is linear,
so the seal gets the slot's CRC from the head's register moved past the records' length, the
records' own register, and the zero tail (docs/protocol.md, "Store and forward").

The ring file is opened once at boot and stays open: appending a record seeks and writes
the caller's buffer, so the sampling path allocates nothing (no file object, no file name,
no slice). It holds at most `max_bytes` of segments (the board profile's `flash_log_bytes`).
A seal that would leave no slot free evicts the oldest segment first (its head zeroed, the
seal's head carrying the counts): records the host had acknowledged go silently, others are
counted in `overflow`, which the watch reports (LOG_INFO, EVENT 15).

Segments go into the ring file's slots in turn, so the slots from the oldest segment's on
hold them in lsn order (a slot cleared at boot stays a hole). RAM keeps only where the ring
starts and how many slots it spans: a segment's first lsn and count are read back from its
head on flash when a backfill, LOG_INFO or an eviction needs them (rare paths), which keeps
a 256-segment log's index (over 1 KB) off the heap.

Ring file `<folder>/ring.bin`: slot i at i * segment_bytes, each
    u32 magic "WLG2", u32 first lsn, u16 records, u16 boot, u32 acked lsn, u32 overflow,
    u32 torn, records (u16 length, then the packet), zeros, and in the slot's last 4 bytes
    the CRC32 of everything before them (zlib's).
The counters in a segment's head are the log's when it was sealed, so the newest segment
carries them across a power cut. State file `<folder>/state.bin` (written at boot and at a
clean shutdown): u32 boot, acked lsn, overflow, torn segments, the next lsn if the last
shutdown was clean (0 otherwise), segment bytes, slots.
"""

import os
import struct

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
READ_ROOM = const(14)  # bytes before a record read back into `read_buf`: a BACKFILL's header and body
MAX_RECORD = const(230)  # the largest stream packet: 244 (ATT MTU 247's) minus its BACKFILL's room
_EMPTY = const(0)  # what _check finds in a slot
_TORN = const(1)
_WHOLE = const(2)

# _crc_run(reg, at, buf, n): the CRC32 register reg[at:at + 4] (little-endian, without zlib's
# inversions) taken on over buf[:n], or over -n zero bytes when n is negative (buf unused).
# The register lives in a buffer: a CRC above 2**30 as an int is a heap object on a 32-bit
# port, and every record and seal would allocate. Bit by bit: about 75 us per 2 KB on the
# virtual watch. _write_part(f, buf, n) writes buf[:n] at the file's position.
try:
    import micropython

    @micropython.viper
    def _crc_run(reg: ptr8, at: int, buf: ptr8, n: int):  # noqa: F821
        poly = (uint(0xEDB8) << 16) | uint(0x8320)  # 0xEDB88320, reflected; built from halves: no big literal
        c = uint(reg[at]) | (uint(reg[at + 1]) << 8) | (uint(reg[at + 2]) << 16) | (uint(reg[at + 3]) << 24)
        data = 1
        if n < 0:
            data = 0
            n = 0 - n
        i = 0
        while i < n:
            if data:
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
        data = bytes(-n) if n < 0 else memoryview(buf)[:n]
        struct.pack_into("<I", reg, at, ~crc32(data, ~r & 0xFFFFFFFF) & 0xFFFFFFFF)

    def _write_py(f, buf, n):
        f.write(memoryview(buf)[:n])

    _crc_run = _crc_py
    _write_part = _write_py


class FlashLog:
    """The log in `folder`, at most `max_bytes` of `segment_bytes` segments (None for either:
    what the log on flash was made with, to read a copy of a watch's log).

    `append` keeps a packet and returns its lsn (nothing allocated, also when it seals a
    full segment); `ack` moves the acknowledged mark; `available`, `seek` and `read` serve a
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
        # A segment's head (packed at the seal, zeroed to open a slot, read back from flash);
        # also a record's length prefix as it is appended or read back.
        self._head = bytearray(_HEAD_SIZE)
        # Two CRC32 registers: a check (the seal's, or a slot's at boot) at 0, the open
        # segment's records at 4.
        self._crc = bytearray(2 * _CRC_SIZE)
        self._slot = 0  # the open segment's slot: always a free one
        self._efirst = self._ecount = self._eboot = 0  # the ring entry _entry read last
        self._oldest = 0  # the ring file slot of the oldest segment
        self._nseg = 0  # slots from it to the newest sealed segment's (holes included)
        self.live_dropped = 0  # records that did not go out live in time (the host backfills them)
        # The live queue's part in the segment sealed last: its _lcount unsent records, from
        # file offset _lfile + _lpos on. Both parts are read back one record at a time.
        self._lfile = self._lpos = self._lcount = 0
        # Records read back from flash: by the live queue (length and record at 0, nothing kept
        # there between calls) and by a backfill (`read` at READ_ROOM; it reads a record again
        # after `unread` rather than keep it), so one buffer serves both. Also the seal's zeros
        # and boot's check of a slot, a piece at a time.
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
        if self._nseg == self.max_segments:  # a ring of earlier firmware: no slot free yet
            self._evict()
        self._start_segment()
        self._save_state(0)  # with the counters of what boot cleared or evicted

    # Writing ------------------------------------------------------------------------------

    def append(self, buf, n):
        """Keep the packet buf[:n] as the next record; returns its lsn."""
        if n > MAX_RECORD:
            raise ValueError("record too long")  # it would not read back into read_buf
        if self._fill + 2 + n > self.segment_bytes - _CRC_SIZE:
            self.flush()
        h = self._head
        h[0] = n & 0xFF
        h[1] = n >> 8
        at = self._slot * self.segment_bytes + self._fill
        self._write(at, h, 2)
        self._write(at + 2, buf, n)
        _crc_run(self._crc, _CRC_SIZE, h, 2)  # pyright: ignore[reportArgumentType] (viper takes buffers)
        _crc_run(self._crc, _CRC_SIZE, buf, n)  # pyright: ignore[reportArgumentType]
        if self._rseg == self._slot:  # a backfill reading the open segment: it has one more
            self._rfile_end += 1
        self._fill += 2 + n
        self._count += 1
        lsn = self.next_lsn
        self.next_lsn = lsn + 1
        return lsn

    def send_live(self, send, budget):
        """Send up to `budget` records that have not gone out live yet, oldest first, with
        `send(buf, n, off) -> bool` (a record read back from flash into `read_buf`: nothing
        allocated); stops when it refuses. Returns how many went.

        The log is the stream packets' queue for the radio: the open segment, and the unsent
        records of the segment sealed last. A record still unsent when the segment after its
        own is sealed is counted in `live_dropped` and reaches the host by backfill."""
        sent = 0
        f = self._f
        b = self.read_buf
        while sent < budget:
            if self._lcount:
                f.seek(self._lfile + self._lpos)
            elif self._live_count < self._count:
                f.seek(self._slot * self.segment_bytes + self._live)
            else:
                break
            f.readinto(b)  # the record and what follows it in the slot (or less at the ring's end)
            n = b[0] | b[1] << 8
            if not send(b, n, 2):
                break
            if self._lcount:
                self._lpos += 2 + n
                self._lcount -= 1
            else:
                self._live += 2 + n
                self._live_count += 1
            sent += 1
        return sent

    @property
    def live_pending(self):
        """Records of the open segment not yet sent live."""
        return self._lcount + self._count - self._live_count

    def flush(self):
        """Seal the open segment (when it holds records) and start the next one; allocates
        nothing."""
        if not self._count:
            return
        self.live_dropped += self._lcount  # the segment before: its turn is over
        if self._nseg + 2 > self.max_segments:  # keep a slot free for the next open segment
            self._evict()
        seg = self.segment_bytes
        base = self._slot * seg
        end = seg - _CRC_SIZE
        h = self._head
        struct.pack_into(_HEAD, h, 0, _MAGIC, self._first, self._count, self.boot, self.acked,
                         self.overflow, self.torn)
        # CRC32 is linear: the slot's register is the head's moved past the records (as zeros)
        # and the records' own, then moved past the zero tail.
        c = self._crc
        for i in range(_CRC_SIZE):
            c[i] = 0xFF
        _crc_run(c, 0, h, _HEAD_SIZE)  # pyright: ignore[reportArgumentType] (viper takes buffers)
        _crc_run(c, 0, c, _HEAD_SIZE - self._fill)  # pyright: ignore[reportArgumentType]
        for i in range(_CRC_SIZE):
            c[i] ^= c[_CRC_SIZE + i]
        _crc_run(c, 0, c, self._fill - end)  # pyright: ignore[reportArgumentType]
        for i in range(_CRC_SIZE):
            c[i] ^= 0xFF
        self._write(base, h, _HEAD_SIZE)
        self._zero(base + self._fill, end - self._fill)
        self._write(base + end, c, _CRC_SIZE)  # last: until it is there, the slot is torn
        self._f.flush()
        self._lfile = base  # its unsent records go on from there
        self._lpos = self._live
        self._lcount = self._count - self._live_count
        self._nseg += 1
        self._start_segment()

    def close(self):
        """A clean shutdown: the open segment is sealed and the next boot numbers on."""
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
        return (self._nseg + (self._count > 0)) * self.segment_bytes

    def _entry(self, k):
        """Read the head of ring entry k (the k-th slot from the oldest): its first lsn and
        record count into `_efirst` and `_ecount`, its boot into `_eboot`; returns its slot,
        -1 for a hole (nothing allocated: the append path evicts through it)."""
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
        self._slot = (self._oldest + self._nseg) % self.max_segments  # free: no segment in it
        c = self._crc
        for i in range(_CRC_SIZE, 2 * _CRC_SIZE):
            c[i] = 0

    def _evict(self):
        """Let the oldest segment go, its head zeroed: its slot is free for a segment to open
        in. The seal that evicts writes the counters after it: a power cut before its CRC
        leaves that seal torn and the evicted records uncounted, as a cut mid-write did when
        segments were written whole."""
        if self._entry(0) >= 0:
            self._lost(self._efirst, self._ecount)
            self._clear(self._oldest)
        if self._rseg == self._oldest:
            self._close_reader()
        self._oldest = (self._oldest + 1) % self.max_segments
        self._nseg -= 1

    def _write(self, offset, buf, n):
        """buf[:n] into the ring file at `offset` (tests replace this to cut the power half way)."""
        f = self._f
        f.seek(offset)
        _write_part(f, buf, n)

    def _zero(self, offset, n):
        """n zero bytes into the ring file at `offset`, from `read_buf`."""
        b = self.read_buf
        for i in range(min(n, len(b))):
            b[i] = 0
        while n > 0:
            k = min(n, len(b))
            self._write(offset, b, k)
            offset += k
            n -= k

    def _clear(self, slot):
        """Zero the slot's head: its magic gone, the slot reads as empty."""
        h = self._head
        for i in range(_HEAD_SIZE):
            h[i] = 0
        self._write(slot * self.segment_bytes, h, _HEAD_SIZE)

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
        for slot in range(-(-size // old_segment)):
            kind, first, count, _, _, _, _ = self._check(f, slot, old_segment, size)
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
            kind, first, count, _, acked, overflow, torn = self._check(f, slot, self.segment_bytes, size)
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
        f.flush()
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
        f.flush()
        self._oldest = oldest
        self._nseg = (newest - oldest) % n + 1
        return end

    def _check(self, f, slot, size, file_size):
        """(_WHOLE, first lsn, records, boot, acked, overflow, torn) of the segment in `slot`
        (of `size` bytes); (_EMPTY, 0...) for a slot without one, (_TORN, 0...) for one whose
        CRC or records do not hold. Reads the slot a piece at a time into `read_buf`."""
        base = slot * size
        b = self.read_buf
        f.seek(base)
        got = f.readinto(b) or 0
        if got < _HEAD_SIZE or struct.unpack_from("<I", b, 0)[0] != _MAGIC:
            return _EMPTY, 0, 0, 0, 0, 0, 0
        if base + size > file_size:
            return _TORN, 0, 0, 0, 0, 0, 0  # the write of the ring's last slot was cut short
        magic, first, count, boot, acked, overflow, torn = struct.unpack_from(_HEAD, b, 0)
        end = size - _CRC_SIZE
        c = self._crc
        for i in range(_CRC_SIZE):
            c[i] = 0xFF
        pos = 0  # the slot offset of b[0]
        walk = _HEAD_SIZE  # the slot offset of the next record's length
        left = count
        while pos < end:
            if pos:
                f.seek(base + pos)
                got = f.readinto(b) or 0
            m = min(got, end - pos)
            while left and walk + 2 <= pos + m:
                walk += 2 + (b[walk - pos] | b[walk - pos + 1] << 8)
                left -= 1
            if left and walk + 1 == pos + m and walk > pos:
                m = walk - pos  # a length split by the piece's end: the next piece starts with it
            if m <= 0:
                break
            _crc_run(c, 0, b, m)  # pyright: ignore[reportArgumentType] (viper takes buffers)
            pos += m
        if left or walk > end or pos != end:
            return _TORN, 0, 0, 0, 0, 0, 0
        f.seek(base + end)
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
            n = self._read_slot(self._rnext, out, offset)
            if n:
                return n
        self._close_reader()
        return 0

    def _read_slot(self, lsn, out, offset):
        """The record `lsn` from its slot; 0 (and `_rnext` moved on) when it is gone."""
        f = self._f
        if self._rseg < 0 or lsn < self._rnext_file or lsn >= self._rfile_end:
            if not self._place_reader(lsn):
                return 0
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
        self.lsn = lsn
        self.record_boot = self._rfile_boot
        self._rnext = lsn + 1
        self._rlen = n
        return n

    def _place_reader(self, lsn):
        """Put the backfill cursor on the segment holding `lsn` (the open one included);
        False (and `_rnext` moved on to the next one held) when none does."""
        if self._count and self._first <= lsn < self._first + self._count:
            self._reader_at(self._slot, self._first, self._count, self.boot)
            return True
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
        self._reader_at((self._oldest + k) % self.max_segments, self._efirst, self._ecount, self._eboot)
        return True

    def _reader_at(self, slot, first, count, boot):
        self._rseg = slot
        self._rnext_file = first
        self._rfile_end = first + count
        self._rfile_boot = boot
        self._rpos = slot * self.segment_bytes + _HEAD_SIZE

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

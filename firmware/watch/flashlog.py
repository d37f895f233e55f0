"""Store-and-forward flash log: every stream packet, kept on flash until the host has it.

Records are whole packets, numbered by a log sequence number (lsn) that never goes back,
not even across reboots. They fill a segment in RAM; a full segment is written to a file of
its own in one go, its CRC32 last, so a power cut mid-write leaves a file whose CRC fails:
boot deletes it and counts it as torn. A power cut loses at most the segment being filled
or written; boot moves the next lsn past it, so no number is ever given to two records.

The log holds at most `max_bytes` of segments (the board profile's `flash_log_bytes`).
When it is full the oldest segment goes: records the host had acknowledged go silently,
others are counted in `overflow`, which the watch reports (LOG_INFO, EVENT 15).

Segment file `<folder>/<first lsn, 8 hex digits>.seg`:
    u32 magic "WLG1", u32 first lsn, u16 records, u16 boot,
    records (u16 length, then the packet), u32 CRC32 of everything before it.
State file `<folder>/state.bin`: u32 boot, acked lsn, overflow, torn segments, and the next
lsn if the last shutdown was clean (0 otherwise).
"""

import os
import struct
from array import array
from binascii import crc32

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

_MAGIC = const(0x31474C57)  # "WLG1" read little-endian
_HEAD = "<IIHH"  # magic, first lsn, records, boot
_HEAD_SIZE = const(12)
_CRC_SIZE = const(4)
_STATE = "<IIIII"  # boot, acked lsn, overflow, torn, next lsn after a clean shutdown
_MIN_RECORD = const(16)  # length prefix + the smallest packet: bounds the records one segment holds
MAX_RECORD = const(256)


class FlashLog:
    """The log in `folder`, at most `max_bytes` of `segment_bytes` segments.

    `append` keeps a packet and returns its lsn (nothing allocated); `ack` moves the
    acknowledged mark; `available`, `seek` and `read` serve a backfill; `close` writes the
    open segment at a clean shutdown.
    """

    def __init__(self, folder="log", max_bytes=262144, segment_bytes=4096):
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.max_segments = max(2, max_bytes // segment_bytes)
        self._buf = bytearray(segment_bytes)
        self._mv = memoryview(self._buf)
        n = self.max_segments
        self._firsts = array("I", bytes(4 * n))  # ring of the segments on flash, oldest at _oldest
        self._counts = array("H", bytes(2 * n))  # (from bytes: no list of n objects on the way)
        self._boots = array("H", bytes(2 * n))
        self._oldest = 0
        self._nseg = 0
        self._word = bytearray(2)
        self._rfile = None  # backfill cursor: an open segment file, the lsn it points at, its end
        self._rnext_file = self._rfile_end = self._rfile_boot = 0
        self._rnext = 0  # the next lsn of the range being read, and the range's end
        self._rend = 0
        self.lsn = 0  # lsn of the record `read` returned last
        self.record_boot = 0
        try:
            os.mkdir(folder)
        except OSError:
            pass  # it exists
        boot, self.acked, self.overflow, self.torn, clean_next = self._load_state()
        self.boot = (boot + 1) & 0xFFFF
        end = self._scan()
        base = max(end, self.acked)
        if clean_next >= base or boot == 0:
            self.next_lsn = max(clean_next, base)
        else:  # records of the segment lost to the power cut had numbers from `end` on
            self.next_lsn = base + segment_bytes // _MIN_RECORD
        self._start_segment()
        self._saved = None
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

    def flush(self):
        """Write the open segment to flash (when it holds records) and start the next one."""
        if not self._count:
            return
        struct.pack_into(_HEAD, self._buf, 0, _MAGIC, self._first, self._count, self.boot)
        end = self._fill
        struct.pack_into("<I", self._buf, end, crc32(self._mv[:end]) & 0xFFFFFFFF)
        if self._nseg == self.max_segments:
            self._evict()
        self._write(self._path(self._first), self._mv[:end + _CRC_SIZE])
        i = (self._oldest + self._nseg) % self.max_segments
        self._firsts[i] = self._first
        self._counts[i] = self._count
        self._boots[i] = self.boot
        self._nseg += 1
        self._start_segment()
        self._save_state(0)

    def close(self):
        """A clean shutdown: the open segment goes to flash and the next boot numbers on."""
        self.flush()
        self._close_reader()
        self._save_state(self.next_lsn)

    def ack(self, lsn):
        """The host holds every record before `lsn`; returns the acknowledged mark."""
        if self.acked < lsn <= self.next_lsn:
            self.acked = lsn
        return self.acked

    @property
    def first_lsn(self):
        """The oldest record the log still holds (next_lsn when it holds none)."""
        return self._firsts[self._oldest] if self._nseg else self._first if self._count else self.next_lsn

    @property
    def bytes_used(self):
        return self._nseg * self.segment_bytes

    def _start_segment(self):
        self._first = self.next_lsn
        self._count = 0
        self._fill = _HEAD_SIZE

    def _evict(self):
        i = self._oldest
        first = self._firsts[i]
        end = first + self._counts[i]
        if end > self.acked:
            self.overflow += end - max(first, self.acked)
        if self._rfile is not None and self._rnext < end:
            self._close_reader()
        self._remove(self._path(first))
        self._oldest = (i + 1) % self.max_segments
        self._nseg -= 1

    def _path(self, first):
        return "%s/%08x.seg" % (self.folder, first)

    def _write(self, path, data):
        """One segment to flash (tests replace this to cut the power half way)."""
        with open(path, "wb") as f:
            f.write(data)

    def _remove(self, path):
        try:
            os.remove(path)
        except OSError:
            pass

    # State and boot -----------------------------------------------------------------------

    def _load_state(self):
        try:
            with open(self.folder + "/state.bin", "rb") as f:
                return struct.unpack(_STATE, f.read())
        except (OSError, ValueError):
            return 0, 0, 0, 0, 0

    def _save_state(self, clean_next):
        state = (self.boot, self.acked, self.overflow, self.torn, clean_next)
        if state == self._saved:
            return
        with open(self.folder + "/state.bin", "wb") as f:
            f.write(struct.pack(_STATE, *state))
        self._saved = state

    def _scan(self):
        """Check every segment on flash, delete torn ones; returns the lsn after the last record."""
        found = []
        for name in os.listdir(self.folder):
            if not name.endswith(".seg"):
                continue
            path = self.folder + "/" + name
            head = self._check(path)
            if head is None:
                self._remove(path)
                self.torn += 1
            else:
                found.append(head)
        found.sort()
        while len(found) > self.max_segments:  # a smaller budget than the last boot had
            first, count, _ = found.pop(0)
            if first + count > self.acked:
                self.overflow += first + count - max(first, self.acked)
            self._remove(self._path(first))
        end = 0
        for first, count, boot in found:
            i = self._nseg
            self._firsts[i] = first
            self._counts[i] = count
            self._boots[i] = boot
            self._nseg += 1
            end = first + count
        return end

    def _check(self, path):
        """(first lsn, records, boot) of a whole segment; None for a torn or foreign file."""
        try:
            with open(path, "rb") as f:
                n = f.readinto(self._buf)
                extra = f.read(1)
        except OSError:
            return None
        if extra or n < _HEAD_SIZE + _CRC_SIZE:
            return None
        magic, first, count, boot = struct.unpack_from(_HEAD, self._buf, 0)
        (crc,) = struct.unpack_from("<I", self._buf, n - _CRC_SIZE)
        if magic != _MAGIC or crc != crc32(self._mv[:n - _CRC_SIZE]) & 0xFFFFFFFF:
            return None
        pos, seen = _HEAD_SIZE, 0
        while pos < n - _CRC_SIZE:
            pos += 2 + (self._buf[pos] | self._buf[pos + 1] << 8)
            seen += 1
        if pos != n - _CRC_SIZE or seen != count or path != self._path(first):
            return None
        return first, count, boot

    # Reading back (backfill) ---------------------------------------------------------------

    def available(self, lo, hi):
        """How many records in [lo, hi) the log still holds."""
        total = 0
        for k in range(self._nseg + 1):
            if k < self._nseg:
                i = (self._oldest + k) % self.max_segments
                first, count = self._firsts[i], self._counts[i]
            else:
                first, count = self._first, self._count
            total += max(0, min(hi, first + count) - max(lo, first))
        return total

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
        out[offset:offset + n] = self._mv[pos + 2:pos + 2 + n]
        return self._served(lsn, self.boot, n)

    def _read_file(self, lsn, out, offset):
        """The record `lsn` from its segment file; 0 (and `_rnext` moved on) when it is gone."""
        if self._rfile is None or lsn < self._rnext_file or lsn >= self._rfile_end:
            self._close_reader()
            seg = self._segment_of(lsn)
            if seg < 0:  # evicted, torn or never written: go on with the next segment held
                self._rnext = self._next_first(lsn)
                return 0
            self._rfile = open(self._path(self._firsts[seg]), "rb")
            self._rfile.seek(_HEAD_SIZE)
            self._rnext_file = self._firsts[seg]
            self._rfile_end = self._firsts[seg] + self._counts[seg]
            self._rfile_boot = self._boots[seg]
        f, word = self._rfile, self._word
        while True:
            f.readinto(word)
            n = word[0] | word[1] << 8
            if self._rnext_file == lsn:
                break
            f.seek(n, 1)
            self._rnext_file += 1
        f.readinto(memoryview(out)[offset:offset + n])
        self._rnext_file += 1
        return self._served(lsn, self._rfile_boot, n)

    def _served(self, lsn, boot, n):
        self.lsn = lsn
        self.record_boot = boot
        self._rnext = lsn + 1
        return n

    def _segment_of(self, lsn):
        for k in range(self._nseg):
            i = (self._oldest + k) % self.max_segments
            if self._firsts[i] <= lsn < self._firsts[i] + self._counts[i]:
                return i
        return -1

    def _next_first(self, lsn):
        best = self._rend
        for k in range(self._nseg):
            first = self._firsts[(self._oldest + k) % self.max_segments]
            if lsn < first < best:
                best = first
        if lsn < self._first < best and self._count:
            best = self._first
        return best

    def _close_reader(self):
        if self._rfile is not None:
            self._rfile.close()
            self._rfile = None
        self._rnext_file = 0
        self._rfile_end = 0

"""Model upload into the inactive slot: begin -> chunks (each with its CRC) -> verify -> switch.

The upload is written straight into the inactive slot's file (watch.slots); the slot pointer
is switched (one atomic rename) only after the new file passed every check of
watch.loader.load, so a failed, refused or interrupted upload leaves the running model and its
file untouched. `upload.inf` next to the slots remembers an upload's size and CRC, so after a
disconnect, or a reboot, `resume` continues from the bytes already on flash
(docs/model-blob.md, docs/protocol.md).
"""

import os
import struct
from binascii import crc32

from watch import blob
from watch.slots import ModelSlots

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

# watch.protocol's reason codes (a test checks they agree), folded into the code: importing
# them would give each an entry in this module's dictionary, in RAM on a frozen watch.
_OK = const(0)
_E_TRUNCATED = const(1)
_E_BAD_CRC = const(4)
_E_TOO_LARGE = const(8)
_E_NO_UPLOAD = const(9)
_E_BAD_OFFSET = const(10)
_E_CHUNK_CRC = const(25)
_INFO = const("<IIB")  # size, CRC32 of the whole blob, slot
_READ = const(256)  # bytes per read when the CRC of a resumed upload is recomputed


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


class ModelUpload:
    """One upload at a time into the inactive slot next to `path` (slot A, default
    `model.wbl`); each step returns a reason code of watch.protocol."""

    def __init__(self, path="model.wbl", max_bytes=blob.MAX_BYTES, slots=None):
        self.slots = slots or ModelSlots(path)  # the watch's own, when it holds them
        slash = path.rfind("/")
        self.info_path = path[:slash + 1] + "upload.inf"
        self.max_bytes = max_bytes
        self._file = None
        self._slot = 0
        self._size = 0
        self._crc = 0
        self._written = 0
        self._running_crc = 0
        self.window_s = self.step_s = self.baseline_windows = 0  # read_window's

    @property
    def active(self):
        return self._file is not None

    @property
    def received(self):
        """Bytes written so far."""
        return self._written

    @property
    def new_path(self):
        return self.slots.paths[self._slot]

    def begin(self, size, crc):
        """Start an upload of `size` bytes whose CRC32 is `crc`; drops any upload in progress."""
        self.abort()
        if size > self.max_bytes:
            return _E_TOO_LARGE
        if size < blob.HEADER_SIZE + blob.TRAILER_SIZE:
            return _E_TRUNCATED
        self._slot = self.slots.inactive()
        with open(self.info_path, "wb") as f:
            f.write(struct.pack(_INFO, size, crc & 0xFFFFFFFF, self._slot))
        self._file = open(self.new_path, "wb")
        self._size = size
        self._crc = crc & 0xFFFFFFFF
        self._written = 0
        self._running_crc = 0
        return _OK

    def resume(self, size, crc):
        """(reason, bytes received) for continuing the upload of `size` bytes with CRC32 `crc`:
        the one in progress, or one begun before a reboot whose bytes are on flash."""
        crc &= 0xFFFFFFFF
        if self._file is not None and (self._size, self._crc) == (size, crc):
            return _OK, self._written
        try:
            with open(self.info_path, "rb") as f:
                info = struct.unpack(_INFO, f.read())
        except (OSError, ValueError):
            return _E_NO_UPLOAD, 0
        if info[:2] != (size, crc) or info[2] != 1 - self.slots.read()[0]:
            return _E_NO_UPLOAD, 0
        self._slot = info[2]
        running = 0
        written = 0
        buf = bytearray(_READ)
        try:
            with open(self.new_path, "rb") as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    running = crc32(memoryview(buf)[:n], running)
                    written += n
        except OSError:
            pass
        if written > size:
            return _E_NO_UPLOAD, 0
        if self._file is not None:
            self._file.close()
        self._file = open(self.new_path, "ab")
        self._size, self._crc, self._written, self._running_crc = size, crc, written, running
        return _OK, written

    def chunk(self, offset, data, chunk_crc=None):
        """Append `data`, which must start where the previous chunk ended; with `chunk_crc`,
        its CRC32 must match (E_CHUNK_CRC, nothing written: the host resends it)."""
        if self._file is None:
            return _E_NO_UPLOAD
        if offset != self._written:
            return _E_BAD_OFFSET  # the upload stays open: the host may resend from `received`
        if self._written + len(data) > self._size:
            return _E_TOO_LARGE
        if chunk_crc is not None and crc32(data) & 0xFFFFFFFF != chunk_crc & 0xFFFFFFFF:
            return _E_CHUNK_CRC
        self._file.write(data)
        self._file.flush()
        self._running_crc = crc32(data, self._running_crc)
        self._written += len(data)
        return _OK

    def read_window(self):
        """This upload, with the window settings its blob's header gives as `window_s`,
        `step_s`, `baseline_windows` (0 where it gives none: a version-1 blob, a short or
        unreadable file), read before the blob is checked: a watch sizes its feature engine
        for them before it loads the model (watch.app)."""
        self.window_s = self.step_s = self.baseline_windows = 0
        try:
            with open(self.new_path, "rb") as f:
                head = f.read(blob.HEADER_SIZE + blob.WINDOW_SIZE)
        except OSError:
            return self
        if len(head) == blob.HEADER_SIZE + blob.WINDOW_SIZE and head[4] != blob.OLD_VERSION:
            self.window_s, self.step_s, self.baseline_windows, _ = struct.unpack_from(blob.WINDOW, head,
                                                                                       blob.HEADER_SIZE)
        return self

    def commit(self, key, feature_spec, n_features, check=None):
        """(reason, model): the loaded new model and OK once the slot pointer switched to it, or
        a reason code and None, with the running model's slot untouched and the upload dropped.
        `check(model)`, when given, has the last word before the switch: OK or a reason code.
        The new model reads its slot's file from then on (watch.model): never the slot a
        running model reads, which stays the active one until the switch."""
        if self._file is None:
            return _E_NO_UPLOAD, None
        self._file.close()
        self._file = None
        if self._written != self._size:
            reason = _E_TRUNCATED
        elif self._running_crc & 0xFFFFFFFF != self._crc:
            reason = _E_BAD_CRC
        else:
            try:
                # the loader (and the runtime it builds) only now: the chunks before need neither
                from watch.loader import ModelError, load

                model = load(self.new_path, key, feature_spec, n_features, self.max_bytes)
            except MemoryError:  # no room for it (or its loader) now: refused, nothing switched
                reason = _E_TOO_LARGE  # (caught first: ModelError exists once the import went through)
            except ModelError as e:
                reason = e.reason
            else:
                reason = check(model) if check else _OK
                if reason == _OK:
                    self.slots.switch(self._slot)
                    _remove(self.info_path)
                    return _OK, model
                model.close()  # its file goes below
        self._drop()
        return reason, None

    def abort(self):
        """Drop the upload in progress, if any, and its file."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._drop()

    def _drop(self):
        _remove(self.new_path)
        _remove(self.info_path)

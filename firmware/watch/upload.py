"""Model upload: MODEL_BEGIN / MODEL_CHUNK / MODEL_COMMIT -> a new file -> verify -> switch.

The upload goes to `model.new` next to the model file; the running model's file is replaced
(os.rename) only after the new one passed every check of watch.model.load, so a failed or
interrupted upload leaves the old model in place (docs/model-blob.md).
"""

import os
from binascii import crc32

from watch import blob
from watch.model import ModelError, load
from watch.protocol import OK, E_BAD_CRC, E_BAD_OFFSET, E_NO_UPLOAD, E_TOO_LARGE, E_TRUNCATED


def _new_path(path):
    dot = path.rfind(".")
    return (path[:dot] if dot > path.rfind("/") else path) + ".new"


class ModelUpload:
    """One upload at a time into `path` (default `model.wbl`); each step returns a reason code."""

    def __init__(self, path="model.wbl", max_bytes=blob.MAX_BYTES):
        self.path = path
        self.new_path = _new_path(path)
        self.max_bytes = max_bytes
        self._file = None
        self._size = 0
        self._crc = 0
        self._written = 0
        self._running_crc = 0

    @property
    def active(self):
        return self._file is not None

    def begin(self, size, crc):
        """Start an upload of `size` bytes whose CRC32 is `crc`; drops any upload in progress."""
        self.abort()
        if size > self.max_bytes:
            return E_TOO_LARGE
        if size < blob.HEADER_SIZE + blob.TRAILER_SIZE:
            return E_TRUNCATED
        self._file = open(self.new_path, "wb")
        self._size = size
        self._crc = crc & 0xFFFFFFFF
        self._written = 0
        self._running_crc = 0
        return OK

    def chunk(self, offset, data):
        """Append `data`, which must start where the previous chunk ended."""
        if self._file is None:
            return E_NO_UPLOAD
        if offset != self._written:
            return E_BAD_OFFSET  # the upload stays open: the host may resend from `_written`
        if self._written + len(data) > self._size:
            return E_TOO_LARGE
        self._file.write(data)
        self._running_crc = crc32(data, self._running_crc)
        self._written += len(data)
        return OK

    @property
    def received(self):
        """Bytes written so far."""
        return self._written

    def commit(self, key, feature_spec, n_features):
        """(reason, model): the loaded new model and OK once it replaced the model file, or a
        reason code and None, with the old model file untouched and the upload discarded."""
        if self._file is None:
            return E_NO_UPLOAD, None
        self._file.close()
        self._file = None
        if self._written != self._size:
            reason = E_TRUNCATED
        elif self._running_crc & 0xFFFFFFFF != self._crc:
            reason = E_BAD_CRC
        else:
            try:
                model = load(self.new_path, key, feature_spec, n_features, self.max_bytes)
            except ModelError as e:
                reason = e.reason
            else:
                self._replace()
                return OK, model
        _remove(self.new_path)
        return reason, None

    def abort(self):
        """Drop the upload in progress, if any, and its file."""
        if self._file is not None:
            self._file.close()
            self._file = None
            _remove(self.new_path)

    def _replace(self):
        # Replaces an existing file on littlefs and POSIX (atomically) and on MicroPython's
        # VfsFat (which removes the old file and retries).
        os.rename(self.new_path, self.path)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass

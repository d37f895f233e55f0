"""The model loader: checks a signed model blob (docs/model-blob.md) and builds the model
that runs it (watch.model.TreeModel, or watch.mlp.MLPModel for an int8 MLP).

`load` checks the whole file while streaming it through a small buffer (length, CRC32,
HMAC-SHA256, model id) and checks the model's structure the same way, so that the runtime
(watch.model) can trust what it reads from the file at each prediction. Only a load needs this
module and watch.blob (at boot, a commit, a rollback): watch.app drops both afterwards, and a
frozen watch makes their RAM state again at the next load.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host runs this module against its own emulation
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import hashlib
import os
import struct
from binascii import crc32

from watch import blob
from watch.hmac_sha256 import HmacSha256, equal
from watch.model import _SIGN_SHIFT, TreeModel, _Trees

# Mirrors of watch.blob's constants (private there too, out of its dictionary; a test checks).
_X_MIN = const(-0x20000000)  # blob.X_MIN
_X_MAX = const(0x1FFFFFFF)  # blob.X_MAX
_KIND_MLP_INT8 = const(2)  # blob.KIND_MLP_INT8
_E_TRUNCATED = const(1)
_E_BAD_CRC = const(4)
_E_BAD_SIGNATURE = const(5)
_E_FEATURE_MISMATCH = const(7)
_E_TOO_LARGE = const(8)
_CHUNK = const(256)  # verification read size: small next to the heap, a few flash pages
_HEAD = const(8)  # words of the tree array's header (watch.model)


class ModelError(Exception):
    """A blob the watch will not run; `reason` is a reason code of watch.protocol."""

    def __init__(self, reason):
        from watch import protocol  # only on refusal: loading needs no protocol tables

        # the texts are the host's (CPython); a watch keeps the code
        super().__init__(getattr(protocol, "REASONS", {}).get(reason, "reason %d" % reason))
        self.reason = reason



def load(path, key, feature_spec, n_features, max_bytes=blob.MAX_BYTES, viper=True):
    """The model (TreeModel or watch.mlp.MLPModel) in the blob file `path`, checked against
    the watch's key and the feature set it computes; raises ModelError(reason) for a blob it
    must not run (an empty key authenticates nothing: E_BAD_SIGNATURE) and OSError when the
    file cannot be read. `viper=False` forces the plain-Python path. The model carries the
    blob's window settings as `window_s`, `step_s`, `baseline_windows` (0 for a version-1 blob)
    and keeps the file open to read its trees or weights from (`close` releases it)."""
    size = os.stat(path)[6]
    if not key:
        raise ModelError(_E_BAD_SIGNATURE)  # anyone can sign with an empty key
    if size > max_bytes:
        raise ModelError(_E_TOO_LARGE)
    f = open(path, "rb")
    try:
        model = _read(f, size, key, feature_spec, n_features, viper)
    except BaseException:  # noqa: B902 - refused or failed: nothing keeps the file open
        f.close()
        raise
    if model._io[0] is not f:  # a version-1 blob runs from its converted copy in RAM
        f.close()
    return model


def _read(f, size, key, feature_spec, n_features, viper):
    head = bytearray(blob.HEADER_SIZE)
    n = f.readinto(head)
    reason = blob.check_header(head, size if n == blob.HEADER_SIZE else n)
    if reason:
        raise ModelError(reason)
    _, version, kind, spec, nf, n_classes, _, payload_length, model_id = blob.parse_header(head)
    _verify(f, head, size, key, model_id)
    if kind != blob.KIND_TREES and kind != _KIND_MLP_INT8:
        raise ModelError(blob.E_UNSUPPORTED_KIND)
    if spec not in (feature_spec if isinstance(feature_spec, tuple) else (feature_spec,)) or nf != n_features:
        raise ModelError(_E_FEATURE_MISMATCH)
    window = (0, 0, 0)
    if version >= 2:
        window = struct.unpack_from(blob.WINDOW, _fill(f, bytearray(blob.WINDOW_SIZE), blob.WINDOW_SIZE))[:3]
    quant = _fill(f, bytearray(blob.quant_size(nf)), blob.quant_size(nf))
    for i in range(nf):
        if quant[4 * nf + i] > blob.MAX_SHIFT or not _X_MIN <= struct.unpack_from("<i", quant, 4 * i)[0] <= _X_MAX:
            raise ModelError(blob.E_UNSUPPORTED_KIND)
    if kind == _KIND_MLP_INT8:
        from watch import mlp
        return mlp.read(f, model_id, spec, quant, n_classes, payload_length, viper, _fail, window)
    if version < 2:  # converted into a version-2 payload in RAM, read from there like a file
        from io import BytesIO
        from watch import trees_v1
        payload = trees_v1.read(f, nf, n_classes, payload_length, _fail)
        f = BytesIO(head + payload)
        payload_length = len(payload)
        f.seek(blob.HEADER_SIZE)
    m, io, n_inner = _read_trees(f, nf, n_classes, payload_length, model_id)
    _place(m, quant, nf)
    return TreeModel(model_id, spec, nf, n_classes, m, io, n_inner, viper, window)


def _verify(f, head, size, key, model_id):
    # One pass over the file: CRC32 of all before the CRC, HMAC of all before the HMAC,
    # SHA-256 of everything after the 20-byte header for the model id. Order of complaints:
    # CRC, signature, model id (a signed blob whose id is wrong was built wrong: blob.E_BAD_CRC).
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    crc = crc32(head)
    mac = HmacSha256(key)
    mac.update(head)
    ident = hashlib.sha256()
    left = size - blob.HEADER_SIZE - blob.TRAILER_SIZE
    while left > 0:
        n = f.readinto(view[:left] if left < _CHUNK else buf)
        if not n:
            raise ModelError(blob.E_TRUNCATED)
        chunk = view[:n]
        crc = crc32(chunk, crc)
        mac.update(chunk)
        ident.update(chunk)
        left -= n
    trailer = view[:blob.TRAILER_SIZE]
    if f.readinto(trailer) != blob.TRAILER_SIZE:
        raise ModelError(blob.E_TRUNCATED)
    if struct.unpack_from("<I", buf, 0)[0] != crc & 0xFFFFFFFF:
        raise ModelError(_E_BAD_CRC)
    mac.update(view[:blob.CRC_SIZE])
    if not equal(mac.digest(), view[blob.CRC_SIZE:blob.TRAILER_SIZE]):
        raise ModelError(_E_BAD_SIGNATURE)
    if struct.unpack_from("<I", ident.digest(), 0)[0] != model_id:
        raise ModelError(_E_BAD_CRC)
    f.seek(blob.HEADER_SIZE)


def _fill(f, arr, nbytes):
    if f.readinto(arr) != nbytes:
        raise ModelError(blob.E_TRUNCATED)
    return arr


def _fail(reason):
    raise ModelError(reason)


def alloc_trees(n):
    """A zero-filled tree-runtime array of n u16 words."""
    m = _Trees("H", range(n))
    for i in range(n):
        m[i] = 0
    return m



def layout(n_trees, n_features, n_classes):
    """(word of the roots, word of the leaf-row buffer, total words) of a tree model's array;
    the spans follow the roots, the model id's buffer (2 words) the leaf row."""
    roots = _HEAD + 2 * ((n_classes + 1) >> 1) + 4 * n_features
    leaf = (roots + 2 * n_trees + 1) & ~1
    return roots, leaf, leaf + 2 * ((n_classes + 1) >> 1) + 2


def _node(f, base, at, win):
    # The inner node at payload offset `at` as (feature, threshold, left, right), read through
    # the window `win` = [first offset held, end, buffer] (load only: refilled when `at` leaves it).
    if not win[0] <= at <= win[1] - blob.NODE_SIZE:
        f.seek(base + at)
        win[0] = at
        win[1] = at + f.readinto(win[2])
        if win[1] - at < blob.NODE_SIZE:
            raise ModelError(blob.E_TRUNCATED)
    return struct.unpack_from("<HHHH", win[2], at - win[0])


def _read_trees(f, nf, n_classes, payload_length, model_id):
    # The counts, the roots; the rest of the payload is checked through a small window (every
    # leaf value a u8; every reference in range, every child after its parent so each walk
    # ends, each feature index below n_features), and each tree's span measured: the bytes from
    # its root to the end of the last node a walk from it can reach (children come after their
    # parents, so one forward pass from the root finds it). The node buffer holds the largest.
    base = f.tell()
    counts = _fill(f, bytearray(blob.TREES_HEADER_SIZE), blob.TREES_HEADER_SIZE)
    n_trees, n_inner, n_rows, reserved = blob.parse_trees_header(counts)
    if payload_length != blob.trees_payload_size(n_trees, n_inner, n_rows, n_classes):
        raise ModelError(blob.E_TRUNCATED)
    if reserved or not n_trees or n_trees > blob.MAX_TREES or payload_length > blob.MAX_TREES_PAYLOAD:
        raise ModelError(blob.E_UNSUPPORTED_KIND)
    row = blob.leaf_row_size(n_classes)
    rows_end = n_rows * row
    first = blob.TREES_HEADER_SIZE + rows_end + 2 * n_trees
    end = first + blob.NODE_SIZE * n_inner
    buf = bytearray(_CHUNK)
    left = rows_end
    while left > 0:
        n = f.readinto(buf)
        if not n:
            raise ModelError(blob.E_TRUNCATED)
        for k in range(1, min(n, left), 2):  # u16 little-endian: the high bytes
            if buf[k]:
                raise ModelError(blob.E_UNSUPPORTED_KIND)
        left -= n
    roots, leaf, words = layout(n_trees, nf, n_classes)
    m = alloc_trees(words)
    f.seek(base + first - 2 * n_trees)
    _fill(f, memoryview(m)[roots:roots + n_trees], 2 * n_trees)
    win = [0, 0, buf]
    for t in range(n_trees):
        if not _ref_ok(m[roots + t], first - 1, first, end, row, rows_end):
            raise ModelError(blob.E_UNSUPPORTED_KIND)
    for at in range(first, end, blob.NODE_SIZE):
        k, _, a, b = _node(f, base, at, win)
        if k >= nf or not _ref_ok(a, at, first, end, row, rows_end) or not _ref_ok(b, at, first, end, row, rows_end):
            raise ModelError(blob.E_UNSUPPORTED_KIND)
    widest = 0
    for t in range(n_trees):
        r = m[roots + t]
        stop = r + blob.NODE_SIZE if r >= first else r
        at = r
        while at < stop:
            for ref in _node(f, base, at, win)[2:]:
                if ref >= first and ref + blob.NODE_SIZE > stop:
                    stop = ref + blob.NODE_SIZE
            at += blob.NODE_SIZE
        m[roots + n_trees + t] = stop - r
        widest = max(widest, stop - r)
    m[0] = n_trees
    m[1] = nf
    m[2] = n_classes
    m[3] = _SIGN_SHIFT
    m[4] = first
    m[5] = base
    m[6] = model_id & 0xFFFF
    m[7] = model_id >> 16
    io = (f, bytearray(widest), memoryview(m)[leaf:leaf + (row >> 1)], memoryview(m)[leaf + (row >> 1):words])
    return m, io, n_inner


def _ref_ok(ref, after, nodes, end, row, rows_end):
    # A reference is a leaf row (before the first node) or an inner node after `after`.
    if ref < nodes:
        ref -= blob.TREES_HEADER_SIZE
        return 0 <= ref < rows_end and ref % row == 0
    return after < ref < end and (ref - nodes) % blob.NODE_SIZE == 0


def _place(m, quant, nf):
    # The offsets less X_MIN (in [0, 2**30), no sign to extend) and the shifts into the array.
    off = _HEAD + 2 * ((m[2] + 1) >> 1)
    for i in range(nf):
        o = struct.unpack_from("<i", quant, 4 * i)[0] - _X_MIN
        m[off + 2 * i] = o & 0xFFFF
        m[off + 2 * i + 1] = o >> 16
        m[off + 2 * nf + i] = quant[4 * nf + i]

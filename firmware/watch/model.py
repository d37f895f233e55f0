"""Quantized tree-ensemble runtime and the model loader: loads a signed model blob
(docs/model-blob.md) and predicts; int8 MLP blobs load into watch.mlp.

`load` checks the whole file while streaming it through a small buffer (length, CRC32,
HMAC-SHA256, model id) and checks the model's structure the same way; the loaded model keeps
only what is small in RAM (counts, scaling, vote sums, roots) and its file open: each
prediction reads every tree's nodes from flash into one buffer sized for the largest tree
(`seek` + `readinto`) and walks them there. `TreeModel.predict` allocates nothing; it runs a
viper fast path or, where viper is missing (CPython), a plain-Python twin with identical
results. A model whose file no longer holds what `load` checked predicts a negative reason.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host runs this module against its own emulation
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import hashlib
import os
import struct
import sys
from array import array
from binascii import crc32

from watch import blob
from watch.hmac_sha256 import HmacSha256, equal

# The blob constants the hot loops use, private so MicroPython inlines them into viper code
# (a module global would reach viper as an object); equal to watch.blob's, a test checks.
_BIAS = const(32768)  # blob.BIAS
_X_MIN = const(-0x20000000)  # blob.X_MIN
_X_MAX = const(0x1FFFFFFF)  # blob.X_MAX
_KIND_MLP_INT8 = const(2)  # blob.KIND_MLP_INT8
# the reason codes of watch.blob only this module raises (private there too, out of its dictionary)
_E_TRUNCATED = const(1)
_E_BAD_CRC = const(4)
_E_BAD_SIGNATURE = const(5)
_E_FEATURE_MISMATCH = const(7)
_E_TOO_LARGE = const(8)
_CHUNK = const(256)  # verification read size: small next to the heap, a few flash pages
_ID_AT = const(16)  # the header's model id: read again before every prediction
_HEAD = const(8)  # words of the tree array's header (below)


# What sign-extends an int32 read through a zero-extending ptr32 (see _forest): the
# word size minus 32 (big ints count as 64-bit words).
_SIGN_SHIFT = 32 if sys.maxsize > 0xFFFFFFFF else 0


class ModelError(Exception):
    """A blob the watch will not run; `reason` is a reason code of watch.protocol."""

    def __init__(self, reason):
        from watch import protocol  # only on refusal: loading needs no protocol tables

        # the texts are the host's (CPython); a watch keeps the code
        super().__init__(getattr(protocol, "REASONS", {}).get(reason, "reason %d" % reason))
        self.reason = reason


# The tree runtime's array (array("H")): the header words n_trees, n_features, n_classes, the
# sign-extension shift of this port (see _forest), the payload offset of the first inner node
# (references below it are leaf rows), the payload's offset in the file, the model id (low,
# high half); then the vote sums (one u32 per two classes), the offsets less X_MIN (u32 as two
# u16), the shifts, the quantized features q (u16, biased), the roots and each tree's span (the
# bytes from its root to the end of its last node), and, 4-byte aligned, the buffers the file
# is read into: a leaf row and the model id. The nodes go into a separate buffer (`nodes`)
# sized for the largest span. The file and the three buffers are the model's `io` tuple.


class _Trees(array):
    """The tree runtime's array; with viper its `predict` is the fast path."""


_forest = None  # pyright: ignore[reportAssignmentType] (no viper: the plain loop runs)
_same_model = None  # pyright: ignore[reportAssignmentType]
try:
    import micropython

    @micropython.viper
    def _same_model(io, lo: int, hi: int) -> int:
        # 0 when the model's file io[0] still holds the model id lo | hi << 16 (read into the
        # 4-byte buffer io[3]), else the negative reason: the check before every prediction.
        f = io[0]
        f.seek(_ID_AT)
        if int(f.readinto(io[3])) != 4:
            return -_E_TRUNCATED
        ident = ptr16(io[3])  # noqa: F821
        if int(ident[0]) != lo or int(ident[1]) != hi:
            return -_E_BAD_CRC  # another blob in its place
        return 0

    @micropython.viper
    def _forest(m: ptr16, x: ptr32, ps, io) -> int:  # noqa: F821
        # Same steps as watch.trees_plain.forest on the same array: bound to it as its `predict`,
        # so the array arrives as `m` without an attribute lookup. Viper keeps a function's first
        # two locals in registers on x64 (three on Thumb): `m`, and `x`, which after quantizing
        # walks the nodes (x's length is the caller's promise, see TreeModel; proba, which is
        # written, is checked). ptr32 loads zero-extend on 64-bit ports: shifting up and back by
        # the loader's sign shift (32 there, 0 on 32-bit ports) sign-extends x. Two classes'
        # sums share a u32 (each stays below 2**16), so one add per leaf row covers both of a
        # binary model. Flash may change under a loaded model: every reference is checked
        # (forward, inside the tree's span, on a node boundary) and every leaf value a u8, so a
        # changed file ends in a negative reason, never outside the buffers or in a loop.
        nf = int(m[1])
        nc = int(m[2])
        ps[nc - 1]
        e = int(m[3])
        first = int(m[4])
        base = int(m[5])
        half = (nc + 1) >> 1
        acc = ptr32(int(m) + 2 * _HEAD)  # noqa: F821
        off = ptr32(int(acc) + 4 * half)  # noqa: F821
        sh = ptr16(int(off) + 4 * nf)  # noqa: F821
        q = ptr16(int(sh) + 2 * nf)  # noqa: F821
        span = uint(_X_MAX - _X_MIN)  # noqa: F821
        top = uint(0xFFFF)  # noqa: F821
        for k in range(nf):
            v = (int(x[k]) << e) >> e
            if uint(v - _X_MIN) > span:  # one unsigned test for both bounds  # noqa: F821
                v = _X_MIN if v < 0 else _X_MAX
            v = ((v - _X_MIN - int(off[k])) >> int(sh[k])) + _BIAS
            if uint(v) > top:  # noqa: F821
                v = 0 if v < 0 else 0xFFFF
            q[k] = v
        v = int(_same_model(io, int(m[6]), int(m[7])))  # pyright: ignore[reportOptionalCall]
        if v:
            return v
        f = io[0]
        nodes = io[1]
        leaf = io[2]
        n_trees = int(m[0])
        roots = ptr16(int(q) + 2 * nf)  # noqa: F821
        spans = ptr16(int(roots) + 2 * n_trees)  # noqa: F821
        row = 4 * half
        rows_end = first - 2 * n_trees
        nb = int(ptr8(nodes))  # noqa: F821
        w = ptr32(leaf)  # noqa: F821
        for k in range(half):
            acc[k] = 0
        for t in range(n_trees):
            r = int(roots[t])
            i = r
            if r >= first:
                lim = r + int(spans[t]) - 8  # the last node's offset
                f.seek(base + r)
                if int(f.readinto(nodes)) < lim + 8 - r:
                    return -_E_TRUNCATED
                while i >= first:
                    x = ptr32(nb + i - r)  # noqa: F821
                    k = int(ptr16(x)[0])  # noqa: F821
                    if k >= nf:
                        return -_E_BAD_CRC
                    if int(q[k]) <= int(ptr16(x)[1]):  # noqa: F821
                        j = int(ptr16(x)[2])  # noqa: F821
                    else:
                        j = int(ptr16(x)[3])  # noqa: F821
                    if j >= first and (j <= i or j > lim or (j - i) & 7):
                        return -_E_BAD_CRC
                    i = j
            if i < 8 or i + row > rows_end:
                return -_E_BAD_CRC
            f.seek(base + i)
            if int(f.readinto(leaf)) != row:
                return -_E_TRUNCATED
            for k in range(half):
                v = int(w[k])
                if (v >> 8) & 0xFF00FF:  # a value above 255
                    return -_E_BAD_CRC
                acc[k] = int(acc[k]) + v
        proba = ptr8(ps)  # noqa: F821
        h = n_trees >> 1
        if half == 1:
            s = int(acc[0])
            v = s & 0xFFFF
            proba[0] = (v + h) // n_trees
            if nc == 1:
                return 0
            s = (s >> 16) & 0xFFFF  # the mask: on a 32-bit port s may read as negative
            proba[1] = (s + h) // n_trees
            return 1 if s > v else 0
        sums = ptr16(acc)  # noqa: F821
        best = 0
        most = 0
        for c in range(nc):
            v = int(sums[c])
            if v > most:
                best = c
                most = v
            proba[c] = (v + h) // n_trees
        return best

    _Trees.predict = _forest  # pyright: ignore[reportAttributeAccessIssue] (the fast path)
except ImportError:  # CPython
    pass


def alloc_trees(n):
    """A zero-filled tree-runtime array of n u16 words."""
    m = _Trees("H", range(n))
    for i in range(n):
        m[i] = 0
    return m


class Runtime:
    """What a loaded model (TreeModel, watch.mlp.MLPModel) shares: `predict` runs its fast
    path `_run(x, proba, io)` (a viper method bound to its array) or its plain twin
    `_run(_plain, x, proba, io)`, reading the file `io[0]`; `close` releases that file."""

    # what each kind sets in its __init__ (declarations only: no class attributes in RAM)
    n_classes: int
    viper: bool
    _run: object
    _plain: object
    _io: tuple

    def predict(self, x, proba):
        """Label (0..n_classes-1) of the features `x`; writes the probabilities into `proba`.
        Negative: the reason the file no longer holds the model `load` checked."""
        proba[self.n_classes - 1]  # too short: IndexError before anything is written
        try:
            if self.viper:
                return self._run(x, proba, self._io)  # pyright: ignore[reportCallIssue] (the bound viper method)
            return self._run(self._plain, x, proba, self._io)  # pyright: ignore[reportCallIssue] (the plain twin)
        except (OSError, ValueError):  # the file is gone, or closed
            return -_E_TRUNCATED

    def close(self):
        """Release the model's file (a prediction after it returns -E_TRUNCATED)."""
        self._io[0].close()


class TreeModel(Runtime):
    """A loaded tree ensemble. `predict(x, proba)` -> label, filling `proba`; no allocation.

    `x` is an array('i') holding the `n_features` values the caller promised `load` (which
    refuses a blob for another count); the fast path does not re-check its length. `proba`
    is a bytearray of at least n_classes, checked (IndexError before anything is written):
    the u8 class probabilities (x/255) are written into it. The nodes are read from the
    model's file at each prediction: a negative label is the reason (-E_TRUNCATED, -E_BAD_CRC)
    why the file no longer holds the model `load` checked (rewritten, cut short, closed or
    gone); `close` releases the file.
    """

    def __init__(self, model_id, feature_spec, n_features, n_classes, m, io, n_inner, viper=True, window=(0, 0, 0)):
        self.model_id = model_id
        self.kind = blob.KIND_TREES
        self.feature_spec = feature_spec
        self.n_features = n_features
        self.n_classes = n_classes
        self.n_trees = m[0]
        self.n_nodes = n_inner
        self.window_s = window[0]
        self.step_s = window[1]
        self.baseline_windows = window[2]
        self.viper = bool(viper) and _forest is not None
        self._io = io
        if self.viper:
            self._run = m.predict  # pyright: ignore[reportAttributeAccessIssue] (the array's viper method)
        else:  # the plain twin lives in its own module: a viper port never loads it
            from watch.trees_plain import forest

            self._run = forest
            self._plain = m


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

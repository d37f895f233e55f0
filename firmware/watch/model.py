"""Quantized tree-ensemble runtime and the model loader: loads a signed model blob
(docs/model-blob.md) and predicts; int8 MLP blobs load into watch.mlp.

`load` checks the whole file while streaming it through a small buffer (length, CRC32,
HMAC-SHA256, model id), then reads the arrays from flash straight into preallocated arrays:
the payload is copied once. `TreeModel.predict` allocates nothing; it runs a viper fast path
or, where viper is missing (CPython), a plain-Python twin with identical results.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host runs this module against its own emulation
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import gc
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
_E_BAD_CRC = const(4)
_E_BAD_SIGNATURE = const(5)
_E_FEATURE_MISMATCH = const(7)
_E_TOO_LARGE = const(8)
_CHUNK = const(256)  # verification read size: small next to the heap, a few flash pages


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


# The tree runtime's array (array("H"), little-endian halves): the version-2 tree payload as
# read from the blob (counts, leaf rows, roots, nodes; references are byte offsets into it),
# then, from word W (4-byte aligned, kept in RAM in the payload's reserved count word 3):
# n_features, n_classes, the word of the first root, the sign-extension shift of this port
# (see _forest), the vote sums (one u32 per two classes), the offsets (int32 as two
# u16), the shifts, the quantized features q (u16, biased). One block, no pointers to chase.


class _Trees(array):
    """The tree runtime's array; with viper its `predict` is the fast path."""


_forest = None  # pyright: ignore[reportAssignmentType] (no viper: the plain loop runs)
try:
    import micropython

    @micropython.viper
    def _forest(m: ptr16, x: ptr32, ps) -> int:  # noqa: F821
        # Same steps as watch.trees_plain.forest on the same array: bound to it as its `predict`, so the
        # array arrives as `m` without an attribute lookup or a second call. Viper keeps a
        # function's first two locals in registers on x64 (three on Thumb): `m`, and `x`,
        # which after quantizing walks the trees (its length is the caller's promise, see
        # TreeModel; proba, which is written, is checked). ptr32 loads zero-extend on 64-bit
        # ports: shifting up and back by the loader's sign shift (32 there, 0 on 32-bit
        # ports) sign-extends x. Two classes' sums share a u32 (each stays below 2**16),
        # so one add per leaf row covers both of a binary model.
        w = int(m[3])
        nf = int(m[w])
        nc = int(m[w + 1])
        ps[nc - 1]
        e = int(m[w + 3])
        half = (nc + 1) >> 1
        acc = ptr32(int(m) + 2 * w + 8)  # noqa: F821
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
        n_trees = int(m[0])
        root = int(m) + 2 * int(m[w + 2])
        end = root + 2 * n_trees  # the first node: below it, leaf rows
        if half == 1:  # one or two classes: both sums in one 32-bit word, one add per tree
            s = 0
            while root < end:
                x = ptr32(int(m) + int(ptr16(root)[0]))  # noqa: F821
                while int(x) >= end:
                    if int(m[int(ptr16(x)[0])]) <= int(ptr16(x)[1]):  # noqa: F821
                        x = ptr32(int(m) + int(ptr16(x)[2]))  # noqa: F821
                    else:
                        x = ptr32(int(m) + int(ptr16(x)[3]))  # noqa: F821
                s += int(x[0])
                root += 2
            proba = ptr8(ps)  # noqa: F821
            h = n_trees >> 1
            v = s & 0xFFFF
            proba[0] = (v + h) // n_trees
            if nc == 1:
                return 0
            s = (s >> 16) & 0xFFFF  # the mask: on a 32-bit port s may read as negative
            proba[1] = (s + h) // n_trees
            return 1 if s > v else 0
        for k in range(half):
            acc[k] = 0
        while root < end:
            x = ptr32(int(m) + int(ptr16(root)[0]))  # noqa: F821
            while int(x) >= end:
                if int(m[int(ptr16(x)[0])]) <= int(ptr16(x)[1]):  # noqa: F821
                    x = ptr32(int(m) + int(ptr16(x)[2]))  # noqa: F821
                else:
                    x = ptr32(int(m) + int(ptr16(x)[3]))  # noqa: F821
            for k in range(half):
                acc[k] = int(acc[k]) + int(x[k])
            root += 2
        proba = ptr8(ps)  # noqa: F821
        sums = ptr16(acc)  # noqa: F821
        best = 0
        most = 0
        for c in range(nc):
            v = int(sums[c])
            if v > most:
                best = c
                most = v
            proba[c] = (v + (n_trees >> 1)) // n_trees
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


class TreeModel:
    """A loaded tree ensemble. `predict(x, proba)` -> label, filling `proba`; no allocation.

    `x` is an array('i') holding the `n_features` values the caller promised `load` (which
    refuses a blob for another count); the fast path does not re-check its length. `proba`
    is a bytearray of at least n_classes, checked (IndexError before anything is written):
    the u8 class probabilities (x/255) are written into it.
    """

    def __init__(self, model_id, feature_spec, n_features, n_classes, m, viper=True, window=(0, 0, 0)):
        self.model_id = model_id
        self.kind = blob.KIND_TREES
        self.feature_spec = feature_spec
        self.n_features = n_features
        self.n_classes = n_classes
        self.n_trees = m[0]
        self.n_nodes = m[1]
        self.window_s = window[0]
        self.step_s = window[1]
        self.baseline_windows = window[2]
        self.viper = bool(viper) and _forest is not None
        self._m = m
        if self.viper:
            self.predict = m.predict  # pyright: ignore[reportAttributeAccessIssue] (the array's viper method)
        else:  # the plain twin lives in its own module: a viper port never loads it
            from watch.trees_plain import forest

            self._plain = forest

    def predict(self, x, proba):
        """Label (0..n_classes-1) of the features `x`; writes the probabilities into `proba`."""
        proba[self.n_classes - 1]  # too short: IndexError before anything is written
        return self._plain(self._m, x, proba)


def load(path, key, feature_spec, n_features, max_bytes=blob.MAX_BYTES, viper=True):
    """The model (TreeModel or watch.mlp.MLPModel) in the blob file `path`, checked against
    the watch's key and the feature set it computes; raises ModelError(reason) for a blob it
    must not run (an empty key authenticates nothing: E_BAD_SIGNATURE) and OSError when the
    file cannot be read. `viper=False` forces the plain-Python path. The model carries the
    blob's window settings as `window_s`, `step_s`, `baseline_windows` (0 for a version-1 blob)."""
    size = os.stat(path)[6]
    if not key:
        raise ModelError(_E_BAD_SIGNATURE)  # anyone can sign with an empty key
    if size > max_bytes:
        raise ModelError(_E_TOO_LARGE)
    with open(path, "rb") as f:
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
        if version < 2:
            from watch import trees_v1
            m = trees_v1.read(f, nf, n_classes, payload_length, _fail)
        else:
            m = _read_trees(f, nf, n_classes, payload_length)
        _place(m, quant, nf, n_classes)
        return TreeModel(model_id, spec, nf, n_classes, m, viper, window)


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


def workspace(payload_length, n_features, n_classes):
    """(W, total words) of a tree model's array: W the first word after the payload (4-byte
    aligned), then n_features, n_classes, the first root's word, 0, the sums, offsets, shifts
    and q."""
    w = ((payload_length + 3) >> 2) << 1
    return w, w + 4 + 2 * ((n_classes + 1) >> 1) + 4 * n_features


def _read_trees(f, nf, n_classes, payload_length):
    # The version-2 payload straight into its final array (one copy), checked after.
    counts = _fill(f, bytearray(blob.TREES_HEADER_SIZE), blob.TREES_HEADER_SIZE)
    n_trees, n_inner, n_rows, reserved = blob.parse_trees_header(counts)
    if payload_length != blob.trees_payload_size(n_trees, n_inner, n_rows, n_classes):
        raise ModelError(blob.E_TRUNCATED)
    if reserved or not n_trees or n_trees > blob.MAX_TREES or payload_length > blob.MAX_TREES_PAYLOAD:
        raise ModelError(blob.E_UNSUPPORTED_KIND)
    gc.collect()  # the model goes into one defragmented block
    m = alloc_trees(workspace(payload_length, nf, n_classes)[1])
    m[0] = n_trees
    m[1] = n_inner
    m[2] = n_rows
    if f.readinto(memoryview(m)[4:payload_length >> 1]) != payload_length - blob.TREES_HEADER_SIZE:
        raise ModelError(blob.E_TRUNCATED)
    return m


def _ref_ok(ref, after, nodes, end, row, rows_end):
    # A reference is a leaf row (before the first node) or an inner node after `after`.
    if ref < nodes:
        ref -= blob.TREES_HEADER_SIZE
        return 0 <= ref < rows_end and ref % row == 0
    return after < ref < end and (ref - nodes) % blob.NODE_SIZE == 0


def _place(m, quant, nf, n_classes):
    # Check the tree structure once (the hot loops do not bounds-check: every reference in
    # range, every child after its parent so each walk ends, every leaf value a u8, each
    # feature index below n_features), then fill the workspace after the payload.
    n_trees, n_inner, n_rows = m[0], m[1], m[2]
    row = blob.leaf_row_size(n_classes)
    rows_end = n_rows * row
    nodes = blob.TREES_HEADER_SIZE + rows_end + 2 * n_trees
    end = nodes + blob.NODE_SIZE * n_inner
    for k in range(4, 4 + (rows_end >> 1)):
        if m[k] > 255:
            raise ModelError(blob.E_UNSUPPORTED_KIND)
    for t in range(n_trees):
        if not _ref_ok(m[(nodes >> 1) - n_trees + t], nodes - 1, nodes, end, row, rows_end):
            raise ModelError(blob.E_UNSUPPORTED_KIND)
    w = workspace(end, nf, n_classes)[0]
    q = w + 4 + 2 * ((n_classes + 1) >> 1) + 3 * nf
    for at in range(nodes, end, blob.NODE_SIZE):
        k = at >> 1
        if (m[k] >= nf or not _ref_ok(m[k + 2], at, nodes, end, row, rows_end)
                or not _ref_ok(m[k + 3], at, nodes, end, row, rows_end)):
            raise ModelError(blob.E_UNSUPPORTED_KIND)
        m[k] += q  # in RAM a node holds the word of its feature's q
    m[3] = w
    m[w] = nf
    m[w + 1] = n_classes
    m[w + 2] = (nodes >> 1) - n_trees
    m[w + 3] = _SIGN_SHIFT
    off = w + 4 + 2 * ((n_classes + 1) >> 1)
    for i in range(nf):  # the offsets less X_MIN: in [0, 2**30), no sign to extend
        o = struct.unpack_from("<i", quant, 4 * i)[0] - _X_MIN
        m[off + 2 * i] = o & 0xFFFF
        m[off + 2 * i + 1] = o >> 16
    for i in range(nf):
        m[off + 2 * nf + i] = quant[4 * nf + i]

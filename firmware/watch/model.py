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
    def const(x):
        return x

import gc
import hashlib
import os
import struct
from array import array
from binascii import crc32

from watch import blob
from watch.hmac_sha256 import HmacSha256, equal
from watch.protocol import (E_BAD_CRC, E_BAD_SIGNATURE, E_FEATURE_MISMATCH, E_TOO_LARGE, E_TRUNCATED,
                            E_UNSUPPORTED_KIND, REASONS)

# The blob constants the hot loops use, private so MicroPython inlines them into viper code
# (a module global would reach viper as an object); equal to watch.blob's, a test checks.
_LEAF = const(255)  # blob.LEAF
_BIAS = const(32768)  # blob.BIAS
_X_MIN = const(-0x20000000)  # blob.X_MIN
_X_MAX = const(0x1FFFFFFF)  # blob.X_MAX
_CHUNK = const(256)  # verification read size: small next to the heap, a few flash pages


class ModelError(Exception):
    """A blob the watch will not run; `reason` is a reason code of watch.protocol."""

    def __init__(self, reason):
        super().__init__(REASONS.get(reason, "reason %d" % reason))
        self.reason = reason


# The loaded model lives in one bytearray (`mem`), so the hot loop gets one buffer instead of a
# dozen (a viper call converts each buffer argument). Its first _HEAD_SIZE bytes hold u32
# fields: counts and the byte offset of each section; sections are 4-byte aligned (Xtensa
# traps on unaligned 16- and 32-bit loads).
_H_NF = const(0)
_H_NC = const(1)
_H_NT = const(2)
_H_NN = const(3)
_H_OFF = const(4)  # int32 x nf: quantization offsets
_H_SHIFT = const(5)  # u8 x nf
_H_ROOTS = const(6)  # u16 x nt
_H_FEAT = const(7)  # u8 x nn
_H_THR = const(8)  # u16 x nn, biased
_H_RIGHT = const(9)  # u16 x nn
_H_LEAVES = const(10)  # u8 x n_leaves x nc
_H_Q = const(11)  # u16 x nf scratch: the quantized features, biased
_H_ACC = const(12)  # u32 x nc scratch: the votes
_HEAD_SIZE = const(52)


def _u16(m, a):
    return m[a] | (m[a + 1] << 8)


def _u32(m, a):
    return m[a] | (m[a + 1] << 8) | (m[a + 2] << 16) | (m[a + 3] << 24)


def _i32(m, a):
    v = m[a] | (m[a + 1] << 8) | (m[a + 2] << 16) | ((m[a + 3] ^ 0x80) - 0x80) * 16777216
    return v


def _head(m, field):
    return _u32(m, 4 * field)


def _predict_py(x, m, proba):
    # The reference: quantize x into q (biased by _BIAS so it compares unsigned), walk every
    # tree (left child = next node), sum leaf rows into the votes, round the mean into proba.
    # Allocation-free in MicroPython while values stay small ints (x is clamped to 30 bits).
    nf = _head(m, _H_NF)
    nc = _head(m, _H_NC)
    nt = _head(m, _H_NT)
    off = _head(m, _H_OFF)
    shift = _head(m, _H_SHIFT)
    roots = _head(m, _H_ROOTS)
    feat = _head(m, _H_FEAT)
    thr = _head(m, _H_THR)
    right = _head(m, _H_RIGHT)
    leaves = _head(m, _H_LEAVES)
    q = _head(m, _H_Q)
    for i in range(nf):
        v = x[i]
        if v < _X_MIN:
            v = _X_MIN
        elif v > _X_MAX:
            v = _X_MAX
        d = ((v - _i32(m, off + 4 * i)) >> m[shift + i]) + _BIAS
        if d < 0:
            d = 0
        elif d > 0xFFFF:
            d = 0xFFFF
        m[q + 2 * i] = d & 0xFF
        m[q + 2 * i + 1] = d >> 8
    for c in range(nc):
        proba[c] = 0
    best = 0
    best_sum = -1
    for c in range(nc):
        total = 0
        for t in range(nt):
            node = _u16(m, roots + 2 * t)
            f = m[feat + node]
            while f != _LEAF:
                if _u16(m, q + 2 * f) <= _u16(m, thr + 2 * node):
                    node += 1
                else:
                    node = _u16(m, right + 2 * node)
                f = m[feat + node]
            total += m[leaves + _u16(m, right + 2 * node) * nc + c]
        if total > best_sum:
            best, best_sum = c, total
        proba[c] = (total + (nt >> 1)) // nt
    return best


_predict_viper = None
try:
    import micropython

    @micropython.viper
    def _predict_viper(x: ptr16, mem: ptr8, proba: ptr8) -> int:  # noqa: F821
        # Same result as _predict_py. int32 values are read as two 16-bit halves because ptr32
        # loads zero-extend on 64-bit ports; the high half carries the sign.
        h = ptr32(mem)  # noqa: F821
        base = int(mem)
        nf = int(h[_H_NF])
        nc = int(h[_H_NC])
        nt = int(h[_H_NT])
        off = ptr16(base + int(h[_H_OFF]))  # noqa: F821
        shift = ptr8(base + int(h[_H_SHIFT]))  # noqa: F821
        roots = ptr16(base + int(h[_H_ROOTS]))  # noqa: F821
        feat = ptr8(base + int(h[_H_FEAT]))  # noqa: F821
        thr = ptr16(base + int(h[_H_THR]))  # noqa: F821
        right = ptr16(base + int(h[_H_RIGHT]))  # noqa: F821
        leaves = ptr8(base + int(h[_H_LEAVES]))  # noqa: F821
        q = ptr16(base + int(h[_H_Q]))  # noqa: F821
        acc = ptr32(base + int(h[_H_ACC]))  # noqa: F821
        for i in range(nf):
            hi = int(x[2 * i + 1])
            if hi >= 32768:
                hi -= 65536
            v = (hi << 16) | int(x[2 * i])
            if v < _X_MIN:
                v = _X_MIN
            elif v > _X_MAX:
                v = _X_MAX
            hi = int(off[2 * i + 1])
            if hi >= 32768:
                hi -= 65536
            o = (hi << 16) | int(off[2 * i])
            d = ((v - o) >> int(shift[i])) + _BIAS
            if d < 0:
                d = 0
            elif d > 0xFFFF:
                d = 0xFFFF
            q[i] = d
        for c in range(nc):
            acc[c] = 0
        for t in range(nt):
            node = int(roots[t])
            f = int(feat[node])
            while f != _LEAF:
                if int(q[f]) <= int(thr[node]):
                    node += 1
                else:
                    node = int(right[node])
                f = int(feat[node])
            row = int(right[node]) * nc
            for c in range(nc):
                acc[c] = int(acc[c]) + int(leaves[row + c])
        best = 0
        half = nt >> 1
        for c in range(nc):
            if int(acc[c]) > int(acc[best]):
                best = c
            proba[c] = (int(acc[c]) + half) // nt
        return best
except ImportError:  # CPython
    pass


def _alloc(typecode, n):
    # An n-item array without a temporary list or bytes the size of the array.
    return array(typecode, range(n))


class TreeModel:
    """A loaded tree ensemble. `predict(x, proba)` -> label, filling `proba`; no allocation."""

    def __init__(self, model_id, feature_spec, mem, viper=True):
        self.model_id = model_id
        self.kind = blob.KIND_TREES
        self.feature_spec = feature_spec
        self.n_features = _head(mem, _H_NF)
        self.n_classes = _head(mem, _H_NC)
        self.n_trees = _head(mem, _H_NT)
        self.n_nodes = _head(mem, _H_NN)
        self.viper = bool(viper) and _predict_viper is not None
        self._mem = mem
        self._run = _predict_viper if self.viper else _predict_py

    def predict(self, x, proba):
        """Label (0..n_classes-1) of the features `x`, an array('i') of n_features fixed-point
        values; writes the u8 class probabilities (x/255) into the bytearray `proba`."""
        if len(x) < self.n_features or len(proba) < self.n_classes:
            raise ValueError("x needs n_features items, proba n_classes")
        return self._run(x, self._mem, proba)


def load(path, key, feature_spec, n_features, max_bytes=blob.MAX_BYTES, viper=True):
    """The TreeModel in the blob file `path`, checked against the watch's key and the
    feature set it computes; raises ModelError(reason) for a blob it must not run (an empty
    key authenticates nothing: E_BAD_SIGNATURE) and OSError when the file cannot be read.
    `viper=False` forces the plain-Python path."""
    size = os.stat(path)[6]
    if not key:
        raise ModelError(E_BAD_SIGNATURE)  # anyone can sign with an empty key
    if size > max_bytes:
        raise ModelError(E_TOO_LARGE)
    with open(path, "rb") as f:
        head = bytearray(blob.HEADER_SIZE)
        n = f.readinto(head)
        reason = blob.check_header(head, size if n == blob.HEADER_SIZE else n)
        if reason:
            raise ModelError(reason)
        _, _, kind, spec, nf, n_classes, _, payload_length, model_id = blob.parse_header(head)
        _verify(f, head, size, key, model_id)
        if kind != blob.KIND_TREES and kind != blob.KIND_MLP_INT8:
            raise ModelError(E_UNSUPPORTED_KIND)
        if spec != feature_spec or nf != n_features:
            raise ModelError(E_FEATURE_MISMATCH)
        f.seek(blob.HEADER_SIZE)
        offsets = _fill(f, _alloc("i", nf), 4 * nf)
        shifts = _fill(f, bytearray(nf), nf)
        for i in range(nf):
            if shifts[i] > blob.MAX_SHIFT or not _X_MIN <= offsets[i] <= _X_MAX:
                raise ModelError(E_UNSUPPORTED_KIND)
        if kind == blob.KIND_MLP_INT8:
            from watch import mlp
            return mlp.read(f, model_id, spec, offsets, shifts, n_classes, payload_length, viper, _fail)
        return _read_trees(f, model_id, spec, nf, n_classes, payload_length, viper)


def _verify(f, head, size, key, model_id):
    # One pass over the file: CRC32 of all before the CRC, HMAC of all before the HMAC,
    # SHA-256 of quantization + payload for the model id. Order of complaints: CRC, signature,
    # model id (a signed blob whose id is wrong was built wrong: E_BAD_CRC).
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
            raise ModelError(E_TRUNCATED)
        chunk = view[:n]
        crc = crc32(chunk, crc)
        mac.update(chunk)
        ident.update(chunk)
        left -= n
    trailer = view[:blob.TRAILER_SIZE]
    if f.readinto(trailer) != blob.TRAILER_SIZE:
        raise ModelError(E_TRUNCATED)
    if struct.unpack_from("<I", buf, 0)[0] != crc & 0xFFFFFFFF:
        raise ModelError(E_BAD_CRC)
    mac.update(view[:blob.CRC_SIZE])
    if not equal(mac.digest(), view[blob.CRC_SIZE:blob.TRAILER_SIZE]):
        raise ModelError(E_BAD_SIGNATURE)
    if struct.unpack_from("<I", ident.digest(), 0)[0] != model_id:
        raise ModelError(E_BAD_CRC)


def _fill(f, arr, nbytes):
    if f.readinto(arr) != nbytes:
        raise ModelError(E_TRUNCATED)
    return arr


def _fail(reason):
    raise ModelError(reason)


def _read_trees(f, model_id, feature_spec, nf, n_classes, payload_length, viper):
    counts = _fill(f, bytearray(blob.TREES_HEADER_SIZE), blob.TREES_HEADER_SIZE)
    n_trees, n_nodes, n_leaves, _ = blob.parse_trees_header(counts)
    if payload_length != blob.trees_payload_size(n_trees, n_nodes, n_leaves, n_classes):
        raise ModelError(E_TRUNCATED)
    if not (n_trees and n_nodes and n_leaves and n_classes):
        raise ModelError(E_UNSUPPORTED_KIND)
    # Section sizes in file order, then the two scratch areas; each starts 4-byte aligned.
    sizes = (4 * nf, nf, 2 * n_trees, n_nodes, 2 * n_nodes, 2 * n_nodes, n_leaves * n_classes, 2 * nf,
             4 * n_classes)
    starts = []
    at = _HEAD_SIZE
    for n in sizes:
        starts.append(at)
        at += (n + 3) & ~3
    gc.collect()  # the model goes into one block of a defragmented heap
    mem = bytearray(at)
    for k, v in enumerate((nf, n_classes, n_trees, n_nodes)):
        struct.pack_into("<I", mem, 4 * k, v)
    for k in range(len(starts)):
        struct.pack_into("<I", mem, 4 * (_H_OFF + k), starts[k])
    view = memoryview(mem)
    f.seek(blob.HEADER_SIZE)
    for k in range(2):  # offsets and shifts
        _fill(f, view[starts[k]:starts[k] + sizes[k]], sizes[k])
    f.seek(blob.TREES_HEADER_SIZE, 1)
    for k in range(2, 7):  # roots, feature, threshold, right, leaves
        _fill(f, view[starts[k]:starts[k] + sizes[k]], sizes[k])
    if not _runnable(mem, n_leaves):
        raise ModelError(E_UNSUPPORTED_KIND)
    return TreeModel(model_id, feature_spec, mem, viper)


def _runnable(m, n_leaves):
    # The hot loops do not bounds-check, so the structure is checked once here: every index
    # in range, and every child after its parent, so each walk ends at a leaf.
    nf = _head(m, _H_NF)
    nn = _head(m, _H_NN)
    roots, feat, right = _head(m, _H_ROOTS), _head(m, _H_FEAT), _head(m, _H_RIGHT)
    for t in range(_head(m, _H_NT)):
        if _u16(m, roots + 2 * t) >= nn:
            return False
    for i in range(nn):
        r = _u16(m, right + 2 * i)
        if m[feat + i] == _LEAF:
            if r >= n_leaves:
                return False
        elif m[feat + i] >= nf or i + 1 >= nn or not i < r < nn:
            return False
    return True

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


def _predict_py(x, off, shift, q, n_features, feat, thr, right, roots, n_trees, leaves, acc, proba,
                n_classes):
    # The reference: quantize x into q (biased by _BIAS so it compares unsigned), walk every
    # tree (left child = next node), sum leaf rows into acc, round the mean into proba.
    # Allocation-free in MicroPython while values stay small ints (x is clamped to 30 bits).
    for i in range(n_features):
        v = x[i]
        if v < _X_MIN:
            v = _X_MIN
        elif v > _X_MAX:
            v = _X_MAX
        d = ((v - off[i]) >> shift[i]) + _BIAS
        if d < 0:
            d = 0
        elif d > 0xFFFF:
            d = 0xFFFF
        q[i] = d
    for c in range(n_classes):
        acc[c] = 0
    for t in range(n_trees):
        node = roots[t]
        f = feat[node]
        while f != _LEAF:
            if q[f] <= thr[node]:
                node += 1
            else:
                node = right[node]
            f = feat[node]
        row = right[node] * n_classes
        for c in range(n_classes):
            acc[c] += leaves[row + c]
    best = 0
    half = n_trees >> 1
    for c in range(n_classes):
        if acc[c] > acc[best]:
            best = c
        proba[c] = (acc[c] + half) // n_trees
    return best


_predict_viper = None  # pyright: ignore[reportAssignmentType] (no viper: the plain loop runs)
try:
    import micropython

    @micropython.viper
    def _predict_viper(x: ptr16, off: ptr16, shift: ptr8, q: ptr16, n_features: int, feat: ptr8,  # noqa: F821
                       thr: ptr16, right: ptr16, roots: ptr16, n_trees: int, leaves: ptr8,  # noqa: F821
                       acc: ptr32, proba: ptr8, n_classes: int) -> int:  # noqa: F821
        # Same steps as _predict_py. int32 values are read as two 16-bit halves because ptr32
        # loads zero-extend on 64-bit ports; the high half carries the sign.
        for i in range(n_features):
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
        for c in range(n_classes):
            acc[c] = 0
        for t in range(n_trees):
            node = int(roots[t])
            f = int(feat[node])
            while f != _LEAF:
                if int(q[f]) <= int(thr[node]):
                    node += 1
                else:
                    node = int(right[node])
                f = int(feat[node])
            row = int(right[node]) * n_classes
            for c in range(n_classes):
                acc[c] = int(acc[c]) + int(leaves[row + c])
        best = 0
        half = n_trees >> 1
        for c in range(n_classes):
            if int(acc[c]) > int(acc[best]):
                best = c
            proba[c] = (int(acc[c]) + half) // n_trees
        return best
except ImportError:  # CPython
    pass


def _alloc(typecode, n):
    # An n-item array without a temporary list or bytes the size of the array.
    return array(typecode, range(n))


class TreeModel:
    """A loaded tree ensemble. `predict(x, proba)` -> label, filling `proba`; no allocation."""

    def __init__(self, model_id, feature_spec, n_classes, offsets, shifts, roots, feature, threshold,
                 right, leaves, viper=True):
        self.model_id = model_id
        self.kind = blob.KIND_TREES
        self.feature_spec = feature_spec
        self.n_features = len(shifts)
        self.n_classes = n_classes
        self.n_trees = len(roots)
        self.n_nodes = len(feature)
        self.viper = bool(viper) and _predict_viper is not None
        self._offsets = offsets
        self._shifts = shifts
        self._roots = roots
        self._feature = feature
        self._threshold = threshold
        self._right = right
        self._leaves = leaves
        self._q = _alloc("H", self.n_features)
        self._acc = _alloc("i", n_classes)
        self._run = _predict_viper if self.viper else _predict_py

    def predict(self, x, proba):
        """Label (0..n_classes-1) of the features `x`, an array('i') of n_features fixed-point
        values; writes the u8 class probabilities (x/255) into the bytearray `proba`."""
        if len(x) < self.n_features or len(proba) < self.n_classes:
            raise ValueError("x needs n_features items, proba n_classes")
        return self._run(x, self._offsets, self._shifts, self._q, self.n_features, self._feature,  # pyright: ignore[reportArgumentType] (viper takes buffers)
                         self._threshold, self._right, self._roots, self.n_trees, self._leaves,
                         self._acc, proba, self.n_classes)  # pyright: ignore[reportArgumentType] (viper takes buffers)


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
        if spec not in (feature_spec if isinstance(feature_spec, tuple) else (feature_spec,)) or nf != n_features:
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
        return _read_trees(f, model_id, spec, offsets, shifts, n_classes, payload_length, viper)


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


def _read_trees(f, model_id, feature_spec, offsets, shifts, n_classes, payload_length, viper):
    counts = _fill(f, bytearray(blob.TREES_HEADER_SIZE), blob.TREES_HEADER_SIZE)
    n_trees, n_nodes, n_leaves, _ = blob.parse_trees_header(counts)
    if payload_length != blob.trees_payload_size(n_trees, n_nodes, n_leaves, n_classes):
        raise ModelError(E_TRUNCATED)
    if not (n_trees and n_nodes and n_leaves and n_classes):
        raise ModelError(E_UNSUPPORTED_KIND)
    gc.collect()  # the big arrays go into one defragmented heap
    roots = _fill(f, _alloc("H", n_trees), 2 * n_trees)
    feature = _fill(f, bytearray(n_nodes), n_nodes)
    threshold = _fill(f, _alloc("H", n_nodes), 2 * n_nodes)
    right = _fill(f, _alloc("H", n_nodes), 2 * n_nodes)
    leaves = _fill(f, bytearray(n_leaves * n_classes), n_leaves * n_classes)
    if not _runnable(len(shifts), roots, feature, right, n_leaves):
        raise ModelError(E_UNSUPPORTED_KIND)
    return TreeModel(model_id, feature_spec, n_classes, offsets, shifts, roots, feature, threshold,
                     right, leaves, viper)


def _runnable(n_features, roots, feature, right, n_leaves):
    # The hot loops do not bounds-check, so the structure is checked once here: every index
    # in range, and every child after its parent, so each walk ends at a leaf.
    n_nodes = len(feature)
    for t in range(len(roots)):
        if roots[t] >= n_nodes:
            return False
    for i in range(n_nodes):
        if feature[i] == _LEAF:
            if right[i] >= n_leaves:
                return False
        elif feature[i] >= n_features or i + 1 >= n_nodes or not i < right[i] < n_nodes:
            return False
    return True

"""Quantized tree-ensemble runtime: what a loaded model needs to predict (the loader, which
checks a signed model blob and builds the model, is watch.loader; int8 MLPs run in watch.mlp).

The loaded model keeps only what is small in RAM (counts, scaling, vote sums, roots) and its
file open: each prediction reads every tree's nodes from flash into one buffer sized for the
largest tree (`seek` + `readinto`) and walks them there. `TreeModel.predict` allocates
nothing; it runs a viper fast path or, where viper is missing (CPython), a plain-Python twin
with identical results. A model whose file no longer holds what the loader checked predicts a
negative reason. This module stays imported while a model runs; the loader's is dropped after
each load (watch.app), so a small watch keeps only the runtime's RAM state.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host runs this module against its own emulation
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import sys
from array import array

# The blob constants the hot loops use, private so MicroPython inlines them into viper code
# (a module global would reach viper as an object); equal to watch.blob's, a test checks.
_BIAS = const(32768)  # blob.BIAS
_X_MIN = const(-0x20000000)  # blob.X_MIN
_X_MAX = const(0x1FFFFFFF)  # blob.X_MAX
_KIND_TREES = const(1)  # blob.KIND_TREES
# the reason codes of watch.blob a prediction returns (private there too, out of its dictionary)
_E_TRUNCATED = const(1)
_E_BAD_CRC = const(4)
_ID_AT = const(16)  # the header's model id: read again before every prediction
_HEAD = const(8)  # words of the tree array's header (below)


# What sign-extends an int32 read through a zero-extending ptr32 (see _forest): the
# word size minus 32 (big ints count as 64-bit words).
_SIGN_SHIFT = 32 if sys.maxsize > 0xFFFFFFFF else 0


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
        Negative: the reason the file no longer holds the model the loader checked."""
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

    `x` is an array('i') holding the `n_features` values the caller promised the loader (which
    refuses a blob for another count); the fast path does not re-check its length. `proba`
    is a bytearray of at least n_classes, checked (IndexError before anything is written):
    the u8 class probabilities (x/255) are written into it. The nodes are read from the
    model's file at each prediction: a negative label is the reason (-E_TRUNCATED, -E_BAD_CRC)
    why the file no longer holds the model the loader checked (rewritten, cut short, closed or
    gone); `close` releases the file.
    """

    def __init__(self, model_id, feature_spec, n_features, n_classes, m, io, n_inner, viper=True, window=(0, 0, 0)):
        self.model_id = model_id
        self.kind = _KIND_TREES
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

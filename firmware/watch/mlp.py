"""Int8 multilayer perceptron runtime: TFLite's int8 FullyConnected arithmetic on the watch.

Each layer is TFLite's reference `FullyConnected` for int8 (tensorflow/lite/kernels/internal/
reference/integer_ops/fully_connected.h): int32 accumulation of `w * (a - in_zp)` plus an int32
bias, requantized with `MultiplyByQuantizedMultiplier` (a Q31 fixed-point multiplier and a
right shift, in TFLite's single-rounding form, the one ai-edge-litert runs), plus the output zero point, clamped to the fused activation.
The watch and a .tflite file of the same model (`wears.tflite_export`) give identical int8
outputs. Payload layout: docs/model-blob.md, kind 2.

The 64-bit product of the Q31 multiplication is built from 15-bit limbs, so every intermediate
fits a 32-bit machine word: the viper path is exact on a 32-bit watch, and the loader bounds
the accumulator (|acc| < 2**30) so the limbs suffice. `predict` allocates nothing.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host imports this module too
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

from array import array

from watch import blob

# Mirrors of watch.blob's constants for the viper code (a test checks they agree).
_X_MIN = const(-0x20000000)
_X_MAX = const(0x1FFFFFFF)
_ROW = const(11)  # u16 entries per layer in the layer table, see _table_row
_ACC_LIMIT = const(0x3FFFFFFF)  # |accumulator| bound that keeps the limb arithmetic exact


def requantize(acc, m, right):
    """TFLite's MultiplyByQuantizedMultiplier(acc, m, -right), single rounding: acc * m / 2**(31
    + right) rounded half up, as one 64-bit product, add and arithmetic shift."""
    total = 31 + right
    return (acc * m + (1 << (total - 1))) >> total


def _predict_py(x, off, shift, nf, layers, n_layers, w, bias, a, b, table, proba):
    # The reference. Activations and weights are stored offset by 128 as u8 (v + 128), the
    # biases with the zero-point terms folded in at load (see `read`), so the inner loop is a
    # plain sum of u8 products: sum (w+128)(a+128) - 128 * sum (a+128) + bias' equals
    # sum w * (a - in_zp) + bias exactly.
    for i in range(nf):
        v = x[i]
        if v < _X_MIN:
            v = _X_MIN
        elif v > _X_MAX:
            v = _X_MAX
        q = (v - off[i]) >> shift[i]
        if q < -128:
            q = -128
        elif q > 127:
            q = 127
        a[i] = q + 128
    src, dst = a, b
    n_out = 0
    for layer in range(n_layers):
        r = layer * _ROW
        n_in = layers[r]  # one name per line: unpacking more than 3 items builds a tuple
        n_out = layers[r + 1]
        w_at = layers[r + 2]
        b_at = layers[r + 3]
        out_zp = layers[r + 5] - 128
        lo = layers[r + 6] - 128
        hi = layers[r + 7] - 128
        right = layers[r + 8]
        m = (layers[r + 10] << 15) | layers[r + 9]
        sa = 0
        for i in range(n_in):
            sa += src[i]
        for o in range(n_out):
            acc = bias[b_at + o] - (sa << 7)
            row = w_at + o * n_in
            for i in range(n_in):
                acc += w[row + i] * src[i]
            acc = requantize(acc, m, right) + out_zp
            if acc < lo:
                acc = lo
            elif acc > hi:
                acc = hi
            dst[o] = acc + 128
        src, dst = dst, src
    return _vote_py(src, n_out, table, proba)


def _vote_py(logits, n, table, proba):
    # Label = the largest logit (lowest class on ties); probabilities from the exp table:
    # e_c = table[max - logit_c], p_c = e_c * 255 / sum(e) rounded half up.
    # (Logits are stored + 128, so their differences are those of the int8 values.)
    best = 0
    for c in range(n):
        if logits[c] > logits[best]:
            best = c
    top = logits[best]
    total = 0
    for c in range(n):
        total += table[top - logits[c]]
    for c in range(n):
        proba[c] = (table[top - logits[c]] * 255 + (total >> 1)) // total
    return best


_predict_viper = None  # pyright: ignore[reportAssignmentType] (no viper: the plain loop runs)
try:
    import micropython

    @micropython.viper
    def _predict_viper(x: ptr16, off: ptr16, shift: ptr8, nf: int, layers: ptr16, n_layers: int,  # noqa: F821
                       w: ptr8, bias: ptr16, a: ptr8, b: ptr8, table: ptr16, proba: ptr8) -> int:  # noqa: F821
        # Same steps as _predict_py. int32 values are read as two 16-bit halves (ptr32 loads
        # zero-extend on 64-bit ports); the 64-bit product is built from 15-bit limbs.
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
            q = (v - ((hi << 16) | int(off[2 * i]))) >> int(shift[i])
            if q < -128:
                q = -128
            elif q > 127:
                q = 127
            a[i] = q + 128
        src = a
        dst = b
        n_out = 0
        for layer in range(n_layers):
            r = layer * _ROW
            n_in = int(layers[r])
            n_out = int(layers[r + 1])
            w_at = int(layers[r + 2])
            b_at = int(layers[r + 3])
            out_zp = int(layers[r + 5]) - 128
            lo = int(layers[r + 6]) - 128
            top = int(layers[r + 7]) - 128
            right = int(layers[r + 8])
            m_lo = int(layers[r + 9])
            m_hi = int(layers[r + 10])
            # requantize: floor((acc * m + 2**(30 + right)) / 2**31) >> right, the 2**(30 + right)
            # split into k (added below 2**31) and c1 (added after the division).
            # k is kept as 15-bit halves (a literal of 2**30 or more is an object on 32-bit
            # ports): k_pos = 2**30 when right is 0, else 0; for a negative accumulator the
            # floor needs -floor((|acc| * m + 2**31 - 1 - k_pos) / 2**31).
            kp_hi = 32768 if right == 0 else 0
            kn_hi = 65535 - kp_hi
            c1 = (1 << (right - 1)) if right else 0
            sa = 0
            for i in range(n_in):
                sa += int(src[i])
            sa <<= 7
            for o in range(n_out):
                k = 2 * (b_at + o)
                hi = int(bias[k + 1])
                if hi >= 32768:
                    hi -= 65536
                acc = ((hi << 16) | int(bias[k])) - sa
                row = w_at + o * n_in
                for i in range(n_in):
                    acc += int(w[row + i]) * int(src[i])
                neg = acc < 0
                mag = -acc if neg else acc
                al = mag & 0x7FFF
                ah = mag >> 15
                s0 = al * m_lo + (0x7FFF if neg else 0)
                m1 = ah * m_lo
                m2 = al * m_hi
                s1 = (m1 & 0x7FFF) + (m2 & 0x7FFF) + (s0 >> 15) + (kn_hi if neg else kp_hi)
                h = ah * m_hi
                f = (h >> 1) + (((h & 1) + (m1 >> 15) + (m2 >> 15) + (s1 >> 15)) >> 1)
                if neg:
                    f = -f
                acc = ((f + c1) >> right) + out_zp
                if acc < lo:
                    acc = lo
                elif acc > top:
                    acc = top
                dst[o] = acc + 128
            t8 = src
            src = dst
            dst = t8
        best = 0
        for c in range(n_out):
            if int(src[c]) > int(src[best]):
                best = c
        peak = int(src[best])
        total = 0
        for c in range(n_out):
            total += int(table[peak - int(src[c])])
        for c in range(n_out):
            proba[c] = (int(table[peak - int(src[c])]) * 255 + (total >> 1)) // total
        return best
except ImportError:  # CPython
    pass


def _table_row(layers, i, n_in, n_out, w_at, b_at, in_zp, out_zp, act_min, act_max, shift, multiplier):
    # One layer's u16 entries: counts, offsets into the weight and bias tables, the int8 zero
    # points and activation bounds biased by 128, the right shift, the Q31 multiplier as a
    # 15-bit low limb and a 16-bit high limb (what the limb arithmetic consumes).
    r = i * _ROW
    for k, v in enumerate((n_in, n_out, w_at, b_at, in_zp + 128, out_zp + 128, act_min + 128, act_max + 128,
                           -shift, multiplier & 0x7FFF, multiplier >> 15)):
        layers[r + k] = v


class MLPModel:
    """A loaded int8 MLP. `predict(x, proba)` -> label, filling `proba`; no allocation."""

    def __init__(self, model_id, feature_spec, n_classes, offsets, shifts, layers, n_layers, weights, biases,
                 table, width, viper=True):
        self.model_id = model_id
        self.kind = blob.KIND_MLP_INT8
        self.feature_spec = feature_spec
        self.n_features = len(shifts)
        self.n_classes = n_classes
        self.n_layers = n_layers
        self.viper = bool(viper) and _predict_viper is not None
        self._offsets = offsets
        self._shifts = shifts
        self._layers = layers
        self._weights = weights
        self._biases = biases
        self._table = table
        self._a = bytearray(width)
        self._b = bytearray(width)
        self._run = _predict_viper if self.viper else _predict_py

    def predict(self, x, proba):
        """Label (0..n_classes-1) of the features `x`, an array('i') of n_features fixed-point
        values; writes the u8 class probabilities (x/255) into the bytearray `proba`."""
        if len(x) < self.n_features or len(proba) < self.n_classes:
            raise ValueError("x needs n_features items, proba n_classes")
        return self._run(x, self._offsets, self._shifts, self.n_features, self._layers, self.n_layers,
                         self._weights, self._biases, self._a, self._b, self._table, proba)  # pyright: ignore[reportArgumentType] (viper takes buffers)

    def logits(self):
        """The int8 outputs of the last `predict` (for tests and the host's comparisons)."""
        last = self._b if self.n_layers % 2 else self._a
        return [v - 128 for v in last[:self.n_classes]]


def read(f, model_id, feature_spec, quant, n_classes, payload_length, viper, fail, window=(0, 0, 0)):
    """The MLPModel whose payload `f` is positioned at (after the quantization table `quant`,
    its raw bytes). `fail(reason)` raises the loader's error; every bound the hot loop relies
    on is checked. `window`: the blob's (window_s, step_s, baseline_windows)."""
    import struct
    from watch.blob import E_TRUNCATED, E_UNSUPPORTED_KIND

    nf = len(quant) // blob.QUANT_ENTRY_SIZE
    offsets = array("i", quant[:4 * nf])
    shifts = bytearray(quant[4 * nf:])
    head = bytearray(blob.MLP_HEADER_SIZE)
    if payload_length < blob.MLP_HEADER_SIZE or f.readinto(head) != blob.MLP_HEADER_SIZE:
        fail(E_TRUNCATED)
    n_layers = head[0]
    if not 1 <= n_layers <= blob.MLP_MAX_LAYERS:
        fail(E_UNSUPPORTED_KIND)
    rec = bytearray(blob.MLP_LAYER_SIZE * n_layers)
    if f.readinto(rec) != len(rec):
        fail(E_TRUNCATED)
    layers = array("H", bytes(2 * _ROW * n_layers))
    n_w = n_b = 0
    width = nf
    prev = nf
    for i in range(n_layers):
        n_in, n_out, in_zp, out_zp, lo, hi, shift, _, mult = struct.unpack_from(blob.MLP_LAYER, rec,
                                                                                 i * blob.MLP_LAYER_SIZE)
        if (n_in != prev or not n_out or shift > 0 or shift < -31 or lo > hi or not 0 <= mult < 0x80000000
                or n_w + n_in * n_out > 0xFFFF):
            fail(E_UNSUPPORTED_KIND)
        _table_row(layers, i, n_in, n_out, n_w, n_b, in_zp, out_zp, lo, hi, shift, mult)
        n_w += n_in * n_out
        n_b += n_out
        width = max(width, n_out)
        prev = n_out
    if prev != n_classes:
        fail(E_UNSUPPORTED_KIND)
    if payload_length != blob.mlp_payload_size(n_layers, n_w, n_b):
        fail(E_TRUNCATED)
    weights = bytearray(n_w)
    biases = array("i", bytes(4 * n_b))
    table = array("H", bytes(2 * blob.MLP_TABLE_SIZE))
    for buf, n in ((weights, n_w), (biases, 4 * n_b), (table, 2 * blob.MLP_TABLE_SIZE)):
        if f.readinto(buf) != n:
            fail(E_TRUNCATED)
    for i in range(n_layers):
        r = i * _ROW
        n_in, n_out, w_at, b_at = layers[r], layers[r + 1], layers[r + 2], layers[r + 3]
        c = layers[r + 4]  # input zero point + 128
        for o in range(n_out):
            if abs(biases[b_at + o]) + n_in * 128 * 255 > _ACC_LIMIT:
                fail(E_UNSUPPORTED_KIND)  # the accumulator bound of the limb arithmetic
            # Weights to u8 (w + 128), and the zero-point terms of
            # sum (w+128-128)(a+128-c) = sum (w+128)(a+128) - 128 sum (a+128) - c sum (w+128) + 128 c n_in
            # that do not depend on the input into the bias.
            row = w_at + o * n_in
            sw = 0
            for k in range(row, row + n_in):
                weights[k] ^= 0x80
                sw += weights[k]
            biases[b_at + o] += 128 * c * n_in - c * sw
    if table[0] == 0:
        fail(E_UNSUPPORTED_KIND)  # the top class's weight: a zero would divide by zero
    model = MLPModel(model_id, feature_spec, n_classes, offsets, shifts, layers, n_layers, weights, biases, table,
                     width, viper)
    model.window_s, model.step_s, model.baseline_windows = window
    return model

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

The loaded model keeps what is small in one bytearray (`_Net`) and its file open: the weights
and the exp table stay in flash, each prediction reads one weight row at a time into a buffer
the width of the widest layer. The array is laid out for the loop (all offsets in bytes,
little-endian, each part aligned to its item size):

    u16 x 12 header: n_features, n_layers, n_classes, sign shift (see watch.model), offsets at,
        shifts at, the exp table's offset in the file, activations a at, activations b at,
        model id (low, high half), the weight-row buffer at
    u16 x 12 per layer: n_in, n_out, the weights' offset in the file, biases at, input zero
        point + 128, output zero point + 128, activation min + 128, max + 128, right shift,
        multiplier low 15 bits, high 16 bits, 0
    biases (i32, the zero-point terms folded in), offsets - X_MIN (u32), the buffers the file is
    read into (the model id, 4 bytes; a weight row, the widest n_in rounded up to 4; an exp
    table entry, 2 bytes), shifts (u8), activations a and b (u8, value + 128)

A weight row is read as the file holds it (int8) and turned into u8 (w + 128) in the buffer.
With viper, the array's own `predict` is the fast path, as for the trees.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host imports this module too
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

from watch.model import _SIGN_SHIFT, Runtime, _same_model

# Mirrors of watch.blob's constants for the viper code (a test checks they agree).
_X_MIN = const(-0x20000000)
_X_MAX = const(0x1FFFFFFF)
_KIND_MLP_INT8 = const(2)
_HEAD = const(24)  # bytes of the array's header
_E_TRUNCATED = const(1)  # watch.protocol's reason codes (a test checks they agree)
_E_BAD_CRC = const(4)
_ROW = const(24)  # bytes per layer in the layer table
_ACC_LIMIT = const(0x3FFFFFFF)  # |accumulator| bound that keeps the limb arithmetic exact


def requantize(acc, m, right):
    """TFLite's MultiplyByQuantizedMultiplier(acc, m, -right), single rounding: acc * m / 2**(31
    + right) rounded half up, as one 64-bit product, add and arithmetic shift."""
    total = 31 + right
    return (acc * m + (1 << (total - 1))) >> total


def _u16(m, at):
    return m[at] | (m[at + 1] << 8)


class _Net(bytearray):
    """The MLP runtime's array; with viper its `predict` is the fast path."""



_mlp = None  # pyright: ignore[reportAssignmentType] (no viper: the plain loop runs)
try:
    import micropython

    @micropython.viper
    def _mlp(m: ptr8, x: ptr32, ps, io) -> int:  # noqa: F821
        # Same steps as watch.mlp_plain.forward on the same array. Viper keeps the first two locals in
        # registers on x64 (three on Thumb): the multiply-accumulate loop walks `m` over the
        # activations and `x` over the weight row (x is read first, for the inputs; the array's
        # base is kept in `base`). int32 values are sign-extended with the loader's sign
        # shift; the 64-bit product is built from 15-bit limbs. The model id, the weight rows
        # and the exp table entries are read from the model's file (io: the file, a view of the
        # row buffer per layer, the entry's and the id's views); a file that no longer holds
        # the model gives a negative reason.
        h = ptr16(m)  # noqa: F821
        base = int(m)
        nf = int(h[0])
        n_layers = int(h[1])
        nc = int(h[2])
        ps[nc - 1]  # proba is written: too short raises IndexError before anything is
        e = int(h[3])
        off = ptr32(base + int(h[4]))  # noqa: F821
        sh = ptr8(base + int(h[5]))  # noqa: F821
        src = base + int(h[7])
        dst = base + int(h[8])
        row = base + int(h[11])
        a = ptr8(src)  # noqa: F821
        span = uint(_X_MAX - _X_MIN)  # noqa: F821
        for k in range(nf):
            v = (int(x[k]) << e) >> e
            if uint(v - _X_MIN) > span:  # noqa: F821
                v = _X_MIN if v < 0 else _X_MAX
            v = (v - _X_MIN - int(off[k])) >> int(sh[k])
            if v < -128:
                v = -128
            elif v > 127:
                v = 127
            a[k] = v + 128
        v = int(_same_model(io, int(h[9]), int(h[10])))  # pyright: ignore[reportOptionalCall]
        if v:
            return v
        f = io[0]
        views = io[1]
        flip = 0x8080
        flip |= flip << 16  # int8 -> u8 (w + 128), four at a time (0x80808080 written out is an object)
        n_out = 0
        for layer in range(n_layers):
            r = ptr16(base + _HEAD + _ROW * layer)  # noqa: F821
            n_in = int(r[0])
            n_out = int(r[1])
            bias = ptr32(base + int(r[3]))  # noqa: F821
            out_zp = int(r[5]) - 128
            lo = int(r[6]) - 128
            top = int(r[7]) - 128
            right = int(r[8])
            m_lo = int(r[9])
            m_hi = int(r[10])
            # requantize: floor((acc * mult + 2**(30 + right)) / 2**31) >> right, the
            # 2**(30 + right) split into k (added below 2**31) and c1 (added after the
            # division). k is kept as 15-bit halves (a literal of 2**30 or more is an object
            # on 32-bit ports): k_pos = 2**30 when right is 0, else 0; for a negative
            # accumulator the floor needs -floor((|acc| * m + 2**31 - 1 - k_pos) / 2**31).
            kp_hi = 32768 if right == 0 else 0
            kn_hi = 65535 - kp_hi
            c1 = (1 << (right - 1)) if right else 0
            a = ptr8(src)  # noqa: F821
            sa = 0
            for k in range(n_in):
                sa += int(a[k])
            sa <<= 7
            d = ptr8(dst)  # noqa: F821
            buf = views[layer]
            f.seek(int(r[2]))
            for o in range(n_out):
                if int(f.readinto(buf)) != n_in:
                    return -_E_TRUNCATED
                x = ptr32(row)  # noqa: F821
                for k in range((n_in + 3) >> 2):
                    x[k] = int(x[k]) ^ flip
                acc = ((int(bias[o]) << e) >> e) - sa
                m = ptr8(src)  # noqa: F821
                end = src + n_in
                while int(m) + 4 <= end:  # four products per turn
                    acc += (int(ptr8(x)[0]) * int(m[0]) + int(ptr8(x)[1]) * int(m[1])  # noqa: F821
                            + int(ptr8(x)[2]) * int(m[2]) + int(ptr8(x)[3]) * int(m[3]))  # noqa: F821
                    x = ptr32(int(x) + 4)  # noqa: F821
                    m = ptr8(int(m) + 4)  # noqa: F821
                while int(m) < end:
                    acc += int(ptr8(x)[0]) * int(m[0])  # noqa: F821
                    x = ptr32(int(x) + 1)  # noqa: F821
                    m = ptr8(int(m) + 1)  # noqa: F821
                neg = acc < 0
                mag = -acc if neg else acc
                al = mag & 0x7FFF
                ah = mag >> 15
                s0 = al * m_lo + (0x7FFF if neg else 0)
                m1 = ah * m_lo
                m2 = al * m_hi
                s1 = (m1 & 0x7FFF) + (m2 & 0x7FFF) + (s0 >> 15) + (kn_hi if neg else kp_hi)
                hh = ah * m_hi
                f1 = (hh >> 1) + (((hh & 1) + (m1 >> 15) + (m2 >> 15) + (s1 >> 15)) >> 1)
                if neg:
                    f1 = -f1
                acc = ((f1 + c1) >> right) + out_zp
                if acc < lo:
                    acc = lo
                elif acc > top:
                    acc = top
                d[o] = acc + 128
            t = src
            src = dst
            dst = t
        table = int(h[6])
        ent = io[2]
        entry = ptr16(ent)  # noqa: F821
        out = ptr8(src)  # noqa: F821
        best = 0
        for c in range(n_out):
            if int(out[c]) > int(out[best]):
                best = c
        peak = int(out[best])
        total = 0
        for c in range(n_out):
            f.seek(table + 2 * (peak - int(out[c])))
            if int(f.readinto(ent)) != 2:
                return -_E_TRUNCATED
            total += int(entry[0])
        if total == 0:
            return -_E_BAD_CRC  # the table's first entry is not 0 in the blob load checked
        proba = ptr8(ps)  # noqa: F821
        for c in range(n_out):
            f.seek(table + 2 * (peak - int(out[c])))
            if int(f.readinto(ent)) != 2:
                return -_E_TRUNCATED
            proba[c] = (int(entry[0]) * 255 + (total >> 1)) // total
        return best

    _Net.predict = _mlp  # pyright: ignore[reportAttributeAccessIssue] (a viper function, not None)
except ImportError:  # CPython
    pass


class MLPModel(Runtime):
    """A loaded int8 MLP. `predict(x, proba)` -> label, filling `proba`; no allocation.
    `x` holds the n_features values promised to `load`; `proba` (written) is checked.
    Its attributes are those of watch.model.TreeModel, and `n_layers`; like a tree model it
    reads its weights from its file at each prediction (a negative label: the file no longer
    holds the model `load` checked) and `close` releases the file."""

    def __init__(self, model_id, feature_spec, n_classes, m, io, viper=True, window=(0, 0, 0)):
        self.model_id = model_id
        self.kind = _KIND_MLP_INT8
        self.feature_spec = feature_spec
        self.n_features = _u16(m, 0)
        self.n_classes = n_classes
        self.n_layers = _u16(m, 2)
        self.window_s, self.step_s, self.baseline_windows = window  # the blob's window settings
        self.viper = bool(viper) and _mlp is not None
        self._m = m
        self._io = io
        if self.viper:
            self._run = m.predict  # pyright: ignore[reportAttributeAccessIssue] (the array's viper method)
        else:  # the plain twin lives in its own module: a viper port never loads it
            from watch.mlp_plain import forward

            self._run = forward
            self._plain = memoryview(m)  # indexes like a plain bytearray (a subclass's items are slower)

    def logits(self):
        """The int8 outputs of the last `predict` (for tests and the host's comparisons)."""
        m = self._m
        last = _u16(m, 16 if self.n_layers % 2 else 14)
        return [m[last + c] - 128 for c in range(self.n_classes)]


def _align(at, size):
    return (at + size - 1) // size * size


def read(f, model_id, feature_spec, quant, n_classes, payload_length, viper, fail, window=(0, 0, 0)):
    """The MLPModel whose payload `f` is positioned at (after the quantization table `quant`,
    its raw bytes). `fail(reason)` raises the loader's error; every bound the hot loop relies
    on is checked. The biases are read into the model's array; the weights are streamed once
    (their row sums fold the zero points into the biases) and stay in the file `f`, which the
    model keeps open."""
    import struct
    from watch import blob  # the loader's: dropped with it after the load (watch.app)
    from watch.blob import E_TRUNCATED, E_UNSUPPORTED_KIND

    base = f.tell()
    nf = len(quant) // blob.QUANT_ENTRY_SIZE
    head = bytearray(blob.MLP_HEADER_SIZE)
    if payload_length < blob.MLP_HEADER_SIZE or f.readinto(head) != blob.MLP_HEADER_SIZE:
        fail(E_TRUNCATED)
    n_layers = head[0]
    if not 1 <= n_layers <= blob.MLP_MAX_LAYERS:
        fail(E_UNSUPPORTED_KIND)
    rec = bytearray(blob.MLP_LAYER_SIZE * n_layers)
    if f.readinto(rec) != len(rec):
        fail(E_TRUNCATED)
    n_w = n_b = 0
    width = prev = nf
    for i in range(n_layers):
        n_in, n_out, _, _, lo, hi, shift, _, mult = struct.unpack_from(blob.MLP_LAYER, rec, i * blob.MLP_LAYER_SIZE)
        if (n_in != prev or not n_out or shift > 0 or shift < -31 or lo > hi or not 0 <= mult < 0x80000000
                or n_w + n_in * n_out > 0xFFFF):
            fail(E_UNSUPPORTED_KIND)
        n_w += n_in * n_out
        n_b += n_out
        width = max(width, n_out)
        prev = n_out
    if prev != n_classes:
        fail(E_UNSUPPORTED_KIND)
    if payload_length != blob.mlp_payload_size(n_layers, n_w, n_b):
        fail(E_TRUNCATED)
    w_file = f.tell()
    table_file = w_file + n_w + 4 * n_b
    bias_at = _HEAD + _ROW * n_layers
    off_at = bias_at + 4 * n_b
    id_at = off_at + 4 * nf
    row_at = id_at + 4
    e_at = row_at + _align(width, 4)
    sh_at = e_at + 2
    a_at = sh_at + nf
    b_at = a_at + width
    size = _align(b_at + width, 4)
    if size > 0xFFFF or table_file + 2 * blob.MLP_TABLE_SIZE > 0xFFFF:
        fail(E_UNSUPPORTED_KIND)
    m = _Net(size)
    view = memoryview(m)
    ent = view[e_at:e_at + 2]
    f.seek(table_file - 4 * n_b)
    if f.readinto(view[bias_at:off_at]) != 4 * n_b or f.readinto(ent) != 2:
        fail(E_TRUNCATED)
    if _u16(m, e_at) == 0:
        fail(E_UNSUPPORTED_KIND)  # the top class's weight: a zero would divide by zero
    for k, v in enumerate((nf, n_layers, n_classes, _SIGN_SHIFT, off_at, sh_at, table_file, a_at, b_at,
                           model_id & 0xFFFF, model_id >> 16, row_at)):
        struct.pack_into("<H", m, 2 * k, v)
    for i in range(nf):
        struct.pack_into("<I", m, off_at + 4 * i, struct.unpack_from("<i", quant, 4 * i)[0] - _X_MIN)
        m[sh_at + i] = quant[4 * nf + i]
    views = []
    w = w_file
    b = bias_at
    f.seek(w_file)
    for i in range(n_layers):
        n_in, n_out, in_zp, out_zp, lo, hi, shift, _, mult = struct.unpack_from(blob.MLP_LAYER, rec,
                                                                                i * blob.MLP_LAYER_SIZE)
        struct.pack_into("<12H", m, _HEAD + _ROW * i, n_in, n_out, w, b, in_zp + 128, out_zp + 128, lo + 128,
                         hi + 128, -shift, mult & 0x7FFF, mult >> 15, 0)
        views.append(view[row_at:row_at + n_in])
        c = in_zp + 128
        for o in range(n_out):
            bias = struct.unpack_from("<i", m, b + 4 * o)[0]
            if abs(bias) + n_in * 128 * 255 > _ACC_LIMIT:
                fail(E_UNSUPPORTED_KIND)  # the accumulator bound of the limb arithmetic
            # The zero-point terms of
            # sum (w+128-128)(a+128-c) = sum (w+128)(a+128) - 128 sum (a+128) - c sum (w+128) + 128 c n_in
            # that do not depend on the input go into the bias.
            if f.readinto(views[i]) != n_in:
                fail(E_TRUNCATED)
            sw = 0
            for k in range(row_at, row_at + n_in):
                sw += m[k] ^ 0x80
            struct.pack_into("<i", m, b + 4 * o, bias + 128 * c * n_in - c * sw)
        w += n_in * n_out
        b += 4 * n_out
    io = (f, tuple(views), ent, view[id_at:id_at + 4])
    return MLPModel(model_id, feature_spec, n_classes, m, io, viper, window)

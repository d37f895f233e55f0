"""The int8 MLP runtime's plain-Python path: the reference the viper fast path of watch.mlp
equals bit for bit, run where viper is missing (and on the host, in CPython). Imported only
then, so a viper port keeps it out of its heap. The array's layout: watch.mlp."""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

from watch.mlp import _u16, requantize

# Mirrors of watch.blob's and watch.mlp's constants (a test checks they agree).
_X_MIN = const(-0x20000000)
_X_MAX = const(0x1FFFFFFF)
_HEAD = const(24)
_ROW = const(24)
_E_TRUNCATED = const(1)
_E_BAD_CRC = const(4)
_ID_AT = const(16)


def _i32(m, at):
    v = m[at] | (m[at + 1] << 8) | (m[at + 2] << 16) | (m[at + 3] << 24)
    return v - 0x100000000 if v & 0x80000000 else v


def forward(m, x, proba, io):
    # The reference. Activations are stored offset by 128 as u8 (v + 128), and so is each
    # weight row once read from the file (io: the file, a view of the row buffer per layer,
    # the exp entry's and the model id's views), the biases with the zero-point terms folded
    # in at load (see watch.mlp.read), so the inner loop is a plain sum of u8 products:
    # sum (w+128)(a+128) - 128 * sum (a+128) + bias' equals sum w * (a - in_zp) + bias exactly.
    # A file that no longer holds the model gives a negative reason.
    nf = _u16(m, 0)
    n_layers = _u16(m, 2)
    off = _u16(m, 8)
    sh = _u16(m, 10)
    src = _u16(m, 14)
    dst = _u16(m, 16)
    row = _u16(m, 22)
    for i in range(nf):
        v = x[i]
        if v < _X_MIN:
            v = _X_MIN
        elif v > _X_MAX:
            v = _X_MAX
        q = (v - _X_MIN - _i32(m, off + 4 * i)) >> m[sh + i]
        if q < -128:
            q = -128
        elif q > 127:
            q = 127
        m[src + i] = q + 128
    f = io[0]
    f.seek(_ID_AT)
    if f.readinto(io[3]) != 4:
        return -_E_TRUNCATED
    if _u16(m, 18) != _u16(io[3], 0) or _u16(m, 20) != _u16(io[3], 2):
        return -_E_BAD_CRC  # another blob in its place
    n_out = 0
    for layer in range(n_layers):
        r = _HEAD + _ROW * layer
        n_in = _u16(m, r)
        n_out = _u16(m, r + 2)
        w_at = _u16(m, r + 4)
        b_at = _u16(m, r + 6)
        out_zp = m[r + 10] - 128
        lo = m[r + 12] - 128
        hi = m[r + 14] - 128
        right = m[r + 16]
        mult = (_u16(m, r + 20) << 15) | _u16(m, r + 18)
        sa = 0
        for i in range(n_in):
            sa += m[src + i]
        buf = io[1][layer]
        f.seek(w_at)
        for o in range(n_out):
            if f.readinto(buf) != n_in:
                return -_E_TRUNCATED
            acc = _i32(m, b_at + 4 * o) - (sa << 7)
            for i in range(n_in):
                acc += (m[row + i] ^ 0x80) * m[src + i]
            acc = requantize(acc, mult, right) + out_zp
            if acc < lo:
                acc = lo
            elif acc > hi:
                acc = hi
            m[dst + o] = acc + 128
        src, dst = dst, src
    return _vote_py(m, src, n_out, _u16(m, 12), proba, f, io[2])


def _vote_py(m, logits, n, table, proba, f, ent):
    # Label = the largest logit (lowest class on ties); probabilities from the exp table (in
    # the file at `table`, read an entry at a time into `ent`): e_c = table[max - logit_c],
    # p_c = e_c * 255 / sum(e) rounded half up.
    # (Logits are stored + 128, so their differences are those of the int8 values.)
    best = 0
    for c in range(n):
        if m[logits + c] > m[logits + best]:
            best = c
    top = m[logits + best]
    total = 0
    for c in range(n):
        f.seek(table + 2 * (top - m[logits + c]))
        if f.readinto(ent) != 2:
            return -_E_TRUNCATED
        total += _u16(ent, 0)
    if not total:
        return -_E_BAD_CRC  # the table's first entry is not 0 in the blob load checked
    for c in range(n):
        f.seek(table + 2 * (top - m[logits + c]))
        if f.readinto(ent) != 2:
            return -_E_TRUNCATED
        proba[c] = (_u16(ent, 0) * 255 + (total >> 1)) // total
    return best

"""The tree runtime's plain-Python path: the reference the viper fast path of watch.model
equals bit for bit, run where viper is missing (and on the host, in CPython). Imported only
then, so a viper port keeps it out of its heap. The array's layout: watch.model."""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

# Mirrors of watch.blob's and watch.model's constants (a test checks they agree).
_BIAS = const(32768)
_X_MIN = const(-0x20000000)
_X_MAX = const(0x1FFFFFFF)
_E_TRUNCATED = const(1)
_E_BAD_CRC = const(4)
_ID_AT = const(16)
_HEAD = const(8)


def forest(m, x, proba, io):
    # The reference. Quantize x into q (biased by _BIAS so it compares unsigned), check the
    # file still holds the model (its id), read each tree's nodes from it into the node buffer
    # and walk them there, read the leaf row it ends in and add it into the vote sums, round
    # the mean into proba. A reference that leaves the tree's span or goes backwards, or a
    # leaf value above 255 (the file changed), ends it with a negative reason. Allocation-free
    # in MicroPython while values stay small ints (x is clamped to 30 bits).
    n_trees = m[0]
    nf = m[1]
    nc = m[2]
    first = m[4]
    base = m[5]
    half = (nc + 1) >> 1
    acc = _HEAD
    off = acc + 2 * half
    sh = off + 2 * nf
    q = sh + nf
    roots = q + nf
    for i in range(nf):
        v = x[i]
        if v < _X_MIN:
            v = _X_MIN
        elif v > _X_MAX:
            v = _X_MAX
        o = (m[off + 2 * i + 1] << 16) | m[off + 2 * i]  # offset - X_MIN: never negative
        d = ((v - _X_MIN - o) >> m[sh + i]) + _BIAS
        if d < 0:
            d = 0
        elif d > 0xFFFF:
            d = 0xFFFF
        m[q + i] = d
    f = io[0]  # (unpacking four items would allocate)
    nodes = io[1]
    leaf = io[2]
    ident = io[3]
    f.seek(_ID_AT)
    if f.readinto(ident) != 4:
        return -_E_TRUNCATED
    if ident[0] != m[6] or ident[1] != m[7]:
        return -_E_BAD_CRC  # another blob in its place
    for k in range(2 * half):
        m[acc + k] = 0
    row = 2 * half  # u16 per leaf row
    rows_end = first - 2 * n_trees
    for t in range(n_trees):
        r = m[roots + t]
        i = r
        if r >= first:
            lim = r + m[roots + n_trees + t] - 8  # the last node's offset
            f.seek(base + r)
            if f.readinto(nodes) < lim + 8 - r:
                return -_E_TRUNCATED
            while i >= first:
                k = i - r
                feature = nodes[k] | (nodes[k + 1] << 8)
                if feature >= nf:
                    return -_E_BAD_CRC
                if m[q + feature] <= nodes[k + 2] | (nodes[k + 3] << 8):
                    j = nodes[k + 4] | (nodes[k + 5] << 8)
                else:
                    j = nodes[k + 6] | (nodes[k + 7] << 8)
                if j >= first and (j <= i or j > lim or (j - i) & 7):
                    return -_E_BAD_CRC
                i = j
        if i < 8 or i + 2 * row > rows_end:
            return -_E_BAD_CRC
        f.seek(base + i)
        if f.readinto(leaf) != 2 * row:
            return -_E_TRUNCATED
        for c in range(row):
            if leaf[c] > 255:
                return -_E_BAD_CRC
        for c in range(nc):
            m[acc + c] += leaf[c]
    best = 0
    for c in range(nc):
        if m[acc + c] > m[acc + best]:
            best = c
        proba[c] = (m[acc + c] + (n_trees >> 1)) // n_trees
    return best

"""The tree runtime's plain-Python path: the reference the viper fast path of watch.model
equals bit for bit, run where viper is missing (and on the host, in CPython). Imported only
then, so a viper port keeps it out of its heap. The array's layout: watch.model."""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

# Mirrors of watch.blob's constants (a test checks they agree).
_BIAS = const(32768)
_X_MIN = const(-0x20000000)
_X_MAX = const(0x1FFFFFFF)


def forest(m, x, proba):
    # The reference. Quantize x into q (biased by _BIAS so it compares unsigned), walk every
    # tree, add each leaf row into the vote sums, round the mean into proba. Allocation-free
    # in MicroPython while values stay small ints (x is clamped to 30 bits).
    w = m[3]
    nf = m[w]
    nc = m[w + 1]
    roots = m[w + 2]
    half = (nc + 1) >> 1
    acc = w + 4
    off = acc + 2 * half
    sh = off + 2 * nf
    q = sh + nf
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
    for k in range(2 * half):
        m[acc + k] = 0
    nodes = 2 * (roots + m[0])  # references below it are leaf rows
    for t in range(m[0]):
        i = m[roots + t]
        while i >= nodes:
            k = i >> 1
            if m[m[k]] <= m[k + 1]:
                i = m[k + 2]
            else:
                i = m[k + 3]
        row = i >> 1
        for c in range(nc):
            m[acc + c] += m[row + c]
    n_trees = m[0]
    best = 0
    for c in range(nc):
        if m[acc + c] > m[acc + best]:
            best = c
        proba[c] = (m[acc + c] + (n_trees >> 1)) // n_trees
    return best

"""Per-sample loops of the feature engine (watch.features), for viper and as plain Python.

Each loop exists twice: for the viper emitter and as plain Python (CPython, and MicroPython
without viper); tests/firmware/mp_test_features.py holds them equal. They live apart from
watch.features so that compiling either module from source stays small.
Signed values are stored in the 32-bit state arrays as value + _OFF because viper's ptr32
loads are unsigned on 64-bit builds; every value stays inside 32 bits on every port.
"""

try:
    import micropython
    from micropython import const
    VIPER = True
except ImportError:  # CPython
    VIPER = False
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

_OFF = const(0x20000000)
_AXIS_LIMIT = const(16383)  # IMU axes clamp to +-16383 mg / 0.1 dps: 3 squares stay < 2^30
SUM_LIMIT = const(0x3FFFFFFF)  # sums of squares saturate here: the largest 32-bit small int

# The state layout is folded into watch.features too (copies of these `_` constants: a name
# this module exported would be a dictionary entry each). Detector state slots (array 'i'). The smoothed ring and both deques have RING = L + R + 2
# entries; dq holds the two deques: [0, RING) and [RING, 2 RING), of positions in the smoothed
# ring (sample index modulo RING; array 'H'; an entry is at most L + R + 1 samples old, so its
# age is the positions' difference modulo RING).
_D_P = const(0)  # samples seen since the stream's first
_D_A = const(1)  # sum of the raw ring
_D_VSUM = const(2)  # sum of the detrended ring + _OFF
_D_XPOS = const(3)
_D_VPOS = const(4)
_D_CAND = const(5)  # candidate peak + 1
_D_DQH = const(6)  # deque of the maxima of the last R values: head, tail
_D_DQT = const(7)
_D_EH = const(8)  # deque of the maxima of the last L + R + 1 values: head, tail
_D_ET = const(9)
_D_BEAT = const(10)  # beat + 1 when the run stopped at one
_D_ND = const(11)
_D_NS = const(12)
_D_C = const(13)
_D_K = const(14)
_D_R = const(15)
_D_L = const(16)
_D_RING = const(17)
_D_D = const(18)  # upstroke lag: u[p] = s[p] - s[p - D]
_D_UPOS = const(19)  # position in the ring of the last D smoothed values (after the NS detrended ones in vr)
_D_SIZE = const(20)
# IMU state slots.
_I_SUM = const(0)  # sum of magnitudes in the block
_I_JERK = const(1)  # sum of |magnitude change| in the block
_I_PREV = const(2)  # previous magnitude + 1
_I_POS = const(3)  # samples in the block
_I_BN = const(4)  # samples per block
_I_SCALE = const(5)
_I_SHIFT = const(6)
_I_QLO = const(7)  # sum of squared magnitudes in the block: low 28 bits
_I_QHI = const(8)  # and the rest (sum >> 28): every value stays a small int on a 32-bit port
_I_SIZE = const(9)
_Q28 = const(0x10000000)
_MASK28 = const(0xFFFFFFF)


def isqrt_round(v):
    """round(sqrt(v)) for 0 <= v < 2^30."""
    if v <= 0:
        return 0
    x = v
    y = (x + 1) >> 1
    while y < x:
        x = y
        y = (x + v // x) >> 1
    return x + 1 if v - x * x > x else x


def ppg_run_py(st, xr, vr, sr, dq, src, off, n):
    """The beat detector over src[off:off+n]; stops after confirming a beat (st[_D_BEAT] = beat + 1)."""
    nd = st[_D_ND]
    ns = st[_D_NS]
    c = st[_D_C]
    k = st[_D_K]
    r = st[_D_R]
    lr = st[_D_L] + r
    size = st[_D_RING]
    dd = st[_D_D]
    p0 = nd + ns - 2
    pu = p0 + dd
    p1 = pu + lr - r
    p = st[_D_P]
    a = st[_D_A]
    vsum = st[_D_VSUM] - _OFF
    xpos = st[_D_XPOS]
    vpos = st[_D_VPOS]
    upos = st[_D_UPOS]
    cand = st[_D_CAND] - 1
    dqh = st[_D_DQH]
    dqt = st[_D_DQT]
    eh = st[_D_EH]
    et = st[_D_ET]
    st[_D_BEAT] = 0
    i = 0
    while i < n:
        x = src[off + i] & 0x3FFFF  # 18-bit ADC
        a += x - xr[xpos]
        xr[xpos] = x
        j = xpos - c
        if j < 0:
            j += nd
        xpos += 1
        if xpos == nd:
            xpos = 0
        i += 1
        if p >= nd - 1:
            v = (a - nd * xr[j]) >> k  # mean minus sample: IR falls when blood volume rises
            vsum += v - (vr[vpos] - _OFF)
            vr[vpos] = v + _OFF
            vpos += 1
            if vpos == ns:
                vpos = 0
            if p >= p0:
                s = vsum - (vr[ns + upos] - _OFF)  # the upstroke: smoothed now minus D samples ago
                vr[ns + upos] = vsum + _OFF
                upos += 1
                if upos == dd:
                    upos = 0
            if p >= pu:
                ps = p % size
                sr[ps] = s + _OFF
                if cand >= 0 and s > sr[cand % size] - _OFF:
                    cand = -1
                while dqh != dqt and (ps - dq[dqh]) % size > r:
                    dqh = (dqh + 1) % size
                while dqh != dqt and sr[dq[(dqt - 1) % size]] - _OFF < s:
                    dqt = (dqt - 1) % size
                if dqh == dqt and s > 0 and p >= p1:
                    cand = p  # above all of the previous R values
                dq[dqt] = ps
                dqt = (dqt + 1) % size
                while eh != et and (ps - dq[size + eh]) % size > lr:
                    eh = (eh + 1) % size
                while eh != et and sr[dq[size + (et - 1) % size]] - _OFF <= s:
                    et = (et - 1) % size
                dq[size + et] = ps
                et = (et + 1) % size
                if cand >= 0 and p - cand == r:
                    # Nothing higher in the next R values either; a beat if at least half the
                    # highest value of the last L + R + 1 (no dicrotic wave, no small ripple).
                    if 2 * (sr[cand % size] - _OFF) >= sr[dq[size + eh]] - _OFF:
                        st[_D_BEAT] = cand + 1
                        cand = -1
                        p += 1
                        break
                    cand = -1
        p += 1
    st[_D_P] = p
    st[_D_A] = a
    st[_D_VSUM] = vsum + _OFF
    st[_D_XPOS] = xpos
    st[_D_VPOS] = vpos
    st[_D_UPOS] = upos
    st[_D_CAND] = cand + 1
    st[_D_DQH] = dqh
    st[_D_DQT] = dqt
    st[_D_EH] = eh
    st[_D_ET] = et
    return i


def imu_run_py(st, src, off, n):
    """IMU magnitudes of src samples off.. summed into the block (their sum, squares and changes)
    until the block is full or n samples are used."""
    sc = st[_I_SCALE]
    sh = st[_I_SHIFT]
    half = 1 << (sh - 1)
    prev = st[_I_PREV] - 1
    pos = st[_I_POS]
    i = 0
    while i < n and pos < st[_I_BN]:
        v = 0
        for q in range(3 * (off + i), 3 * (off + i) + 3):
            x = (src[q] * sc + half) >> sh
            x = _AXIS_LIMIT if x > _AXIS_LIMIT else -_AXIS_LIMIT if x < -_AXIS_LIMIT else x
            v += x * x
        m = isqrt_round(v)
        st[_I_SUM] += m
        v = m * m  # < 2^30
        st[_I_QHI] += v >> 28
        st[_I_QLO] += v & _MASK28
        if st[_I_QLO] >= _Q28:
            st[_I_QLO] -= _Q28
            st[_I_QHI] += 1
        if prev < 0:
            prev = m
        st[_I_JERK] += m - prev if m >= prev else prev - m
        prev = m
        pos += 1
        i += 1
    st[_I_PREV] = prev + 1
    st[_I_POS] = pos
    return i


def sq_dev(st):
    """sum((m - M)^2) over the block's magnitudes m (those not fed count as 0) around their
    rounded mean M, saturating at SUM_LIMIT: from the block's sums, in pieces of at most 30
    bits so that nothing is a big integer on a 32-bit port (once per block: no viper twin).

    With S = sum(m) and Q = sum(m^2) = QHI 2^28 + QLO: sum((m - M)^2) = Q - 2 M S + n M^2
    = Q - n M^2 - 2 r M where r = S - n M (|r| <= n / 2)."""
    n = st[_I_BN]
    s = st[_I_SUM]
    mean = (s + (n >> 1)) // n  # < 2^15
    nm = n * mean  # n M^2 = nm M, nm < 2^30: as (nm >> 15) M 2^15 + (nm & 0x7FFF) M
    a = (nm >> 15) * mean
    b = (nm & 0x7FFF) * mean
    lo = ((a & 0x1FFF) << 15) + (b & _MASK28)
    hi = st[_I_QHI] - (a >> 13) - (b >> 28) - (lo >> 28)
    lo = st[_I_QLO] - (lo & _MASK28)  # now Q - n M^2 = hi 2^28 + lo
    y = 2 * ((s - nm) * mean)
    hi -= y >> 28
    lo -= y & _MASK28
    hi += lo >> 28
    lo &= _MASK28
    return SUM_LIMIT if hi > 3 else (hi << 28) + lo  # hi 2^28 + lo < 2^30 from hi <= 3


if VIPER:
    @micropython.viper
    def ppg_run_viper(st: ptr32, xr: ptr32, vr: ptr32, sr: ptr32, dq: ptr16, src: ptr32, off: int, n: int) -> int:
        nd = int(st[_D_ND])
        ns = int(st[_D_NS])
        c = int(st[_D_C])
        k = int(st[_D_K])
        r = int(st[_D_R])
        lr = int(st[_D_L]) + r
        size = int(st[_D_RING])
        dd = int(st[_D_D])
        p0 = nd + ns - 2
        pu = p0 + dd
        p1 = pu + lr - r
        p = int(st[_D_P])
        a = int(st[_D_A])
        vsum = int(st[_D_VSUM]) - _OFF
        xpos = int(st[_D_XPOS])
        vpos = int(st[_D_VPOS])
        upos = int(st[_D_UPOS])
        s = 0
        cand = int(st[_D_CAND]) - 1
        dqh = int(st[_D_DQH])
        dqt = int(st[_D_DQT])
        eh = int(st[_D_EH])
        et = int(st[_D_ET])
        st[_D_BEAT] = 0
        i = 0
        while i < n:
            x = int(src[off + i]) & 0x3FFFF
            a += x - int(xr[xpos])
            xr[xpos] = x
            j = xpos - c
            if j < 0:
                j += nd
            xpos += 1
            if xpos == nd:
                xpos = 0
            i += 1
            if p >= nd - 1:
                v = (a - nd * int(xr[j])) >> k
                vsum += v - (int(vr[vpos]) - _OFF)
                vr[vpos] = v + _OFF
                vpos += 1
                if vpos == ns:
                    vpos = 0
                if p >= p0:
                    s = vsum - (int(vr[ns + upos]) - _OFF)
                    vr[ns + upos] = vsum + _OFF
                    upos += 1
                    if upos == dd:
                        upos = 0
                if p >= pu:
                    ps = p % size
                    sr[ps] = s + _OFF
                    if cand >= 0 and s > int(sr[cand % size]) - _OFF:
                        cand = -1
                    while dqh != dqt and (ps - int(dq[dqh])) % size > r:
                        dqh = (dqh + 1) % size
                    while dqh != dqt and int(sr[int(dq[(dqt - 1) % size])]) - _OFF < s:
                        dqt = (dqt - 1) % size
                    if dqh == dqt and s > 0 and p >= p1:
                        cand = p
                    dq[dqt] = ps
                    dqt = (dqt + 1) % size
                    while eh != et and (ps - int(dq[size + eh])) % size > lr:
                        eh = (eh + 1) % size
                    while eh != et and int(sr[int(dq[size + (et - 1) % size])]) - _OFF <= s:
                        et = (et - 1) % size
                    dq[size + et] = ps
                    et = (et + 1) % size
                    if cand >= 0 and p - cand == r:
                        # Nothing higher in the next R values either; a beat if at least half the
                        # highest value of the last L + R + 1 (no dicrotic wave, no small ripple).
                        if 2 * (int(sr[cand % size]) - _OFF) >= int(sr[int(dq[size + eh])]) - _OFF:
                            st[_D_BEAT] = cand + 1
                            cand = -1
                            p += 1
                            break
                        cand = -1
            p += 1
        st[_D_P] = p
        st[_D_A] = a
        st[_D_VSUM] = vsum + _OFF
        st[_D_XPOS] = xpos
        st[_D_VPOS] = vpos
        st[_D_UPOS] = upos
        st[_D_CAND] = cand + 1
        st[_D_DQH] = dqh
        st[_D_DQT] = dqt
        st[_D_EH] = eh
        st[_D_ET] = et
        return i

    @micropython.viper
    def imu_run_viper(st: ptr32, src: ptr16, off: int, n: int) -> int:
        sc = int(st[_I_SCALE])
        sh = int(st[_I_SHIFT])
        half = 1 << (sh - 1)
        bsum = int(st[_I_SUM])
        jerk = int(st[_I_JERK])
        prev = int(st[_I_PREV]) - 1
        pos = int(st[_I_POS])
        bn = int(st[_I_BN])
        qlo = int(st[_I_QLO])
        qhi = int(st[_I_QHI])
        lim = _AXIS_LIMIT
        i = 0
        while i < n and pos < bn:
            v = 0
            q = 3 * (off + i)
            e = q + 3
            while q < e:
                x = int(src[q])
                if x > 32767:
                    x -= 65536  # ptr16 loads are unsigned
                x = (x * sc + half) >> sh
                if x > lim:
                    x = lim
                elif x < -lim:
                    x = -lim
                v += x * x
                q += 1
            m = 0  # square root digit by digit; v keeps v - m^2
            b = 1 << 28
            while b > v:
                b >>= 2
            while b:
                if v >= m + b:
                    v -= m + b
                    m = (m >> 1) + b
                else:
                    m >>= 1
                b >>= 2
            if v > m:
                m += 1
            bsum += m
            v = m * m
            qhi += v >> 28
            qlo += v & _MASK28
            if qlo >= _Q28:
                qlo -= _Q28
                qhi += 1
            if prev < 0:
                prev = m
            jerk += m - prev if m >= prev else prev - m
            prev = m
            pos += 1
            i += 1
        st[_I_SUM] = bsum
        st[_I_JERK] = jerk
        st[_I_QLO] = qlo
        st[_I_QHI] = qhi
        st[_I_PREV] = prev + 1
        st[_I_POS] = pos
        return i

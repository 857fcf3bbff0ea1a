"""Integer metering kernel: blocks of ADC sample pairs -> corrected sums in ADC counts.

Owns the per-sample work (one viper loop), DC offset removal, the frequency measurement,
the channel phase compensation and the reactive (quadrature) estimate. It knows nothing
of volts, watts or registers: metering/energy.py turns its count-domain results into
physical units. No floats anywhere.

Two paths, because ESP32, RP2040 and our 32-bit unix build have 31-bit small ints
(anything wider is a heap-allocated long int):
  chunk()   the sampling path, <= MAX_CHUNK pairs: the viper loop plus a few small-int
            corrections; every intermediate stays below 2**30, wider sums go into
            64-bit accumulators written by viper (_acc2). Allocates nothing
            (tests/mpy/test_metering.py proves it with micropython.heap_lock()).
  update()  once per measurement window (1 s by default), after chunk() returned 1:
            frequency, offset tracking, coefficient refresh. Also small ints only: the
            products and quotients wider than 30 bits go through two viper helpers,
            muldiv(a, b, c, sh) = round(a*b / (c << sh)) with a 60-bit product and
            q64(acc, k, c, s) = round((64-bit accumulator << s) / c), both exact
            (bit-serial division), so the meter runs in a 64 KB heap without a long-int
            churn of kilobytes a second (tools/bench_metering.py prints the bytes).
            chunk() latches what update() needs, so a late update() loses nothing.

Samples are signed 12-bit ADC codes (mid-scale removed) in array('h'). Per chunk the
viper loop forms, after subtracting whole-LSB offsets:
    Svv = sum v*v   Sii = sum i*i   Svi = sum v*i   Svd = sum v*i[n-D]
    Sv, Si, Sd (plain sums)   and the positive-going zero crossings of v.
With |sample| <= 2048 + _MAX_OFFSET and MAX_CHUNK = 125, |Svi| <= 6.6e8: even rotated
by the phase compensation it stays a small int.

DC offset. A whole-LSB estimate is subtracted inside the loop; the fractional rest
(dv, di, in 1/256 LSB) is removed per chunk by algebra, with the sub-count remainder
carried to the next chunk:   sum (v-dv)(i-di) = Svi - di*Sv - dv*Si + n*dv*di.
The estimate is the mean of the raw samples over the whole mains cycles of each window
(first to last zero crossing of v, so a sine contributes nothing), smoothed over
windows (_OFFSET_SHIFT). It seeds from the calibration and settles in the first window.

Reactive power without a Hilbert filter. The current passes a delay line of D whole
samples, D = round(T/4) with T the measured samples per cycle, giving the lag-D
correlation RD = Svd. For the fundamental, R(l) = mean v[n]*i[n-l] = VI*cos(phi + w*l)
and theta = w*D (close to, not exactly, pi/2 when T/4 is not an integer):
    VI*sin(phi) = (R(0)*cos(theta) - R(D)) / sin(theta)
exact for any theta, so 60 Hz (T/4 = 16.67) or a drifting 49.9 Hz costs no
interpolation error. Phase compensation rotates by beta = w*tau, tau the current
channel's delay (calibration i_delay_q16, 1/65536 sample):
    P = a*R0 + b*RD     a = sin(theta+beta)/sin(theta)   b = -sin(beta)/sin(theta)
    Q = c*R0 + d*RD     c = cos(theta+beta)/sin(theta)   d = -cos(beta)/sin(theta)
a is near 1 and d near -1, so the chunk computes P = R0 + (a-1)*R0 + b*RD and
Q = -RD + c*R0 + (d+1)*RD with the small coefficients in Q15, each product split into
15-bit halves so it stays a small int, remainders carried. With beta = 0 and D = T/4
exactly (50 Hz at 4 kHz), a = 1, b = c = 0, d = -1: P is the plain sum of products,
harmonics included. Q is the fundamental reactive power: an in-phase odd harmonic
contributes nothing (cos(h*pi/2) = 0). A frequency error df moves theta by
2*pi*df*D/fs (3e-4 rad for 10 mHz at 4 kHz), i.e. Q by 0.03 % of P.

Frequency: zero crossings interpolated to 1/65536 sample, counted across window
boundaries; f = cycles * fs / (time from the first to the last crossing). A crossing
needs v to have been below -zc_hyst since the previous one, so noise near zero cannot
double-count."""
import micropython
from array import array
from micropython import const

MAX_CHUNK = const(125)  # sample pairs per viper call: keeps every sum a small int
_MAX_OFFSET = const(256)  # whole-LSB offset clamp (|sample - offset| <= 2304)
_OFFSET_SHIFT = const(2)  # offset estimate smoothed over 2**2 windows
_COEF_BITS = const(15)  # the small P/Q coefficients are Q15
_CMASK = const(0x7FFF)
_COEF_MAX = const(1 << 14)  # |coefficient| < 0.5 keeps every product below 2**29

# Layout of the viper state array (array('i')): inputs, carried state, outputs.
_START = const(0)
_N = const(1)
_OV = const(2)
_OI = const(3)
_DELAY = const(4)
_MASK = const(5)
_HYST = const(6)
_POS = const(7)
_PREV = const(8)
_ARMED = const(9)
_SVV = const(10)
_SII = const(11)
_SVI = const(12)
_SVD = const(13)
_SV = const(14)
_SI = const(15)
_SD = const(16)
_ZC = const(17)
_Z1N = const(18)  # first crossing in the chunk: index, v before, v at, Sv and Si before it
_Z1P = const(19)
_Z1C = const(20)
_Z1SV = const(21)
_Z1SI = const(22)
_ZLN = const(23)  # last crossing in the chunk, same fields
_ZLP = const(24)
_ZLC = const(25)
_ZLSV = const(26)
_ZLSI = const(27)
_ST_SIZE = const(28)

# ptr32 loads zero-extend on 64-bit ports, so values the loop reads back that can be
# negative are stored with this bias added.
_BIAS = const(1 << 20)
# Angles and trigonometry in Q29 (2**30 itself is already a long int on 32-bit ports).
_ONE_Q29 = const(1 << 29)
_PI_Q28 = const(843314857)  # pi * 2**28: pi/2 in Q29
_SIN_K = (110, 72, 42, 20, 6)  # Taylor denominators, innermost first
_COS_K = (132, 90, 56, 30, 12, 2)

# 64-bit window accumulators (lo, hi word pairs in array('i')): sum v*v, i*i, P, Q.
W_VV = const(0)
W_II = const(2)
W_P = const(4)
W_Q = const(6)
_W_SIZE = const(8)


def zeros(typecode, n):
    """array of n zeros, allocated once at its final size (no bytes temporary)."""
    a = array(typecode, range(n))
    for k in range(n):
        a[k] = 0
    return a


@micropython.viper
def _acc2(acc, k: int, x: int, y: int):
    # Adds x to the 64-bit two's-complement accumulator at acc[k], acc[k+1] (low word
    # first) and y to the one at acc[k+2], acc[k+3]: exact and allocation-free on 32-bit.
    a = ptr32(acc)
    lo = uint(a[k])
    s = uint(lo + uint(x))
    a[k] = s
    c = 1 if s < lo else 0
    if x < 0:
        c -= 1
    a[k + 1] = a[k + 1] + c
    lo = uint(a[k + 2])
    s = uint(lo + uint(y))
    a[k + 2] = s
    c = 1 if s < lo else 0
    if y < 0:
        c -= 1
    a[k + 3] = a[k + 3] + c


@micropython.viper
def muldiv(a: int, b: int, c: int, sh: int) -> int:
    """round(a*b / (c * 2**sh)), halves away from zero, exact: |a|, |b| < 2**30,
    0 < c < 2**30, 0 <= sh; the result must be a small int. No allocation."""
    neg = 0
    if a < 0:
        a = 0 - a
        neg = 1
    if b < 0:
        b = 0 - b
        neg ^= 1
    # The 60-bit product in two 30-bit words (15-bit halves: every term < 2**31).
    ah = a >> 15
    al = a & 0x7FFF
    bh = b >> 15
    bl = b & 0x7FFF
    p1 = ah * bl + al * bh
    w0 = al * bl + ((p1 & 0x7FFF) << 15)
    w1 = ah * bh + (p1 >> 15) + (w0 >> 30)
    w0 &= 0x3FFFFFFF
    # q = floor(2 * product / 2**sh / c): bits 59 .. sh-1 of the product, one by one.
    r = 0
    q = 0
    i = 59
    low = sh - 1
    while i >= low:
        bit = 0
        if i >= 30:
            bit = (w1 >> (i - 30)) & 1
        elif i >= 0:
            bit = (w0 >> i) & 1
        r = r + r + bit
        q = q + q
        if r >= c:
            r -= c
            q += 1
        i -= 1
    q = (q + 1) >> 1
    return 0 - q if neg else q


@micropython.viper
def q64(acc, k: int, c: int, s: int) -> int:
    """round(A * 2**s / c), halves away from zero, exact, for the signed 64-bit
    accumulator A at acc[k] (low word), acc[k+1]: 0 < c < 2**30, 0 <= s; the result
    must be a small int. No allocation."""
    p = ptr32(acc)
    lo = int(p[k])
    hi = int(p[k + 1])
    # |A| in 30-bit words w0, w1 and the top 4 bits w2 (portable: masks, no sign
    # extension, so 64-bit ports' zero-extending loads give the same words).
    w0 = lo & 0x3FFFFFFF
    w1 = ((lo >> 30) & 3) | ((hi & 0x0FFFFFFF) << 2)
    w2 = (hi >> 28) & 0xF
    neg = 0
    if w2 & 8:
        neg = 1
        w0 = (w0 ^ 0x3FFFFFFF) + 1
        w1 = (w1 ^ 0x3FFFFFFF) + (w0 >> 30)
        w0 &= 0x3FFFFFFF
        w2 = ((w2 ^ 0xF) + (w1 >> 30)) & 0xF
        w1 &= 0x3FFFFFFF
    # q = floor(2 * |A| * 2**s / c): bits 63 .. -s-1 of |A| (zeros below bit 0).
    r = 0
    q = 0
    i = 63
    low = 0 - s - 1
    while i >= low:
        bit = 0
        if i >= 60:
            bit = (w2 >> (i - 60)) & 1
        elif i >= 30:
            bit = (w1 >> (i - 30)) & 1
        elif i >= 0:
            bit = (w0 >> i) & 1
        r = r + r + bit
        q = q + q
        if r >= c:
            r -= c
            q += 1
        i -= 1
    q = (q + 1) >> 1
    return 0 - q if neg else q


def read64(acc, k):
    """Value of the 64-bit accumulator at acc[k] (long int: outside the sampling path)."""
    return (acc[k + 1] << 32) + (acc[k] & 0xFFFFFFFF)


@micropython.viper
def _sums(vb, ib, st, ring):
    # ptr16 loads are unsigned: (x ^ 0x8000) - 0x8000 sign-extends.
    vp = ptr16(vb)
    ip = ptr16(ib)
    s = ptr32(st)
    r = ptr16(ring)
    start = s[_START]
    n = s[_N]
    ov = s[_OV] - _BIAS
    oi = s[_OI] - _BIAS
    dly = s[_DELAY]
    mask = s[_MASK]
    hyst = 0 - s[_HYST]
    pos = s[_POS]
    prev = s[_PREV] - _BIAS
    armed = s[_ARMED]
    svv = 0
    sii = 0
    svi = 0
    svd = 0
    sv = 0
    si = 0
    sd = 0
    zc = 0
    k = 0
    while k < n:
        x = ((int(vp[start + k]) ^ 0x8000) - 0x8000) - ov
        raw = int(ip[start + k])
        r[pos & mask] = raw
        y = ((raw ^ 0x8000) - 0x8000) - oi
        d = ((int(r[(pos - dly) & mask]) ^ 0x8000) - 0x8000) - oi
        pos += 1
        if x < hyst:
            armed = 1
        elif armed != 0:
            if x >= 0:
                armed = 0
                if zc == 0:
                    s[_Z1N] = k
                    s[_Z1P] = prev
                    s[_Z1C] = x
                    s[_Z1SV] = sv
                    s[_Z1SI] = si
                s[_ZLN] = k
                s[_ZLP] = prev
                s[_ZLC] = x
                s[_ZLSV] = sv
                s[_ZLSI] = si
                zc += 1
        prev = x
        svv += x * x
        sii += y * y
        svi += x * y
        svd += x * d
        sv += x
        si += y
        sd += d
        k += 1
    s[_POS] = pos & mask
    s[_PREV] = prev + _BIAS
    s[_ARMED] = armed
    s[_SVV] = svv
    s[_SII] = sii
    s[_SVI] = svi
    s[_SVD] = svd
    s[_SV] = sv
    s[_SI] = si
    s[_SD] = sd
    s[_ZC] = zc


def _sin_q29(x):
    """sin(x) for |x| <= 1 rad, Q29 in and out (Taylor to x**11), small ints only."""
    x2 = muldiv(x, x, 1, 29)
    s = _ONE_Q29
    j = 0
    while j < 5:
        s = _ONE_Q29 - muldiv(x2, s, _SIN_K[j], 29)
        j += 1
    return muldiv(x, s, 1, 29)


def _cos_q29(x):
    """cos(x) for |x| <= 1 rad, Q29 (Taylor to x**12); cos(0) is exactly 1 << 29."""
    x2 = muldiv(x, x, 1, 29)
    c = _ONE_Q29
    j = 0
    while j < 6:
        c = _ONE_Q29 - muldiv(x2, c, _COS_K[j], 29)
        j += 1
    return c


def _whole_offset(est_q16):
    o = (est_q16 + 0x8000) >> 16
    return -_MAX_OFFSET if o < -_MAX_OFFSET else (_MAX_OFFSET if o > _MAX_OFFSET else o)


class Calibration:
    """Per-board calibration; the board config supplies it as a dict.

    v_uv_per_lsb  voltage scale, microvolts per ADC LSB (gain included)
    i_ua_per_lsb  current scale, microamps per ADC LSB
    i_delay_q16   delay of the current channel relative to the voltage channel, in
                  1/65536 sample: positive for a lagging current transformer, negative
                  when the current is sampled after the voltage of the same pair
    v_offset, i_offset   initial DC offsets in LSB (tracked afterwards)
    track_offset  keep estimating the offsets (default True)
    f_nominal     nominal mains frequency in Hz: sets the quarter-period delay and the
                  phase compensation until the first window measured the frequency,
                  so a 60 Hz grid needs 60 here for an exact first second
    zc_hyst       zero-crossing hysteresis in LSB of voltage
    i_start_ua    starting current: chunks with a lower RMS current register no energy
                  (anti-creep; the ADC noise floor sets how low this can go)"""

    FIELDS = (
        ("v_uv_per_lsb", 250000),
        ("i_ua_per_lsb", 62500),
        ("i_delay_q16", 0),
        ("v_offset", 0),
        ("i_offset", 0),
        ("track_offset", True),
        ("f_nominal", 50),
        ("zc_hyst", 16),
        ("i_start_ua", 100000),
    )

    def __init__(self, config=None):
        config = config or {}
        for key in config:
            if key not in self._names():
                raise ValueError("unknown calibration key: " + key)
        for key, default in self.FIELDS:
            setattr(self, key, config.get(key, default))
        for key in ("v_uv_per_lsb", "i_ua_per_lsb", "f_nominal"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) <= 0:
                raise ValueError("calibration %s must be a positive int" % key)
        if not -(4 << 16) <= self.i_delay_q16 <= (4 << 16):
            raise ValueError("calibration i_delay_q16 beyond 4 samples")

    def _names(self):
        return [f[0] for f in self.FIELDS]

    def as_dict(self):
        return {key: getattr(self, key) for key, _ in self.FIELDS}


def as_calibration(cal):
    return cal if isinstance(cal, Calibration) else Calibration(cal)



class Kernel:
    """Count-domain metering of one voltage/current channel pair.

    chunk(v, i, start, n) processes v[start:start+n] (n <= MAX_CHUNK) and leaves:
        p, q   active and reactive sum over the chunk, in count**2 (sum of v*i)
        sii    sum of i*i over the chunk (whole-LSB offset removed), count**2
    It returns 1 when the chunk completed a measurement window (`window` samples,
    default 1 s; the caller ends chunks on window boundaries). Then call update(),
    which refreshes freq_mhz (mHz, 0 when no mains is seen), period_q16 (samples per
    cycle, Q16) and the offsets, and leaves the window's totals: w_n, and read64(w, W_*)
    on w = done (sum v*v, i*i, P, Q), w_sv, w_si (sums of v and i)."""

    def __init__(self, calibration, sample_rate=4000, window=None):
        cal = as_calibration(calibration)
        self.fs = sample_rate
        self.wlen = window or sample_rate
        if not 0 < self.wlen < 8192:  # window << 16 must stay a small int
            raise ValueError("window must be 1..8191 samples")
        size = 16
        while size < sample_rate // 160 + 2:  # quarter cycle at 40 Hz, plus one
            size <<= 1
        self._ring = zeros("h", size)
        st = self._st = zeros("i", _ST_SIZE)
        st[_MASK] = size - 1
        st[_PREV] = _BIAS
        st[_HYST] = cal.zc_hyst
        self._win = zeros("i", _W_SIZE)
        self.done = zeros("i", _W_SIZE)
        self._i_delay = cal.i_delay_q16
        self._track = cal.track_offset
        self._est_v = cal.v_offset << 16
        self._est_i = cal.i_offset << 16
        self._est_fresh = 1
        self._dv = self._di = self._ov = self._oi = 0
        # Parameters update() derives take effect at the next window boundary, inside
        # the sampling path, so the result does not depend on block sizes or on when
        # update() ran: [ov, oi, dv, di, delay, a1, b, c, d1] and a flag.
        self._nx = [0] * 9
        self._nx_ok = 0
        self._set_offsets()
        self.period_q16 = (sample_rate << 16) // cal.f_nominal
        self.freq_mhz = 0
        self._a1 = self._b = self._c = self._d1 = 0
        self.delay = 0
        self._update_coefficients()
        self._apply()
        self.p = self.q = self.sii = 0
        self._rp = self._rq = self._ro0 = self._rod = self._rn = 0
        self.w_n = self.w_sv = self.w_si = 0
        self.windows = 0
        self.pending = 0
        self._zref = self._zlast = 0
        self._zref_ok = self._zcyc = self._zseen = 0
        self._l_zcyc = self._l_zdt = self._l_ov = self._l_oi = 0
        self._l_zo = [-1, -1, 0, 0, 0, 0]  # n1, n2, sv1, si1, sv2, si2 of the last window
        self._clear_window()

    def _clear_window(self):
        self.wn = self._wsv = self._wsi = 0
        self._zseen = 0
        self._zo_n1 = self._zo_n2 = -1
        self._zo_sv1 = self._zo_si1 = self._zo_sv2 = self._zo_si2 = 0
        w = self._win
        for k in range(_W_SIZE):
            w[k] = 0

    def _set_offsets(self):
        nx = self._nx
        nx[0] = _whole_offset(self._est_v)
        nx[1] = _whole_offset(self._est_i)
        nx[2] = (self._est_v - (nx[0] << 16)) >> 8  # Q8, |dv| <= 128
        nx[3] = (self._est_i - (nx[1] << 16)) >> 8
        self._nx_ok = 1

    def _apply(self):
        # Sampling path: small-int assignments only.
        nx = self._nx
        self._ov = nx[0]
        self._oi = nx[1]
        self._st[_OV] = nx[0] + _BIAS
        self._st[_OI] = nx[1] + _BIAS
        self._dv = nx[2]
        self._di = nx[3]
        self._st[_DELAY] = self.delay = nx[4]
        self._a1 = nx[5]
        self._b = nx[6]
        self._c = nx[7]
        self._d1 = nx[8]
        self._nx_ok = 0

    @property
    def offsets_q16(self):
        """Current DC offset estimates (voltage, current) in 1/65536 LSB."""
        return self._est_v, self._est_i

    def _update_coefficients(self):
        t = self.period_q16
        dly = (t + (1 << 17)) >> 18  # round(T / 4)
        mask = self._st[_MASK]
        dly = 1 if dly < 1 else (mask - 1 if dly > mask - 1 else dly)
        nx = self._nx
        nx[4] = dly
        # theta = 2*pi*dly / (t / 2**16) and beta in Q29: 2*pi * 2**29 = pi * 2**28 * 4.
        x = muldiv(_PI_Q28, dly << 18, t, 0) - _PI_Q28  # theta - pi/2
        sin_t = _cos_q29(x)
        cos_t = -_sin_q29(x)
        beta = muldiv(_PI_Q28, self._i_delay << 2, t, 0)
        sin_b = _sin_q29(beta)
        cos_b = _cos_q29(beta)
        sin_tb = muldiv(sin_t, cos_b, 1, 29) + muldiv(cos_t, sin_b, 1, 29)
        cos_tb = muldiv(cos_t, cos_b, 1, 29) - muldiv(sin_t, sin_b, 1, 29)
        one = 1 << _COEF_BITS
        nx[5] = _clamp(_ratio(sin_tb, sin_t) - one)
        nx[6] = _clamp(-_ratio(sin_b, sin_t))
        nx[7] = _clamp(_ratio(cos_tb, sin_t))
        nx[8] = _clamp(one - _ratio(cos_b, sin_t))
        self._nx_ok = 1

    def set_phase_delay(self, i_delay_q16):
        """Takes effect from the next chunk (a calibration change, not the sampling path)."""
        self._i_delay = i_delay_q16
        self._update_coefficients()
        self._apply()

    def chunk(self, vb, ib, start, n):
        st = self._st
        st[_START] = start
        st[_N] = n
        _sums(vb, ib, st, self._ring)
        sv = st[_SV]
        dv = self._dv
        di = self._di
        # Fractional offsets (Q8) removed by algebra; the sub-count rest carries over.
        t = n * dv * di + self._rn  # Q16
        ndd = t >> 8
        self._rn = t & 0xFF
        t = di * sv + dv * st[_SI] - ndd + self._ro0
        r0 = st[_SVI] - (t >> 8)
        self._ro0 = t & 0xFF
        t = di * sv + dv * st[_SD] - ndd + self._rod
        rd = st[_SVD] - (t >> 8)
        self._rod = t & 0xFF
        # Small Q15 coefficients on 15-bit halves: floor((r*c) >> 15) = hi*c + (lo*c >> 15).
        h0 = r0 >> _COEF_BITS
        l0 = r0 & _CMASK
        hd = rd >> _COEF_BITS
        ld = rd & _CMASK
        a = self._a1
        b = self._b
        t = l0 * a + ld * b + self._rp
        self.p = r0 + h0 * a + hd * b + (t >> _COEF_BITS)
        self._rp = t & _CMASK
        a = self._c
        b = self._d1
        t = l0 * a + ld * b + self._rq
        self.q = h0 * a + hd * b - rd + (t >> _COEF_BITS)
        self._rq = t & _CMASK
        sii = st[_SII]
        self.sii = sii
        _acc2(self._win, W_VV, st[_SVV], sii)
        _acc2(self._win, W_P, self.p, self.q)
        if st[_ZC]:
            self._crossings(st[_ZC])
        self._wsv += sv
        self._wsi += st[_SI]
        self.wn += n
        if self.wn >= self.wlen:
            self._end_window()
            return 1
        return 0

    def _crossing_time(self, k, prev, cur):
        # Crossing between samples k-1 and k of the window, in Q16 samples.
        t = (self.wn + k - 1) << 16
        if prev < 0 <= cur:
            t += ((-prev) << 16) // (cur - prev)
        return t

    def _crossings(self, count):
        st = self._st
        first = self._crossing_time(st[_Z1N], st[_Z1P], st[_Z1C])
        self._zlast = self._crossing_time(st[_ZLN], st[_ZLP], st[_ZLC])
        if self._zref_ok:
            self._zcyc += count
        else:
            self._zref = first
            self._zref_ok = 1
            self._zcyc = count - 1
        self._zseen = 1
        if self._zo_n1 < 0:
            self._zo_n1 = self.wn + st[_Z1N]
            self._zo_sv1 = self._wsv + st[_Z1SV]
            self._zo_si1 = self._wsi + st[_Z1SI]
        self._zo_n2 = self.wn + st[_ZLN]
        self._zo_sv2 = self._wsv + st[_ZLSV]
        self._zo_si2 = self._wsi + st[_ZLSI]

    def _end_window(self):
        # Sampling path: latch (small ints, swapped arrays), no arithmetic on long ints.
        n = self.wn
        self.w_n = n
        self.w_sv = self._wsv
        self.w_si = self._wsi
        z = self._l_zo
        z[0] = self._zo_n1
        z[1] = self._zo_n2
        z[2] = self._zo_sv1
        z[3] = self._zo_si1
        z[4] = self._zo_sv2
        z[5] = self._zo_si2
        if self._zseen and self._zref_ok:
            self._l_zcyc = self._zcyc
            self._l_zdt = self._zlast - self._zref
            self._zref = self._zlast - (n << 16)  # next window's time origin
            self._zcyc = 0
        else:
            self._zref_ok = 0
            self._l_zcyc = -1  # no mains cycle seen
        self._win, self.done = self.done, self._win
        self._l_ov = self._ov  # the offsets this window was measured with
        self._l_oi = self._oi
        if self._nx_ok:
            self._apply()  # what update() derived from the previous window
        self.windows += 1
        self.pending = 1
        self._clear_window()

    def update(self):
        """Once-per-window work after chunk() returned 1 (small ints only)."""
        if not self.pending:
            return
        self.pending = 0
        self._measure_frequency()
        if self._track:
            self._track_offsets()

    def _measure_frequency(self):
        cyc = self._l_zcyc
        if cyc < 0:
            self.freq_mhz = 0
            return
        if cyc > 0:
            dt = self._l_zdt
            t = dt // cyc
            # Accept 40..70 Hz; anything else is a glitch, not the mains.
            if (self.fs << 16) // 70 < t < (self.fs << 16) // 40:
                self.freq_mhz = muldiv(self.fs * cyc, 1000 << 16, dt, 0)
                if t != self.period_q16:
                    self.period_q16 = t
                    self._update_coefficients()
            else:
                self.freq_mhz = 0

    def _track_offsets(self):
        n1, n2, sv1, si1, sv2, si2 = self._l_zo
        span = n2 - n1
        if n1 >= 0 and span > 0:
            mv = muldiv(sv2 - sv1, 1 << 16, span, 0)
            mi = muldiv(si2 - si1, 1 << 16, span, 0)
        else:
            mv = muldiv(self.w_sv, 1 << 16, self.w_n, 0)
            mi = muldiv(self.w_si, 1 << 16, self.w_n, 0)
        mv += self._l_ov << 16
        mi += self._l_oi << 16
        if self._est_fresh:
            self._est_fresh = 0
            self._est_v = mv
            self._est_i = mi
        else:
            self._est_v += (mv - self._est_v) >> _OFFSET_SHIFT
            self._est_i += (mi - self._est_i) >> _OFFSET_SHIFT
        self._set_offsets()


def _ratio(x, y):
    """round(x / y) in Q15, for Q29 x and y (y > 0)."""
    return muldiv(x, 1 << _COEF_BITS, y, 0)


def _clamp(c):
    # |c| < 0.5 keeps chunk() in small ints; only an i_delay beyond calibration's
    # +-4 samples at 70 Hz could reach it.
    return -_COEF_MAX + 1 if c <= -_COEF_MAX else (_COEF_MAX - 1 if c >= _COEF_MAX else c)

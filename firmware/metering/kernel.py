"""Integer metering kernel: blocks of ADC sample pairs -> corrected sums in ADC counts.

Owns the per-sample work (one viper loop), DC offset removal, the frequency measurement,
the channel phase compensation and the reactive (quadrature) estimate. It knows nothing
of volts, watts or registers: metering/energy.py turns its count-domain results into
physical units. No floats anywhere; nothing is allocated per block on a 64-bit port
(tests/mpy/test_metering.py proves it with micropython.heap_lock()).

Samples are signed 12-bit ADC codes (mid-scale removed) in array('h'). Per chunk of at
most MAX_CHUNK pairs the viper loop forms, after subtracting whole-LSB offsets:
    Svv = sum v*v   Sii = sum i*i   Svi = sum v*i   Svd = sum v*i[n-D]
    Sv, Si, Sd (plain sums)   and the positive-going zero crossings of v.
With |sample| <= 2048 + MAX_OFFSET and MAX_CHUNK = 200 every sum stays below 2**30, so
the loop is exact in 32-bit viper words (ESP32, RP2040) and the results are small ints.

DC offset. A whole-LSB estimate is subtracted inside the loop; the fractional rest
(dv, di, in 1/65536 LSB) is removed exactly by algebra per chunk:
    sum (v-dv)(i-di) = Svi - di*Sv - dv*Si + n*dv*di.
The estimate is the mean of the raw samples over the whole mains cycles of each
measurement window (first to last zero crossing of v, so a sine contributes nothing),
smoothed over windows (OFFSET_SHIFT). It seeds from the calibration and settles within
the first window after power-up.

Reactive power without a Hilbert filter. The current passes a delay line of D whole
samples, D = round(T/4) with T the measured samples per cycle, giving the lag-D
correlation Svd. For the fundamental, with R(l) = mean v[n]*i[n-l] = VI*cos(phi + w*l)
and theta = w*D (close to, but not exactly, pi/2 when T/4 is not an integer):
    VI*sin(phi) = (R(0)*cos(theta) - R(D)) / sin(theta)
which is exact for any theta, so 60 Hz (T/4 = 16.67) or a drifting 49.9 Hz costs no
interpolation error. Phase compensation rotates the result by beta = w*tau, tau being
the current channel's delay (calibration i_delay_q16, 1/65536 sample). Both fold into
four Q20 coefficients recomputed once per window from the measured frequency:
    P = a*R0 + b*RD     a = sin(theta+beta)/sin(theta)   b = -sin(beta)/sin(theta)
    Q = c*R0 + d*RD     c = cos(theta+beta)/sin(theta)   d = -cos(beta)/sin(theta)
With beta = 0, a is exactly 1 and b exactly 0: active power is then the plain sum of
products, harmonics included. Q is the fundamental reactive power: an in-phase
harmonic contributes nothing to it (cos(h*pi/2 + 0) = 0 for odd h). A frequency error
df moves theta by 2*pi*df*D/fs (3e-4 rad for 10 mHz at 4 kHz), i.e. Q by 0.03 % of P.
P and Q per chunk are floor(total / 2**20) with the remainder carried to the next
chunk, so the chunk values add up to the exact sum whatever the block sizes.

Frequency: zero crossings interpolated to 1/65536 sample in integers, counted across
window boundaries; f = cycles * fs / (time from the first to the last crossing).
A crossing needs v to have been below -zc_hyst since the previous one, so noise near
zero cannot double-count."""
import micropython
from array import array
from micropython import const

MAX_CHUNK = const(200)  # sample pairs per viper call: keeps every sum below 2**30
MAX_OFFSET = const(256)  # whole-LSB offset clamp (|sample - offset| <= 2304)
OFFSET_SHIFT = const(2)  # offset estimate smoothed over 2**2 windows
COEF_BITS = const(20)  # P/Q coefficients are Q20

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
_ONE_Q30 = const(1073741824)
# 2*pi and pi/2 in Q30 (too wide for const() on 32-bit ports).
TWO_PI_Q30 = 6746518852
HALF_PI_Q30 = 1686629713


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


def _sin_q30(x):
    """sin(x) for |x| <= 1 rad, Q30 in and out (Taylor to x**11, error < 2e-10)."""
    x2 = (x * x) >> 30
    s = _ONE_Q30
    for k in (110, 72, 42, 20, 6):
        s = _ONE_Q30 - ((x2 * s) >> 30) // k
    return (x * s) >> 30


def _cos_q30(x):
    """cos(x) for |x| <= 1 rad, Q30 (Taylor to x**12); cos(0) is exactly 1 << 30."""
    x2 = (x * x) >> 30
    c = _ONE_Q30
    for k in (132, 90, 56, 30, 12, 2):
        c = _ONE_Q30 - ((x2 * c) >> 30) // k
    return c


def _whole_offset(est_q16):
    o = (est_q16 + 0x8000) >> 16
    return -MAX_OFFSET if o < -MAX_OFFSET else (MAX_OFFSET if o > MAX_OFFSET else o)


class Calibration:
    """Per-board calibration; the board config supplies it as a dict.

    v_uv_per_lsb  voltage scale, microvolts per ADC LSB (gain included)
    i_ua_per_lsb  current scale, microamps per ADC LSB
    i_delay_q16   delay of the current channel relative to the voltage channel, in
                  1/65536 sample: positive for a lagging current transformer, negative
                  when the current is sampled after the voltage of the same pair
    v_offset, i_offset   initial DC offsets in LSB (tracked afterwards)
    track_offset  keep estimating the offsets (default True)
    f_nominal     nominal mains frequency in Hz (first cycles, before one is measured)
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
        ii     sum of i*i over the chunk, count**2 in Q16
    It returns 1 when a measurement window (`window` samples, default 1 s) completed;
    the window's totals are then in w_n, w_vv, w_ii (Q16), w_p, w_q (count**2),
    freq_mhz (mHz, 0 when no voltage) and period_q16 (samples per cycle, Q16)."""

    def __init__(self, calibration, sample_rate=4000, window=None):
        cal = as_calibration(calibration)
        self.fs = sample_rate
        self._wlen = window or sample_rate
        size = 16
        while size < sample_rate // 160 + 2:  # quarter cycle at 40 Hz, plus one
            size <<= 1
        self._ring = array("h", bytes(2 * size))
        st = self._st = array("i", bytes(4 * _ST_SIZE))
        st[_MASK] = size - 1
        st[_PREV] = _BIAS
        st[_HYST] = cal.zc_hyst
        self._i_delay = cal.i_delay_q16
        self._track = cal.track_offset
        self._est_v = cal.v_offset << 16
        self._est_i = cal.i_offset << 16
        self._est_fresh = 1
        self._dv = self._di = self._ov = self._oi = 0
        self._set_offsets()
        self.period_q16 = (sample_rate << 16) // cal.f_nominal
        self.freq_mhz = 0
        self._a = self._b = self._c = self._d = 0
        self.delay = 0
        self._update_coefficients()
        self.p = self.q = self.ii = 0
        self._rp = self._rq = 0
        self.w_n = self.w_vv = self.w_ii = self.w_p = self.w_q = 0
        self.windows = 0
        self._zref = self._zlast = 0
        self._zref_ok = self._zcyc = self._zseen = 0
        self._clear_window()

    def _clear_window(self):
        self._wn = self._wvv = self._wii = self._wp = self._wq = self._wsv = self._wsi = 0
        self._zseen = 0
        self._zo_n1 = self._zo_n2 = -1
        self._zo_sv1 = self._zo_si1 = self._zo_sv2 = self._zo_si2 = 0

    def _set_offsets(self):
        self._ov = _whole_offset(self._est_v)
        self._oi = _whole_offset(self._est_i)
        self._st[_OV] = self._ov + _BIAS
        self._st[_OI] = self._oi + _BIAS
        self._dv = self._est_v - (self._ov << 16)
        self._di = self._est_i - (self._oi << 16)

    @property
    def offsets_q16(self):
        """Current DC offset estimates (voltage, current) in 1/65536 LSB."""
        return self._est_v, self._est_i

    def _update_coefficients(self):
        t = self.period_q16
        dly = (t + (1 << 17)) >> 18  # round(T / 4)
        mask = self._st[_MASK]
        dly = 1 if dly < 1 else (mask - 1 if dly > mask - 1 else dly)
        self._st[_DELAY] = self.delay = dly
        x = ((TWO_PI_Q30 * dly) << 16) // t - HALF_PI_Q30  # theta - pi/2
        sin_t = _cos_q30(x)
        cos_t = -_sin_q30(x)
        beta = (TWO_PI_Q30 * self._i_delay) // t
        sin_b = _sin_q30(beta)
        cos_b = _cos_q30(beta)
        sin_tb = (sin_t * cos_b + cos_t * sin_b) >> 30
        cos_tb = (cos_t * cos_b - sin_t * sin_b) >> 30
        self._a = (sin_tb << COEF_BITS) // sin_t
        self._b = -((sin_b << COEF_BITS) // sin_t)
        self._c = (cos_tb << COEF_BITS) // sin_t
        self._d = -((cos_b << COEF_BITS) // sin_t)

    def set_phase_delay(self, i_delay_q16):
        self._i_delay = i_delay_q16
        self._update_coefficients()

    def chunk(self, vb, ib, start, n):
        st = self._st
        st[_START] = start
        st[_N] = n
        _sums(vb, ib, st, self._ring)
        sv = st[_SV]
        si = st[_SI]
        dv = self._dv
        di = self._di
        # Fractional offsets removed exactly (Q16 terms); see the module docstring.
        ndd = (n * dv * di) >> 16
        cvi = di * sv + dv * si - ndd
        cvd = di * sv + dv * st[_SD] - ndd
        svi = st[_SVI]
        svd = st[_SVD]
        a = self._a
        b = self._b
        t = a * svi + b * svd - ((a * cvi + b * cvd) >> 16) + self._rp
        p = t >> COEF_BITS
        self._rp = t - (p << COEF_BITS)
        a = self._c
        b = self._d
        t = a * svi + b * svd - ((a * cvi + b * cvd) >> 16) + self._rq
        q = t >> COEF_BITS
        self._rq = t - (q << COEF_BITS)
        self.p = p
        self.q = q
        ii = (st[_SII] << 16) - 2 * di * si + ((n * di * di) >> 16)
        self.ii = ii
        self._wii += ii
        self._wvv += (st[_SVV] << 16) - 2 * dv * sv + ((n * dv * dv) >> 16)
        self._wp += p
        self._wq += q
        if st[_ZC]:
            self._crossings(st[_ZC])
        self._wsv += sv
        self._wsi += si
        self._wn += n
        if self._wn >= self._wlen:
            self._end_window()
            return 1
        return 0

    def _crossing_time(self, k, prev, cur):
        # Crossing between samples k-1 and k of the window, in Q16 samples.
        t = (self._wn + k - 1) << 16
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
            self._zo_n1 = self._wn + st[_Z1N]
            self._zo_sv1 = self._wsv + st[_Z1SV]
            self._zo_si1 = self._wsi + st[_Z1SI]
        self._zo_n2 = self._wn + st[_ZLN]
        self._zo_sv2 = self._wsv + st[_ZLSV]
        self._zo_si2 = self._wsi + st[_ZLSI]

    def _end_window(self):
        n = self._wn
        self._measure_frequency(n)
        if self._track:
            self._track_offsets(n)
        self.w_n = n
        self.w_vv = self._wvv
        self.w_ii = self._wii
        self.w_p = self._wp
        self.w_q = self._wq
        self.windows += 1
        self._clear_window()

    def _measure_frequency(self, n):
        if not (self._zseen and self._zref_ok):
            self._zref_ok = 0
            self.freq_mhz = 0
            return
        if self._zcyc > 0:
            dt = self._zlast - self._zref
            t = dt // self._zcyc
            # Accept 40..70 Hz; anything else is a glitch, not the mains.
            if (self.fs << 16) // 70 < t < (self.fs << 16) // 40:
                self.freq_mhz = ((self.fs * 1000 * self._zcyc << 16) + (dt >> 1)) // dt
                if t != self.period_q16:
                    self.period_q16 = t
                    self._update_coefficients()
            else:
                self.freq_mhz = 0
        self._zref = self._zlast - (n << 16)
        self._zcyc = 0

    def _track_offsets(self, n):
        span = self._zo_n2 - self._zo_n1
        if self._zo_n1 >= 0 and span > 0:
            mv = ((self._zo_sv2 - self._zo_sv1) << 16) // span
            mi = ((self._zo_si2 - self._zo_si1) << 16) // span
        else:
            mv = (self._wsv << 16) // n
            mi = (self._wsi << 16) // n
        mv += self._ov << 16
        mi += self._oi << 16
        if self._est_fresh:
            self._est_fresh = 0
            self._est_v = mv
            self._est_i = mi
        else:
            self._est_v += (mv - self._est_v) >> OFFSET_SHIFT
            self._est_i += (mi - self._est_i) >> OFFSET_SHIFT
        self._set_offsets()

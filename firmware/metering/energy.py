"""Energy registers and instantaneous values, from the kernel's count-domain sums.

Owns the physical units: exact energy integration, import/export and quadrant
classification, anti-creep, and the scaled integers the COSEM registers publish.

Energy is integrated exactly. One chunk (<= 125 sample pairs) adds |P| count**2 to
one active register and |Q| to one reactive quadrant register, chosen by the signs of
that chunk's P and Q. Each register is a 64-bit count of count**2-samples, added by a
viper routine (exact, allocation-free, 167 years at 60 A before it could wrap). A
count**2 summed over one sample is worth
    K = v_uv_per_lsb * i_ua_per_lsb / (sample_rate * 3.6e12)  mWh = num/den
(reduced fraction of integers). A register reads (base + raw * num) // den mWh: whole
mWh, and the rest is an integer residue in 1/den mWh; nothing is rounded away, so the
total is the same whatever the block sizes and cannot drift over years. `base` (an
exact multiple of 1/den mWh) holds what was restored from flash or accumulated under a
previous calibration. Registers only ever increase; restore() refuses to lower one.

Reactive quadrants (IEC 62053-23): Q1 = P import, Q import (inductive load);
Q2 = P export, Q import; Q3 = P export, Q export; Q4 = P import, Q export
(capacitive load). Reactive import = Q1 + Q2, reactive export = Q3 + Q4.

Units and COSEM scalers (Register scaler_unit = (scaler, unit); unit codes from the
Blue Book enumeration):
    energy(E_ACTIVE_*)            mWh     scaler -3, unit 30 (Wh)
    energy(E_REACTIVE_*)          mvarh   scaler -3, unit 32 (varh)
    inst[INST_VOLTAGE]            0.01 V  scaler -2, unit 35 (V)     1-0:32.7.0
    inst[INST_CURRENT]            mA      scaler -3, unit 33 (A)     1-0:31.7.0
    inst[INST_P_IMPORT/EXPORT]    0.01 W  scaler -2, unit 27 (W)     1-0:1.7.0 / 2.7.0
    inst[INST_Q_IMPORT/EXPORT]    0.01 var scaler -2, unit 29 (var)  1-0:3.7.0 / 4.7.0
    inst[_INST_S]                  0.01 VA scaler -2, unit 28 (VA)    1-0:9.7.0
    inst[INST_PF]                 0.001   scaler -3, unit 255        1-0:13.7.0
    inst[INST_FREQ]               mHz     scaler -3, unit 44 (Hz)    1-0:14.7.0
update() works in small ints only (kernel.muldiv / kernel.q64 for the wide products and
quotients, exact to the rounding of the last step): the instantaneous values, and
`active_q8`, the active energy (import + export) booked in the last window in 1/256 mWh,
from which the task decides when to persist without reading the long-int registers.
Instantaneous values are means over the last measurement window (1 s by default):
RMS includes the ADC noise floor; PF = |P| / (Vrms * Irms), 0 when there is no
current; frequency is 0 while no mains cycle is seen. They refresh when `windows`
increments. Registers: energy 1-0:1.8.0 (A+), 2.8.0 (A-), 3.8.0 (R+), 4.8.0 (R-),
5.8.0 .. 8.8.0 (Q1 .. Q4)."""
import micropython
from array import array
from micropython import const

from metering.kernel import Kernel, MAX_CHUNK, W_VV, W_II, W_P, W_Q, as_calibration, read64, muldiv, q64, zeros

E_ACTIVE_IMPORT = const(0)
E_ACTIVE_EXPORT = const(1)
E_REACTIVE_Q1 = const(2)
E_REACTIVE_Q2 = const(3)
E_REACTIVE_Q3 = const(4)
E_REACTIVE_Q4 = const(5)
E_REACTIVE_IMPORT = const(6)  # Q1 + Q2, derived
E_REACTIVE_EXPORT = const(7)  # Q3 + Q4, derived
_N_REGS = const(6)

INST_VOLTAGE = const(0)
INST_CURRENT = const(1)
INST_P_IMPORT = const(2)
INST_P_EXPORT = const(3)
INST_Q_IMPORT = const(4)
INST_Q_EXPORT = const(5)
_INST_S = const(6)
INST_PF = const(7)
INST_FREQ = const(8)
_N_INST = const(9)

# (scaler, unit) per instantaneous index and per energy register, for COSEM Registers.
INST_SCALER_UNIT = ((-2, 35), (-3, 33), (-2, 27), (-2, 27), (-2, 29), (-2, 29), (-2, 28), (-3, 255), (-3, 44))
ENERGY_SCALER_UNIT = ((-3, 30), (-3, 30), (-3, 32), (-3, 32), (-3, 32), (-3, 32), (-3, 32), (-3, 32))

_STATE_VERSION = const(1)


@micropython.viper
def _book(acc, p: int, q: int):
    # |p| into the active register, |q| into the quadrant register (64-bit, low word
    # first at acc[2*reg]); quadrant by the signs, see the module docstring.
    a = ptr32(acc)
    if p >= 0:
        k = 0
        j = 4 if q >= 0 else 10  # Q1 : Q4
    else:
        k = 2
        p = 0 - p
        j = 6 if q >= 0 else 8  # Q2 : Q3
    if q < 0:
        q = 0 - q
    lo = uint(a[k])
    s = uint(lo + uint(p))
    a[k] = s
    if s < lo:
        a[k + 1] = a[k + 1] + 1
    lo = uint(a[j])
    s = uint(lo + uint(q))
    a[j] = s
    if s < lo:
        a[j + 1] = a[j + 1] + 1


@micropython.viper
def _delta(raw, mark, last):
    # last = raw - mark, mark = raw, for the six 64-bit registers (exact, portable:
    # 32-bit words compared unsigned for the borrow).
    r = ptr32(raw)
    m = ptr32(mark)
    d = ptr32(last)
    k = 0
    while k < 2 * _N_REGS:
        a = uint(r[k])
        b = uint(m[k])
        d[k] = a - b
        borrow = 1 if a < b else 0
        d[k + 1] = r[k + 1] - m[k + 1] - borrow
        m[k] = r[k]
        m[k + 1] = r[k + 1]
        k += 2


def _shift_for(m, top):
    """Even s <= top with |m| << s below 2**28 (m a small int)."""
    m = abs(m)
    s = 0
    while s < top and m < (1 << 26):
        m <<= 2
        s += 2
    return s


def _isqrt_small(n):
    """floor(sqrt(n)) for 0 <= n < 2**30, small ints."""
    if n <= 0:
        return 0
    x = 1 << 15
    while True:
        y = (x + n // x) >> 1
        if y >= x:
            break
        x = y
    while x * x > n:
        x -= 1
    return x


def _rms_q12(w, k, total, n):
    """RMS in Q12 counts of a window: sum of squares at w[k] (64-bit), plain sum
    `total`, n samples, the DC taken out. Small ints only."""
    s = _shift_for(q64(w, k, n, 0), 24)
    msq = q64(w, k, n, s)  # mean square << s, < 2**28
    mean = muldiv(total, 1 << s, n, 0)
    var = msq - muldiv(mean, mean, 1, s)
    if var <= 0:
        return 0
    e = 24 - s  # even: sqrt(var << e) is the Q12 RMS, < 2**26
    x = _isqrt_small(var) << (e >> 1)
    if e:
        j = 0
        while j < 3 and x > 0:  # Newton from a 14-bit start: exact to +-1 after 2
            x = (x + muldiv(var, 1 << e, x, 0)) >> 1
            j += 1
    return x


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def energy_fraction(v_uv_per_lsb, i_ua_per_lsb, sample_rate):
    """(num, den): mWh per count**2 per sample, as a reduced fraction."""
    num = v_uv_per_lsb * i_ua_per_lsb  # picowatts per count**2
    den = sample_rate * 3600 * 10**9  # picowatt-samples per mWh: 3.6e12 pJ * fs
    g = _gcd(num, den)
    return num // g, den // g


class Meter:
    """One voltage/current channel pair: m = Meter(calibration, sample_rate).

    m.process(v_block, i_block)   array('h') blocks of equal length, any length; the
                                  sampling path, allocation-free. Returns the number
                                  of measurement windows it completed.
    m.update()                    once-per-window work (frequency, offsets, the inst
                                  values); call it after process() returned > 0.
                                  Blocks up to one window long lose nothing.
    m.energy(E_...)               int, mWh or mvarh
    m.energy_exact(E_...)         (whole, residue, den): exactly whole + residue/den
    m.inst                        the scaled ints above (live list, read-only)
    m.windows                     increments each time inst is refreshed
    m.snapshot() / m.restore(s)   persistence: a tuple of ints, see snapshot()"""

    def __init__(self, calibration, sample_rate=4000, window=None):
        self.cal = as_calibration(calibration)
        self.sample_rate = sample_rate
        self.kernel = Kernel(self.cal, sample_rate, window)
        self._raw = zeros("i", 2 * _N_REGS)
        self._base = [0] * _N_REGS  # in 1/den mWh
        self.num = self.den = 1
        self.inst = [0] * _N_INST
        self.windows = 0
        self.active_q8 = 0  # active energy booked in the last window, 1/256 mWh
        self._mark = zeros("i", 2 * _N_REGS)  # raw at the end of the last window
        self._last = zeros("i", 2 * _N_REGS)  # raw booked during the last window (64-bit)
        self._constants()

    def _constants(self):
        cal = self.cal
        self.num, self.den = energy_fraction(cal.v_uv_per_lsb, cal.i_ua_per_lsb, self.sample_rate)
        # Anti-creep threshold: mean i*i in count**2, Q4, compared per chunk.
        self._creep = (cal.i_start_ua * cal.i_start_ua << 4) // (cal.i_ua_per_lsb * cal.i_ua_per_lsb)
        if self._creep >= 1 << 22:
            raise ValueError("i_start_ua beyond the current range")
        # Small-int constants for update(), computed here once with long ints:
        # kvi / 1e10 (0.01 W per count**2) = _kq / 2**_kk, and mWh per count**2-sample
        # num / den = _kw / 2**_kwb, each mantissa in [2**28, 2**29): 3.7e-9 relative.
        self._kq, self._kk = _mantissa(cal.v_uv_per_lsb * cal.i_ua_per_lsb, 10**10)
        self._kw, self._kwb = _mantissa(self.num, self.den)

    def _total(self, reg):
        """Register `reg` in 1/den mWh (long int: not on the sampling path)."""
        return self._base[reg] + read64(self._raw, 2 * reg) * self.num

    def _fold(self, new_den):
        # Move raw counts into base at the current weight, base rescaled to new_den.
        for reg in range(_N_REGS):
            self._base[reg] = self._total(reg) * new_den // self.den
        self._zero_raw()

    def _zero_raw(self):
        for k in range(2 * _N_REGS):
            self._raw[k] = 0
            self._mark[k] = 0

    def set_calibration(self, calibration):
        """New gains take effect from the next block; energy so far is kept exactly
        (its residue rounded down once into the new residue unit)."""
        cal = as_calibration(calibration)
        num, den = energy_fraction(cal.v_uv_per_lsb, cal.i_ua_per_lsb, self.sample_rate)
        self._fold(den)
        self.cal = cal
        self._constants()
        self.kernel.set_phase_delay(cal.i_delay_q16)

    def process(self, vb, ib):
        n = len(vb)
        if len(ib) != n:
            raise ValueError("voltage and current blocks differ in length")
        k = self.kernel
        start = 0
        done = 0
        while start < n:
            m = n - start
            if m > MAX_CHUNK:
                m = MAX_CHUNK
            if m > k.wlen - k.wn:  # chunks end on window boundaries
                m = k.wlen - k.wn
            done += k.chunk(vb, ib, start, m)
            if k.sii >= (m * self._creep) >> 4:
                _book(self._raw, k.p, k.q)
            start += m
        return done

    def update(self):
        k = self.kernel
        if not k.pending:
            return
        k.update()
        # Small ints only from here (see the module docstring).
        last = self._last
        _delta(self._raw, self._mark, last)
        # Active energy of the window: count**2-samples / 4096 (< 2**23 each), then mWh.
        a = q64(last, 2 * E_ACTIVE_IMPORT, 4096, 0) + q64(last, 2 * E_ACTIVE_EXPORT, 4096, 0)
        self.active_q8 = muldiv(a, self._kw, 1, self._kwb - 20) if self._kwb >= 20 else a * self._kw
        w = k.done
        n = k.w_n
        kk = self._kk
        # AC RMS: the window's DC (residual offset) taken out, Q12 counts.
        rv = _rms_q12(w, W_VV, k.w_sv, n)
        ri = _rms_q12(w, W_II, k.w_si, n)
        inst = self.inst
        inst[INST_VOLTAGE] = muldiv(rv, self.cal.v_uv_per_lsb, 10000, 12)
        inst[INST_CURRENT] = muldiv(ri, self.cal.i_ua_per_lsb, 1000, 12)
        # Mean P and Q per sample in count**2 << sp, then 0.01 W / var.
        sp = _shift_for(q64(w, W_P, n, 0), 28)
        pm = q64(w, W_P, n, sp)
        p = muldiv(pm, self._kq, 1, sp + kk)
        sq = _shift_for(q64(w, W_Q, n, 0), 28)
        q = muldiv(q64(w, W_Q, n, sq), self._kq, 1, sq + kk)
        inst[INST_P_IMPORT] = p if p > 0 else 0
        inst[INST_P_EXPORT] = -p if p < 0 else 0
        inst[INST_Q_IMPORT] = q if q > 0 else 0
        inst[INST_Q_EXPORT] = -q if q < 0 else 0
        s6 = muldiv(rv, ri, 1, 18)  # Vrms * Irms, count**2 in Q6
        inst[_INST_S] = muldiv(s6, self._kq, 1, 6 + kk)
        pf = 0
        if s6 > 0:
            pf = muldiv(abs(pm), 1000 << 6, s6, sp)
            pf = 1000 if pf > 1000 else pf
        inst[INST_PF] = pf
        inst[INST_FREQ] = k.freq_mhz
        self.windows += 1

    def repeat_window(self, count):
        """Book the last complete window's energy `count` more times: the task's
        thinning at high simulation speed (metering/task.py). Exact in count**2."""
        for reg in range(_N_REGS):
            self._base[reg] += read64(self._last, 2 * reg) * count * self.num

    def instantaneous(self):
        return tuple(self.inst)

    def energy(self, reg):
        if 0 <= reg < _N_REGS:
            return self._total(reg) // self.den
        if reg == E_REACTIVE_IMPORT:
            a = E_REACTIVE_Q1
        elif reg == E_REACTIVE_EXPORT:
            a = E_REACTIVE_Q3
        else:
            raise ValueError("no energy register %d" % reg)
        # Q1+Q2 and Q3+Q4 sit side by side: floor of the exact sum, residues included.
        return (self._total(a) + self._total(a + 1)) // self.den

    def energy_exact(self, reg):
        if not 0 <= reg < _N_REGS:
            raise ValueError("no energy register %d" % reg)
        t = self._total(reg)
        return t // self.den, t % self.den, self.den

    def raw(self, reg):
        """Register `reg` since the last fold, in count**2-samples (for tests)."""
        return read64(self._raw, 2 * reg)

    def snapshot(self):
        """(_STATE_VERSION, den, e0, r0, e1, r1, ... e5, r5): mWh/mvarh and residues in
        1/den, registers in E_ order. Ints up to 2**64; store them as 8-byte fields."""
        state = [_STATE_VERSION, self.den]
        for reg in range(_N_REGS):
            t = self._total(reg)
            state.append(t // self.den)
            state.append(t % self.den)
        return tuple(state)

    def restore(self, state):
        """Load a snapshot. Raises ValueError on a malformed state or one that would
        lower any register (energy never goes backwards)."""
        if len(state) != 2 + 2 * _N_REGS or state[0] != _STATE_VERSION:
            raise ValueError("not a metering state")
        den = state[1]
        if not isinstance(den, int) or den <= 0:
            raise ValueError("bad residue unit")
        totals = []
        for reg in range(_N_REGS):
            e = state[2 + 2 * reg]
            r = state[3 + 2 * reg]
            if not (isinstance(e, int) and isinstance(r, int)) or e < 0 or not 0 <= r < den:
                raise ValueError("bad energy register %d" % reg)
            t = e * self.den + r * self.den // den
            if t < self._total(reg):
                raise ValueError("restore would lower energy register %d" % reg)
            totals.append(t)
        self._zero_raw()
        self._base = totals


def _mantissa(num, den):
    """(m, b): num / den = m / 2**b with 2**28 <= m < 2**29 (long ints: setup only)."""
    b = 0
    m = num // den
    while m >= 1 << 29:
        b -= 1
        m = num // (den << -b)
    while m < 1 << 28:
        b += 1
        m = (num << b) // den
    return m, b

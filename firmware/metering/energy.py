"""Energy registers and instantaneous values, from the kernel's count-domain sums.

Owns the physical units: exact energy integration, import/export and quadrant
classification, anti-creep, and the scaled integers the COSEM registers publish.

Energy is integrated exactly. One chunk (<= 200 sample pairs, 50 ms at 4 kHz) adds
|P| count**2 to one active register and |Q| to one reactive quadrant register, chosen
by the signs of that chunk's P and Q. A count**2 summed over one sample is worth
    K = v_uv_per_lsb * i_ua_per_lsb / (sample_rate * 3.6e12)  mWh
held as a reduced fraction num/den of integers. Each register is a whole number of
mWh (mvarh) plus an integer residue in units of 1/den mWh: residue += x * num, and
whole multiples of den move into the mWh count. Nothing is rounded away, so the total
is the same whatever the block sizes and cannot drift over years. (When the reduced
num would exceed 2**30 it is rounded to 30 bits once, at calibration: a fixed
relative change below 1e-9 of the calibration constant, not an accumulating error.)
Registers only ever increase; restore() refuses to lower one.

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
    inst[INST_S]                  0.01 VA scaler -2, unit 28 (VA)    1-0:9.7.0
    inst[INST_PF]                 0.001   scaler -3, unit 255        1-0:13.7.0
    inst[INST_FREQ]               mHz     scaler -3, unit 44 (Hz)    1-0:14.7.0
Instantaneous values are means over the last measurement window (1 s by default):
RMS includes the ADC noise floor; PF = |P| / (Vrms * Irms), 0 when there is no
current; frequency is 0 while no mains cycle is seen. They refresh when `windows`
increments. Registers: energy 1-0:1.8.0 (A+), 2.8.0 (A-), 3.8.0 (R+), 4.8.0 (R-),
5.8.0 .. 8.8.0 (Q1 .. Q4)."""
from micropython import const

from metering.kernel import Kernel, MAX_CHUNK, as_calibration

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
INST_S = const(6)
INST_PF = const(7)
INST_FREQ = const(8)
_N_INST = const(9)

# (scaler, unit) per instantaneous index and per energy register, for COSEM Registers.
INST_SCALER_UNIT = ((-2, 35), (-3, 33), (-2, 27), (-2, 27), (-2, 29), (-2, 29), (-2, 28), (-3, 255), (-3, 44))
ENERGY_SCALER_UNIT = ((-3, 30), (-3, 30), (-3, 32), (-3, 32), (-3, 32), (-3, 32), (-3, 32), (-3, 32))

STATE_VERSION = const(1)
_NUM_LIMIT = const(1 << 30)  # keeps residue + x * num below 2**62 (small int on 64-bit)


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def _isqrt(n):
    """floor(sqrt(n)) by Newton's method on small ints (no allocation on 64-bit)."""
    if n <= 0:
        return 0
    x = n
    y = (x + 1) >> 1
    while y < x:
        x = y
        y = (x + n // x) >> 1
    return x


def energy_fraction(v_uv_per_lsb, i_ua_per_lsb, sample_rate):
    """(num, den): mWh per count**2 per sample, reduced, num < 2**30."""
    num = v_uv_per_lsb * i_ua_per_lsb  # picowatts per count**2
    den = sample_rate * 3600 * 10**9  # picowatt-samples per mWh: 3.6e12 pJ * fs
    g = _gcd(num, den)
    num //= g
    den //= g
    while num >= _NUM_LIMIT:
        num = (num + 1) >> 1
        den = (den + 1) >> 1
    g = _gcd(num, den)
    return num // g, den // g


class Meter:
    """One voltage/current channel pair: m = Meter(calibration, sample_rate).

    m.process(v_block, i_block)   array('h') blocks of equal length, any length
    m.energy(E_...)               int, mWh or mvarh
    m.energy_exact(E_...)         (whole, residue, den): exactly whole + residue/den
    m.inst / m.instantaneous()    the scaled ints above (the list is live, read-only)
    m.windows                     increments each time inst is refreshed
    m.snapshot() / m.restore(s)   persistence: a tuple of ints, see snapshot()"""

    def __init__(self, calibration, sample_rate=4000, window=None):
        self.cal = as_calibration(calibration)
        self.sample_rate = sample_rate
        self.kernel = Kernel(self.cal, sample_rate, window)
        self._e = [0] * _N_REGS
        self._r = [0] * _N_REGS
        self.num = self.den = 1
        self.inst = [0] * _N_INST
        self.windows = 0
        self._constants()

    def _constants(self):
        cal = self.cal
        self._kv = cal.v_uv_per_lsb
        self._ki = cal.i_ua_per_lsb
        self.num, self.den = energy_fraction(self._kv, self._ki, self.sample_rate)
        # centiwatts per count**2, Q20.
        self._kpow = ((self._kv * self._ki << 20) + 5 * 10**9) // 10**10
        # Anti-creep threshold: mean i*i in count**2, Q16 (like the kernel's ii).
        self._creep = (cal.i_start_ua * cal.i_start_ua << 16) // (self._ki * self._ki)

    def set_calibration(self, calibration):
        """New gains take effect from the next block; residues are rescaled once."""
        cal = as_calibration(calibration)
        old_den = self.den
        self.cal = cal
        self._constants()
        for reg in range(_N_REGS):
            self._r[reg] = self._r[reg] * self.den // old_den
        self.kernel.set_phase_delay(cal.i_delay_q16)

    def process(self, vb, ib):
        n = len(vb)
        if len(ib) != n:
            raise ValueError("voltage and current blocks differ in length")
        k = self.kernel
        start = 0
        while start < n:
            m = n - start
            if m > MAX_CHUNK:
                m = MAX_CHUNK
            done = k.chunk(vb, ib, start, m)
            if k.ii >= m * self._creep:
                self._register(k.p, k.q)
            if done:
                self._window()
            start += m

    def _register(self, p, q):
        if p >= 0:
            self._add(E_ACTIVE_IMPORT, p)
            if q >= 0:
                self._add(E_REACTIVE_Q1, q)
            else:
                self._add(E_REACTIVE_Q4, -q)
        else:
            self._add(E_ACTIVE_EXPORT, -p)
            if q >= 0:
                self._add(E_REACTIVE_Q2, q)
            else:
                self._add(E_REACTIVE_Q3, -q)

    def _add(self, reg, x):
        r = self._r[reg] + x * self.num
        den = self.den
        if r >= den:
            whole = r // den
            self._e[reg] += whole
            r -= whole * den
        self._r[reg] = r

    def _window(self):
        k = self.kernel
        n = k.w_n
        inst = self.inst
        rv = _isqrt((k.w_vv << 8) // n)  # RMS in counts, Q12
        ri = _isqrt((k.w_ii << 8) // n)
        inst[INST_VOLTAGE] = (rv * self._kv + (5000 << 12)) // (10000 << 12)
        inst[INST_CURRENT] = (ri * self._ki + (500 << 12)) // (1000 << 12)
        p = ((((k.w_p << 8) // n) * self._kpow) + (1 << 27)) >> 28
        inst[INST_P_IMPORT] = p if p > 0 else 0
        inst[INST_P_EXPORT] = -p if p < 0 else 0
        q = ((((k.w_q << 8) // n) * self._kpow) + (1 << 27)) >> 28
        inst[INST_Q_IMPORT] = q if q > 0 else 0
        inst[INST_Q_EXPORT] = -q if q < 0 else 0
        s = rv * ri  # count**2, Q24
        inst[INST_S] = (((s >> 16) * self._kpow) + (1 << 27)) >> 28
        pf = 0
        if s > 0:
            pf = (((abs(k.w_p) << 24) // n) * 1000 + (s >> 1)) // s
            if pf > 1000:
                pf = 1000
        inst[INST_PF] = pf
        inst[INST_FREQ] = k.freq_mhz
        self.windows += 1

    def instantaneous(self):
        return tuple(self.inst)

    def energy(self, reg):
        if 0 <= reg < _N_REGS:
            return self._e[reg]
        if reg == E_REACTIVE_IMPORT:
            a = E_REACTIVE_Q1
        elif reg == E_REACTIVE_EXPORT:
            a = E_REACTIVE_Q3
        else:
            raise ValueError("no energy register %d" % reg)
        # Q1+Q2 and Q3+Q4 sit side by side: floor of the exact sum, residues included.
        return self._e[a] + self._e[a + 1] + (self._r[a] + self._r[a + 1]) // self.den

    def energy_exact(self, reg):
        if not 0 <= reg < _N_REGS:
            raise ValueError("no energy register %d" % reg)
        return self._e[reg], self._r[reg], self.den

    @property
    def energy_mwh_import(self):
        return self._e[E_ACTIVE_IMPORT]

    @property
    def energy_mwh_export(self):
        return self._e[E_ACTIVE_EXPORT]

    @property
    def energy_mvarh_import(self):
        return self.energy(E_REACTIVE_IMPORT)

    @property
    def energy_mvarh_export(self):
        return self.energy(E_REACTIVE_EXPORT)

    def snapshot(self):
        """(STATE_VERSION, den, e0, r0, e1, r1, ... e5, r5): mWh/mvarh and residues in
        1/den, registers in E_ order. Ints up to 2**62; store them as 8-byte fields."""
        state = [STATE_VERSION, self.den]
        for reg in range(_N_REGS):
            state.append(self._e[reg])
            state.append(self._r[reg])
        return tuple(state)

    def restore(self, state):
        """Load a snapshot. Raises ValueError on a malformed state or one that would
        lower any register (energy never goes backwards)."""
        if len(state) != 2 + 2 * _N_REGS or state[0] != STATE_VERSION:
            raise ValueError("not a metering state")
        den = state[1]
        if not isinstance(den, int) or den <= 0:
            raise ValueError("bad residue unit")
        whole = []
        rest = []
        for reg in range(_N_REGS):
            e = state[2 + 2 * reg]
            r = state[3 + 2 * reg]
            if not (isinstance(e, int) and isinstance(r, int)) or e < 0 or not 0 <= r < den:
                raise ValueError("bad energy register %d" % reg)
            r = r * self.den // den
            if e * self.den + r < self._e[reg] * self.den + self._r[reg]:
                raise ValueError("restore would lower energy register %d" % reg)
            whole.append(e)
            rest.append(r)
        for reg in range(_N_REGS):
            self._e[reg] = whole[reg]
            self._r[reg] = rest[reg]

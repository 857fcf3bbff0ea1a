"""Simulated ADC for the unix board, and a replay source for recorded samples.

SimADC(config).fill(v_block, i_block) writes len(v_block) sample pairs (array('h'),
signed 12-bit codes with mid-scale removed, like adapters/adc_board.py) and advances
the simulated clock by that many sample periods. Floats are used only to build tables
when the configuration changes; the per-sample loop is integer viper:

- a 30-bit phase accumulator (DDS) steps through one-period tables of the voltage and
  current waveforms (256 points, Q8 LSB, linear interpolation). Each harmonic's table
  amplitude is divided by sinc(h*pi/256)**2, the gain of linear interpolation, so the
  generated waveform carries exactly the configured amplitudes (the interpolation's
  images sit near the 255th harmonic, ~1e-5 of the fundamental: no measurable power);
- noise comes from a per-channel table of 256 Gaussian values (Box-Muller on a seeded
  LCG, normalised to zero mean and the configured RMS; int16, Q8 LSB, or coarser by
  `noise shift` bits when the RMS is beyond ~20 LSB) indexed by a 30-bit LCG per
  sample: deterministic for a given seed, on every port;
- DC offset is added, then the sum is rounded to an LSB and clamped to the ADC range.

Config (dict; every key optional):
    voltage      fundamental RMS volts (230.0)         current  fundamental RMS amps (5.0)
    phase        degrees the current fundamental lags the voltage (negative: leads)
    freq         Hz (50.0)          drift  (amplitude_hz, period_s): slow sinusoidal wander
    harmonics    {"v": ((3, pct, deg), (5, pct, deg)), "i": (...)}: amplitude in % of
                 that channel's fundamental; phase of h*w*t + deg, on the same time
                 origin for both channels (equal degrees = in phase with the voltage
                 harmonic, whatever the fundamental phase)
    noise        RMS noise in LSB, a number or (v, i)      offset  DC offset in LSB, idem
    noise_shape  "white" (a SAR ADC's thermal noise), or "hp": the first difference
                 of white noise, same RMS. Both dither the 12-bit quantiser alike (the
                 bias depends only on the per-sample distribution), but hp noise has
                 almost no power near the mains harmonics, so averages of v*i converge
                 ~10x faster: the 5 % accuracy points settle in minutes of simulated
                 time instead of hours. Tests and the benchmark use it for that reason.
    seed         PRNG seed (1)      sample_rate  Hz per channel (4000)
    v_lsb, i_lsb board scale, volts and amps per LSB (0.25 V, 0.0625 A: 512 V and
                 128 A peak full scale, room for 230 V + 15 % and Imax 60 A with
                 harmonics; 5 % of Iref = 5 A is then 4 LSB RMS)
    bits         ADC resolution (12)
    skew         the current sample of a pair is taken this many sample periods after
                 the voltage one (sequential ADC), for testing phase compensation

Replay file format ("ADCR", little-endian): a 24-byte header
    magic b"ADCR" | u16 version = 1 | u16 flags = 0 | u32 sample_rate
    | u32 v_uv_per_lsb | u32 i_ua_per_lsb | u32 reserved = 0
followed by sample pairs, each int16 voltage then int16 current. record() writes one
from any source with fill(); ReplayADC reads it back."""
import math
import struct
import micropython
from array import array
from micropython import const

# Memory: the meter runs in a 64 KB heap, so the simulator keeps its tables small and
# in separate ~1 KB arrays: two waveform tables of 257 int32 (1028 bytes each) and two
# noise tables of 256 int16 (512 bytes each), ~3.1 KB in all, each allocated at its final
# size (no same-size temporary).
_TSIZE = const(256)
_TSHIFT = const(22)  # phase (30 bits) >> 22: table index
_NOISE = const(256)
_NSHIFT = const(22)  # LCG (30 bits) >> 22: noise index
_NQ12_MAX = const(32767)
_TAB_BIAS = const(1 << 24)  # ptr32 loads zero-extend on 64-bit: tables hold value + bias
_LCG_MUL = const(1664525)
_LCG_ADD = const(1013904223)
_MASK30 = const(0x3FFFFFFF)

# State array layout for _synth.
_S_N = const(0)
_S_PHASE = const(1)
_S_STEP = const(2)
_S_RV = const(3)
_S_RI = const(4)
_S_OFFV = const(5)  # offsets, Q8 LSB + _TAB_BIAS
_S_OFFI = const(6)
_S_LO = const(7)  # ADC range, + _TAB_BIAS
_S_HI = const(8)
_S_NOISY = const(9)  # 0 none, 1 white, 2 high-pass (first difference)
_S_PV = const(10)  # previous noise values (Q8 LSB, biased), for the high-pass shape
_S_PI = const(11)
_S_NSV = const(12)  # noise table shifts: table value << shift is Q8 LSB
_S_NSI = const(13)
_S_SIZE = const(14)


def _zeros(typecode, n):
    # array of n zeros allocated once at its final size: array(tc, bytes(k)) would
    # first build a same-size bytes temporary.
    a = array(typecode, range(n))
    for k in range(n):
        a[k] = 0
    return a


@micropython.viper
def _synth(vout, iout, tabs, st):
    # tabs: (voltage table, current table, voltage noise, current noise).
    vo = ptr16(vout)
    io = ptr16(iout)
    tv = ptr32(tabs[0])
    ti = ptr32(tabs[1])
    tnv = ptr16(tabs[2])
    tni = ptr16(tabs[3])
    s = ptr32(st)
    n = s[_S_N]
    ph = s[_S_PHASE]
    step = s[_S_STEP]
    rv = s[_S_RV]
    ri = s[_S_RI]
    offv = s[_S_OFFV] - 2 * _TAB_BIAS + 128  # biased offset and table value, rounding
    offi = s[_S_OFFI] - 2 * _TAB_BIAS + 128
    lo = s[_S_LO] - _TAB_BIAS
    hi = s[_S_HI] - _TAB_BIAS
    noisy = s[_S_NOISY]
    pv = s[_S_PV] - _TAB_BIAS
    pi = s[_S_PI] - _TAB_BIAS
    shv = s[_S_NSV]
    shi = s[_S_NSI]
    k = 0
    while k < n:
        idx = ph >> _TSHIFT
        fr = (ph >> 8) & 0x3FFF
        a = tv[idx]
        y = a + (((tv[idx + 1] - a) * fr) >> 14) + offv
        a = ti[idx]
        z = a + (((ti[idx + 1] - a) * fr) >> 14) + offi
        if noisy != 0:
            rv = (rv * _LCG_MUL + _LCG_ADD) & _MASK30
            ri = (ri * _LCG_MUL + _LCG_ADD) & _MASK30
            nv = ((int(tnv[rv >> _NSHIFT]) ^ 0x8000) - 0x8000) << shv
            ni = ((int(tni[ri >> _NSHIFT]) ^ 0x8000) - 0x8000) << shi
            if noisy == 2:
                y += nv - pv
                z += ni - pi
                pv = nv
                pi = ni
            else:
                y += nv
                z += ni
        y >>= 8
        z >>= 8
        if y < lo:
            y = lo
        elif y > hi:
            y = hi
        if z < lo:
            z = lo
        elif z > hi:
            z = hi
        vo[k] = y
        io[k] = z
        ph = (ph + step) & _MASK30
        k += 1
    s[_S_PHASE] = ph
    s[_S_RV] = rv
    s[_S_RI] = ri
    s[_S_PV] = pv + _TAB_BIAS
    s[_S_PI] = pi + _TAB_BIAS


_SHAPES = {"white": 1, "hp": 2}


def _pair(x):
    return (x[0], x[1]) if isinstance(x, (tuple, list)) else (x, x)


class _Lcg:
    """The same 30-bit LCG as the viper loop, for seeding and noise tables."""

    def __init__(self, seed):
        self.x = (seed * 2654435761 + 12345) & _MASK30

    def next(self):
        self.x = (self.x * _LCG_MUL + _LCG_ADD) & _MASK30
        return self.x

    def uniform(self):
        return ((self.next() >> 6) + 0.5) / (1 << 24)


def _noise_table(sigma, rng, out):
    """Fill the int16 table `out` with _NOISE Gaussian values of RMS sigma LSB, zero
    mean; returns the shift that makes them Q8 LSB (0 unless sigma is beyond ~20 LSB).
    Two passes over the table itself (Q12 draws first, |draw| < 5.9 * 4096 fits int16),
    so building it needs no list of boxed floats."""
    k = 0
    while k < _NOISE:
        r = math.sqrt(-2.0 * math.log(rng.uniform()))
        a = 2 * math.pi * rng.uniform()
        out[k] = int(r * math.cos(a) * 4096)
        out[k + 1] = int(r * math.sin(a) * 4096)
        k += 2
    total = 0
    for k in range(_NOISE):
        total += out[k]
    mean = total / _NOISE
    acc = 0.0
    peak = 0.0
    for k in range(_NOISE):
        d = out[k] - mean
        acc += d * d
        peak = max(peak, abs(d))
    scale = sigma * 256 / (math.sqrt(acc / _NOISE) or 1.0)
    shift = 0
    while peak * scale / (1 << shift) > _NQ12_MAX - 1:
        shift += 1
    scale /= 1 << shift
    for k in range(_NOISE):
        out[k] = int(round((out[k] - mean) * scale))
    return shift


class SimADC:
    DEFAULTS = {
        "voltage": 230.0,
        "current": 5.0,
        "phase": 0.0,
        "freq": 50.0,
        "drift": None,
        "harmonics": None,
        "noise": 0.0,
        "noise_shape": "white",
        "offset": 0.0,
        "seed": 1,
        "sample_rate": 4000,
        "v_lsb": 0.25,
        "i_lsb": 0.0625,
        "bits": 12,
        "skew": 0.0,
    }

    def __init__(self, config=None):
        self.config = dict(self.DEFAULTS)
        self.samples = 0
        self._tabs = (_zeros("i", _TSIZE + 1), _zeros("i", _TSIZE + 1), _zeros("h", _NOISE), _zeros("h", _NOISE))
        self._st = _zeros("i", _S_SIZE)
        self.configure(config or {})

    @property
    def sample_rate(self):
        return self.config["sample_rate"]

    def configure(self, changes):
        """Change any config keys; the waveform stays phase-continuous."""
        for key in changes:
            if key not in self.DEFAULTS:
                raise ValueError("unknown simulator key: " + key)
        if self.samples and "sample_rate" in changes:
            raise ValueError("sample_rate is fixed once samples were taken")
        self.config.update(changes)
        c = self.config
        harm = c["harmonics"] or {}
        vpk = c["voltage"] * math.sqrt(2) / c["v_lsb"] * 256
        ipk = c["current"] * math.sqrt(2) / c["i_lsb"] * 256
        skew = 2 * math.pi * c["freq"] * c["skew"] / c["sample_rate"]
        self._table(self._tabs[0], vpk, 0.0, 0.0, harm.get("v", ()))
        self._table(self._tabs[1], ipk, -math.radians(c["phase"]), skew, harm.get("i", ()))
        st = self._st
        nv, ni = _pair(c["noise"])
        ov, oi = _pair(c["offset"])
        st[_S_OFFV] = int(round(ov * 256)) + _TAB_BIAS
        st[_S_OFFI] = int(round(oi * 256)) + _TAB_BIAS
        half = 1 << (c["bits"] - 1)
        st[_S_LO] = -half + _TAB_BIAS
        st[_S_HI] = half - 1 + _TAB_BIAS
        shape = _SHAPES.get(c["noise_shape"])
        if shape is None:
            raise ValueError("noise_shape is 'white' or 'hp'")
        st[_S_NOISY] = shape if (nv or ni) else 0
        # A first difference of two independent draws has sqrt(2) times their RMS.
        scale = 0.7071067811865476 if shape == 2 else 1.0
        rng = _Lcg(c["seed"])
        tabs = self._tabs
        st[_S_NSV] = _noise_table(nv * scale, rng, tabs[2])
        st[_S_NSI] = _noise_table(ni * scale, rng, tabs[3])
        st[_S_PV] = (tabs[2][0] << st[_S_NSV]) + _TAB_BIAS
        st[_S_PI] = (tabs[3][0] << st[_S_NSI]) + _TAB_BIAS
        if "seed" in changes or not self.samples:
            st[_S_RV] = rng.next()
            st[_S_RI] = rng.next()
        self._set_step()

    def _table(self, t, peak, phase, skew, harmonics):
        w = 2 * math.pi / _TSIZE
        comps = [(1, 1.0, phase + skew)]
        for h, pct, deg in harmonics:
            comps.append((h, pct / 100.0, math.radians(deg) + h * skew))
        # Linear interpolation between table points scales harmonic h by sinc(x)**2.
        gains = []
        for h, amp, ph in comps:
            x = h * math.pi / _TSIZE
            gains.append((h, peak * amp / (math.sin(x) / x) ** 2, ph))
        for k in range(_TSIZE + 1):
            y = 0.0
            for h, amp, ph in gains:
                y += amp * math.sin(h * w * k + ph)
            t[k] = int(round(y)) + _TAB_BIAS

    def _set_step(self):
        c = self.config
        f = c["freq"]
        if c["drift"]:
            amp, period = c["drift"]
            f += amp * math.sin(2 * math.pi * self.samples / c["sample_rate"] / period)
        self._st[_S_STEP] = int(round(f / c["sample_rate"] * (1 << 30)))

    def frequency(self):
        """The frequency actually synthesised now (the DDS step is quantised)."""
        return self._st[_S_STEP] * self.config["sample_rate"] / (1 << 30)

    def fill(self, v_block, i_block):
        n = len(v_block)
        if len(i_block) != n:
            raise ValueError("blocks differ in length")
        if self.config["drift"]:
            self._set_step()
        self._st[_S_N] = n
        _synth(v_block, i_block, self._tabs, self._st)
        self.samples += n
        return n

    def skip(self, n):
        """Advance the simulated clock by n sample periods without producing samples
        (phase-continuous): lets the metering task thin out simulated time."""
        st = self._st
        st[_S_PHASE] = (st[_S_PHASE] + n * st[_S_STEP]) & _MASK30
        self.samples += n
        if self.config["drift"]:
            self._set_step()

    def now_ms(self):
        return self.samples * 1000 // self.config["sample_rate"]

    def seconds(self):
        return self.samples / self.config["sample_rate"]

    def power(self):
        """Analytic active power, W: fundamental plus harmonic products."""
        c = self.config
        p = c["voltage"] * c["current"] * math.cos(math.radians(c["phase"]))
        harm = c["harmonics"] or {}
        vh = {h: (pct, deg) for h, pct, deg in harm.get("v", ())}
        for h, pct, deg in harm.get("i", ()):
            if h in vh:
                vp, vd = vh[h]
                p += c["voltage"] * vp / 100 * c["current"] * pct / 100 * math.cos(math.radians(vd - deg))
        return p

    def reactive_power(self):
        """Analytic fundamental reactive power, var (positive when the current lags)."""
        c = self.config
        return c["voltage"] * c["current"] * math.sin(math.radians(c["phase"]))

    def calibration(self):
        """The calibration dict matching this simulated board's scale."""
        c = self.config
        return {"v_uv_per_lsb": int(round(c["v_lsb"] * 1e6)), "i_ua_per_lsb": int(round(c["i_lsb"] * 1e6))}


# The simulator section of a board/command-line config, as the issue names it:
# voltage (V RMS), current (A RMS), phase (deg, current lags), frequency (Hz),
# harmonics as fractions of the fundamental ({"v3": .05, "v5": .03, "i3": .3, "i5": .15},
# in phase with the voltage harmonic), noise, offset (LSB), speed (clock multiple,
# used by the composition root's clock, not here). Other SimADC keys pass through.
_PARAM_RENAME = {"frequency": "freq"}


def sim_config(params):
    """SimADC config dict from the simulator parameters above."""
    cfg = {}
    for key, value in params.items():
        if key == "speed":
            continue
        if key == "harmonics" and isinstance(value, dict) and not ("v" in value or "i" in value):
            value = {
                ch: tuple((h, 100.0 * value[ch + str(h)], 0.0) for h in (3, 5) if value.get(ch + str(h)))
                for ch in ("v", "i")
            }
        cfg[_PARAM_RENAME.get(key, key)] = value
    return cfg


def from_params(params):
    return SimADC(sim_config(params))


_HEADER = "<4sHHIIII"
_HEADER_SIZE = const(24)


def record(path, source, pairs, block=160):
    """Write `pairs` sample pairs from any source with fill() to an ADCR file."""
    cal = source.calibration()
    v = array("h", bytes(2 * block))
    i = array("h", bytes(2 * block))
    both = array("h", bytes(4 * block))
    with open(path, "wb") as f:
        f.write(struct.pack(_HEADER, b"ADCR", 1, 0, source.sample_rate, cal["v_uv_per_lsb"], cal["i_ua_per_lsb"], 0))
        left = pairs
        while left > 0:
            n = block if left > block else left
            source.fill(v, i)
            for k in range(n):
                both[2 * k] = v[k]
                both[2 * k + 1] = i[k]
            f.write(memoryview(both)[: 2 * n])
            left -= n


class ReplayADC:
    """Reads an ADCR file; fill() returns the pairs read (the rest of the block is
    zeroed at the end of the file unless loop=True, which rewinds)."""

    def __init__(self, path, loop=False, block=160):
        self._f = open(path, "rb")
        head = self._f.read(_HEADER_SIZE)
        if len(head) != _HEADER_SIZE:
            raise ValueError("not an ADCR file")
        magic, version, _, rate, kv, ki, _ = struct.unpack(_HEADER, head)
        if magic != b"ADCR" or version != 1:
            raise ValueError("not an ADCR version 1 file")
        self.sample_rate = rate
        self._cal = {"v_uv_per_lsb": kv, "i_ua_per_lsb": ki}
        self.loop = loop
        self.samples = 0
        self._buf = _zeros("h", 2 * block)

    def calibration(self):
        return dict(self._cal)

    def fill(self, v_block, i_block):
        n = len(v_block)
        got = 0
        while got < n:
            want = n - got
            if 2 * want > len(self._buf):
                want = len(self._buf) // 2
            read = self._f.readinto(memoryview(self._buf)[: 2 * want]) or 0
            pairs = read // 4
            for k in range(pairs):
                v_block[got + k] = self._buf[2 * k]
                i_block[got + k] = self._buf[2 * k + 1]
            got += pairs
            if pairs < want:
                if not self.loop:
                    break
                self._f.seek(_HEADER_SIZE)
        for k in range(got, n):
            v_block[k] = 0
            i_block[k] = 0
        self.samples += got
        return got

    def close(self):
        self._f.close()

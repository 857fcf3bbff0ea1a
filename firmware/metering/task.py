"""The metering task: pulls sample blocks from an ADC source through the Meter, keeps
the energy totals in the power-fail-safe store, and serves the COSEM registers.

What the registers publish (each getter returns an int; value = int * 10**scaler):

    getter                   unit   scaler  COSEM unit  OBIS
    energy_import_wh()       Wh       0     30 Wh       1-0:1.8.0   A+
    energy_export_wh()       Wh       0     30 Wh       1-0:2.8.0   A-
    reactive_import_varh()   varh     0     32 varh     1-0:3.8.0   R+ (Q1 + Q2)
    reactive_export_varh()   varh     0     32 varh     1-0:4.8.0   R- (Q3 + Q4)
    reactive_quadrant_varh(q) varh    0     32 varh     1-0:5.8.0 .. 8.8.0 (q = 1..4)
    energy_mwh(E_...)        mWh     -3     30 / 32     any register of energy.py, finer
    voltage()                0.01 V  -2     35 V        1-0:32.7.0
    current()                mA      -3     33 A        1-0:31.7.0
    power_import()           0.01 W  -2     27 W        1-0:1.7.0
    power_export()           0.01 W  -2     27 W        1-0:2.7.0
    reactive_import()        0.01 var -2    29 var      1-0:3.7.0
    reactive_export()        0.01 var -2    29 var      1-0:4.7.0
    power_factor()           0.001   -3     255         1-0:13.7.0 (|P| / S, 0 without current)
    frequency()              mHz     -3     44 Hz       1-0:14.7.0 (0 while no mains seen)

SCALER_UNIT below holds the same table as data. Instantaneous values are means over
the last 1 s measurement window of simulated (sample) time.

Time. advance(now_s) processes every sample pair due up to simulated time now_s
(seconds since the clock's origin; the clock callable gives it when omitted), in
blocks of BLOCK pairs. On the unix board the clock runs SIM_SPEED times real time.
One advance() call processes at most `budget_pairs` pairs at the full sample rate;
when more are due (a simulation speed beyond the kernel's throughput, ~500x real time
here) the rest is *thinned*: whole 1 s windows are skipped on the source and the last
measured window's energy is booked again for each (exact in ADC counts, but the
waveform is then measured for only part of simulated time). `thinned_s` counts them.

Persistence. The six energy registers (whole mWh + exact residue) are one Store record
"energy", written when active energy (import + export) moved persist_wh Wh, or
persist_s simulated seconds passed, since the last write, whichever first: checked
once per measurement window, so the sampling path never waits for flash. flush() writes
on orderly shutdown. On start the newest valid record is restored (the Store falls
back to the older slot when the newer is corrupt), so the loss on a power cut is at
most persist_wh Wh or persist_s seconds of energy, and the registers never go backwards
from a value that was persisted. `writes` counts flash writes."""
import struct
from micropython import const

from metering.kernel import zeros
from metering.energy import (
    Meter,
    E_ACTIVE_IMPORT,
    E_ACTIVE_EXPORT,
    E_REACTIVE_Q1,
    E_REACTIVE_IMPORT,
    E_REACTIVE_EXPORT,
    INST_VOLTAGE,
    INST_CURRENT,
    INST_P_IMPORT,
    INST_P_EXPORT,
    INST_Q_IMPORT,
    INST_Q_EXPORT,
    INST_PF,
    INST_FREQ,
)

_BILLED = const(8)  # energy.py E_ACTIVE_IMPORT .. E_REACTIVE_EXPORT
BLOCK = const(200)  # sample pairs per block: 50 ms at 4 kHz
RECORD = "energy"
_FORMAT = "<14Q"  # snapshot(): version, den, then (mWh, residue) for 6 registers

# getter name -> (scaler, COSEM unit code), for the Register objects.
SCALER_UNIT = {
    "energy_import_wh": (0, 30),
    "energy_export_wh": (0, 30),
    "reactive_import_varh": (0, 32),
    "reactive_export_varh": (0, 32),
    "reactive_quadrant_varh": (0, 32),
    "voltage": (-2, 35),
    "current": (-3, 33),
    "power_import": (-2, 27),
    "power_export": (-2, 27),
    "reactive_import": (-2, 29),
    "reactive_export": (-2, 29),
    "power_factor": (-3, 255),
    "frequency": (-3, 44),
}


class MeteringTask:
    def __init__(self, source, calibration, store, clock, persist_wh=1, persist_s=60, budget_pairs=None):
        """source: fill(v, i) and sample_rate (SimADC, ReplayADC, BoardADC); skip(n)
        is needed only for thinning. calibration: dict or Calibration. store: a
        Store (put/load). clock: callable, simulated seconds now."""
        self.source = source
        self.fs = source.sample_rate
        self.meter = Meter(calibration, self.fs)
        self.store = store
        self.clock = clock
        self.persist_mwh = persist_wh * 1000
        self.persist_pairs = persist_s * self.fs
        self.budget_pairs = budget_pairs or 1 << 30
        self._v = zeros("h", BLOCK)
        self._i = zeros("h", BLOCK)
        self.t0 = clock()
        self.pairs = 0  # simulated time since t0, in sample periods
        self.thinned_s = 0
        self.writes = 0
        self.restored = self._restore()
        self._bill()
        self._saved_pairs = 0
        self._saved_mwh = self._active_mwh()
        # Active energy since the last write, in 1/256 mWh, summed from the meter's
        # per-window small int: the once-a-second persistence check reads no long-int
        # register (the exact totals are read only when a record is written).
        self._since_q8 = 0
        self._persist_q8 = self.persist_mwh << 8

    # -- sampling -----------------------------------------------------------------

    def advance(self, now_s=None):
        """Process all sample pairs due up to simulated time now_s. Returns pairs done."""
        if now_s is None:
            now_s = self.clock()
        due = int((now_s - self.t0) * self.fs) - self.pairs
        full = due if due <= self.budget_pairs else self.budget_pairs
        done = 0
        m = self.meter
        v = self._v
        i = self._i
        while full - done >= BLOCK:
            self.source.fill(v, i)
            done += BLOCK
            self.pairs += BLOCK
            if m.process(v, i):
                m.update()
                self._since_q8 += m.active_q8
                self._check()
        if due > self.budget_pairs:
            self._thin(due - done)
        return done

    def _check(self):
        if self._since_q8 >= self._persist_q8 or self.pairs - self._saved_pairs >= self.persist_pairs:
            self._save()

    def _thin(self, pairs):
        windows = pairs // self.meter.kernel.wlen
        if windows <= 0 or not self.meter.windows:
            return
        n = windows * self.meter.kernel.wlen
        self.source.skip(n)
        self.meter.repeat_window(windows)
        self._since_q8 += self.meter.active_q8 * windows
        self.pairs += n
        self.thinned_s += n // self.fs
        self._check()

    # -- persistence --------------------------------------------------------------

    def _active_mwh(self):
        return self.meter.energy(E_ACTIVE_IMPORT) + self.meter.energy(E_ACTIVE_EXPORT)

    def _save(self):
        self.store.put(RECORD, struct.pack(_FORMAT, *self.meter.snapshot()))
        self._bill()
        self.writes += 1
        self._saved_pairs = self.pairs
        self._saved_mwh = self._active_mwh()
        self._since_q8 = 0

    def flush(self):
        """Orderly shutdown: persist the exact totals now."""
        self._save()

    def _restore(self):
        payload, _bad = self.store.load(RECORD)
        if payload is None or len(payload) != struct.calcsize(_FORMAT):
            return False
        try:
            self.meter.restore(struct.unpack(_FORMAT, payload))
        except ValueError:
            return False  # another firmware's record: start from zero, keep the file
        return True

    def _bill(self):
        self._billed = [self.meter.energy(reg) for reg in range(_BILLED)]

    # -- register getters (units and scalers: module docstring) -------------------

    def billed_mwh(self, reg):
        """Energy as last saved: what the energy registers publish, so that every
        value a client reads is already on flash and no power cut can take a
        register below it (the price: it moves in persistence quanta, 1 Wh or 60 s)."""
        return self._billed[reg]

    def energy_mwh(self, reg):
        return self.meter.energy(reg)

    def energy_import_wh(self):
        return self.meter.energy(E_ACTIVE_IMPORT) // 1000

    def energy_export_wh(self):
        return self.meter.energy(E_ACTIVE_EXPORT) // 1000

    def reactive_import_varh(self):
        return self.meter.energy(E_REACTIVE_IMPORT) // 1000

    def reactive_export_varh(self):
        return self.meter.energy(E_REACTIVE_EXPORT) // 1000

    def reactive_quadrant_varh(self, quadrant):
        if not 1 <= quadrant <= 4:
            raise ValueError("quadrant is 1..4")
        return self.meter.energy(E_REACTIVE_Q1 + quadrant - 1) // 1000

    def voltage(self):
        return self.meter.inst[INST_VOLTAGE]

    def current(self):
        return self.meter.inst[INST_CURRENT]

    def power_import(self):
        return self.meter.inst[INST_P_IMPORT]

    def power_export(self):
        return self.meter.inst[INST_P_EXPORT]

    def reactive_import(self):
        return self.meter.inst[INST_Q_IMPORT]

    def reactive_export(self):
        return self.meter.inst[INST_Q_EXPORT]

    def power_factor(self):
        return self.meter.inst[INST_PF]

    def frequency(self):
        return self.meter.inst[INST_FREQ]

# Metering kernel and energy integration: accuracy against analytic energy over
# simulated time, frequency, zero allocation in the sampling path, exact residues.
import gc
import micropython
from array import array

from adapters.adc_sim import SimADC
from metering import energy
from metering.energy import Meter, E_ACTIVE_IMPORT, E_ACTIVE_EXPORT, E_REACTIVE_IMPORT, E_REACTIVE_EXPORT
from metering.energy import E_REACTIVE_Q1, E_REACTIVE_Q2, E_REACTIVE_Q3, E_REACTIVE_Q4
from metering.kernel import Calibration, _acc2, read64, muldiv, q64
from testutil import raises

BLOCK = 200
IREF = 5.0
IMAX = 60.0
# Harmonic content of the "with harmonics" points: % of the fundamental, degrees.
HARMONICS = {"v": ((3, 5, 0), (5, 3, 0)), "i": ((3, 30, 0), (5, 15, 0))}
# (current A, phase deg (lag +), simulated seconds): low currents need longer to
# average the dithered 12-bit quantisation of a 4-LSB signal.
POINTS = []
for _amps, _secs in ((0.05 * IREF, 300), (0.1 * IREF, 300), (IREF, 60), (IMAX, 60)):
    for _phase in (0.0, 60.0, -36.87):  # PF 1, 0.5 lagging, 0.8 leading
        POINTS.append((_amps, _phase, _secs))


def sim(**cfg):
    base = {"noise": 1.0, "noise_shape": "hp", "freq": 49.99}
    base.update(cfg)
    return SimADC(base)


def run(src, meter, seconds, block=BLOCK):
    v = array("h", bytes(2 * block))
    i = array("h", bytes(2 * block))
    for _ in range(seconds * src.sample_rate // block):
        src.fill(v, i)
        if meter.process(v, i):
            meter.update()


def exact_mwh(meter, reg):
    whole, res, den = meter.energy_exact(reg)
    return whole + res / den


def accuracy(amps, phase, seconds, harmonics):
    """Active energy error in % of the analytic value; the meter sees the whole run."""
    src = sim(current=amps, phase=phase, harmonics=harmonics)
    m = Meter(src.calibration())
    run(src, m, seconds)
    truth = src.power() * src.seconds() / 3.6  # mWh
    got = exact_mwh(m, E_ACTIVE_IMPORT) - exact_mwh(m, E_ACTIVE_EXPORT)
    return 100.0 * (got - truth) / truth


def test_accuracy_points_pure_sine():
    for amps, phase, secs in POINTS:
        err = accuracy(amps, phase, secs, None)
        assert abs(err) <= 0.05, (amps, phase, err)


def test_accuracy_points_with_harmonics():
    for amps, phase, secs in POINTS:
        err = accuracy(amps, phase, secs, HARMONICS)
        assert abs(err) <= 0.05, (amps, phase, err)


def test_reactive_energy_and_quadrants():
    for phase, p_reg, q_reg in ((60, E_ACTIVE_IMPORT, E_REACTIVE_Q1), (-60, E_ACTIVE_IMPORT, E_REACTIVE_Q4),
                                (120, E_ACTIVE_EXPORT, E_REACTIVE_Q2), (-120, E_ACTIVE_EXPORT, E_REACTIVE_Q3)):
        src = sim(phase=phase, current=10.0)
        m = Meter(src.calibration())
        run(src, m, 20)
        truth_q = abs(src.reactive_power()) * src.seconds() / 3.6
        truth_p = abs(src.power()) * src.seconds() / 3.6
        assert abs(exact_mwh(m, q_reg) - truth_q) <= 0.001 * truth_q, phase
        assert abs(exact_mwh(m, p_reg) - truth_p) <= 0.0005 * truth_p, phase
        for reg in range(6):
            if reg not in (p_reg, q_reg):
                assert m.energy(reg) == 0, (phase, reg)
    assert m.energy(E_REACTIVE_EXPORT) == m.energy(E_REACTIVE_Q3) and m.energy(E_REACTIVE_IMPORT) == 0


def test_instantaneous_values():
    src = sim(voltage=230.0, current=10.0, phase=60.0, freq=50.0)
    m = Meter(src.calibration())
    run(src, m, 3)
    inst = m.inst
    assert abs(inst[energy.INST_VOLTAGE] - 23000) <= 10, inst
    assert abs(inst[energy.INST_CURRENT] - 10000) <= 15, inst
    assert abs(inst[energy.INST_P_IMPORT] - 115000) <= 150, inst
    assert abs(inst[energy.INST_Q_IMPORT] - 199186) <= 300, inst
    assert inst[energy.INST_P_EXPORT] == 0 and inst[energy.INST_Q_EXPORT] == 0
    assert abs(inst[energy.INST_PF] - 500) <= 2, inst
    assert inst[energy.INST_FREQ] == 50000, inst


def test_frequency_measurement():
    for hz in (50.0, 60.0, 49.9, 50.37, 45.0, 65.0):
        src = sim(freq=hz, harmonics=HARMONICS)
        m = Meter(src.calibration())
        run(src, m, 3)
        assert abs(m.inst[energy.INST_FREQ] - src.frequency() * 1000) <= 2, (hz, m.inst)


def test_frequency_follows_drift():
    src = sim(freq=50.0, drift=(0.1, 60))  # +-0.1 Hz over 60 s: <= 10.5 mHz/s
    m = Meter(src.calibration())
    v = array("h", bytes(2 * BLOCK))
    i = array("h", bytes(2 * BLOCK))
    worst = 0
    for _ in range(60 * 20):
        f_before = src.frequency()
        src.fill(v, i)
        if m.process(v, i):
            m.update()
            worst = max(worst, abs(m.inst[energy.INST_FREQ] - f_before * 1000))
    assert worst <= 10, worst  # the 1 s window mean lags the instantaneous value ~0.5 s


def test_no_mains_reads_zero_frequency_and_no_energy():
    src = sim(voltage=0.0, current=0.0)
    m = Meter(src.calibration())
    run(src, m, 3)
    assert m.inst[energy.INST_FREQ] == 0
    assert all(m.energy(reg) == 0 for reg in range(6))  # anti-creep on noise


def test_phase_compensation():
    # The simulated current is sampled 1.5 sample periods late; calibrated away.
    for hz in (50.0, 60.0):
        src = sim(phase=60.0, skew=1.5, freq=hz, current=10.0)
        cal = src.calibration()
        cal["f_nominal"] = int(hz)
        raw = Meter(cal)
        run(src, raw, 10)
        src = sim(phase=60.0, skew=1.5, freq=hz, current=10.0)
        cal["i_delay_q16"] = -(3 << 15)  # negative: current sampled after voltage
        m = Meter(cal)
        run(src, m, 10)
        truth = src.power() * src.seconds() / 3.6
        assert abs(exact_mwh(raw, E_ACTIVE_IMPORT) - truth) > 0.005 * truth  # uncompensated: visibly off
        assert abs(exact_mwh(m, E_ACTIVE_IMPORT) - truth) <= 0.0005 * truth, (hz, exact_mwh(m, E_ACTIVE_IMPORT), truth)


def test_dc_offsets_tracked():
    src = sim(offset=(37.3, -11.6), phase=60.0)
    m = Meter(src.calibration())
    run(src, m, 30)
    ov, oi = m.kernel.offsets_q16
    assert abs(ov - 37.3 * 65536) < 0.05 * 65536 and abs(oi + 11.6 * 65536) < 0.05 * 65536, (ov, oi)
    truth = src.power() * src.seconds() / 3.6
    assert abs(exact_mwh(m, E_ACTIVE_IMPORT) - truth) <= 0.001 * truth


def _busy_meter():
    # Non-trivial coefficients (60.2 Hz, phase delay), offsets, noise, harmonics.
    src = sim(freq=60.2, offset=(20.5, -7.25), phase=30.0, current=IMAX, harmonics=HARMONICS)
    cal = src.calibration()
    cal["i_delay_q16"] = -20000
    m = Meter(cal)
    run(src, m, 3)
    return src, m


def test_process_allocates_nothing():
    src, m = _busy_meter()
    v = array("h", bytes(2 * BLOCK))
    i = array("h", bytes(2 * BLOCK))
    windows = 0
    gc.collect()
    for _ in range(3 * src.sample_rate // BLOCK):  # includes window-completing blocks
        src.fill(v, i)
        micropython.heap_lock()
        try:
            done = m.process(v, i)
        finally:
            micropython.heap_unlock()
        if done:
            windows += 1
            m.update()
    assert windows == 3


def test_process_alloc_bytes_zero():
    src, m = _busy_meter()
    v = array("h", bytes(2 * BLOCK))
    i = array("h", bytes(2 * BLOCK))
    src.fill(v, i)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(40):
            m.process(v, i)
        used = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert used == 0, used


def test_update_allocates_nothing():
    # Frequency, offsets, coefficient refresh, RMS, P/Q/S/PF and the energy deltas:
    # small ints only (muldiv / q64 do the wide arithmetic).
    src, m = _busy_meter()
    v = array("h", bytes(2 * BLOCK))
    i = array("h", bytes(2 * BLOCK))
    updates = 0
    for _ in range(3 * src.sample_rate // BLOCK):
        src.fill(v, i)
        if m.process(v, i):
            gc.collect()
            micropython.heap_lock()
            try:
                m.update()
            finally:
                micropython.heap_unlock()
            updates += 1
    assert updates == 3 and m.inst[energy.INST_FREQ] > 0 and m.active_q8 > 0


def _round(x, y):
    return (2 * x + y) // (2 * y) if x >= 0 else -((-2 * x + y) // (2 * y))


def test_wide_helpers_exact():
    vals = (0, 1, -1, 7, -12345, 2**15 - 1, 2**15, 2**29 - 1, -(2**29), 2**30 - 1, -(2**30 - 1), 123456789)
    divs = (1, 3, 10000, 2**15 + 1, 987654321, 2**30 - 1)
    for a in vals:
        for b in vals:
            for c in divs:
                for sh in (0, 1, 12, 29, 45):
                    want = _round(a * b, c << sh)
                    if abs(want) < 2**30:
                        assert muldiv(a, b, c, sh) == want, (a, b, c, sh)
    acc = array("i", bytes(8))
    for x in (0, 5, -5, 2**31, -(2**31), 2**35 + 12345, -(2**35 + 12345), 2**62 + 3, -(2**62)):
        acc[0] = (x & 0x7FFFFFFF) - (x & 0x80000000)
        acc[1] = x >> 32
        assert read64(acc, 0) == x
        for c in divs:
            for s in (0, 7, 24):
                want = _round(x << s, c)
                if abs(want) < 2**30:
                    assert q64(acc, 0, c, s) == want, (x, c, s)


def test_acc64_carries_exactly():
    acc = array("i", bytes(16))
    total = 0
    for x in (2**30 - 1, 2**30 - 1, 2**30 - 1, 2**30 - 1, 5, -(2**30), -7):
        _acc2(acc, 0, x, -x)
        total += x
    assert read64(acc, 0) == total and read64(acc, 2) == -total


def test_block_size_does_not_change_energy():
    results = []
    for block in (200, 77, 125):
        src = sim(current=7.0, phase=20.0)
        m = Meter(src.calibration())
        run(src, m, 5 if block != 77 else 0)
        if block == 77:  # 5 s = 20000 pairs: 259 blocks of 77 + 57 left
            v = array("h", bytes(2 * 77))
            i = array("h", bytes(2 * 77))
            for _ in range(259):
                src.fill(v, i)
                m.process(v, i) and m.update()
            v = array("h", bytes(2 * 57))
            i = array("h", bytes(2 * 57))
            src.fill(v, i)
            m.process(v, i) and m.update()
        # Import/export is decided per chunk, and a block of 77 leaves short chunks at
        # window ends whose sign may differ: the net active energy is what must agree.
        results.append(m.raw(E_ACTIVE_IMPORT) - m.raw(E_ACTIVE_EXPORT))
    assert results[0] == results[1] == results[2], results


def _dc_meter():
    # No offset tracking (it would remove the DC) and no anti-creep threshold.
    cal = Calibration({"v_uv_per_lsb": 250000, "i_ua_per_lsb": 62500, "track_offset": False, "i_start_ua": 0})
    return Meter(cal)


def test_residue_exact_over_a_simulated_year():
    # Constant DC power: every chunk books exactly n*v*i count**2, so the register must
    # equal P*t as an exact rational. One hour processed sample by sample, then the
    # year booked by whole windows (repeat_window): no drift, not even one residue unit.
    m = _dc_meter()
    v = array("h", [800] * BLOCK)
    i = array("h", [80] * BLOCK)
    for _ in range(3600 * 4000 // BLOCK):
        if m.process(v, i):
            m.update()
    m.repeat_window(365 * 86400 - 3600)
    seconds = 365 * 86400
    # P = 800 * 0.25 V * 80 * 0.0625 A = 1000 W exactly.
    assert m.energy_exact(E_ACTIVE_IMPORT) == (1000 * seconds * 1000 // 3600, 0, m.den)
    assert m.energy(E_ACTIVE_IMPORT) == 8760000000  # 8760 kWh in mWh


def test_residue_carries_fraction():
    # 1 W for 1 s = 1/3.6 mWh: after 36 s it is exactly 10 mWh, before that a residue.
    m = _dc_meter()
    v = array("h", [40] * BLOCK)  # 10 V
    i = array("h", [1] * BLOCK)  # 1 LSB = 62.5 mA: P = 0.625 W; 36 s -> 6.25 mWh
    for _ in range(36 * 4000 // BLOCK):
        m.process(v, i) and m.update()
    whole, res, den = m.energy_exact(E_ACTIVE_IMPORT)
    assert whole == 6 and res * 4 == den, (whole, res, den)


def test_restore_never_lowers():
    m = _dc_meter()
    state = list(m.snapshot())
    state[2] = 5000
    m.restore(tuple(state))
    assert m.energy(E_ACTIVE_IMPORT) == 5000
    state[2] = 4999
    raises(ValueError, m.restore, tuple(state))
    raises(ValueError, m.restore, (99,) + tuple(state[1:]))
    state[3] = state[1]  # residue must be below its unit
    raises(ValueError, m.restore, tuple(state))


def test_calibration_rejects_unknown_and_bad_values():
    raises(ValueError, Calibration, {"v_gain": 1})
    raises(ValueError, Calibration, {"v_uv_per_lsb": 0})
    raises(ValueError, Calibration, {"i_delay_q16": 5 << 16})

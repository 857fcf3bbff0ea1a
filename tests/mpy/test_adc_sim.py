# The simulated ADC: amplitudes, phase sign, quantisation and clipping, noise,
# determinism across block sizes, skip(), parameters, record/replay, no allocation.
import gc
import math
import micropython
from array import array

from adapters.adc_sim import SimADC, ReplayADC, record, sim_config
from testutil import raises

N = 4000  # one second, 200 whole cycles at 50 Hz


def _take(src, n=N):
    v = array("h", bytes(2 * n))
    i = array("h", bytes(2 * n))
    src.fill(v, i)
    return v, i


def _rms(x):
    return math.sqrt(sum(s * s for s in x) / len(x))


def test_rms_values_and_power():
    src = SimADC({"voltage": 230.0, "current": 5.0, "phase": 60.0})
    v, i = _take(src)
    assert abs(_rms(v) * 0.25 - 230.0) < 0.05
    assert abs(_rms(i) * 0.0625 - 5.0) < 0.02
    p = sum(v[k] * i[k] for k in range(N)) / N * 0.25 * 0.0625
    assert abs(p - src.power()) < 0.005 * src.power()


def test_phase_sign_lag_and_lead():
    # Lagging current: i[n-D] (a quarter cycle back) is -cos(wt - phi), so the
    # lag-D correlation is -VI*sin(phi): negative for a lag (the kernel takes Q = -R(D)).
    for phase, sign in ((60.0, 1), (-60.0, -1)):
        v, i = _take(SimADC({"phase": phase}))
        q = sum(v[k] * i[k - 20] for k in range(20, N))
        assert q * sign < 0, phase


def test_quantised_and_clipped_to_12_bits():
    v, i = _take(SimADC({"voltage": 600.0, "current": 100.0, "offset": 3.0}))
    assert max(v) == 2047 and min(v) == -2048 and max(i) == 2047


def test_harmonics_amplitude():
    src = SimADC({"current": 5.0, "harmonics": {"i": ((3, 30, 0),)}})
    _, i = _take(src)
    c = sum(i[k] * math.cos(2 * math.pi * 3 * k / 80) for k in range(N)) * 2 / N
    s = sum(i[k] * math.sin(2 * math.pi * 3 * k / 80) for k in range(N)) * 2 / N
    amp = math.sqrt(c * c + s * s) * 0.0625 / math.sqrt(2)
    assert abs(amp - 1.5) < 0.01, amp


def test_noise_rms_and_determinism():
    for shape in ("white", "hp"):
        a = _take(SimADC({"voltage": 0.0, "current": 0.0, "noise": 2.0, "noise_shape": shape}))
        b = _take(SimADC({"voltage": 0.0, "current": 0.0, "noise": 2.0, "noise_shape": shape}))
        assert a == b
        assert abs(_rms(a[0]) - 2.0) < 0.15, (shape, _rms(a[0]))
    raises(ValueError, SimADC, {"noise_shape": "pink"})


def test_block_size_and_skip_keep_the_waveform():
    whole = _take(SimADC({"noise": 1.0}), 400)
    src = SimADC({"noise": 1.0})
    _take(src, 150)
    part = _take(src, 250)
    assert part[0] == whole[0][150:] and part[1] == whole[1][150:]
    src = SimADC({})
    src.skip(150)
    assert _take(src, 250)[0] == _take(SimADC({}), 400)[0][150:]
    assert src.samples == 400 and src.now_ms() == 100


def test_frequency_and_drift():
    src = SimADC({"freq": 60.0})
    assert abs(src.frequency() - 60.0) < 1e-5
    src = SimADC({"freq": 50.0, "drift": (0.5, 4)})
    src.skip(4000)  # a quarter of the drift period later: +0.5 Hz
    assert abs(src.frequency() - 50.5) < 1e-3


def test_sim_config_from_issue_parameters():
    cfg = sim_config({"voltage": 120, "frequency": 60, "harmonics": {"i3": 0.2, "v5": 0.01}, "speed": 10})
    assert cfg["freq"] == 60 and "speed" not in cfg
    assert cfg["harmonics"] == {"v": ((5, 1.0, 0.0),), "i": ((3, 20.0, 0.0),)}
    raises(ValueError, SimADC, {"volts": 1})


def test_record_and_replay():
    path = "/tmp/test_adc_sim.adcr"
    record(path, SimADC({"noise": 1.0}), 1000)
    expect = _take(SimADC({"noise": 1.0}), 1000)
    rep = ReplayADC(path)
    assert rep.sample_rate == 4000 and rep.calibration()["v_uv_per_lsb"] == 250000
    got = _take(rep, 1000)
    assert got == expect
    v, i = _take(rep, 10)
    assert rep.fill(v, i) == 0 and v[0] == 0  # end of file
    rep.close()
    rep = ReplayADC(path, loop=True)
    _take(rep, 1000)
    assert _take(rep, 10)[0] == expect[0][:10]
    with open(path, "wb") as f:
        f.write(b"NOPE" + bytes(20))
    raises(ValueError, ReplayADC, path)


def test_fill_allocates_nothing():
    src = SimADC({"noise": 1.0, "noise_shape": "hp", "harmonics": {"i": ((3, 10, 0),)}})
    v = array("h", bytes(400))
    i = array("h", bytes(400))
    gc.collect()
    micropython.heap_lock()
    try:
        for _ in range(50):
            src.fill(v, i)
    finally:
        micropython.heap_unlock()


def test_tables_are_small():
    # The simulator shares a 64 KB heap with the DLMS meter: ~3.1 KB of tables (two
    # 257-point int32 waveforms, two 256-entry int16 noise tables) plus its config.
    gc.collect()
    before = gc.mem_alloc()
    src = SimADC({"noise": 1.0, "noise_shape": "hp", "harmonics": {"i": ((3, 30, 0),)}})
    gc.collect()
    used = gc.mem_alloc() - before
    assert used <= 4096, used
    assert src.fill(array("h", bytes(8)), array("h", bytes(8))) == 4


def test_large_noise_keeps_its_rms():
    # Beyond ~20 LSB the int16 noise table stores coarser steps (a shift): same RMS.
    for sigma in (0.5, 40.0):
        v, _ = _take(SimADC({"voltage": 0.0, "current": 0.0, "noise": sigma}))
        assert abs(_rms(v) - sigma) < 0.08 * sigma + 0.05, (sigma, _rms(v))

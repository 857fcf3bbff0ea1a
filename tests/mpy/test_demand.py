# Demand register (IC 5): block and sliding averages from a known energy input,
# period boundaries on the clock grid, the methods, SET checks, no allocation
# between boundaries.
import micropython

from testutil import raises

from dlms import axdr
from dlms.axdr import DOUBLE_LONG, DOUBLE_LONG_UNSIGNED, ENUM, INTEGER, LONG_UNSIGNED, OCTET_STRING, STRUCTURE, UNSIGNED
from dlms import errors
from dlms.errors import AccessError
from cosem.base import obis
from cosem.clock import Clock, decode_datetime
from cosem.data import UNIT_W
from cosem.demand import DemandRegister

T0 = 758635200  # 2024-01-15 12:00:00 UTC (seconds since 2000)
LN = obis("1-0:1.4.0.255")


class Source:
    def __init__(self, t):
        self.t = t

    def now(self):
        return self.t


class Rig:
    """A clock and an energy counter (Wh * 10**scaler) the test advances."""

    def __init__(self, t=T0, tz=0):
        self.src = Source(t)
        self.clock = Clock(obis("0-0:1.0.0.255"), self.src, {"time_zone": tz})
        self.e = 0

    def energy(self):
        return self.e

    def demand(self, **kw):
        return DemandRegister(LN, self.energy, clock=self.clock, **kw)

    def run(self, d, seconds, wh, step=30):
        """Advance `seconds` in `step`s adding exactly wh, evenly, ticking each step."""
        n = seconds // step
        if n * step != seconds:
            raise ValueError("seconds must be a multiple of step")
        closed = 0
        for k in range(n):
            self.src.t += step
            self.e += wh * (k + 1) // n - wh * k // n
            closed += d.tick(self.src.t)
        return closed


def code_of(fn, *args):
    return raises(AccessError, fn, *args).code


def hms(value):
    return decode_datetime(value[1])[4:7]


def test_block_demand():
    r = Rig()
    d = r.demand(period=900)
    d.tick(r.src.t)
    assert d.get(2, None) == (DOUBLE_LONG_UNSIGNED, 0)
    r.run(d, 450, 125)                          # half a period: 125 Wh so far
    assert d.get(2, None) == (DOUBLE_LONG_UNSIGNED, 500)   # 125 Wh over 900 s
    assert d.get(3, None) == (DOUBLE_LONG_UNSIGNED, 0)
    assert r.run(d, 450, 125) == 1
    assert d.get(3, None) == (DOUBLE_LONG_UNSIGNED, 1000)  # 250 Wh in 15 min = 1 kW
    assert d.get(2, None) == (DOUBLE_LONG_UNSIGNED, 0)
    assert hms(d.get(6, None)) == (12, 15, 0) and hms(d.get(7, None)) == (12, 15, 0)
    r.run(d, 900, 500)
    assert d.get(3, None) == (DOUBLE_LONG_UNSIGNED, 2000)
    assert hms(d.get(6, None)) == (12, 30, 0)


def test_sliding_demand():
    r = Rig()
    d = r.demand(period=300, number_of_periods=3)
    d.tick(r.src.t)
    r.run(d, 300, 300)
    assert d.get(3, None)[1] == 300 * 3600 // 900          # window not yet full
    r.run(d, 300, 600)
    r.run(d, 300, 900)
    assert d.get(3, None)[1] == 1800 * 3600 // 900         # 7200 W
    r.run(d, 150, 150)                                     # running sub-period
    assert d.get(2, None)[1] == (600 + 900 + 150) * 3600 // 900
    r.run(d, 150, 150)
    assert d.get(3, None)[1] == (600 + 900 + 300) * 3600 // 900   # oldest slid out


def test_unaligned_start_and_local_grid():
    r = Rig(T0 + 123, tz=-60)
    d = r.demand(period=900)
    d.tick(r.src.t)
    assert hms(d.get(7, None)) == (13, 2, 3)                # local start, not aligned
    r.src.t = T0 + 900
    r.e = 90
    assert d.tick(r.src.t)
    assert hms(d.get(6, None)) == (13, 15, 0)               # local grid
    assert d.get(3, None)[1] == 360


def test_skipped_periods_and_clock_set_back():
    r = Rig()
    d = r.demand(period=900, number_of_periods=2)
    d.tick(r.src.t)
    r.src.t += 3 * 900 + 5                      # off for three boundaries
    r.e = 1000
    assert d.tick(r.src.t)
    assert hms(d.get(6, None)) == (12, 45, 0)
    assert d.get(3, None)[1] == 0               # the energy slid out with the empty periods
    r.src.t -= 2 * 900                          # clock set back: re-arm, no period closed
    assert not d.tick(r.src.t)
    assert d.get(2, None)[1] == 0


def test_reset_and_next_period():
    r = Rig()
    d = r.demand(period=900)
    d.tick(r.src.t)
    r.run(d, 300, 100)
    assert d.action(2, (INTEGER, 0), None) is None         # next_period: close now
    assert d.get(3, None)[1] == 400                         # 100 Wh over the 900 s period
    assert hms(d.get(6, None)) == (12, 5, 0) and hms(d.get(7, None)) == (12, 5, 0)
    r.run(d, 600, 50)
    assert hms(d.get(6, None)) == (12, 15, 0)               # back on the grid
    r.run(d, 120, 30)
    d.action(1, (INTEGER, 0), None)                         # reset
    assert d.get(2, None)[1] == 0 and d.get(3, None)[1] == 0
    assert hms(d.get(6, None)) == (12, 17, 0) and hms(d.get(7, None)) == (12, 17, 0)
    r.run(d, 780, 260)
    assert d.get(3, None)[1] == 260 * 3600 // 900


def test_attributes_and_scaling():
    r = Rig()
    d = DemandRegister(LN, r.energy, 900, 1, scaler=-3, tag=DOUBLE_LONG, status=lambda: (UNSIGNED, 4))
    assert d.get(4, None) == (STRUCTURE, [(INTEGER, -3), (ENUM, UNIT_W)])
    assert d.get(5, None) == (UNSIGNED, 4)
    assert d.get(8, None) == (DOUBLE_LONG_UNSIGNED, 900)
    assert d.get(9, None) == (LONG_UNSIGNED, 1)
    assert d.get(6, None) == (OCTET_STRING, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x00\xff")
    d.tick(T0)
    r.e = -250000                               # export: mWh going down, signed tag
    d.tick(T0 + 900)
    assert d.get(3, None) == (DOUBLE_LONG, -1000000)        # -1 kW in mW
    assert decode_datetime(d.get(6, None)[1])[8] == 0        # no clock: UTC
    for a in range(1, 10):
        axdr.encode_data(d.get(a, None))
    plain = DemandRegister(LN, r.energy)
    assert plain.get(5, None) == (axdr.NULL, None)


def test_set_period_and_number_of_periods():
    r = Rig()
    seen = []
    d = r.demand(period=900, number_of_periods=2, max_periods=4, on_change=lambda o, w: seen.append(w))
    d.tick(r.src.t)
    r.run(d, 900, 100)
    d.set(8, (DOUBLE_LONG_UNSIGNED, 60), None)
    assert d.get(3, None)[1] == 0 and seen == ["period"]
    d.set(9, (LONG_UNSIGNED, 4), None)
    assert d.get(9, None) == (LONG_UNSIGNED, 4) and seen == ["period", "number_of_periods"]
    r.run(d, 60, 40)
    assert d.get(3, None)[1] == 40 * 3600 // 240
    assert code_of(d.set, 8, (LONG_UNSIGNED, 60), None) == errors.TYPE_UNMATCHED
    assert code_of(d.set, 8, (DOUBLE_LONG_UNSIGNED, 0), None) == errors.OTHER_REASON
    assert code_of(d.set, 8, (DOUBLE_LONG_UNSIGNED, 86401), None) == errors.OTHER_REASON
    assert code_of(d.set, 9, (DOUBLE_LONG_UNSIGNED, 2), None) == errors.TYPE_UNMATCHED
    assert code_of(d.set, 9, (LONG_UNSIGNED, 5), None) == errors.OTHER_REASON
    assert code_of(d.set, 9, (LONG_UNSIGNED, 0), None) == errors.OTHER_REASON
    assert code_of(d.set, 2, (DOUBLE_LONG_UNSIGNED, 0), None) == errors.READ_WRITE_DENIED
    assert code_of(d.action, 1, (UNSIGNED, 0), None) == errors.TYPE_UNMATCHED
    assert code_of(d.action, 3, (INTEGER, 0), None) == errors.READ_WRITE_DENIED
    assert len(seen) == 2
    raises(ValueError, DemandRegister, LN, r.energy, 0)
    raises(ValueError, DemandRegister, LN, r.energy, 900, 61)


def test_tick_between_boundaries_allocates_nothing():
    r = Rig()
    d = r.demand(period=900, number_of_periods=3)
    d.tick(T0)
    micropython.heap_lock()
    try:
        for t in range(T0 + 1, T0 + 899, 3):
            d.tick(t)
    finally:
        micropython.heap_unlock()
    assert d.get(3, None)[1] == 0

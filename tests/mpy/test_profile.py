# Profile generic (IC 7) and event logs: capture, automatic capture on the period
# grid, the ring and its persistence, selective access by range and by entry,
# the raw encoder, date-time boundaries with unspecified fields, SET checks.

import micropython

from testutil import value, raises

from adapters.store import Store
from test_store import TempDir
from dlms import axdr
from dlms.axdr import (
    ARRAY,
    DATE_TIME,
    DOUBLE_LONG_UNSIGNED,
    INTEGER,
    LONG_UNSIGNED,
    OCTET_STRING,
    STRUCTURE,
    UNSIGNED,
)
from dlms import errors
from dlms.errors import AccessError
from cosem.base import obis
from cosem.clock import Clock, decode_datetime, encode_datetime
from cosem.data import Data, Register, UNIT_WH
from cosem.profile import (
    EV_POWER_DOWN,
    EV_POWER_UP,
    EventCode,
    EventLog,
    ProfileGeneric,
    capture_definition,
    datetime_instant,
    next_boundary,
)

T0 = 758635200  # 2024-01-15 12:00:00 UTC, a Monday (seconds since 2000)
DAY = 86400
CLOCK = obis("0-0:1.0.0.255")
LP = obis("1-0:99.1.0.255")

class TempStore(TempDir):
    """A Store in a fresh directory under /tmp, removed on exit."""

    def __enter__(self):
        return Store(super().__enter__(), fsync=False)


class Source:
    def __init__(self, t):
        self.t = t

    def now(self):
        return self.t

    def set(self, t):
        self.t = t


def code_of(fn, *args):
    return raises(AccessError, fn, *args).code


class Meter:
    """Clock + status word + two energy registers, as a load profile captures them."""

    def __init__(self, t=T0, tz=0, dst=False):
        self.src = Source(t)
        self.clock = Clock(CLOCK, self.src, {"time_zone": tz, "dst_enabled": dst})
        self.status_word = 0
        self.energy = [0, 0]
        self.status = Data(obis("0-0:96.10.1.255"), lambda: (UNSIGNED, self.status_word))
        self.imp = Register(obis("1-0:1.8.0.255"), DOUBLE_LONG_UNSIGNED, lambda: self.energy[0], 0, UNIT_WH)
        self.exp = Register(obis("1-0:2.8.0.255"), DOUBLE_LONG_UNSIGNED, lambda: self.energy[1], 0, UNIT_WH)
        self.objects = [self.clock, self.status, self.imp, self.exp]

    def columns(self):
        return ((self.clock, 2, 0), (self.status, 2, 0), (self.imp, 2, 0), (self.exp, 2, 0))

    def lookup(self, class_id, ln):
        for o in self.objects:
            if o.class_id == class_id and o.logical_name == ln:
                return o
        return None

    def profile(self, store, entries=10, period=900, **kw):
        return ProfileGeneric(LP, self.columns(), store, entries, period, resolve=self.lookup, **kw)

    def step(self, dt, wh=0):
        self.src.t += dt
        self.energy[0] += wh


def rows(profile):
    return value(profile.get(2, None))[1]


def row_time(row):
    return decode_datetime(row[1][0][1])


def row_energy(row):
    return row[1][2][1]


def dt(y, mo, d, h=0, mi=0, s=0, dev=None, hundredths=None, dow=None, status=None):
    return encode_datetime((y, mo, d, dow, h, mi, s, hundredths, dev, status))


def cdef(obj, attr=2, index=0):
    return capture_definition(obj, attr, index)


def range_desc(m, lo, hi, columns=()):
    return (STRUCTURE, [cdef(m.clock), (OCTET_STRING, lo), (OCTET_STRING, hi), (ARRAY, [cdef(o) for o in columns])])


def entry_desc(first, last, lo_col=0, hi_col=0):
    return (STRUCTURE, [(DOUBLE_LONG_UNSIGNED, first), (DOUBLE_LONG_UNSIGNED, last),
                        (LONG_UNSIGNED, lo_col), (LONG_UNSIGNED, hi_col)])


def quarter_rows(m, p, n, wh=100):
    """n rows, one per 15 minutes from 12:15 UTC, energy +wh each."""
    p.tick(m.src.t)
    for _ in range(n):
        m.step(900, wh)
        if not p.tick(m.src.t):
            raise AssertionError("no capture at a boundary")


# --- capture and the period grid ----------------------------------------------

def test_capture_on_demand():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store)
        m.energy[0] = 1234
        m.status_word = 8
        assert p.action(2, (INTEGER, 0), None) is None
        r = rows(p)
        assert len(r) == 1
        assert r[0] == (STRUCTURE, [(OCTET_STRING, m.clock.now_datetime()), (UNSIGNED, 8),
                                    (DOUBLE_LONG_UNSIGNED, 1234), (DOUBLE_LONG_UNSIGNED, 0)])
        assert p.get(7, None) == (DOUBLE_LONG_UNSIGNED, 1)
        assert p.get(8, None) == (DOUBLE_LONG_UNSIGNED, 10)
        assert p.get(4, None) == (DOUBLE_LONG_UNSIGNED, 900)
        assert p.get(5, None) == (axdr.ENUM, 1)
        assert p.get(3, None) == (ARRAY, [cdef(o) for o in m.objects])
        axdr.encode_data(p.get(6, None))


def test_tick_captures_on_aligned_boundaries():
    with TempStore() as store:
        m = Meter(T0 + 100)
        p = m.profile(store)
        assert not p.tick(m.src.t)              # arms
        m.step(700)                             # 12:13:20
        assert not p.tick(m.src.t)
        m.step(101, 55)                         # 12:15:01: boundary crossed
        assert p.tick(m.src.t)
        assert not p.tick(m.src.t)
        r = rows(p)
        assert len(r) == 1
        # Stamped with the boundary, not the tick's second.
        assert row_time(r[0])[:7] == (2024, 1, 15, 1, 12, 15, 0)
        assert row_energy(r[0]) == 55


def test_tick_forward_jump_gives_one_row_and_clock_back_rearms():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store)
        p.tick(m.src.t)
        m.step(3 * 900 + 10)
        assert p.tick(m.src.t)
        assert len(rows(p)) == 1
        assert row_time(rows(p)[0])[4:7] == (12, 45, 0)
        m.step(-2 * 900)                        # clock set back: re-arm, no row
        assert not p.tick(m.src.t)
        m.step(900)
        assert p.tick(m.src.t)
        assert len(rows(p)) == 2


def test_daily_profile_captures_at_local_midnight():
    with TempStore() as store:
        m = Meter(T0, tz=-60)                   # CET: UTC = local - 1 h
        d = ProfileGeneric(obis("1-0:99.2.0.255"), ((m.clock, 2, 0), (m.imp, 2, 0)), store, 5, DAY)
        d.tick(m.src.t)
        m.step(10 * 3600)                       # 22:00 UTC = 23:00 local
        assert not d.tick(m.src.t)
        m.step(3600)                            # 23:00 UTC = 00:00 local
        assert d.tick(m.src.t)
        f = row_time(rows(d)[0])
        assert f[:7] == (2024, 1, 16, 2, 0, 0, 0) and f[8] == -60


def test_next_boundary_dst():
    # EU summer time starts 2024-03-31 01:00 UTC; local midnight of 1 April is 22:00 UTC.
    src = Source(0)
    c = Clock(CLOCK, src, {"time_zone": -60, "dst_enabled": True})
    t_0330_1200 = 765115200  # 2024-03-30 12:00 UTC
    assert next_boundary(c, t_0330_1200, DAY) == t_0330_1200 + 11 * 3600       # 31 Mar 00:00 CET
    assert next_boundary(c, t_0330_1200 + 12 * 3600, DAY) == t_0330_1200 + 34 * 3600  # 1 Apr 00:00 CEST
    assert next_boundary(None, T0 + 1, 900) == T0 + 900


def test_tick_between_boundaries_allocates_nothing():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store)
        p.tick(T0)
        micropython.heap_lock()
        try:
            for t in range(T0 + 1, T0 + 899, 7):
                p.tick(t)
        finally:
            micropython.heap_unlock()
        assert len(rows(p)) == 0


def test_value_larger_than_its_slot_is_stored_as_null():
    with TempStore() as store:
        m = Meter()
        name = [b"ab"]
        d = Data(obis("0-0:96.1.0.255"), lambda: (OCTET_STRING, name[0]))
        p = ProfileGeneric(LP, ((m.clock, 2, 0), (d, 2, 0)), store, 4)
        p.capture()
        name[0] = b"abcdef"
        p.capture()
        name[0] = b"x"
        p.capture()
        assert [r[1][1] for r in rows(p)] == [(OCTET_STRING, b"ab"), (axdr.NULL, None), (OCTET_STRING, b"x")]


def test_data_index_selects_an_element():
    with TempStore() as store:
        m = Meter()
        p = ProfileGeneric(LP, ((m.clock, 2, 0), (m.imp, 3, 2)), store, 4)  # unit of scaler_unit
        p.capture()
        assert rows(p)[0][1][1] == (axdr.ENUM, UNIT_WH)


# --- the ring and its persistence -----------------------------------------------

def test_ring_drops_oldest():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store, entries=3)
        quarter_rows(m, p, 5)
        r = rows(p)
        assert [row_energy(x) for x in r] == [300, 400, 500]
        assert p.get(7, None) == (DOUBLE_LONG_UNSIGNED, 3)


def test_buffer_survives_restart():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store, entries=4)
        quarter_rows(m, p, 3)
        before = rows(p)
        p2 = m.profile(Store(store.directory, fsync=False), entries=4)
        assert rows(p2) == before
        quarter_rows(m, p2, 2)
        assert [row_energy(x) for x in rows(p2)] == [200, 300, 400, 500]


def test_client_settings_survive_restart():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store, entries=8)
        p.set(4, (DOUBLE_LONG_UNSIGNED, 300), None)
        p.set(8, (DOUBLE_LONG_UNSIGNED, 5), None)
        p.set(3, (ARRAY, [cdef(m.clock), cdef(m.exp)]), None)
        p2 = m.profile(Store(store.directory, fsync=False), entries=8)
        assert p2.get(4, None) == (DOUBLE_LONG_UNSIGNED, 300)
        assert p2.get(8, None) == (DOUBLE_LONG_UNSIGNED, 5)
        assert p2.get(3, None) == (ARRAY, [cdef(m.clock), cdef(m.exp)])


def test_corrupt_row_is_skipped():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store, entries=4)
        quarter_rows(m, p, 3)
        path = store.path(p.name + ".ring")
        with open(path, "r+b") as f:
            f.seek(len(p._log._buf) + 10)       # inside the second row
            f.write(b"\xAA")
        p2 = m.profile(Store(store.directory, fsync=False), entries=4)
        assert [row_energy(x) for x in rows(p2)] == [100, 300]
        quarter_rows(m, p2, 1)
        assert [row_energy(x) for x in rows(p2)] == [100, 300, 400]


def test_corrupt_layout_record_empties_the_buffer():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store, entries=4)
        quarter_rows(m, p, 2)
        for suffix in (".log.a", ".log.b"):
            try:
                with open(store.path(p.name + suffix), "r+b") as f:
                    f.write(b"XX")
            except OSError:
                pass
        s2 = Store(store.directory, fsync=False)
        p2 = m.profile(s2, entries=4)
        assert rows(p2) == [] and s2.corrupt_seen >= 1
        p2.capture()
        assert len(rows(p2)) == 1


def test_corrupt_config_falls_back_to_defaults():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store, entries=4)
        p.set(4, (DOUBLE_LONG_UNSIGNED, 60), None)
        p.capture()
        for suffix in (".cfg.a", ".cfg.b"):
            try:
                with open(store.path(p.name + suffix), "r+b") as f:
                    f.seek(20)
                    f.write(b"\x00\x01")
            except OSError:
                pass
        p2 = m.profile(Store(store.directory, fsync=False), entries=4)
        assert p2.get(4, None) == (DOUBLE_LONG_UNSIGNED, 900)
        assert p2.get(3, None) == (ARRAY, [cdef(o) for o in m.objects])
        assert rows(p2) == []                   # rows of an unknown layout are dropped
        p2.capture()
        p3 = m.profile(Store(store.directory, fsync=False), entries=4)
        assert len(rows(p3)) == 1               # ... once: the defaults were recorded


def test_config_naming_a_missing_object_falls_back():
    with TempStore() as store:
        m = Meter()
        extra = Data(obis("0-0:96.1.1.255"), (UNSIGNED, 3))
        m.objects.append(extra)
        p = m.profile(store)
        p.set(3, (ARRAY, [cdef(m.clock), cdef(extra)]), None)
        p.capture()
        m.objects.remove(extra)                 # a firmware without that object
        p2 = m.profile(Store(store.directory, fsync=False))
        assert p2.get(3, None) == (ARRAY, [cdef(o) for o in m.objects]) and rows(p2) == []


# --- methods, SET, on_change ----------------------------------------------------

def test_reset_clears_and_reports():
    with TempStore() as store:
        m = Meter()
        seen = []
        p = m.profile(store, on_change=lambda obj, what: seen.append((obj, what)))
        quarter_rows(m, p, 2)
        p.action(1, (INTEGER, 0), None)
        assert rows(p) == [] and seen == [(p, "reset")]
        p.capture()
        assert len(rows(p)) == 1


def test_set_period_and_objects_clear_and_report():
    with TempStore() as store:
        m = Meter()
        seen = []
        p = m.profile(store, on_change=lambda obj, what: seen.append(what))
        quarter_rows(m, p, 2)
        p.set(4, (DOUBLE_LONG_UNSIGNED, 60), None)
        assert rows(p) == [] and p.capture_period == 60
        p.capture()
        p.set(3, (ARRAY, [cdef(m.clock), cdef(m.exp)]), None)
        assert rows(p) == []
        m.energy[1] = 77
        p.capture()
        r = rows(p)
        assert len(r[0][1]) == 2 and r[0][1][1] == (DOUBLE_LONG_UNSIGNED, 77)
        p.set(8, (DOUBLE_LONG_UNSIGNED, 2), None)
        assert seen == ["capture_period", "capture_objects", "profile_entries"]
        for _ in range(3):
            p.capture()
        assert len(rows(p)) == 2


def test_set_errors():
    with TempStore() as store:
        m = Meter()
        seen = []
        p = m.profile(store, on_change=lambda obj, what: seen.append(what))
        assert code_of(p.set, 4, (LONG_UNSIGNED, 60), None) == errors.TYPE_UNMATCHED
        assert code_of(p.set, 4, (DOUBLE_LONG_UNSIGNED, 40 * DAY), None) == errors.OTHER_REASON
        assert code_of(p.set, 8, (DOUBLE_LONG_UNSIGNED, 0), None) == errors.OTHER_REASON
        assert code_of(p.set, 8, (DOUBLE_LONG_UNSIGNED, 11), None) == errors.OTHER_REASON
        assert code_of(p.set, 8, (UNSIGNED, 5), None) == errors.TYPE_UNMATCHED
        assert code_of(p.set, 5, (axdr.ENUM, 2), None) == errors.OTHER_REASON
        p.set(5, (axdr.ENUM, 1), None)
        assert code_of(p.set, 2, (ARRAY, []), None) == errors.READ_WRITE_DENIED
        assert code_of(p.set, 7, (DOUBLE_LONG_UNSIGNED, 0), None) == errors.READ_WRITE_DENIED
        assert code_of(p.set, 3, (STRUCTURE, []), None) == errors.TYPE_UNMATCHED
        assert code_of(p.set, 3, (ARRAY, [(STRUCTURE, [(LONG_UNSIGNED, 3)])]), None) == errors.TYPE_UNMATCHED
        unknown = (STRUCTURE, [(LONG_UNSIGNED, 3), (OCTET_STRING, obis("1-0:3.8.0.255")),
                               (INTEGER, 2), (LONG_UNSIGNED, 0)])
        assert code_of(p.set, 3, (ARRAY, [cdef(m.clock), unknown]), None) == errors.OTHER_REASON
        assert code_of(p.set, 3, (ARRAY, [cdef(m.clock), cdef(m.imp, 9)]), None) == errors.OTHER_REASON
        assert code_of(p.set, 3, (ARRAY, [cdef(p)]), None) == errors.OTHER_REASON
        assert code_of(p.action, 2, (UNSIGNED, 0), None) == errors.TYPE_UNMATCHED
        assert code_of(p.action, 3, (INTEGER, 0), None) == errors.READ_WRITE_DENIED
        assert seen == [] and p.capture_period == 900


# --- selective access -------------------------------------------------------------

def test_entry_descriptor():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store)
        quarter_rows(m, p, 4)
        sel = value(p.get_selective(2, 2, entry_desc(2, 3), None))[1]
        assert [row_energy(x) for x in sel] == [200, 300]
        sel = value(p.get_selective(2, 2, entry_desc(3, 0, 3, 0), None))[1]
        assert sel == [(STRUCTURE, [(DOUBLE_LONG_UNSIGNED, 300), (DOUBLE_LONG_UNSIGNED, 0)]),
                       (STRUCTURE, [(DOUBLE_LONG_UNSIGNED, 400), (DOUBLE_LONG_UNSIGNED, 0)])]
        sel = value(p.get_selective(2, 2, entry_desc(1, 1, 1, 1), None))[1]
        assert sel == [(STRUCTURE, [rows(p)[0][1][0]])]
        assert value(p.get_selective(2, 2, entry_desc(5, 9), None)) == (ARRAY, [])
        assert len(value(p.get_selective(2, 2, entry_desc(4, 9, 2, 99), None))[1][0][1]) == 3
        assert code_of(p.get_selective, 2, 2, entry_desc(3, 2), None) == errors.OTHER_REASON
        assert code_of(p.get_selective, 2, 2, entry_desc(1, 2, 3, 2), None) == errors.OTHER_REASON
        assert code_of(p.get_selective, 2, 2, entry_desc(1, 2, 5, 0), None) == errors.OTHER_REASON
        bad = (STRUCTURE, [(LONG_UNSIGNED, 1), (DOUBLE_LONG_UNSIGNED, 2), (LONG_UNSIGNED, 0), (LONG_UNSIGNED, 0)])
        assert code_of(p.get_selective, 2, 2, bad, None) == errors.TYPE_UNMATCHED
        assert code_of(p.get_selective, 2, 3, entry_desc(1, 2), None) == errors.READ_WRITE_DENIED
        assert code_of(p.get_selective, 3, 2, entry_desc(1, 2), None) == errors.READ_WRITE_DENIED


def test_range_descriptor():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store)
        quarter_rows(m, p, 6)                   # 12:15 ... 13:30 UTC
        lo = dt(2024, 1, 15, 12, 30, dev=0)
        hi = dt(2024, 1, 15, 13, 0, dev=0)
        sel = value(p.get_selective(2, 1, range_desc(m, lo, hi), None))[1]
        assert [row_energy(x) for x in sel] == [200, 300, 400]     # inclusive both ends
        sel = value(p.get_selective(2, 1, range_desc(m, lo, hi, (m.clock, m.imp)), None))[1]
        assert [len(x[1]) for x in sel] == [2, 2, 2] and sel[0][1][1] == (DOUBLE_LONG_UNSIGNED, 200)
        sel = value(p.get_selective(2, 1, range_desc(m, lo, hi, (m.imp, m.clock)), None))[1]
        assert sel[0][1][0] == (DOUBLE_LONG_UNSIGNED, 200) and sel[0][1][1][0] == OCTET_STRING
        # A date-time tagged boundary (tag 25) is accepted too.
        params = (STRUCTURE, [cdef(m.clock), (DATE_TIME, lo), (DATE_TIME, hi), (ARRAY, [])])
        assert len(value(p.get_selective(2, 1, params, None))[1]) == 3
        # Nothing in range: an empty array.
        far = dt(2030, 1, 1, dev=0)
        assert value(p.get_selective(2, 1, range_desc(m, far, far), None)) == (ARRAY, [])


def test_range_boundaries_as_clients_send_them():
    with TempStore() as store:
        m = Meter(T0, tz=-60)                   # rows stamped in CET, deviation -60
        p = m.profile(store)
        quarter_rows(m, p, 6)                   # 13:15 ... 14:30 local
        # Gurux: deviation 0x8000 (not specified), dow and hundredths 0xFF: local time.
        lo = dt(2024, 1, 15, 13, 30)
        hi = dt(2024, 1, 15, 14, 0)
        sel = value(p.get_selective(2, 1, range_desc(m, lo, hi), None))[1]
        assert [row_energy(x) for x in sel] == [200, 300, 400]
        # dlms-cosem: UTC with deviation 0 denotes the same instants.
        lo = dt(2024, 1, 15, 12, 30, dev=0, hundredths=0, dow=1, status=0)
        hi = dt(2024, 1, 15, 13, 0, dev=0, hundredths=0, dow=1, status=0)
        assert [row_energy(x) for x in value(p.get_selective(2, 1, range_desc(m, lo, hi), None))[1]] == [200, 300, 400]
        # Unspecified time fields read as 0; an unspecified date is an open bound.
        everything = value(p.get_selective(2, 1, range_desc(m, dt(2024, 1, 15), dt(None, None, None)), None))[1]
        assert len(everything) == 6
        opened = encode_datetime((None,) * 10)
        assert len(value(p.get_selective(2, 1, range_desc(m, opened, dt(2024, 1, 15, 13, 45)), None))[1]) == 3


def test_range_descriptor_errors():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store)
        quarter_rows(m, p, 2)
        lo, hi = dt(2024, 1, 15, dev=0), dt(2024, 1, 16, dev=0)
        other = (STRUCTURE, [cdef(m.status), (OCTET_STRING, lo), (OCTET_STRING, hi), (ARRAY, [])])
        assert code_of(p.get_selective, 2, 1, other, None) == errors.TYPE_UNMATCHED  # boundary type
        missing = (STRUCTURE, [cdef(p), (OCTET_STRING, lo), (OCTET_STRING, hi), (ARRAY, [])])
        assert code_of(p.get_selective, 2, 1, missing, None) == errors.OTHER_REASON
        assert code_of(p.get_selective, 2, 1, range_desc(m, lo, hi, (p,)), None) == errors.OTHER_REASON
        assert code_of(p.get_selective, 2, 1, range_desc(m, b"\x07\xe8", hi), None) == errors.TYPE_UNMATCHED
        assert code_of(p.get_selective, 2, 1, range_desc(m, dt(2024, 2, 30), hi), None) == errors.OTHER_REASON
        short = (STRUCTURE, [cdef(m.clock), (OCTET_STRING, lo)])
        assert code_of(p.get_selective, 2, 1, short, None) == errors.TYPE_UNMATCHED
        assert code_of(p.get_selective, 2, 1, (ARRAY, []), None) == errors.TYPE_UNMATCHED
        # An integer column restricts by integer boundaries.
        by_energy = (STRUCTURE, [cdef(m.imp), (DOUBLE_LONG_UNSIGNED, 150), (DOUBLE_LONG_UNSIGNED, 250), (ARRAY, [])])
        assert [row_energy(x) for x in value(p.get_selective(2, 1, by_energy, None))[1]] == [200]


def test_encoder_matches_get_and_long_arrays():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store, entries=140)
        quarter_rows(m, p, 130)
        for selector, params in ((0, None), (2, entry_desc(2, 0, 2, 3)),
                                 (1, range_desc(m, dt(2024, 1, 15, 13, dev=0), dt(2024, 1, 16, dev=0), (m.imp,)))):
            out = bytearray(b"\xEE")
            n = p.encode_buffer_into(out, selector, params)
            got = value(p.get_selective(2, selector, params, None)) if selector else value(p.get(2, None))
            assert out[1:] == axdr.encode_data(got)
            assert n == len(got[1]) and out[0] == 0xEE
        assert n == 45 and len(rows(p)) == 130     # 13:00 .. 00:00 inclusive
        assert axdr.decode_data(axdr.encode_data(value(p.get(2, None))))[0] == value(p.get(2, None))


def test_datetime_instant():
    src = Source(0)
    cet = Clock(CLOCK, src, {"time_zone": -60, "dst_enabled": True})
    assert datetime_instant(dt(2024, 1, 15, 12, dev=0)) == T0
    assert datetime_instant(dt(2024, 1, 15, 13, dev=-60)) == T0
    assert datetime_instant(dt(2024, 1, 15, 13), cet) == T0            # local winter time
    assert datetime_instant(dt(2024, 6, 1, 14), cet) == 770558400      # local summer time
    assert datetime_instant(dt(2024, 1, 15, 12)) == T0                 # no clock: UTC
    assert datetime_instant(dt(2024, 1, 15, 12, None, None, dev=0, hundredths=99)) == T0
    assert datetime_instant(dt(2024, 1, 15, None, None, None, dev=0)) == T0 - 12 * 3600
    assert datetime_instant(dt(None, 1, 15, 12, dev=0)) is None
    assert datetime_instant(dt(2024, None, 15, 12, dev=0)) is None
    assert code_of(datetime_instant, b"\x00" * 11) == errors.TYPE_UNMATCHED
    assert code_of(datetime_instant, dt(2024, 13, 1)) == errors.TYPE_UNMATCHED
    assert code_of(datetime_instant, dt(2024, 0xFE, 1)) == errors.OTHER_REASON   # DST pattern


# --- event logs -----------------------------------------------------------------

def test_event_log_records_and_restores_last_code():
    with TempStore() as store:
        m = Meter()
        code = EventCode(obis("0-0:96.11.0.255"))
        log = EventLog(obis("0-0:99.98.0.255"), m.clock, code, store, entries=3)
        log.record(EV_POWER_DOWN, T0 - 60)
        log.record(EV_POWER_UP)
        assert value(code.get(2, None)) == (UNSIGNED, EV_POWER_UP)
        r = rows(log)
        assert [x[1][1] for x in r] == [(UNSIGNED, 1), (UNSIGNED, 2)]
        assert row_time(r[0])[4:7] == (11, 59, 0) and row_time(r[1])[4:7] == (12, 0, 0)
        assert log.get(4, None) == (DOUBLE_LONG_UNSIGNED, 0)
        assert not log.tick(T0 + DAY)
        code2 = EventCode(obis("0-0:96.11.0.255"))
        log2 = EventLog(obis("0-0:99.98.0.255"), m.clock, code2, Store(store.directory, fsync=False), entries=3)
        assert value(code2.get(2, None)) == (UNSIGNED, EV_POWER_UP) and rows(log2) == r
        assert code_of(code2.set, 2, (UNSIGNED, 9), None) == errors.READ_WRITE_DENIED


def test_audit_log_wired_to_on_change():
    with TempStore() as store:
        m = Meter()
        code = EventCode(obis("0-0:96.11.4.255"), LONG_UNSIGNED)
        audit = EventLog(obis("0-0:99.98.4.255"), m.clock, code, store, entries=10)
        from cosem.profile import CHANGE_CODES
        p = m.profile(store, on_change=lambda obj, what: audit.record(CHANGE_CODES[what]))
        p.set(4, (DOUBLE_LONG_UNSIGNED, 300), None)
        p.action(1, (INTEGER, 0), None)
        assert [x[1][1] for x in rows(audit)] == [(LONG_UNSIGNED, 200), (LONG_UNSIGNED, 203)]


# --- through the server ------------------------------------------------------------

def test_server_routes_selective_access():
    from dlms.server import Association

    class Table:
        def __init__(self, obj):
            self.obj = obj

        def client(self, sap):
            return None

        def lookup(self, class_id, ln):
            return self.obj if (class_id, ln) == (7, self.obj.logical_name) else None

        def attribute_access(self, client, obj, attr):
            return 1

    class Server:
        max_pdu = 1024

    with TempStore() as store:
        m = Meter()
        p = m.profile(store)
        quarter_rows(m, p, 3)
        srv = Server()
        srv.table = Table(p)
        a = Association(srv, 16)
        got = value(a.read((7, LP, 2, (2, entry_desc(2, 2, 3, 3)))))
        assert got == (ARRAY, [(STRUCTURE, [(DOUBLE_LONG_UNSIGNED, 200)])])
        assert len(value(a.read((7, LP, 2, None)))[1]) == 3


# --- streaming the buffer (GET block transfer at 64 KB) --------------------------------

def _drain(enc, size):
    out = bytearray()
    while True:
        piece = enc.read(size)
        if not piece:
            return bytes(out)
        if len(piece) > size or (len(piece) < size and not enc.done):
            raise AssertionError("short piece before the end")
        out.extend(piece)


def test_encoder_pieces_equal_the_whole():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store, entries=20)
        quarter_rows(m, p, 12)
        cases = ((0, None), (2, entry_desc(3, 9, 2, 0)), (1, range_desc(m, dt(2024, 1, 15, 13, dev=0),
                                                                         dt(2024, 1, 15, 14, dev=0), (m.imp,))))
        for selector, params in cases:
            whole = bytearray()
            n = p.encode_buffer_into(whole, selector, params)
            for size in (1, 7, 13, 64, 4096):
                enc = p.encoder(selector, params)
                assert enc.count == n
                assert _drain(enc, size) == whole
        empty = p.encoder(2, entry_desc(50, 0))
        assert empty.read(100) == b"\x01\x00" and empty.read(100) == b"" and empty.done
        assert code_of(p.encoder, 2, entry_desc(3, 2)) == errors.OTHER_REASON


def test_encoder_follows_the_ring_and_aborts():
    with TempStore() as store:
        m = Meter()
        p = m.profile(store, entries=5)
        quarter_rows(m, p, 5)                   # full ring: 100 .. 500
        enc = p.encoder()
        first = enc.read(40)                    # header and the first rows
        m.step(900, 100)
        p.tick(m.src.t)                         # drops the oldest row (already sent)
        rest = _drain(enc, 40)
        v, end = axdr.decode_data(first + rest)
        assert end == len(first + rest)
        assert [row_energy(x) for x in v[1]] == [100, 200, 300, 400, 500]   # 600 not sent
        enc = p.encoder()
        enc.read(20)
        for _ in range(3):
            m.step(900, 100)
            p.tick(m.src.t)
        assert code_of(enc.read, 20) == errors.LONG_GET_ABORTED
        enc = p.encoder()
        enc.read(20)
        p.action(1, (INTEGER, 0), None)
        assert code_of(enc.read, 20) == errors.LONG_GET_ABORTED

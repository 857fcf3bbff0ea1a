# COSEM object model: every class's attributes, type checks, the date-time codec,
# the object table and the rights it gives each client.
from testutil import value, raises, unhex

from dlms import axdr
from dlms.errors import AccessError
from cosem import table as table_mod
from cosem.association import AssociationLN
from cosem.base import obis
from cosem.clock import (
    Clock,
    EU_DST_BEGIN,
    civil_from_days,
    days_from_civil,
    decode_datetime,
    encode_datetime,
    resolve_pattern,
    weekday,
)
from cosem.data import Data, Register
from cosem.hdlc_setup import HdlcSetup
from cosem.sap import SapAssignment
from cosem.table import MANAGEMENT, PRE_ESTABLISHED, PUBLIC, READER, build_objects

# Seconds since 2000-01-01 UTC, computed with CPython's datetime.
T_2024_01_15_1200 = 758635200      # a Monday
T_2024_03_31_0100 = 765162000      # EU summer time starts
T_2024_10_27_0100 = 783306000      # EU summer time ends
T_2024_06_01_1200 = 770558400

CONFIG = {
    "ldn": b"MPY0000000000001",
    "hdlc": {"physical": 16, "logical": 1, "max_info": 128, "window": 1, "inactivity_s": 120},
    "max_pdu": 1024,
    "lls_password": b"12345678",
}
ENERGY = obis("1-0:1.8.0.255")
EXPORT = obis("1-0:2.8.0.255")
CLOCK = obis("0-0:1.0.0.255")
CURRENT = obis("0-0:40.0.0.255")


class Ctx:
    def __init__(self, client, **kw):
        self.client = client
        for k in kw:
            setattr(self, k, kw[k])


class FakeSource:
    def __init__(self, t):
        self.t = t
        self.sets = []

    def now(self):
        return self.t

    def set(self, seconds):
        self.sets.append(seconds)
        self.t = seconds


def code_of(fn, *args):
    return raises(AccessError, fn, *args).code


def encodable(v):
    # The server encodes what objects return (streams it reads out): a value it
    # cannot encode is a bug.
    return axdr.encode_data(value(v))


def meter(t=T_2024_01_15_1200, sources=None):
    src = FakeSource(t)
    return build_objects(CONFIG, src, sources), src


# --- base machinery, Data, Register ------------------------------------------

def test_obis_helper():
    assert obis("1-0:1.8.0.255") == b"\x01\x00\x01\x08\x00\xff"
    raises(ValueError, obis, "1-0:1.8.0")


def test_data_get_every_attribute():
    d = Data(obis("0-0:42.0.0.255"), (9, b"MPY0000000000001"))
    assert d.get(1, None) == (9, b"\x00\x00\x2a\x00\x00\xff")
    assert d.get(2, None) == (9, b"MPY0000000000001")
    d2 = Data(obis("0-0:43.1.0.255"), lambda: (6, 42))
    assert d2.get(2, None) == (6, 42)
    assert encodable(d2.get(2, None)) == unhex("06 0000002a")


def test_data_set_checks_type():
    d = Data(obis("0-0:96.1.0.255"), (10, b"old"), settable_tag=10)
    assert code_of(d.set, 2, (9, b"new"), None) == 12
    assert code_of(d.set, 2, 5, None) == 12
    d.set(2, (10, b"new"), None)
    assert d.get(2, None) == (10, b"new")
    ro = Data(obis("0-0:96.1.1.255"), (10, b"x"))
    assert code_of(ro.set, 2, (10, b"y"), None) == 3


def test_logical_name_is_read_only():
    d = Data(obis("0-0:42.0.0.255"), (9, b"x"))
    assert code_of(d.set, 1, (9, b"\x00" * 6), None) == 3


def test_undefined_attribute_and_method():
    # Gurux answers read-write-denied (3) for an id the class does not define.
    r = Register(ENERGY, 6, lambda: 1)
    assert code_of(r.get, 4, None) == 3
    assert code_of(r.get, 0, None) == 3
    assert code_of(r.set, 9, (6, 1), None) == 3
    assert code_of(r.action, 2, (15, 0), None) == 3


def test_selective_access_refused_by_default():
    r = Register(ENERGY, 6, lambda: 1)
    assert code_of(r.get_selective, 2, 1, (2, []), None) == 3
    assert code_of(r.get_selective, 7, 1, (2, []), None) == 3


def test_register_get_every_attribute():
    r = Register(ENERGY, 6, lambda: 123456, 0, 30)
    assert r.get(1, None) == (9, ENERGY)
    assert r.get(2, None) == (6, 123456)
    assert r.get(3, None) == (2, [(15, 0), (22, 30)])
    assert encodable(r.get(3, None)) == unhex("02 02 0f 00 16 1e")


def test_register_value_not_settable():
    r = Register(ENERGY, 6, lambda: 1)
    assert code_of(r.set, 2, (6, 0), None) == 3
    assert code_of(r.set, 3, (2, [(15, 0), (22, 30)]), None) == 3


def test_register_reset():
    done = []
    r = Register(obis("1-0:1.6.0.255"), 6, lambda: 1, reset=lambda: done.append(1))
    assert code_of(r.action, 1, (16, 0), None) == 12
    assert r.action(1, (15, 0), None) is None
    assert done == [1]
    billing = Register(ENERGY, 6, lambda: 1)
    assert code_of(billing.action, 1, (15, 0), None) == 3


# --- date-time codec and calendar ----------------------------------------------

def test_datetime_encode_known_bytes():
    # 2024-03-31 Sunday 02:30:15.50, deviation -60 (CET), summer time flag.
    f = (2024, 3, 31, 7, 2, 30, 15, 50, -60, 0x80)
    b = encode_datetime(f)
    assert b == unhex("07e8 03 1f 07 02 1e 0f 32 ffc4 80")
    assert decode_datetime(b) == f


def test_datetime_round_trip_not_specified_and_special():
    cases = (
        (None,) * 10,
        (None, 3, 0xFE, 7, 2, 0, 0, None, None, None),      # last Sunday of March
        (2023, 0xFD, 0xFD, None, 23, 59, 59, 99, 720, 0),   # dst-end month, 2nd last day
        (0, 1, 1, 1, 0, 0, 0, 0, -720, 0x0F),
        (2000, 12, 31, None, None, None, None, None, -1, None),
    )
    for f in cases:
        b = encode_datetime(f)
        assert len(b) == 12
        assert decode_datetime(b) == f, f
    assert encode_datetime((None,) * 10) == unhex("ffff ff ff ff ff ff ff ff 8000 ff")
    assert encode_datetime((2000, 1, 1, 6, 0, 0, 0, 0, -1, 0))[9:11] == b"\xff\xff"


def test_datetime_decode_rejects_malformed():
    good = unhex("07e8 03 1f 07 02 1e 0f 32 ffc4 80")
    assert code_of(decode_datetime, good[:11]) == 12
    assert code_of(decode_datetime, good + b"\x00") == 12
    for pos, byte in ((2, 13), (2, 0), (3, 0), (3, 0xE0), (4, 8), (5, 24), (6, 60), (7, 60), (8, 100)):
        bad = bytearray(good)
        bad[pos] = byte
        assert code_of(decode_datetime, bytes(bad)) == 12, (pos, byte)
    bad = bytearray(good)
    bad[9:11] = (721).to_bytes(2, "big")
    assert code_of(decode_datetime, bytes(bad)) == 12


def test_calendar():
    assert days_from_civil(2000, 1, 1) == 0
    assert days_from_civil(1999, 12, 31) == -1
    assert days_from_civil(2100, 3, 1) * 86400 == 3160857600
    assert weekday(0) == 6                                  # 2000-01-01 Saturday
    assert weekday(days_from_civil(2024, 1, 1)) == 1        # Monday
    assert weekday(days_from_civil(2100, 3, 1)) == 1
    for n in range(-800, 60000, 37):
        y, m, d = civil_from_days(n)
        assert days_from_civil(y, m, d) == n
    assert civil_from_days(days_from_civil(2024, 2, 29)) == (2024, 2, 29)
    assert civil_from_days(days_from_civil(2100, 2, 28) + 1) == (2100, 3, 1)


def test_resolve_pattern():
    begin = resolve_pattern(EU_DST_BEGIN, 2024)
    assert begin == days_from_civil(2024, 3, 31) * 86400 + 2 * 3600
    assert resolve_pattern((None, 4, 1, 7, 0, 0, 0, None, None, None), 2024) == days_from_civil(2024, 4, 7) * 86400
    assert resolve_pattern((None, None, 1, None, 0, 0, 0, None, None, None), 2024) is None


# --- Clock -------------------------------------------------------------------------

def test_clock_get_every_attribute():
    src = FakeSource(T_2024_01_15_1200)
    c = Clock(CLOCK, src, {"time_zone": -60})
    ctx = Ctx(PUBLIC)
    assert c.get(1, ctx) == (9, CLOCK)
    # CET: local 13:00, Monday, deviation -60, status OK.
    assert c.get(2, ctx) == (9, unhex("07e8 01 0f 01 0d 00 00 00 ffc4 00"))
    assert c.get(3, ctx) == (16, -60)
    assert c.get(4, ctx) == (17, 0)
    assert c.get(5, ctx) == (9, encode_datetime(EU_DST_BEGIN))
    assert c.get(6, ctx)[0] == 9 and len(c.get(6, ctx)[1]) == 12
    assert c.get(7, ctx) == (15, 60)
    assert c.get(8, ctx) == (3, False)
    assert c.get(9, ctx) == (22, 1)
    for a in range(1, 10):
        encodable(c.get(a, ctx))


def test_clock_daylight_saving_eu():
    src = FakeSource(T_2024_03_31_0100 - 1)
    c = Clock(CLOCK, src, {"time_zone": -60, "dst_enabled": True})
    f = decode_datetime(c.get(2, None)[1])
    assert f[4:7] == (1, 59, 59) and f[8] == -60 and f[9] == 0
    src.t = T_2024_03_31_0100
    f = decode_datetime(c.get(2, None)[1])
    assert f[4:7] == (3, 0, 0) and f[8] == -120 and f[9] == 0x80
    assert c.get(4, None) == (17, 0x80)
    src.t = T_2024_10_27_0100 - 1
    assert decode_datetime(c.get(2, None)[1])[4:7] == (2, 59, 59)
    src.t = T_2024_10_27_0100
    f = decode_datetime(c.get(2, None)[1])
    assert f[4:7] == (2, 0, 0) and f[8] == -60


def test_clock_set_time():
    src = FakeSource(0)
    c = Clock(CLOCK, src, {"time_zone": -60, "dst_enabled": True})
    # 2024-06-01 14:00 local with deviation -120 is 12:00 UTC.
    c.set(2, (9, encode_datetime((2024, 6, 1, None, 14, 0, 0, None, -120, None))), None)
    assert src.t == T_2024_06_01_1200
    # No deviation given: the meter's own rules (summer time in June).
    c.set(2, (25, encode_datetime((2024, 6, 1, 6, 14, 0, 0, 0, None, 0))), None)
    assert src.t == T_2024_06_01_1200
    assert src.sets == [T_2024_06_01_1200, T_2024_06_01_1200]


def test_clock_set_rejects():
    src = FakeSource(0)
    c = Clock(CLOCK, src)
    good = encode_datetime((2024, 6, 1, None, 14, 0, 0, None, 0, None))
    assert code_of(c.set, 2, (16, 5), None) == 12
    assert code_of(c.set, 2, (9, good[:11]), None) == 12
    assert code_of(c.set, 2, (9, encode_datetime((None, 6, 1, None, 14, 0, 0, None, 0, None))), None) == 250
    assert code_of(c.set, 2, (9, encode_datetime((2023, 2, 29, None, 14, 0, 0, None, 0, None))), None) == 250
    assert code_of(c.set, 3, (15, 60), None) == 12
    assert code_of(c.set, 3, (16, 721), None) == 250
    assert code_of(c.set, 5, (9, b"\x00" * 11), None) == 12
    assert code_of(c.set, 8, (17, 1), None) == 12
    assert code_of(c.set, 9, (22, 2), None) == 3      # clock_base is read-only
    assert src.sets == []
    c.set(3, (16, -60), None)
    c.set(8, (3, True), None)
    c.set(7, (15, 30), None)
    assert (c.time_zone, c.dst_enabled, c.dst_deviation) == (-60, True, 30)


def test_clock_methods():
    src = FakeSource(T_2024_01_15_1200 + 7 * 60 + 29)
    c = Clock(CLOCK, src, {"time_zone": -60})
    assert c.action(1, (15, 0), None) is None
    assert src.t == T_2024_01_15_1200
    src.t = T_2024_01_15_1200 + 7 * 60 + 30
    c.action(1, (15, 0), None)
    assert src.t == T_2024_01_15_1200 + 15 * 60
    src.t = T_2024_01_15_1200 + 29
    c.action(3, (15, 0), None)
    assert src.t == T_2024_01_15_1200
    c.action(6, (16, -30), None)
    assert src.t == T_2024_01_15_1200 - 30
    assert code_of(c.action, 6, (16, 901), None) == 250
    assert code_of(c.action, 6, (15, 1), None) == 12
    assert code_of(c.action, 2, (15, 0), None) == 3     # declared, not implemented
    assert code_of(c.action, 7, (15, 0), None) == 3


def test_clock_callable_source_is_read_only():
    c = Clock(CLOCK, lambda: T_2024_01_15_1200)
    assert decode_datetime(c.get(2, None)[1])[:3] == (2024, 1, 15)
    assert code_of(c.action, 6, (16, 1), None) == 3


# --- SAP assignment and HDLC setup --------------------------------------------------

def test_sap_assignment():
    s = SapAssignment(obis("0-0:41.0.0.255"), ((1, b"MPY0000000000001"),))
    assert s.get(2, None) == (1, [(2, [(18, 1), (9, b"MPY0000000000001")])])
    encodable(s.get(2, None))
    assert code_of(s.action, 1, (2, []), None) == 3


def test_hdlc_setup_reflects_config():
    h = HdlcSetup(obis("0-0:22.0.0.255"), CONFIG["hdlc"])
    got = [h.get(a, None) for a in range(2, 10)]
    assert got == [(22, 5), (17, 1), (17, 1), (18, 128), (18, 128), (18, 25), (18, 120), (18, 16)]
    h2 = HdlcSetup(obis("0-0:22.0.0.255"), {"baud": 115200, "window_rx": 7, "max_info_tx": 256})
    assert h2.get(2, None) == (22, 9) and h2.get(4, None) == (17, 7) and h2.get(5, None) == (18, 256)
    raises(ValueError, HdlcSetup, obis("0-0:22.0.0.255"), {"baud": 1000})
    assert code_of(h.set, 8, (18, 60), None) == 3


# --- Association LN ------------------------------------------------------------------

def object_list(association, ctx):
    """object_list as a value tree: the object hands it over as a stream."""
    return value(association.get(2, ctx))


def test_association_get_every_attribute():
    t, _ = meter()
    a = t.lookup(15, CURRENT)
    ctx = Ctx(PUBLIC)
    assert a.get(1, ctx) == (9, CURRENT)
    assert object_list(a, ctx)[0] == 1
    assert a.get(3, ctx) == (2, [(15, 16), (18, 1)])
    assert a.get(4, ctx) == (9, unhex("60857405080101"))
    info = a.get(5, ctx)
    assert info[0] == 2 and [m[0] for m in info[1]] == [4, 18, 18, 17, 15, 9]
    assert info[1][0] == (4, (24, t.client(PUBLIC)["conformance"].to_bytes(3, "big")))
    assert info[1][3] == (17, 6)
    assert a.get(6, ctx) == (9, unhex("60857405080200"))
    assert code_of(a.get, 7, ctx) == 3          # the secret is write-only
    assert a.get(8, ctx) == (22, 2)
    assert a.get(9, ctx) == (9, obis("0-0:43.0.0.255"))
    for attr in (1, 2, 3, 4, 5, 6, 8, 9):
        encodable(a.get(attr, ctx))


def test_current_association_reflects_session():
    t, _ = meter()
    a = t.lookup(15, CURRENT)
    ctx = Ctx(MANAGEMENT, context=3, mechanism=5, conformance=0x001C1F, max_pdu=512, pending=True)
    assert a.get(3, ctx) == (2, [(15, 1), (18, 1)])
    assert a.get(4, Ctx(PUBLIC, context=1)) == (9, unhex("60857405080101"))
    assert a.get(4, ctx) == (9, unhex("60857405080103"))
    assert a.get(6, ctx) == (9, unhex("60857405080205"))
    info = a.get(5, ctx)[1]
    assert info[0] == (4, (24, b"\x00\x1c\x1f")) and info[1] == (18, 1024) and info[2] == (18, 512)
    assert a.get(8, ctx) == (22, 1)


def test_per_client_association_instances():
    t, _ = meter()
    mgmt = Ctx(MANAGEMENT)
    pub = t.lookup(15, obis("0-0:40.0.1.255"))
    assert pub.get(3, mgmt) == (2, [(15, 16), (18, 1)])
    assert pub.get(8, mgmt) == (22, 0)   # public is not the caller
    # Its object list is the public client's, whoever reads it.
    assert value(pub.get(2, mgmt)) == value(t.lookup(15, CURRENT).get(2, Ctx(PUBLIC)))
    assert t.lookup(15, obis("0-0:40.0.2.255")).get(4, mgmt) == (9, unhex("60857405080103"))
    assert t.lookup(15, obis("0-0:40.0.4.255")).get(6, mgmt) == (9, unhex("60857405080201"))
    assert t.association_for(READER).logical_name == obis("0-0:40.0.4.255")


def test_lls_secret():
    t, _ = meter()
    reader = t.association_for(READER)
    assert reader.verify_secret(b"12345678")
    assert not reader.verify_secret(b"12345679")
    assert not reader.verify_secret(b"1234567")
    assert not reader.verify_secret(None)
    mgmt = Ctx(MANAGEMENT)
    assert code_of(reader.set, 7, (10, b"abc"), mgmt) == 12
    assert code_of(reader.set, 7, (9, b""), mgmt) == 250
    reader.set(7, (9, b"newpass1"), mgmt)
    assert reader.verify_secret(b"newpass1") and not reader.verify_secret(b"12345678")
    assert code_of(reader.get, 7, mgmt) == 3
    # HLS clients and the current association hold no LLS password.
    assert code_of(t.association_for(MANAGEMENT).set, 7, (9, b"x"), mgmt) == 3
    assert code_of(t.lookup(15, CURRENT).set, 7, (9, b"x"), Ctx(READER)) == 3
    assert not t.association_for(PUBLIC).verify_secret(b"")


def test_reply_to_hls_hook():
    t, _ = meter()
    a = t.lookup(15, CURRENT)
    assert code_of(a.action, 1, (9, b"f(CtoS)"), Ctx(MANAGEMENT)) == 3
    ctx = Ctx(MANAGEMENT, reply_to_hls=lambda b: b"f(StoC):" + b)
    assert a.action(1, (9, b"x"), ctx) == (9, b"f(StoC):x")
    assert code_of(a.action, 1, (10, b"x"), ctx) == 12
    assert code_of(t.association_for(MANAGEMENT).action, 1, (9, b"x"), ctx) == 3
    assert code_of(a.action, 2, (9, b"x"), ctx) == 3


# --- the object table --------------------------------------------------------------

PUBLIC_LIST = (
    (1, "0-0:42.0.0.255", (1, 1), ()),
    (8, "0-0:1.0.0.255", (1,) * 9, (0,) * 6),
    (15, "0-0:40.0.0.255", (1, 1, 1, 1, 1, 1, 0, 1, 1), (0, 0, 0, 0)),
    (15, "0-0:40.0.1.255", (1, 1, 1, 1, 1, 1, 0, 1, 1), (0, 0, 0, 0)),
    (17, "0-0:41.0.0.255", (1, 1), (0,)),
    (3, "1-0:1.8.0.255", (1, 1, 1), (0,)),
    (3, "1-0:2.8.0.255", (1, 1, 1), (0,)),
    (1, "0-0:43.1.0.255", (1, 1), ()),
)


def test_object_list_for_public_client():
    t, _ = meter()
    value = object_list(t.lookup(15, CURRENT), Ctx(PUBLIC))
    assert value[0] == 1
    listed = [e[1][2][1] for e in value[1]]
    # Every object of PUBLIC_LIST, in table order (the metering objects come between).
    entries = [value[1][listed.index(obis(want[1]))] for want in PUBLIC_LIST]
    assert [listed.index(obis(w[1])) for w in PUBLIC_LIST] == sorted(listed.index(obis(w[1])) for w in PUBLIC_LIST)
    for hidden in ("0-0:22.0.0.255", "0-0:43.0.0.255", "0-0:40.0.2.255"):
        assert obis(hidden) not in listed, hidden
    for entry, want in zip(entries, PUBLIC_LIST):
        class_id, version, ln, rights = entry[1]
        assert class_id == (18, want[0]) and ln == (9, obis(want[1])), want
        assert version[0] == 17
        attrs, methods = rights[1][0][1], rights[1][1][1]
        assert [a[1][0] for a in attrs] == [(15, k + 1) for k in range(len(want[2]))]
        assert tuple(a[1][1][1] for a in attrs) == want[2], want
        assert all(a[1][1][0] == 22 and a[1][2] == (0, None) for a in attrs)
        assert tuple(m[1][1][1] for m in methods) == want[3], want
    # Deterministic: the same bytes every time, and the same from a new table.
    again = object_list(build_objects(CONFIG, FakeSource(0)).lookup(15, CURRENT), Ctx(PUBLIC))
    assert encodable(value) == encodable(again)


def test_public_client_cannot_write_anything():
    t, _ = meter()
    for obj in t.objects_for(PUBLIC):
        for a in obj.ATTRIBUTES:
            assert t.attribute_access(PUBLIC, obj, a[0]) in (0, 1), obj
        for m in obj.METHODS:
            assert t.method_access(PUBLIC, obj, m[0]) == 0, obj


def test_energy_registers_never_writable_or_resettable():
    t, _ = meter()
    for ln in (ENERGY, EXPORT):
        reg = t.lookup(3, ln)
        for sap in (PUBLIC, READER, MANAGEMENT, PRE_ESTABLISHED, 2, 99):
            for a in range(0, 6):
                assert t.attribute_access(sap, reg, a) in (0, 1), (sap, a)
            for m in range(0, 3):
                assert t.method_access(sap, reg, m) == 0, (sap, m)
        assert code_of(reg.action, 1, (15, 0), Ctx(MANAGEMENT)) == 3
        assert code_of(reg.set, 2, (6, 0), Ctx(MANAGEMENT)) == 3


def test_build_refuses_write_access_to_billing_registers():
    saved = table_mod.access_rights
    try:
        table_mod.access_rights = lambda: tuple(
            (n, ("rrr/-", "rrr/-", "rrr/x", None)) if n == "1-0:1.8.0.255" else (n, r) for n, r in saved()
        )
        raises(ValueError, build_objects, CONFIG, FakeSource(0))
        table_mod.access_rights = lambda: tuple(
            (n, ("rrr/-", "rbr/-", "rrr/-", None)) if n == "1-0:2.8.0.255" else (n, r) for n, r in saved()
        )
        raises(ValueError, build_objects, CONFIG, FakeSource(0))
    finally:
        table_mod.access_rights = saved
    build_objects(CONFIG, FakeSource(0))  # the real table passes


def test_access_strings_must_match_class():
    t, _ = meter()
    clock = t.lookup(8, CLOCK)
    raises(ValueError, t.grant, clock, ("rrrr/------", None, None, None))
    raises(ValueError, t.grant, clock, (None, "rrrrrrrrr/---", None, None))
    raises(ValueError, t.grant, clock, ("rrrrrrrrr/------", None, None, "rrrrrrrrz/------"))
    t.grant(clock, ("rrrrrrrrr/------", None, None, None))
    assert t.attribute_access(PUBLIC, clock, 2) == 1 and not t.visible(MANAGEMENT, clock)


def test_client_rights():
    t, _ = meter()
    clock = t.lookup(8, CLOCK)
    assert [t.attribute_access(READER, clock, a) for a in range(1, 10)] == [1, 3, 3, 1, 1, 1, 1, 1, 1]
    assert t.method_access(READER, clock, 6) == 0
    assert t.method_access(MANAGEMENT, clock, 6) == 1
    assert t.attribute_access(PRE_ESTABLISHED, clock, 2) == 2
    assert t.objects_for(PRE_ESTABLISHED) == [t.lookup(8, CLOCK), t.lookup(15, CURRENT)]
    hdlc = t.lookup(23, obis("0-0:22.0.0.255"))
    assert not t.visible(PUBLIC, hdlc) and t.visible(READER, hdlc)
    assert t.attribute_access(PUBLIC, hdlc, 2) == 0
    assert t.objects_for(99) == [] and t.client(99) is None
    assert t.attribute_access(99, clock, 2) == 0
    assert t.client(PUBLIC)["association"] == obis("0-0:40.0.1.255")
    assert t.clients() == [PUBLIC, READER, MANAGEMENT, PRE_ESTABLISHED]
    assert len(object_list(t.lookup(15, CURRENT), Ctx(MANAGEMENT))[1]) == len(t.objects())


def test_table_lookup():
    t, _ = meter(sources={"billed_mwh": lambda reg: 1234 if reg == 0 else 0, "invocation_counter": lambda: 77})
    reg = t.lookup(3, ENERGY)
    assert isinstance(reg, Register) and reg.get(2, None) == (21, 1234)  # mWh, long64-unsigned
    assert t.lookup(3, bytearray(ENERGY)) is reg
    assert t.lookup(3, memoryview(ENERGY)) is reg
    assert t.lookup(1, ENERGY) is None           # wrong class
    assert t.find(ENERGY) is reg
    assert t.lookup(3, obis("1-0:9.8.0.255")) is None
    assert t.lookup(3, EXPORT).get(2, None) == (21, 0)
    assert t.lookup(1, obis("0-0:43.1.0.255")).get(2, None) == (6, 77)
    assert t.lookup(1, obis("0-0:42.0.0.255")).get(2, None) == (9, b"MPY0000000000001")
    assert t.lookup(1, obis("1-0:0.2.0.255")).get(2, None)[0] == 10
    assert isinstance(t.lookup(15, CURRENT), AssociationLN)


def test_logical_device_name_from_flag_and_serial():
    t = build_objects({"flag_id": b"MPY", "serial": 42}, FakeSource(0))
    assert t.lookup(1, obis("0-0:42.0.0.255")).get(2, None) == (9, b"MPY0000000000042")
    raises(ValueError, build_objects, {"ldn": b"short"}, FakeSource(0))


def test_every_readable_attribute_encodes():
    t, _ = meter()
    for sap in t.clients():
        ctx = Ctx(sap)
        for obj in t.objects_for(sap):
            for a in obj.ATTRIBUTES:
                if t.attribute_access(sap, obj, a[0]) & 1:
                    encodable(obj.get(a[0], ctx))


def test_clock_in_table_uses_injected_source():
    t, src = meter(T_2024_06_01_1200)
    clock = t.lookup(8, CLOCK)
    assert decode_datetime(clock.get(2, Ctx(READER))[1])[:7] == (2024, 6, 1, 6, 12, 0, 0)
    clock.set(2, (9, encode_datetime((2024, 6, 1, None, 12, 0, 5, None, 0, None))), Ctx(READER))
    assert src.sets == [T_2024_06_01_1200 + 5]


def test_register_table_matches_the_metering_units():
    from cosem.table import registers
    from metering.task import SCALER_UNIT

    for name, getter, tag, scaler, unit in registers():
        if isinstance(getter, tuple):  # energies: mWh / mvarh
            assert getter[0] == "billed_mwh" and scaler == -3 and unit in (30, 32), name
        else:
            assert SCALER_UNIT[getter] == (scaler, unit), name

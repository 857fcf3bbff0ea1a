# A-XDR Data codec (firmware/dlms/axdr.py): published Data vectors, round trips
# of every tag and length form, truncation, depth bound, range checks.
from testutil import load_vectors, raises, unhex

from dlms import axdr
from dlms.axdr import decode_data, encode_data
from dlms.errors import DecodeError


A = axdr


def _vector(ident):
    for v in load_vectors("axdr_apdus")["apdus"]:
        if v["id"] == ident:
            return v
    raise AssertionError("no vector " + ident)


# Bare Data vectors of axdr_apdus.json (the others are APDUs: test_acse/test_apdu).
DATA_VECTORS = ("Register-value-structure-from-push", "scaler_unit-scaler-minus1-V")


def _round_trip(value):
    enc = encode_data(value)
    dec, end = decode_data(enc)
    if dec != value or end != len(enc):
        raise AssertionError("round trip %r -> %s -> %r" % (value, enc.hex(), dec))
    return enc


def test_register_value_vector():
    v = _vector("Register-value-structure-from-push")
    buf = unhex(v["apdu_hex"])
    value, end = decode_data(buf)
    # Gurux: Structure(3){OctetString 0100010800FF, UInt32 00002394, Structure{Int8 00, Enum 1E}}
    expected = (A.STRUCTURE, [(A.OCTET_STRING, unhex("0100010800FF")),
                              (A.DOUBLE_LONG_UNSIGNED, 0x2394),
                              (A.STRUCTURE, [(A.INTEGER, 0), (A.ENUM, 0x1E)])])
    assert 'UInt32 Value="00002394"' in v["decode_gurux_dlms"]
    assert value == expected and end == len(buf)
    assert encode_data(value) == buf


def test_scaler_unit_vector():
    v = _vector("scaler_unit-scaler-minus1-V")
    buf = unhex(v["apdu_hex"])
    value, end = decode_data(buf)
    # Gurux: Int8 FF (scaler -1), Enum 23 (unit 35, V): the integer is signed.
    assert 'Int8 Value="FF"' in v["decode_gurux_dlms"]
    assert value == (A.STRUCTURE, [(A.INTEGER, -1), (A.ENUM, 0x23)]) and end == 6
    assert encode_data(value) == buf


def test_round_trip_every_tag():
    values = [
        (A.NULL, None), (A.BOOLEAN, True), (A.BOOLEAN, False),
        (A.BIT_STRING, (0, b"")), (A.BIT_STRING, (1, b"\x80")), (A.BIT_STRING, (12, b"\xab\xc0")),
        (A.OCTET_STRING, b""), (A.OCTET_STRING, b"\x00\xff"),
        (A.VISIBLE_STRING, b"meter"), (A.UTF8_STRING, "Zähler".encode()),
        (A.DATE_TIME, unhex("07E30C130402000000FFC400")), (A.DATE, unhex("07E30C1304")),
        (A.TIME, unhex("0C1E00FF")),
        (A.FLOAT32, 1.5), (A.FLOAT32, -0.25), (A.FLOAT64, 1.0 / 3), (A.FLOAT64, -2.5e300),
        (A.ARRAY, []), (A.STRUCTURE, []),
    ]
    for tag, (fmt, size, lo, hi) in A._INTS.items():
        values += [(tag, lo), (tag, hi), (tag, 0), (tag, lo + 1), (tag, hi - 1)]
    for v in values:
        _round_trip(v)


def test_integer_encodings():
    # Big-endian two's complement of the tag's width (Blue Book 4.1.5).
    assert encode_data((A.INTEGER, -1)) == unhex("0FFF")
    assert encode_data((A.LONG, -2)) == unhex("10FFFE")
    assert encode_data((A.DOUBLE_LONG, -0x80000000)) == unhex("0580000000")
    assert encode_data((A.LONG64, -1)) == unhex("14FFFFFFFFFFFFFFFF")
    assert encode_data((A.LONG64_UNSIGNED, 0xFFFFFFFFFFFFFFFF)) == unhex("15FFFFFFFFFFFFFFFF")
    assert encode_data((A.LONG_UNSIGNED, 0x1234)) == unhex("121234")
    assert encode_data((A.FLOAT32, 1.5)) == unhex("173FC00000")       # IEEE 754 single
    assert encode_data((A.FLOAT64, 1.5)) == unhex("183FF8000000000000")


def test_boolean_any_nonzero_is_true():
    assert decode_data(unhex("03FF")) == ((A.BOOLEAN, True), 2)
    assert decode_data(unhex("0300")) == ((A.BOOLEAN, False), 2)
    assert encode_data((A.BOOLEAN, True)) == unhex("0301")


def test_length_forms():
    # Definite length: short form below 128, else 0x80|n then n octets (X.690 8.1.3).
    cases = ((0, "00"), (127, "7F"), (128, "8180"), (255, "81FF"), (256, "820100"),
             (65535, "82FFFF"), (65536, "83010000"), (0xFFFFFFFF, "84FFFFFFFF"))
    for n, h in cases:
        assert A.encode_length(n) == unhex(h), n
        assert A.decode_length(unhex(h) + b"\x99", 0) == (n, len(unhex(h))), n
    raises(ValueError, A.encode_length, -1)
    raises(ValueError, A.encode_length, 1 << 32)
    # Non-minimal long form is accepted on input.
    assert A.decode_length(unhex("820005"), 0) == (5, 3)
    raises(DecodeError, A.decode_length, unhex("80"), 0)          # indefinite
    raises(DecodeError, A.decode_length, unhex("850000000001"), 0)
    raises(DecodeError, A.decode_length, b"", 0)
    raises(DecodeError, A.decode_length, unhex("82FF"), 0)


def test_long_strings_and_arrays():
    for n in (127, 128, 255, 256, 4096):
        enc = _round_trip((A.OCTET_STRING, bytes(n)))
        assert enc[1:1 + len(A.encode_length(n))] == A.encode_length(n)
    for n in (127, 128, 255, 256):
        _round_trip((A.ARRAY, [(A.UNSIGNED, i & 0xFF) for i in range(n)]))
        _round_trip((A.STRUCTURE, [(A.NULL, None)] * n))
        _round_trip((A.BIT_STRING, (n, bytes((n + 7) // 8))))
    # Lengths of 65536 and more in the 3-octet form, kept small enough for a
    # microcontroller heap: a bit-string counts bits, so 65536 bits are 8 KB.
    enc = _round_trip((A.BIT_STRING, (65536, bytes(8192))))
    assert enc[:5] == unhex("0483010000")
    enc = _round_trip((A.BIT_STRING, (65537, bytes(8193))))
    assert enc[:5] == unhex("0483010001")
    # An octet-string announcing 65536 octets with fewer present is truncated.
    raises(DecodeError, decode_data, unhex("0983010000") + bytes(4096))


def test_nested_structures():
    inner = (A.STRUCTURE, [(A.LONG, -5), (A.VISIBLE_STRING, b"x"), (A.ARRAY, [(A.BOOLEAN, False)])])
    value = (A.ARRAY, [(A.STRUCTURE, [inner, (A.STRUCTURE, [inner, (A.NULL, None)])])] * 3)
    _round_trip(value)


def _nest(depth):
    v = (A.NULL, None)
    for _ in range(depth):
        v = (A.STRUCTURE, [v])
    return encode_data(v)


def test_depth_bound():
    decode_data(_nest(A.MAX_DEPTH))
    raises(DecodeError, decode_data, _nest(A.MAX_DEPTH + 1))
    # A hostile run of nested one-element arrays must not exhaust the stack.
    raises(DecodeError, decode_data, b"\x01\x01" * 1000 + b"\x00")


def test_every_prefix_is_truncated():
    bufs = [unhex(_vector(i)["apdu_hex"]) for i in DATA_VECTORS]
    bufs += [encode_data(v) for v in (
        (A.OCTET_STRING, bytes(300)), (A.BIT_STRING, (12, b"\xab\xc0")),
        (A.LONG64, -3), (A.FLOAT64, 2.0), (A.DATE_TIME, bytes(12)),
        (A.ARRAY, [(A.STRUCTURE, [(A.UNSIGNED, 1), (A.DATE, bytes(5))])] * 130))]
    for buf in bufs:
        for k in range(len(buf)):
            raises(DecodeError, decode_data, buf[:k])
            raises(DecodeError, decode_data, memoryview(buf)[:k])


def test_trailing_bytes_and_offsets():
    buf = unhex("AA" "1203E8" "0600000001" "55")
    value, end = decode_data(buf, 1)
    assert value == (A.LONG_UNSIGNED, 1000) and end == 4
    value, end = decode_data(memoryview(buf), end)
    assert value == (A.DOUBLE_LONG_UNSIGNED, 1) and end == 9 and end < len(buf)


def test_forged_counts_are_rejected():
    raises(DecodeError, decode_data, unhex("0184FFFFFFFF00"))
    raises(DecodeError, decode_data, unhex("0982FFFF00"))
    raises(DecodeError, decode_data, unhex("0484FFFFFFFF00"))


def test_unknown_tags_rejected():
    # compact-array (19), BCD (13), floating-point (7) and unassigned tags are
    # outside the contract: DecodeError, not KeyError.
    for tag in (7, 8, 11, 13, 14, 19, 28, 0xFF):
        raises(DecodeError, decode_data, bytes((tag, 0, 0, 0, 0)))
    raises(ValueError, encode_data, (19, []))


def test_out_of_range_encode_raises_value_error():
    for tag, (fmt, size, lo, hi) in A._INTS.items():
        raises(ValueError, encode_data, (tag, lo - 1))
        raises(ValueError, encode_data, (tag, hi + 1))
        raises(ValueError, encode_data, (tag, 1.0))
    bad = ((A.NULL, 0), (A.ARRAY, 5), (A.OCTET_STRING, "text"), (A.VISIBLE_STRING, 3),
           (A.BIT_STRING, (9, b"\x00")), (A.BIT_STRING, b"\x00"), (A.DATE_TIME, bytes(11)),
           (A.DATE, bytes(6)), (A.TIME, None), (A.FLOAT32, "1"), None, (1, 2, 3),
           (A.STRUCTURE, [(A.INTEGER, 300)]))
    for v in bad:
        raises(ValueError, encode_data, v)


def test_encode_into_appends():
    out = bytearray(b"\xC4")
    A.encode_data_into(out, (A.UNSIGNED, 7))
    A.encode_data_into(out, (A.NULL, None))
    assert out == unhex("C4110700")


def test_uint_helpers():
    assert A.encode_uint(0x01020304, 4) == unhex("01020304")
    assert A.encode_uint(0, 2) == unhex("0000")
    raises(ValueError, A.encode_uint, 0x10000, 2)
    raises(ValueError, A.encode_uint, -1, 1)
    assert A.decode_uint(unhex("00FF0102"), 1, 2) == (0xFF01, 3)
    raises(DecodeError, A.decode_uint, unhex("0001"), 1, 2)


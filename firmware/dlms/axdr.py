# A-XDR encoding (IEC 61334-6) of the DLMS `Data` type, as used in every xDLMS
# APDU (Green Book 9.5, Blue Book 4.1.5 "common data types").
# Owns: Data encode/decode, the A-XDR length form and fixed-width unsigned
# helpers that the APDU and ACSE codecs share. Knows nothing about APDUs.
#
# A value is a (tag, value) tuple (docs/INTERFACES.md, "A-XDR data"):
#   NULL None, ARRAY/STRUCTURE list of values, BOOLEAN bool, BIT_STRING
#   (nbits, bytes), integer tags int, FLOAT32/FLOAT64 float, string tags bytes,
#   DATE_TIME/DATE/TIME bytes of 12/5/4.
# Encoders raise ValueError for any value they cannot represent (wrong Python
# type, out of range, wrong size): struct.pack and bytearray.append on
# MicroPython truncate silently, so every range is checked here.
# Decoders raise DecodeError for anything malformed or truncated and return the
# position after the value, so callers decide what trailing bytes mean.
import struct
# Builtins used per request, as module names (why: dlms/security.py).
from builtins import bytes, isinstance, len
from micropython import const

from dlms.errors import DecodeError

# The data tags. The COSEM modules keep private const copies of the ones they use
# (host_tests/test_firmware_source.py keeps them equal): mpy-cross folds those into the
# attribute tables, which then stay in flash, where a tuple naming an imported value
# is built in RAM at import (about 2 KB over the object classes).
NULL = const(0)
ARRAY = const(1)
STRUCTURE = const(2)
BOOLEAN = const(3)
BIT_STRING = const(4)
DOUBLE_LONG = const(5)
DOUBLE_LONG_UNSIGNED = const(6)
OCTET_STRING = const(9)
VISIBLE_STRING = const(10)
UTF8_STRING = const(12)
INTEGER = const(15)
LONG = const(16)
UNSIGNED = const(17)
LONG_UNSIGNED = const(18)
LONG64 = const(20)
LONG64_UNSIGNED = const(21)
ENUM = const(22)
FLOAT32 = const(23)
FLOAT64 = const(24)
DATE_TIME = const(25)
DATE = const(26)
TIME = const(27)

# Nesting bound for arrays/structures. COSEM values nest 3-4 deep (profile
# buffer: array of structures of values; selective access: structure of
# structures); the bound keeps a hostile APDU from exhausting the C stack.
MAX_DEPTH = const(16)

# Integer tags: struct format, size, lowest and highest value (Blue Book 4.1.5).
_INTS = {
    INTEGER: (">b", 1, -0x80, 0x7F),
    LONG: (">h", 2, -0x8000, 0x7FFF),
    DOUBLE_LONG: (">i", 4, -0x80000000, 0x7FFFFFFF),
    LONG64: (">q", 8, -0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
    UNSIGNED: (">B", 1, 0, 0xFF),
    ENUM: (">B", 1, 0, 0xFF),
    LONG_UNSIGNED: (">H", 2, 0, 0xFFFF),
    DOUBLE_LONG_UNSIGNED: (">I", 4, 0, 0xFFFFFFFF),
    LONG64_UNSIGNED: (">Q", 8, 0, 0xFFFFFFFFFFFFFFFF),
}
_FLOATS = {FLOAT32: (">f", 4), FLOAT64: (">d", 8)}
# Fixed-size octet strings carry no length (Blue Book 4.1.6.1 date and time).
_FIXED = {DATE_TIME: 12, DATE: 5, TIME: 4}
_BYTES_TYPES = (bytes, bytearray, memoryview)


# --- length and fixed-width unsigned helpers -------------------------------

def encode_length_into(out, n):
    """Append the A-XDR/BER definite length of n (short form below 128)."""
    if not isinstance(n, int) or n < 0 or n > 0xFFFFFFFF:
        raise ValueError("length out of range")
    if n < 0x80:
        out.append(n)
        return
    size = 1 if n < 0x100 else 2 if n < 0x10000 else 3 if n < 0x1000000 else 4
    out.append(0x80 | size)
    out.extend(n.to_bytes(size, "big"))


def encode_length(n):
    out = bytearray()
    encode_length_into(out, n)
    return bytes(out)


def decode_length(buf, pos):
    """-> (n, next_pos). Long form of 1 to 4 bytes; the indefinite form (0x80)
    has no place in A-XDR or in DLMS's use of BER and is rejected."""
    if pos >= len(buf):
        raise DecodeError("truncated length")
    first = buf[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    size = first & 0x7F
    if size == 0 or size > 4:
        raise DecodeError("unsupported length form")
    return decode_uint(buf, pos, size)


def encode_uint_into(out, value, size):
    """Append value as a big-endian unsigned integer of size bytes."""
    if not isinstance(value, int) or value < 0 or value >> (8 * size):
        raise ValueError("unsigned out of range")
    out.extend(value.to_bytes(size, "big"))


def encode_uint(value, size):
    out = bytearray()
    encode_uint_into(out, value, size)
    return bytes(out)


def decode_uint(buf, pos, size):
    """-> (value, next_pos) for a big-endian unsigned integer of size bytes."""
    end = pos + size
    if end > len(buf):
        raise DecodeError("truncated integer")
    n = 0
    while pos < end:
        n = (n << 8) | buf[pos]
        pos += 1
    return n, end


# --- encoders: one per tag family, chosen by table ---------------------------

def _enc_null(out, tag, v):
    if v is not None:
        raise ValueError("null-data takes None")


def _enc_list(out, tag, v):
    if not isinstance(v, (list, tuple)):
        raise ValueError("array/structure takes a list")
    encode_length_into(out, len(v))
    for item in v:
        encode_data_into(out, item)


def _enc_bool(out, tag, v):
    # Encoders commonly send 0x01 for TRUE; any non-zero octet decodes as TRUE.
    out.append(1 if v else 0)


def _enc_bit_string(out, tag, v):
    try:
        nbits, data = v
    except (TypeError, ValueError):
        raise ValueError("bit-string takes (nbits, bytes)")
    if not isinstance(data, _BYTES_TYPES) or not isinstance(nbits, int):
        raise ValueError("bit-string takes (nbits, bytes)")
    # The length counts bits; the octets that follow hold them MSB first.
    if nbits < 0 or len(data) != (nbits + 7) >> 3:
        raise ValueError("bit-string size does not match nbits")
    encode_length_into(out, nbits)
    out.extend(data)


def _enc_string(out, tag, v):
    if not isinstance(v, _BYTES_TYPES):
        raise ValueError("string types take bytes")
    encode_length_into(out, len(v))
    out.extend(v)


def _enc_int(out, tag, v):
    fmt, size, lo, hi = _INTS[tag]
    if not isinstance(v, int) or v < lo or v > hi:
        raise ValueError("integer out of range for tag %d" % tag)
    out.extend(struct.pack(fmt, v))


def _enc_float(out, tag, v):
    if not isinstance(v, (int, float)):
        raise ValueError("float tags take a number")
    out.extend(struct.pack(_FLOATS[tag][0], v))


def _enc_fixed(out, tag, v):
    if not isinstance(v, _BYTES_TYPES) or len(v) != _FIXED[tag]:
        raise ValueError("date/time tags take %d bytes" % _FIXED[tag])
    out.extend(v)


_ENCODERS = {
    NULL: _enc_null,
    ARRAY: _enc_list,
    STRUCTURE: _enc_list,
    BOOLEAN: _enc_bool,
    BIT_STRING: _enc_bit_string,
    OCTET_STRING: _enc_string,
    VISIBLE_STRING: _enc_string,
    UTF8_STRING: _enc_string,
    FLOAT32: _enc_float,
    FLOAT64: _enc_float,
}
for _t in _INTS:
    _ENCODERS[_t] = _enc_int
for _t in _FIXED:
    _ENCODERS[_t] = _enc_fixed


def encode_data_into(out, value):
    """Append the A-XDR encoding of value to the bytearray out. On ValueError
    out holds a partial encoding: callers discard it."""
    try:
        tag, v = value
    except (TypeError, ValueError):
        raise ValueError("a value is a (tag, value) tuple")
    enc = _ENCODERS.get(tag)
    if enc is None:
        raise ValueError("unsupported data tag %r" % (tag,))
    out.append(tag)
    enc(out, tag, v)


def encode_data(value):
    out = bytearray()
    encode_data_into(out, value)
    return bytes(out)


# --- decoders: (buf, pos after the tag, tag, depth) -> (value, next_pos) ------

def _dec_null(buf, pos, tag, depth):
    return (tag, None), pos


def _dec_list(buf, pos, tag, depth):
    if depth >= MAX_DEPTH:
        raise DecodeError("data nested too deep")
    count, pos = decode_length(buf, pos)
    # Every element takes at least one byte: refuse impossible counts before
    # looping, so a forged length costs nothing.
    if count > len(buf) - pos:
        raise DecodeError("truncated array/structure")
    items = []
    for _ in range(count):
        item, pos = _decode(buf, pos, depth + 1)
        items.append(item)
    return (tag, items), pos


def _dec_bool(buf, pos, tag, depth):
    if pos >= len(buf):
        raise DecodeError("truncated boolean")
    return (tag, buf[pos] != 0), pos + 1


def _dec_bit_string(buf, pos, tag, depth):
    nbits, pos = decode_length(buf, pos)
    end = pos + ((nbits + 7) >> 3)
    if end > len(buf):
        raise DecodeError("truncated bit-string")
    return (tag, (nbits, bytes(buf[pos:end]))), end


def _dec_string(buf, pos, tag, depth):
    n, pos = decode_length(buf, pos)
    end = pos + n
    if end > len(buf):
        raise DecodeError("truncated string")
    return (tag, bytes(buf[pos:end])), end


def _dec_int(buf, pos, tag, depth):
    fmt, size, lo, hi = _INTS[tag]
    end = pos + size
    if end > len(buf):
        raise DecodeError("truncated integer")
    return (tag, struct.unpack_from(fmt, buf, pos)[0]), end


def _dec_float(buf, pos, tag, depth):
    # On single-precision ports (ESP32, RP2040) a float64 is rounded to float32.
    fmt, size = _FLOATS[tag]
    end = pos + size
    if end > len(buf):
        raise DecodeError("truncated float")
    return (tag, struct.unpack_from(fmt, buf, pos)[0]), end


def _dec_fixed(buf, pos, tag, depth):
    end = pos + _FIXED[tag]
    if end > len(buf):
        raise DecodeError("truncated date/time")
    return (tag, bytes(buf[pos:end])), end


_DECODERS = {
    NULL: _dec_null,
    ARRAY: _dec_list,
    STRUCTURE: _dec_list,
    BOOLEAN: _dec_bool,
    BIT_STRING: _dec_bit_string,
    OCTET_STRING: _dec_string,
    VISIBLE_STRING: _dec_string,
    UTF8_STRING: _dec_string,
    FLOAT32: _dec_float,
    FLOAT64: _dec_float,
}
for _t in _INTS:
    _DECODERS[_t] = _dec_int
for _t in _FIXED:
    _DECODERS[_t] = _dec_fixed


def _decode(buf, pos, depth):
    if pos >= len(buf):
        raise DecodeError("truncated data")
    dec = _DECODERS.get(buf[pos])
    if dec is None:
        raise DecodeError("unsupported data tag")
    return dec(buf, pos + 1, buf[pos], depth)


def decode_data(buf, pos=0):
    """-> ((tag, value), next_pos). buf may be bytes, bytearray or memoryview;
    byte values are returned as bytes copies."""
    return _decode(buf, pos, 0)

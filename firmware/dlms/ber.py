# The BER (ITU-T X.690) subset that the ACSE APDUs AARQ/AARE/RLRQ/RLRE use
# (Green Book 9.4.2: ACSE APDUs are BER-encoded, their user-information holds
# A-XDR). Owns: TLV walking with single-octet tags and definite lengths, and
# the contents of INTEGER, OCTET STRING, BIT STRING and OBJECT IDENTIFIER.
# Tags numbered above 30 (multi-octet) and the indefinite length never occur
# in DLMS and are rejected with DecodeError.
from micropython import const

from dlms.axdr import decode_length, encode_length_into
from dlms.errors import DecodeError

# Tag classes and form (X.690 8.1.2).
CONTEXT = const(0x80)
APPLICATION = const(0x40)
CONSTRUCTED = const(0x20)

# Universal tags used inside the ACSE fields.
INTEGER = const(0x02)
BIT_STRING = const(0x03)
OCTET_STRING = const(0x04)
OBJECT_IDENTIFIER = const(0x06)


def read_tlv(buf, pos, end):
    """-> (tag, start, stop): the element at pos, whose contents are
    buf[start:stop], all inside buf[:end]."""
    if pos >= end:
        raise DecodeError("truncated BER element")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DecodeError("multi-octet BER tag")
    n, start = decode_length(buf, pos + 1)
    stop = start + n
    if stop > end:
        raise DecodeError("BER element overruns its container")
    return tag, start, stop


def expect_tlv(buf, pos, end, tag):
    """read_tlv that also checks the tag; -> (start, stop)."""
    got, start, stop = read_tlv(buf, pos, end)
    if got != tag:
        raise DecodeError("unexpected BER tag")
    return start, stop


def tlv_into(out, tag, content):
    out.append(tag)
    encode_length_into(out, len(content))
    out.extend(content)


def tlv(tag, content):
    out = bytearray()
    tlv_into(out, tag, content)
    return bytes(out)


# --- INTEGER (X.690 8.3): two's complement, minimal octets --------------------

def encode_integer(v):
    if not isinstance(v, int):
        raise ValueError("INTEGER takes an int")
    size = 1
    while not (-(1 << (8 * size - 1)) <= v < (1 << (8 * size - 1))):
        size += 1
    return (v & ((1 << (8 * size)) - 1)).to_bytes(size, "big")


def decode_integer(buf, start, stop):
    if start >= stop:
        raise DecodeError("empty INTEGER")
    n = 0
    for i in range(start, stop):
        n = (n << 8) | buf[i]
    if buf[start] & 0x80:
        n -= 1 << (8 * (stop - start))
    return n


# --- BIT STRING (X.690 8.6): first octet counts the unused trailing bits ------

def encode_bit_string(nbits, data):
    if nbits < 0 or len(data) != (nbits + 7) >> 3:
        raise ValueError("BIT STRING size does not match nbits")
    out = bytearray()
    out.append((8 - nbits % 8) % 8)
    out.extend(data)
    return bytes(out)


def decode_bit_string(buf, start, stop):
    """-> (nbits, bytes)."""
    if start >= stop:
        raise DecodeError("empty BIT STRING")
    unused = buf[start]
    if unused > 7 or (unused and stop - start == 1):
        raise DecodeError("bad BIT STRING unused-bits octet")
    return 8 * (stop - start - 1) - unused, bytes(buf[start + 1:stop])


# --- OBJECT IDENTIFIER (X.690 8.19): base-128 arcs, first two arcs folded ------

def encode_oid(arcs):
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError("bad OBJECT IDENTIFIER")
    out = bytearray()
    for n in (40 * arcs[0] + arcs[1],) + tuple(arcs[2:]):
        if n < 0:
            raise ValueError("bad OBJECT IDENTIFIER arc")
        shift = 0
        while n >> (shift + 7):
            shift += 7
        while shift:
            out.append(0x80 | ((n >> shift) & 0x7F))
            shift -= 7
        out.append(n & 0x7F)
    return bytes(out)


def decode_oid(buf, start, stop):
    """-> tuple of arcs."""
    if start >= stop or buf[stop - 1] & 0x80:
        raise DecodeError("malformed OBJECT IDENTIFIER")
    subids = []
    n = 0
    for i in range(start, stop):
        b = buf[i]
        if n == 0 and b == 0x80:
            # X.690 8.19.2: a subidentifier is encoded in the fewest octets.
            raise DecodeError("non-minimal OBJECT IDENTIFIER arc")
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            subids.append(n)
            n = 0
    first = subids[0]
    top = 0 if first < 40 else 1 if first < 80 else 2
    return (top, first - 40 * top) + tuple(subids[1:])

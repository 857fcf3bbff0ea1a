# Machinery every COSEM interface class shares (docs/INTERFACES.md, "COSEM
# objects"): the attribute and method tables, get/set/action dispatch through
# them, the logical_name attribute and the type checks that turn a wrongly typed
# SET or ACTION argument into AccessError(type-unmatched).
#
# A class declares what it has as data:
#   ATTRIBUTES = ((1, "logical_name", OCTET_STRING), (2, "value", None), ...)
#   METHODS = ((1, "reset", INTEGER), ...)
# (id, name, A-XDR tag a SET value / ACTION argument must carry, or None when
# the handler checks the value itself). get calls self.get_<name>(ctx), set
# calls self.set_<name>(value, ctx), action calls self.do_<name>(value, ctx).
# An attribute without a setter is read-only whatever the access table says;
# a method without a do_ handler is declared by the class but not implemented.
#
# Access rights are not checked here: the object table lists them per client and
# the server checks them before calling the object.

# Builtins used per request, as module names (why: dlms/security.py).
from builtins import isinstance, len, memoryview, type
from micropython import const
from dlms.errors import (
    AccessError,
    OTHER_REASON,
    READ_WRITE_DENIED,
    TYPE_UNMATCHED,
)

# A-XDR tags as local constants: tables of them stay in flash (dlms/axdr.py).
_OCTET_STRING = const(9)
_STRUCTURE = const(2)


def obis(text):
    """b"\\x01\\x00\\x01\\x08\\x00\\xff" from "1-0:1.8.0.255" (for tables and tests;
    the firmware keeps OBIS codes as 6-byte bytes)."""
    for sep in "-:.":
        text = text.replace(sep, " ")
    parts = text.split()
    if len(parts) != 6:
        raise ValueError("OBIS code needs 6 groups: " + text)
    return bytes(int(p) for p in parts)


def obis_text(code):
    return "%d-%d:%d.%d.%d.%d" % tuple(code)


def check_type(value, tag):
    """Raise type-unmatched unless value is a (tag, payload) tuple of that tag."""
    if not isinstance(value, tuple) or len(value) != 2 or value[0] != tag:
        raise AccessError(TYPE_UNMATCHED, "expected data tag %d" % tag)
    return value[1]


def check_struct(value, tags):
    """Payload list of a structure whose members carry exactly `tags` (in order);
    type-unmatched otherwise. A member tag of None is not checked."""
    items = check_type(value, _STRUCTURE)
    if len(items) != len(tags):
        raise AccessError(TYPE_UNMATCHED, "structure of %d expected" % len(tags))
    out = []
    for item, tag in zip(items, tags):
        out.append(item[1] if tag is None else check_type(item, tag))
    return out


def check_range(n, lo, hi):
    """Well typed but outside what the attribute allows (Blue Book ranges)."""
    if n < lo or n > hi:
        raise AccessError(OTHER_REASON, "value out of range")
    return n


def _entry(table, ident):
    for row in table:
        if row[0] == ident:
            return row
    # Gurux and most meters answer read-write-denied for an attribute or method
    # the class does not define; the access table gives it no access either, so
    # the server's check and the object agree.
    raise AccessError(READ_WRITE_DENIED, "undefined attribute or method")


class Pieces:
    """A value too large for the heap, as A-XDR produced piece by piece: `head`
    (bytes) then each bytes item of the iterator `pieces` (or of a subclass's
    _next()). The server sends it in GET data blocks: readinto(buf) fills a
    writable buffer and returns the count, read(n) gives up to n bytes, `done`
    tells the end. readinto is the path that allocates nothing the size of a
    block: on a small heap a 1 KB allocation can fail where 1 KB is free."""

    def __init__(self, head, pieces=None):
        self._pending = memoryview(head)
        self._pieces = pieces

    def _next(self):
        """The next piece, or None after the last."""
        try:
            return next(self._pieces)
        except StopIteration:
            return None

    def _fill(self):
        while not self._pending:
            piece = self._next()
            if piece is None:
                return False
            self._pending = memoryview(piece)
        return True

    @property
    def done(self):
        return not self._fill()

    def readinto(self, buf):
        n = 0
        while n < len(buf) and self._fill():
            p = self._pending
            take = min(len(buf) - n, len(p))
            buf[n:n + take] = p[:take]
            self._pending = p[take:]
            n += take
        return n

    def read(self, n):
        buf = bytearray(n)
        k = self.readinto(memoryview(buf))
        return buf if k == n else buf[:k]


# class -> {attribute id: its getter function}: "get_" + name is resolved once per
# class, not per request (building the name and interning it cost more than the read).
_GETTERS = {}


class CosemObject:
    class_id = 0
    version = 0
    ATTRIBUTES = ((1, "logical_name", None),)
    METHODS = ()

    def __init__(self, logical_name):
        if not isinstance(logical_name, bytes) or len(logical_name) != 6:
            raise ValueError("logical name is 6 bytes")
        self.logical_name = logical_name

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, obis_text(self.logical_name))

    def get(self, attr_id, ctx):
        cls = type(self)
        getters = _GETTERS.get(cls)
        if getters is None:
            getters = _GETTERS[cls] = {}
        fn = getters.get(attr_id)
        if fn is None:
            fn = getters[attr_id] = getattr(cls, "get_" + _entry(self.ATTRIBUTES, attr_id)[1])
        return fn(self, ctx)

    def get_selective(self, attr_id, selector, parameters, ctx):
        """GET with selective access (Blue Book: only some attributes of some
        classes, e.g. a profile buffer, define selectors). Classes that do
        override this; everything else refuses the access selection."""
        _entry(self.ATTRIBUTES, attr_id)
        raise AccessError(READ_WRITE_DENIED, "no selective access")

    def set(self, attr_id, value, ctx):
        row = _entry(self.ATTRIBUTES, attr_id)
        setter = getattr(self, "set_" + row[1], None)
        if setter is None:
            raise AccessError(READ_WRITE_DENIED, "read-only attribute")
        if row[2] is not None:
            check_type(value, row[2])
        setter(value, ctx)

    def action(self, method_id, value, ctx):
        row = _entry(self.METHODS, method_id)
        handler = getattr(self, "do_" + row[1], None)
        if handler is None:
            raise AccessError(READ_WRITE_DENIED, "method not implemented")
        if row[2] is not None:
            check_type(value, row[2])
        return handler(value, ctx)

    def get_logical_name(self, ctx):
        return (_OCTET_STRING, self.logical_name)

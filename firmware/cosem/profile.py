# Profile generic (IC 7, version 1, Blue Book 4.3.6): load profiles, daily and
# billing profiles, and the event logs built on the same class.
#
# The buffer lives in an adapters.store.Log ring (power-fail safe, CRC per
# record, oldest dropped). A row is stored as the A-XDR encodings of its column
# values, each in a fixed-width slot (zero padded), so reading the buffer copies
# stored bytes straight into the response: a 900 s profile of a few channels
# and a thousand rows never becomes a Python list unless get() is asked for one.
#
# Columns are (object, attribute_index, data_index) triples handed in by the
# object table; a client may SET capture_objects to other objects, which a
# `resolve(class_id, logical_name)` callable (the table's lookup) turns into
# objects. A column's slot width is fixed when the column is defined: from an
# optional 4th element, else from the encoded size of the value read then. A
# value that later does not fit its slot (or cannot be read) is stored as
# null-data, never truncated.
#
# Selective access (attribute 2) is `get_selective(2, selector, params, ctx)`,
# the hook cosem/base.py defines and dlms/server.py calls: selector 1 is
# range_descriptor, selector 2 entry_descriptor (Blue Book 4.3.6, "buffer").
# get/get_selective build the value (fine for event logs and short reads); a
# whole load profile does not fit a 64 KB heap as a value, so the server should
# take the bytes from `encoder(selector, params)` (a BufferEncoder, read piece
# by piece into GET data blocks) once it can send pre-encoded data.
import struct
from micropython import const

from adapters.store import Log
from dlms.axdr import decode_data, decode_length, encode_data, encode_length_into

from dlms.errors import (
    AccessError,
    DecodeError,
    LONG_GET_ABORTED,
    OTHER_REASON,
    READ_WRITE_DENIED,
    TYPE_UNMATCHED,
)
from cosem.base import CosemObject, Pieces, check_range, check_struct, check_type
from cosem.clock import decode_datetime, encode_datetime, fields_from_seconds, seconds_from_fields
from cosem.data import Data

# A-XDR tags as local constants: tables of them stay in flash (dlms/axdr.py).
_ARRAY = const(1)
_BOOLEAN = const(3)
_DATE = const(26)
_DATE_TIME = const(25)
_DOUBLE_LONG = const(5)
_DOUBLE_LONG_UNSIGNED = const(6)
_ENUM = const(22)
_FLOAT32 = const(23)
_FLOAT64 = const(24)
_INTEGER = const(15)
_LONG = const(16)
_LONG64 = const(20)
_LONG64_UNSIGNED = const(21)
_LONG_UNSIGNED = const(18)
_NULL = const(0)
_OCTET_STRING = const(9)
_STRUCTURE = const(2)
_TIME = const(27)
_UNSIGNED = const(17)
_UTF8_STRING = const(12)
_VISIBLE_STRING = const(10)

_SORT_FIFO = const(1)  # the only sort_method kept: entries in capture order
_MAX_COLUMNS = const(16)
_MAX_RECORD = const(512)  # bytes of one stored row, all slots together
_MAX_PERIOD = const(2678400)  # 31 days
_CLOCK_CLASS = const(8)
_NULL_ROW = b"\x00"  # null-data: a value that could not be captured

# Event codes (IDIS Package 2, standard event log 0-0:99.98.0.255 and the fraud
# detection log; the table below is the commonly implemented subset). 200 and
# up are this firmware's own, for the audit log: IDIS leaves 200-254 to the
# manufacturer. Verify against the IDIS document in force before certification.
# Event codes (IDIS / DLMS UA; 200+ are this firmware's audit codes), kept as a comment:
# a dict of strings here would hold RAM for the meter's life.
#  1: "power down"
#  2: "power up"
#  3: "daylight saving time enabled or disabled"
#  4: "clock adjusted (old date/time)"
#  5: "clock adjusted (new date/time)"
#  6: "clock invalid"
#  7: "replace battery"
#  8: "battery voltage low"
#  9: "TOU activated"
#  10: "error register cleared"
#  11: "alarm register cleared"
#  12: "program memory error"
#  13: "RAM error"
#  14: "NV memory error"
#  15: "watchdog error"
#  16: "measurement system error"
#  17: "firmware ready for activation"
#  18: "firmware activated"
#  19: "passive TOU programmed"
#  40: "terminal cover removed"
#  41: "terminal cover closed"
#  44: "meter cover removed"
#  45: "meter cover closed"
#  46: "association authentication failure"
#  47: "decryption or authentication failure"
#  48: "replay attack"
#  200: "profile capture_period changed"
#  201: "profile capture_objects changed"
#  202: "profile entries changed"
#  203: "profile reset"
#  204: "security key changed"
#  205: "security policy changed"
#  206: "write or method refused by access rights"
#  255: "event log cleared"
EV_POWER_DOWN = const(1)
EV_POWER_UP = const(2)
EV_CLOCK_OLD = const(4)
EV_CLOCK_NEW = const(5)
_EV_AUTH_FAILURE = const(46)
_EV_DECRYPT_FAILURE = const(47)
_EV_REPLAY = const(48)
_EV_LOG_CLEARED = const(255)
# on_change `what` -> audit event code (for the table's audit-log wiring).
CHANGE_CODES = {"capture_period": 200, "capture_objects": 201, "profile_entries": 202, "reset": 203}

# Encoded size after the tag of fixed-size A-XDR types (to copy a stored value).
_FIXED_SIZE = {
    _NULL: 0, _BOOLEAN: 1, _DOUBLE_LONG: 4, _DOUBLE_LONG_UNSIGNED: 4, _INTEGER: 1, _LONG: 2,
    _UNSIGNED: 1, _LONG_UNSIGNED: 2, _LONG64: 8, _LONG64_UNSIGNED: 8, _ENUM: 1,
    _FLOAT32: 4, _FLOAT64: 8, _DATE_TIME: 12, _DATE: 5, _TIME: 4,
}
_INT_TAGS = (_DOUBLE_LONG, _DOUBLE_LONG_UNSIGNED, _INTEGER, _LONG, _UNSIGNED, _LONG_UNSIGNED, _LONG64, _LONG64_UNSIGNED, _ENUM)
_DEF_TAGS = (_LONG_UNSIGNED, _OCTET_STRING, _INTEGER, _LONG_UNSIGNED)  # capture_object_definition
_CFG = "<IIB"  # capture_period, profile_entries, column count
_CFG_COL = "<H6sbHH"  # class_id, logical_name, attribute, data_index, slot width
_CFG_COL_SIZE = const(13)


def _value_end(buf, pos):
    """Position after the A-XDR value stored at pos (stored rows passed their CRC)."""
    tag = buf[pos]
    size = _FIXED_SIZE.get(tag)
    if size is not None:
        return pos + 1 + size
    if tag == _OCTET_STRING or tag == _VISIBLE_STRING or tag == _UTF8_STRING:
        n, p = decode_length(buf, pos + 1)
        return p + n
    return decode_data(buf, pos)[1]


def _sample_width(obj, attr, index):
    # The slot of a column is as wide as its value's encoding now.
    try:
        value = obj.get(attr, None)
        return len(encode_data(_element(value, index) if index else value))
    except AccessError:
        raise ValueError("column not readable")


def capture_definition(obj, attr, data_index):
    return (_STRUCTURE, [(_LONG_UNSIGNED, obj.class_id), (_OCTET_STRING, obj.logical_name),
                        (_INTEGER, attr), (_LONG_UNSIGNED, data_index)])


def stamp(clock, utc):
    """12-byte date-time of UTC instant `utc` as the Clock object would show it."""
    dev = clock.deviation(utc)
    return encode_datetime(fields_from_seconds(utc - dev * 60, dev, clock.status_flags(utc)))


def _deviation(clock, utc):
    return clock.deviation(utc) if clock is not None else 0


def next_boundary(clock, utc, period):
    """UTC instant of the first multiple of `period` seconds of local time (under
    `clock`'s rules, UTC if None) after `utc`. The deviation is taken again at the
    candidate, so a daily boundary after a DST change is still local midnight."""
    dev = _deviation(clock, utc)
    local_next = ((utc - dev * 60) // period + 1) * period
    return local_next + _deviation(clock, local_next + dev * 60) * 60


def datetime_instant(b, clock=None):
    """UTC seconds since 2000 of a 12-byte date-time, or None when its date (year,
    month or day) is not specified: an open range boundary. Unspecified hour,
    minute, second read as 0, hundredths are ignored; an unspecified deviation
    means the meter's local time (Blue Book 4.1.6.1), i.e. `clock`'s rules.
    Malformed octets: type-unmatched; a DST or last-day pattern: other-reason."""
    f = decode_datetime(b)
    if f[0] is None or f[1] is None or f[2] is None:
        return None
    local = seconds_from_fields((f[0], f[1], f[2], None, f[4] or 0, f[5] or 0, f[6] or 0))
    dev = f[8]
    if dev is None:
        dev = clock.deviation(local + clock.time_zone * 60) if clock is not None else 0
    return local + dev * 60


def _element(value, index):
    # data_index selects one element of an array/structure attribute (1-based).
    if value[0] in (_ARRAY, _STRUCTURE) and 1 <= index <= len(value[1]):
        return value[1][index - 1]
    return (_NULL, None)


class ProfileGeneric(CosemObject):
    """IC 7. columns: (obj, attr, data_index[, slot width]) in buffer order.

    store: adapters.store.Store; the ring is Log "<name>" and client changes of
    period/columns/entries are the Store record "<name>.cfg" (name defaults to
    "pg" + the logical name in hex). clock: the Clock object that aligns capture
    periods to local time and stamps automatic captures; defaults to the first
    Clock column. resolve(class_id, logical_name) -> object or None lets a client
    SET columns outside the defaults. on_change(obj, what) is called after a
    change that clears the buffer (what: "capture_period", "capture_objects",
    "profile_entries", "reset"), for the audit log (CHANGE_CODES)."""

    class_id = 7
    version = 1
    ATTRIBUTES = (
        (1, "logical_name", None),
        (2, "buffer", None),
        (3, "capture_objects", _ARRAY),
        (4, "capture_period", _DOUBLE_LONG_UNSIGNED),
        (5, "sort_method", _ENUM),
        (6, "sort_object", None),
        (7, "entries_in_use", None),
        (8, "profile_entries", _DOUBLE_LONG_UNSIGNED),
    )
    METHODS = ((1, "reset", _INTEGER), (2, "capture", _INTEGER))

    def __init__(self, logical_name, columns, store, entries, capture_period=0, clock=None,
                 resolve=None, on_change=None, name=None, max_entries=None):
        super().__init__(logical_name)
        self.store = store
        self.name = name or "pg" + "".join("%02x" % b for b in logical_name)
        self.resolve = resolve
        self.on_change = on_change
        self.max_entries = max_entries or entries
        self._defaults = columns
        self._next = None  # UTC instant of the next automatic capture
        self._appended = 0  # rows captured, and buffer clears: let a BufferEncoder
        self._generation = 0  # follow the ring under a transfer
        cols = self._define(columns)
        period = capture_period
        cfg = self._load_config()
        if cfg is not None:
            period, entries, cols = cfg
        self.capture_period = period
        self.profile_entries = entries
        self._use(cols)
        self.clock = clock if clock is not None else self._find_clock()
        if cfg is None and store.exists(self.name + ".cfg"):
            # A client's layout that is unreadable now (or names an object this
            # build lacks): its rows cannot be read through the defaults. Start
            # empty, and record the defaults so the next start keeps new rows.
            self._clear()
            self._save_config()

    # --- columns and storage ---------------------------------------------------

    def _define(self, columns):
        """Column tuples (obj, attr, data_index, width, offset); ValueError if a
        width cannot be known or the row gets too large."""
        cols = []
        offset = 0
        for c in columns:
            width = c[3] if len(c) > 3 else _sample_width(c[0], c[1], c[2])
            cols.append((c[0], c[1], c[2], width, offset))
            offset += width
        if len(cols) > _MAX_COLUMNS or offset > _MAX_RECORD:
            raise ValueError("profile row too large")
        return cols

    def _use(self, cols):
        self._cols = cols
        size = max(1, sum(c[3] for c in cols))
        self._log = Log(self.store, self.name, size, self.profile_entries)

    def _find_clock(self):
        for c in self._cols:
            if c[0].class_id == _CLOCK_CLASS:
                return c[0]
        return None

    def _lookup(self, class_id, ln):
        for c in self._defaults:
            if c[0].class_id == class_id and c[0].logical_name == ln:
                return c[0]
        return self.resolve(class_id, ln) if self.resolve is not None else None

    def _load_config(self):
        raw = self.store.get(self.name + ".cfg")
        if raw is None or len(raw) < 9:
            return None
        period, entries, n = struct.unpack_from(_CFG, raw, 0)
        if len(raw) != 9 + n * _CFG_COL_SIZE or not 1 <= entries <= self.max_entries:
            return None
        cols = []
        offset = 0
        for k in range(n):
            cls, ln, attr, index, width = struct.unpack_from(_CFG_COL, raw, 9 + k * _CFG_COL_SIZE)
            obj = self._lookup(cls, ln)
            if obj is None:
                return None  # an object this build no longer has: back to the defaults
            cols.append((obj, attr, index, width, offset))
            offset += width
        return period, entries, cols

    def _save_config(self):
        out = bytearray(struct.pack(_CFG, self.capture_period, self.profile_entries, len(self._cols)))
        for obj, attr, index, width, _ in self._cols:
            out.extend(struct.pack(_CFG_COL, obj.class_id, obj.logical_name, attr, index, width))
        self.store.put(self.name + ".cfg", out)

    def _clear(self):
        self._log.clear()
        self._generation += 1

    def _reconfigure(self, what, period, entries, cols):
        # Clear first, then record the new layout: a cut in between leaves the old
        # layout with an empty buffer, never old rows read through new columns.
        self._clear()
        self.capture_period = period
        self.profile_entries = entries
        self._cols = cols
        self._save_config()
        self._use(cols)
        self._next = None
        if self.on_change is not None:
            self.on_change(self, what)

    # --- capture ---------------------------------------------------------------

    def _encode(self, obj, attr, index, at):
        if at is not None and obj.class_id == _CLOCK_CLASS and attr == 2 and hasattr(obj, "deviation"):
            return encode_data((_OCTET_STRING, stamp(obj, at)))
        try:
            value = obj.get(attr, None)
            return encode_data(_element(value, index) if index else value)
        except (AccessError, ValueError):
            return _NULL_ROW

    def capture(self, at=None):
        """Append one row now. at: UTC instant the Clock columns are stamped with
        (the period boundary, the event time); None reads the clock object."""
        row = bytearray(self._log.record_size)  # captures are rare: no buffer kept
        for obj, attr, index, width, offset in self._cols:
            enc = self._encode(obj, attr, index, at)
            if len(enc) > width:
                enc = _NULL_ROW
            row[offset:offset + len(enc)] = enc
        self._log.append(row)
        self._appended += 1

    def tick(self, now):
        """Drive automatic capture with UTC seconds; True if a row was captured.
        The first call after start arms the period; a clock set back re-arms it;
        periods missed while off or skipped by a forward jump give one row."""
        p = self.capture_period
        if not p:
            return False
        nxt = self._next
        if nxt is None or now < nxt - p:
            self._next = next_boundary(self.clock, now, p)
            return False
        if now < nxt:
            return False
        self._next = next_boundary(self.clock, now, p)
        self.capture(nxt if now < nxt + p else self._next - p)
        return True

    # --- buffer reading --------------------------------------------------------

    def _column_index(self, definition):
        cls, ln, attr, index = check_struct(definition, _DEF_TAGS)
        for k, c in enumerate(self._cols):
            o = c[0]
            if o.class_id == cls and o.logical_name == ln and c[1] == attr and c[2] == index:
                return k
        raise AccessError(OTHER_REASON, "not a capture object of this profile")

    def _selected(self, value):
        defs = check_type(value, _ARRAY)
        if not defs:
            return range(len(self._cols))
        return [self._column_index(d) for d in defs]

    def _bound(self, value, key_col):
        """Range boundary as an int comparable with _key (None: open)."""
        c = self._cols[key_col]
        tag = value[0] if isinstance(value, tuple) and len(value) == 2 else None
        if c[0].class_id == _CLOCK_CLASS and c[1] == 2:
            if tag != _OCTET_STRING and tag != _DATE_TIME:
                raise AccessError(TYPE_UNMATCHED, "range boundary is a date-time")
            return datetime_instant(value[1], self.clock)
        if tag not in _INT_TAGS:
            raise AccessError(TYPE_UNMATCHED, "range boundary is an integer")
        return value[1]

    def _key(self, rec, key_col):
        c = self._cols[key_col]
        try:
            v = decode_data(rec, c[4])[0]
            if c[0].class_id == _CLOCK_CLASS and c[1] == 2:
                return datetime_instant(v[1], self.clock)
            return v[1] if v[0] in _INT_TAGS else None
        except (AccessError, DecodeError, TypeError):
            return None

    def _selection(self, selector, params):
        """(first, last entry (1-based, inclusive), columns, key column, lo, hi)."""
        n = len(self._log)
        if not selector:
            return 1, n, range(len(self._cols)), None, None, None
        if selector == 1:  # range_descriptor
            items = check_type(params, _STRUCTURE)
            if len(items) != 4:
                raise AccessError(TYPE_UNMATCHED, "range_descriptor has 4 members")
            key = self._column_index(items[0])
            return 1, n, self._selected(items[3]), key, self._bound(items[1], key), self._bound(items[2], key)
        if selector == 2:  # entry_descriptor
            first, last, lo_col, hi_col = check_struct(params, (_DOUBLE_LONG_UNSIGNED, _DOUBLE_LONG_UNSIGNED,
                                                               _LONG_UNSIGNED, _LONG_UNSIGNED))
            ncols = len(self._cols)
            first = first or 1
            lo_col = lo_col or 1
            if (last and last < first) or (hi_col and hi_col < lo_col) or lo_col > ncols:
                raise AccessError(OTHER_REASON, "entry_descriptor out of range")
            # Entries past the end are simply not there (an empty array), as are
            # columns past the last one.
            last = min(last or n, n)
            hi_col = min(hi_col or ncols, ncols)
            return first, last, range(lo_col - 1, hi_col), None, None, None
        raise AccessError(READ_WRITE_DENIED, "unsupported access selector")

    def _scan(self, first, last, key=None, lo=None, hi=None):
        """Yield (entry number, stored row) of the entries first..last (1-based)
        whose key column lies in lo..hi (None: open). The ring file stays open
        while this runs: stop early only through .close()."""
        it = iter(self._log)
        try:
            i = 0
            for rec in it:
                i += 1
                if i > last:
                    break
                if i < first or rec is None:
                    continue
                if key is not None:
                    v = self._key(rec, key)
                    if v is None or (lo is not None and v < lo) or (hi is not None and v > hi):
                        continue
                yield i, rec
        finally:
            it.close()

    def _encode_row_into(self, out, rec, cols):
        # Stored values are A-XDR already: copy them, decode nothing.
        mv = memoryview(rec)
        out.append(_STRUCTURE)
        encode_length_into(out, len(cols))
        for k in cols:
            off = self._cols[k][4]
            out.extend(mv[off:_value_end(rec, off)])

    def encode_buffer_into(self, out, selector=0, params=None):
        """Append the A-XDR encoding of the selected buffer (array of structures)
        to the bytearray out; return the number of entries. Same bytes as
        encode_data(get...), without building the value."""
        first, last, cols, key, lo, hi = self._selection(selector, params)
        start = len(out)
        count = 0
        for _, rec in self._scan(first, last, key, lo, hi):
            self._encode_row_into(out, rec, cols)
            count += 1
        head = bytearray((_ARRAY,))
        encode_length_into(head, count)
        out[start:start] = head
        return count

    def encoder(self, selector=0, params=None):
        """A BufferEncoder of the selected buffer: the path for a server's GET
        block transfer of a buffer too large for RAM (AccessError here for bad
        parameters, as get_selective)."""
        return BufferEncoder(self, selector, params)

    def _mark(self):
        return self._generation, self._appended, len(self._log)

    def _buffer_value(self, selector, params):
        first, last, cols, key, lo, hi = self._selection(selector, params)
        entries = []
        for _, rec in self._scan(first, last, key, lo, hi):
            entries.append((_STRUCTURE, [decode_data(rec, self._cols[k][4])[0] for k in cols]))
        return (_ARRAY, entries)

    def get_selective(self, attr_id, selector, parameters, ctx):
        """Buffer (attribute 2) with access selector 1 (range_descriptor: restricting
        capture object, from_value, to_value, selected_values) or 2 (entry_descriptor:
        from_entry, to_entry, from_selected_value, to_selected_value; 1-based, 0 =
        last). Other selectors: read-write-denied; malformed parameters:
        type-unmatched; a column that is not captured: other-reason."""
        if attr_id != 2:
            return super().get_selective(attr_id, selector, parameters, ctx)
        return self.encoder(selector, parameters)

    # --- attributes ------------------------------------------------------------

    def get_buffer(self, ctx):
        return self.encoder(0, None)  # a stream: the server sends it block by block

    def get_capture_objects(self, ctx):
        return (_ARRAY, [capture_definition(c[0], c[1], c[2]) for c in self._cols])

    def set_capture_objects(self, value, ctx):
        cols = []
        for d in value[1]:
            cls, ln, attr, index = check_struct(d, _DEF_TAGS)
            obj = self._lookup(cls, ln)
            if obj is None or (cls == self.class_id and attr == 2):
                raise AccessError(OTHER_REASON, "cannot capture this attribute")
            cols.append((obj, attr, index))
        try:
            cols = self._define(cols)
        except ValueError:
            raise AccessError(OTHER_REASON, "too many or too large columns")
        self._reconfigure("capture_objects", self.capture_period, self.profile_entries, cols)

    def get_capture_period(self, ctx):
        return (_DOUBLE_LONG_UNSIGNED, self.capture_period)

    def set_capture_period(self, value, ctx):
        period = check_range(value[1], 0, _MAX_PERIOD)
        self._reconfigure("capture_period", period, self.profile_entries, self._cols)

    def get_sort_method(self, ctx):
        return (_ENUM, _SORT_FIFO)

    def set_sort_method(self, value, ctx):
        check_range(value[1], _SORT_FIFO, _SORT_FIFO)

    def get_sort_object(self, ctx):
        return (_STRUCTURE, [(_LONG_UNSIGNED, 0), (_OCTET_STRING, bytes(6)), (_INTEGER, 0), (_LONG_UNSIGNED, 0)])

    def get_entries_in_use(self, ctx):
        return (_DOUBLE_LONG_UNSIGNED, len(self._log))

    def get_profile_entries(self, ctx):
        return (_DOUBLE_LONG_UNSIGNED, self.profile_entries)

    def set_profile_entries(self, value, ctx):
        entries = check_range(value[1], 1, self.max_entries)
        self._reconfigure("profile_entries", self.capture_period, entries, self._cols)

    # --- methods ---------------------------------------------------------------

    def do_reset(self, value, ctx):
        self._clear()
        if self.on_change is not None:
            self.on_change(self, "reset")

    def do_capture(self, value, ctx):
        self.capture()


class BufferEncoder(Pieces):
    """The A-XDR encoding of a (selected) profile buffer, row by row as a Pieces
    stream (readinto / read / done), so a server fills each GET data block from
    flash instead of holding the whole response. Entries are counted when the
    encoder is made (the array length goes first); rows captured later are not
    sent; rows that leave the ring while the ring moves under the transfer are
    followed by number. If an entry still to be sent is dropped, or the buffer
    is cleared, readinto raises AccessError(long-get-aborted)."""

    def __init__(self, profile, selector=0, params=None):
        first, last, cols, key, lo, hi = profile._selection(selector, params)
        self._p = profile
        self._cols = cols
        self._range = (key, lo, hi)
        count = 0
        for _ in profile._scan(first, last, key, lo, hi):
            count += 1
        self._first = first
        self._last = last
        self._left = count
        self._mark = profile._mark()
        self._rows = None  # the ring scan, open only during one readinto
        head = bytearray((_ARRAY,))
        encode_length_into(head, count)
        super().__init__(head)
        self.count = count

    @property
    def done(self):
        return not self._pending and not self._left

    def _follow(self):
        gen, appended, n = self._p._mark()
        gen0, appended0, n0 = self._mark
        if gen != gen0:
            raise AccessError(LONG_GET_ABORTED, "buffer cleared during transfer")
        dropped = (appended - appended0) - (n - n0)  # oldest rows pushed out since
        self._first -= dropped
        self._last -= dropped
        self._mark = (gen, appended, n)
        if self._left and self._first < 1:
            raise AccessError(LONG_GET_ABORTED, "entries left the buffer during transfer")

    def readinto(self, buf):
        if self._left:
            self._follow()  # the ring may have moved since the last block
        try:
            return super().readinto(buf)
        finally:
            if self._rows is not None:  # the scan holds the ring file open
                self._rows.close()
                self._rows = None

    def _next(self):
        if not self._left:
            return None
        if self._rows is None:
            key, lo, hi = self._range
            self._rows = self._p._scan(self._first, self._last, key, lo, hi)
        for i, rec in self._rows:
            row = bytearray()
            self._p._encode_row_into(row, rec, self._cols)
            self._left -= 1
            self._first = i + 1
            return row
        raise AccessError(LONG_GET_ABORTED, "entries became unreadable during transfer")


class EventCode(Data):
    """Data (0-0:96.11.x.255) holding the last code its event log recorded;
    read-only to clients."""

    def __init__(self, logical_name, tag=_UNSIGNED):
        super().__init__(logical_name, (tag, 0))

    def latch(self, code):
        self._value = (self._value[0], code)


class EventLog(ProfileGeneric):
    """A Profile generic of (clock time, event code) rows, no automatic capture:
    standard event log 0-0:99.98.0.255, fraud/security logs 0-0:99.98.x.255, power
    failure log 0-0:99.97.0.255, the audit log. code_object: its EventCode."""

    def __init__(self, logical_name, clock, code_object, store, entries=100, on_change=None, name=None):
        super().__init__(logical_name, ((clock, 2, 0), (code_object, 2, 0)), store, entries,
                         clock=clock, on_change=on_change, name=name)
        self.code_object = code_object
        self._restore_code()

    def _restore_code(self):
        # After a restart the event code object shows the last recorded code again.
        n = len(self._log)
        rec = self._log.read(n - 1) if n else None
        if rec is not None and len(self._cols) == 2 and self._cols[1][0] is self.code_object:
            try:
                v = decode_data(rec, self._cols[1][4])[0]
                if v[0] in _INT_TAGS:
                    self.code_object.latch(v[1])
            except DecodeError:
                pass

    def count(self):
        """Events recorded since the log was created (its ring forgets, this not)."""
        return self._log.appended()

    def record(self, code, now=None):
        """Log `code` stamped with UTC instant `now` (None: the clock's time)."""
        self.code_object.latch(code)
        self.capture(now)

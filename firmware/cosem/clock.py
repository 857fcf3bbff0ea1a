# Clock (IC 8, version 0, Blue Book 4.5.1) and the COSEM date-time octet string
# (Blue Book 4.1.6.1) it speaks.
#
# The clock never reads a clock: it is given a time source at construction, an
# object with now() -> UTC seconds since 2000-01-01 and, if the time may be set,
# set(seconds) (adapters/rtc.py). A bare callable works as a read-only source.
# It keeps only the local-time rules (time zone, daylight saving): local time
# is computed from the source on every read, so it cannot drift from it.
#
# Deviation (time_zone and the date-time deviation field) is the Blue Book's:
# minutes from local time to UTC, UTC = local + deviation. Central European
# Time is -60, summer time -120. Gurux and dlms-cosem both read it this way.
from micropython import const


from cosem.base import CosemObject, check_range
from dlms.errors import AccessError, OTHER_REASON, READ_WRITE_DENIED, TYPE_UNMATCHED

# A-XDR tags as local constants: tables of them stay in flash (dlms/axdr.py).
_BOOLEAN = const(3)
_DATE_TIME = const(25)
_ENUM = const(22)
_INTEGER = const(15)
_LONG = const(16)
_OCTET_STRING = const(9)
_STRUCTURE = const(2)
_UNSIGNED = const(17)

# Special field values of date and date-time (Blue Book 4.1.6.1).
_DST_END_MONTH = const(0xFD)
_DST_BEGIN_MONTH = const(0xFE)
_SECOND_LAST_DAY = const(0xFD)
_LAST_DAY = const(0xFE)

# Clock status bits (Blue Book 4.1.6.1).
_STATUS_INVALID = const(0x01)
_STATUS_DOUBTFUL = const(0x02)
_STATUS_DIFFERENT_BASE = const(0x04)
_STATUS_INVALID_STATUS = const(0x08)
_STATUS_DST_ACTIVE = const(0x80)

# clock_base enum.
_BASE_CRYSTAL = const(1)

# 1970-01-01 to 2000-01-01, in days, for the civil-date arithmetic below.
_DAYS_1970_2000 = const(10957)

# A date-time as fields: (year, month, day, weekday, hour, minute, second,
# hundredths, deviation, status); None is "not specified" (0xFF.., 0x8000).
# Per field: byte width, lowest and highest ordinary value, extra special values.
_FIELDS = (
    (2, 0, 0xFFFE, ()),                               # year
    (1, 1, 12, (_DST_END_MONTH, _DST_BEGIN_MONTH)),      # month
    (1, 1, 31, (_SECOND_LAST_DAY, _LAST_DAY)),           # day of month
    (1, 1, 7, ()),                                     # day of week, 1 = Monday
    (1, 0, 23, ()),
    (1, 0, 59, ()),
    (1, 0, 59, ()),
    (1, 0, 99, ()),                                    # hundredths
)
_NOT_SPECIFIED_DEVIATION = const(-0x8000)

# EU rules as patterns: last Sunday of March 02:00 standard time, last Sunday of
# October 03:00 summer time (year, hundredths, deviation, status unspecified).
EU_DST_BEGIN = (None, 3, _LAST_DAY, 7, 2, 0, 0, None, None, None)
EU_DST_END = (None, 10, _LAST_DAY, 7, 3, 0, 0, None, None, None)


def encode_datetime(fields):
    """12-byte COSEM date-time from the 10 fields (None = not specified)."""
    if len(fields) != 10:
        raise ValueError("date-time has 10 fields")
    out = bytearray()
    for k in range(8):
        width = _FIELDS[k][0]
        v = fields[k]
        v = (1 << (8 * width)) - 1 if v is None else v
        out.extend(v.to_bytes(width, "big"))
    dev = fields[8]
    dev = _NOT_SPECIFIED_DEVIATION if dev is None else dev
    out.extend((dev & 0xFFFF).to_bytes(2, "big"))
    out.append(0xFF if fields[9] is None else fields[9])
    return bytes(out)


def decode_datetime(b):
    """The 10 fields of a 12-byte COSEM date-time; a wrong length or a field out
    of its range is type-unmatched (the octets are not a date-time)."""
    if not isinstance(b, (bytes, bytearray)) or len(b) != 12:
        raise AccessError(TYPE_UNMATCHED, "date-time is 12 octets")
    fields = []
    pos = 0
    for width, lo, hi, special in _FIELDS:
        v = int.from_bytes(b[pos : pos + width], "big")
        pos += width
        if v == (1 << (8 * width)) - 1:
            v = None
        elif (v < lo or v > hi) and v not in special:
            raise AccessError(TYPE_UNMATCHED, "date-time field out of range")
        fields.append(v)
    dev = (b[9] << 8) | b[10]
    dev = dev - 0x10000 if dev & 0x8000 else dev
    if dev == _NOT_SPECIFIED_DEVIATION:
        dev = None
    elif dev < -720 or dev > 720:
        raise AccessError(TYPE_UNMATCHED, "deviation out of range")
    fields.append(dev)
    fields.append(None if b[11] == 0xFF else b[11])
    return tuple(fields)


# --- civil calendar (proleptic Gregorian), days counted from 2000-01-01 ------

def days_from_civil(y, m, d):
    y -= 1 if m <= 2 else 0
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468 - _DAYS_1970_2000


def civil_from_days(n):
    z = n + _DAYS_1970_2000 + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (yoe + era * 400 + (1 if m <= 2 else 0), m, d)


def weekday(days):
    """DLMS day of week (1 = Monday) of a day number; 2000-01-01 was a Saturday."""
    return (days + 5) % 7 + 1


def days_in_month(y, m):
    if m == 12:
        return 31
    return days_from_civil(y, m + 1, 1) - days_from_civil(y, m, 1)


def fields_from_seconds(local, deviation=None, status=None):
    """Date-time fields of local seconds since 2000-01-01 (hundredths 0)."""
    days, secs = divmod(local, 86400)
    y, m, d = civil_from_days(days)
    return (y, m, d, weekday(days), secs // 3600, secs // 60 % 60, secs % 60, 0, deviation, status)


def seconds_from_fields(f):
    """Local seconds since 2000 of fully specified fields, else OTHER_REASON
    (a time to set cannot be a wildcard pattern)."""
    y, m, d = f[0], f[1], f[2]
    if None in (y, m, d, f[4], f[5], f[6]) or m > 12 or d > days_in_month(y, m):
        raise AccessError(OTHER_REASON, "date-time not fully specified")
    return days_from_civil(y, m, d) * 86400 + f[4] * 3600 + f[5] * 60 + f[6]


def resolve_pattern(f, year):
    """Local seconds of a daylight-saving pattern (e.g. EU_DST_BEGIN) in `year`,
    or None if the pattern does not name a day (Blue Book 4.1.6.1 rules for
    day of month and day of week taken together)."""
    y = year if f[0] is None else f[0]
    m, dom, wd = f[1], f[2], f[3]
    if m is None or m > 12:
        return None
    last = days_in_month(y, m)
    if dom == _LAST_DAY or dom == _SECOND_LAST_DAY:
        day = last if dom == _LAST_DAY else last - 1
        if wd is not None:
            # The last (or second last) such weekday of the month.
            day -= (weekday(days_from_civil(y, m, last)) - wd) % 7
            day -= 7 if dom == _SECOND_LAST_DAY else 0
    elif dom is None:
        if wd is None:
            return None
        day = 1 + (wd - weekday(days_from_civil(y, m, 1))) % 7
    else:
        day = dom
        if wd is not None:
            # The weekday on or following the day of month.
            day += (wd - weekday(days_from_civil(y, m, dom))) % 7
    secs = (f[4] or 0) * 3600 + (f[5] or 0) * 60 + (f[6] or 0)
    return days_from_civil(y, m, day) * 86400 + secs


class _CallableSource:
    def __init__(self, fn):
        self.now = fn


def _as_source(source):
    return source if hasattr(source, "now") else _CallableSource(source)


class Clock(CosemObject):
    class_id = 8
    version = 0
    ATTRIBUTES = (
        (1, "logical_name", None),
        (2, "time", None),  # octet-string (12) or date-time: checked by set_time
        (3, "time_zone", _LONG),
        (4, "status", None),
        (5, "daylight_savings_begin", _OCTET_STRING),
        (6, "daylight_savings_end", _OCTET_STRING),
        (7, "daylight_savings_deviation", _INTEGER),
        (8, "daylight_savings_enabled", _BOOLEAN),
        (9, "clock_base", None),
    )
    METHODS = (
        (1, "adjust_to_quarter", _INTEGER),
        (2, "adjust_to_measuring_period", _INTEGER),
        (3, "adjust_to_minute", _INTEGER),
        (4, "adjust_to_preset_time", _INTEGER),
        (5, "preset_adjusting_time", _STRUCTURE),
        (6, "shift_time", _LONG),
    )

    def __init__(self, logical_name, source, settings=None):
        """settings: optional dict with time_zone (minutes, Blue Book sign),
        dst_enabled, dst_begin/dst_end (field tuples), dst_deviation, clock_base."""
        super().__init__(logical_name)
        s = settings or {}
        self.source = _as_source(source)
        self.time_zone = s.get("time_zone", 0)
        self.dst_enabled = s.get("dst_enabled", False)
        self.dst_begin = encode_datetime(s.get("dst_begin", EU_DST_BEGIN))
        self.dst_end = encode_datetime(s.get("dst_end", EU_DST_END))
        self.dst_deviation = s.get("dst_deviation", 60)
        self.clock_base = s.get("clock_base", _BASE_CRYSTAL)
        self.on_set = None  # on_set(old_utc, new_utc): the event log hears of every set

    # --- local time --------------------------------------------------------

    def dst_active(self, utc):
        if not self.dst_enabled:
            return False
        std = utc - self.time_zone * 60
        year = civil_from_days(std // 86400)[0]
        begin = resolve_pattern(decode_datetime(self.dst_begin), year)
        end = resolve_pattern(decode_datetime(self.dst_end), year)
        if begin is None or end is None:
            return False
        # The end pattern is in summer time; compare everything in standard time.
        end -= self.dst_deviation * 60
        if begin <= end:
            return begin <= std < end
        return std >= begin or std < end  # southern hemisphere

    def deviation(self, utc):
        return self.time_zone - (self.dst_deviation if self.dst_active(utc) else 0)

    def status_flags(self, utc):
        flags = self.source.status() if hasattr(self.source, "status") else 0
        return flags | (_STATUS_DST_ACTIVE if self.dst_active(utc) else 0)

    def now_datetime(self):
        """The 12-byte date-time of now, as attribute 2 gives it (for captures)."""
        utc = self.source.now()
        dev = self.deviation(utc)
        return encode_datetime(fields_from_seconds(utc - dev * 60, dev, self.status_flags(utc)))

    def _set_utc(self, utc):
        setter = getattr(self.source, "set", None)
        if setter is None:
            raise AccessError(READ_WRITE_DENIED, "time source cannot be set")
        old = self.source.now()
        setter(utc)
        if self.on_set is not None:
            self.on_set(old, utc)

    # --- attributes --------------------------------------------------------

    def get_time(self, ctx):
        return (_OCTET_STRING, self.now_datetime())

    def set_time(self, value, ctx):
        if not isinstance(value, tuple) or len(value) != 2 or value[0] not in (_OCTET_STRING, _DATE_TIME):
            raise AccessError(TYPE_UNMATCHED, "time is a date-time octet-string")
        f = decode_datetime(value[1])
        local = seconds_from_fields(f)
        dev = f[8]
        if dev is None:
            # No deviation sent: the time is local time under the meter's rules.
            dev = self.deviation(local + self.time_zone * 60)
        self._set_utc(local + dev * 60)

    def get_time_zone(self, ctx):
        return (_LONG, self.time_zone)

    def set_time_zone(self, value, ctx):
        self.time_zone = check_range(value[1], -720, 720)

    def get_status(self, ctx):
        return (_UNSIGNED, self.status_flags(self.source.now()))

    def get_daylight_savings_begin(self, ctx):
        return (_OCTET_STRING, self.dst_begin)

    def set_daylight_savings_begin(self, value, ctx):
        decode_datetime(value[1])
        self.dst_begin = bytes(value[1])

    def get_daylight_savings_end(self, ctx):
        return (_OCTET_STRING, self.dst_end)

    def set_daylight_savings_end(self, value, ctx):
        decode_datetime(value[1])
        self.dst_end = bytes(value[1])

    def get_daylight_savings_deviation(self, ctx):
        return (_INTEGER, self.dst_deviation)

    def set_daylight_savings_deviation(self, value, ctx):
        self.dst_deviation = check_range(value[1], -120, 120)

    def get_daylight_savings_enabled(self, ctx):
        return (_BOOLEAN, self.dst_enabled)

    def set_daylight_savings_enabled(self, value, ctx):
        self.dst_enabled = bool(value[1])

    def get_clock_base(self, ctx):
        return (_ENUM, self.clock_base)

    # --- methods -------------------------------------------------------------
    # adjust_to_measuring_period and the preset pair need the metering period
    # and a preset store: declared by the class, not implemented yet.

    def _round(self, unit):
        utc = self.source.now()
        r = (utc - self.deviation(utc) * 60) % unit
        self._set_utc(utc - r if r < unit // 2 else utc + unit - r)

    def do_adjust_to_quarter(self, value, ctx):
        self._round(900)

    def do_adjust_to_minute(self, value, ctx):
        self._round(60)

    def do_shift_time(self, value, ctx):
        self._set_utc(self.source.now() + check_range(value[1], -900, 900))

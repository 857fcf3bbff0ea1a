# Demand register (IC 5, version 0, Blue Book 4.3.4): average power over a
# measuring period, block (number_of_periods 1) or sliding (n sub-periods of
# `period` seconds, the window moving by one sub-period at each boundary).
#
# The register keeps no energy of its own: `energy()` is the metering task's
# cumulative counter in Wh * 10**scaler (an int that only grows), and the
# average is the energy of the window over the window's length:
#   W * 10**scaler = dE * 3600 // (number_of_periods * period)
# current_average_value counts the completed sub-periods of the window plus the
# running one over the full window length (so it ramps up within a block);
# last_average_value is the value at the last boundary. tick(now) drives it with
# UTC seconds and allocates nothing between boundaries.
from micropython import const


from cosem.base import CosemObject, check_range
from cosem.clock import encode_datetime, fields_from_seconds
from cosem.data import UNIT_W
from cosem.profile import next_boundary, stamp

# A-XDR tags as local constants: tables of them stay in flash (dlms/axdr.py).
_DOUBLE_LONG_UNSIGNED = const(6)
_ENUM = const(22)
_INTEGER = const(15)
_LONG64_UNSIGNED = const(21)
_LONG_UNSIGNED = const(18)
_NULL = const(0)
_OCTET_STRING = const(9)
_STRUCTURE = const(2)
_UNSIGNED = const(17)

_MAX_DEMAND_PERIOD = const(86400)
_UNSIGNED_TAGS = (_DOUBLE_LONG_UNSIGNED, _LONG_UNSIGNED, _UNSIGNED, _LONG64_UNSIGNED)
_NOT_SPECIFIED = encode_datetime((None,) * 10)


class DemandRegister(CosemObject):
    """IC 5. energy() -> cumulative Wh * 10**scaler; the averages are sent with
    data tag `tag`, scaled by 10**scaler in `unit` (W). clock: the Clock object
    (aligns periods to local time, stamps capture_time/start_time_current).
    status: None (null-data) or a callable returning an A-XDR value.
    on_change(obj, what) after a SET of period or number_of_periods, which
    restart the measurement (what: "period", "number_of_periods")."""

    class_id = 5
    version = 0
    ATTRIBUTES = (
        (1, "logical_name", None),
        (2, "current_average_value", None),
        (3, "last_average_value", None),
        (4, "scaler_unit", None),
        (5, "status", None),
        (6, "capture_time", None),
        (7, "start_time_current", None),
        (8, "period", _DOUBLE_LONG_UNSIGNED),
        (9, "number_of_periods", _LONG_UNSIGNED),
    )
    METHODS = ((1, "reset", _INTEGER), (2, "next_period", _INTEGER))

    def __init__(self, logical_name, energy, period=900, number_of_periods=1, scaler=0, unit=UNIT_W,
                 tag=_DOUBLE_LONG_UNSIGNED, clock=None, status=None, max_periods=60, on_change=None):
        super().__init__(logical_name)
        self.energy = energy
        self.scaler = scaler
        self.unit = unit
        self.tag = tag
        self.clock = clock
        self.status = status
        self.max_periods = max_periods
        self.on_change = on_change
        if not (1 <= period <= _MAX_DEMAND_PERIOD and 1 <= number_of_periods <= max_periods):
            raise ValueError("bad demand period")
        self.period = period
        self._layout(number_of_periods)
        self._now = None      # last UTC instant seen by tick (time for the methods)
        self._capture = None  # UTC of capture_time; None: never captured

    def _layout(self, n):
        self.number_of_periods = n
        self._subs = [0] * n  # energy of the completed sub-periods, a ring
        self._k = 0           # slot of the oldest sub-period (overwritten next)
        self._last = 0
        self._start = None    # UTC of start_time_current; None: not armed
        self._e0 = 0          # energy() at start_time_current
        self._next = None     # UTC of the next boundary

    # --- time ------------------------------------------------------------------

    def _time(self):
        if self.clock is not None:
            return self.clock.source.now()
        return self._now if self._now is not None else 0

    def _arm(self, now):
        self._start = now
        self._e0 = self.energy()
        self._next = next_boundary(self.clock, now, self.period)

    def _close(self, at, skipped=0):
        """End the running sub-period at UTC `at` (its energy goes into the window,
        followed by `skipped` empty sub-periods) and start the next one."""
        e = self.energy()
        subs = self._subs
        n = len(subs)
        subs[self._k] = e - self._e0
        self._k = (self._k + 1) % n
        for _ in range(min(skipped, n)):
            subs[self._k] = 0
            self._k = (self._k + 1) % n
        self._e0 = e
        self._last = self._average(sum(subs))
        self._capture = self._start = at

    def tick(self, now):
        """Drive the periods with UTC seconds; True when a period was closed. The
        first call arms the register; a clock set back re-arms it."""
        self._now = now
        nxt = self._next
        p = self.period
        if nxt is None or now < nxt - p:
            self._arm(now)
            return False
        if now < nxt:
            return False
        skipped = (now - nxt) // p  # whole periods missed while not ticking
        self._next = next_boundary(self.clock, now, p)
        self._close(nxt + skipped * p, skipped)
        return True

    def _average(self, energy):
        v = energy * 3600 // (self.number_of_periods * self.period)
        return 0 if v < 0 and self.tag in _UNSIGNED_TAGS else v

    def _datetime(self, utc):
        if utc is None:
            return _NOT_SPECIFIED
        if self.clock is not None:
            return stamp(self.clock, utc)
        return encode_datetime(fields_from_seconds(utc, 0, 0))

    # --- attributes ------------------------------------------------------------

    def current_average(self):
        """Completed sub-periods of the window but the oldest, plus the running one."""
        if self._start is None:
            return 0
        subs = self._subs
        total = sum(subs) - subs[self._k] + self.energy() - self._e0
        return self._average(total)

    def get_current_average_value(self, ctx):
        return (self.tag, self.current_average())

    def get_last_average_value(self, ctx):
        return (self.tag, self._last)

    def get_scaler_unit(self, ctx):
        return (_STRUCTURE, [(_INTEGER, self.scaler), (_ENUM, self.unit)])

    def get_status(self, ctx):
        return self.status() if self.status is not None else (_NULL, None)

    def get_capture_time(self, ctx):
        return (_OCTET_STRING, self._datetime(self._capture))

    def get_start_time_current(self, ctx):
        return (_OCTET_STRING, self._datetime(self._start))

    def get_period(self, ctx):
        return (_DOUBLE_LONG_UNSIGNED, self.period)

    def set_period(self, value, ctx):
        self.period = check_range(value[1], 1, _MAX_DEMAND_PERIOD)
        self._restart("period")

    def get_number_of_periods(self, ctx):
        return (_LONG_UNSIGNED, self.number_of_periods)

    def set_number_of_periods(self, value, ctx):
        self.number_of_periods = check_range(value[1], 1, self.max_periods)
        self._restart("number_of_periods")

    def _restart(self, what):
        # A new period length or window makes the old averages meaningless.
        self.do_reset(None, None)
        if self.on_change is not None:
            self.on_change(self, what)

    # --- methods ---------------------------------------------------------------

    def do_reset(self, value, ctx):
        """Blue Book: both averages to their default, capture_time and
        start_time_current to now; a new measurement starts."""
        now = self._time()
        self._layout(self.number_of_periods)
        self._arm(now)
        self._capture = now

    def do_next_period(self, value, ctx):
        """Close the running sub-period now; the next one ends on the period grid."""
        now = self._time()
        if self._start is None:
            self._arm(now)
            return
        self._close(now)
        self._next = next_boundary(self.clock, now, self.period)

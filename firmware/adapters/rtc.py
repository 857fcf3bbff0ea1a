"""Time sources. Protocol layers never read a clock: the composition root hands one of
these to the COSEM clock and the metering task.

A time source gives UTC seconds since 2000-01-01 (MicroPython's embedded epoch) and
can be set; the simulated one can run faster than real time."""
import time

# Seconds between the unix epoch and 2000-01-01, for ports whose time.time() is unix time.
_UNIX_TO_2000 = 946684800


def _port_epoch_offset():
    return _UNIX_TO_2000 if time.gmtime(0)[0] == 1970 else 0


def _real_ms():
    # time_ns does not wrap, unlike ticks_ms (a 2**30 ms period on the unix port).
    return time.time_ns() // 1000000


class SimulatedClock:
    """Wall-clock time scaled by `speed` (simulated seconds per real second)."""

    def __init__(self, speed=1, start=None):
        self.speed = speed
        self._epoch_offset = _port_epoch_offset()
        self._real0 = _real_ms()
        self._sim0_ms = (start if start is not None else int(time.time()) - self._epoch_offset) * 1000

    def now_ms(self):
        return int(self._sim0_ms + (_real_ms() - self._real0) * self.speed)

    def now(self):
        return self.now_ms() // 1000

    def set(self, seconds):
        self._real0 = _real_ms()
        self._sim0_ms = seconds * 1000


class BoardRTC:
    """The board's RTC through machine.RTC (untested here: no board attached)."""

    def __init__(self):
        import machine

        self._rtc = machine.RTC()

    def now(self):
        return int(time.time()) - _port_epoch_offset()

    def now_ms(self):
        return self.now() * 1000

    def set(self, seconds):
        t = time.gmtime(seconds + _port_epoch_offset())
        self._rtc.datetime((t[0], t[1], t[2], t[6] + 1, t[3], t[4], t[5], 0))


class Elapsed:
    """Monotonic seconds since start from ticks_ms, for the metering task on a board:
    a clock SET must not move the sampling timeline. Exact across ticks wrap-around
    as long as it is read at least once per wrap period (days)."""

    def __init__(self):
        self._last = time.ticks_ms()
        self._ms = 0

    def now_ms(self):
        t = time.ticks_ms()
        self._ms += time.ticks_diff(t, self._last)
        self._last = t
        return self._ms

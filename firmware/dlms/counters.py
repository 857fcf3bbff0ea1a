# Invocation counters for security suite 0 (Green Book 9.2.7: the GCM IV is
# system title || invocation counter, so one (key, counter) pair must never be used
# twice). This module owns the two persistent counters per key:
#   OwnCounter   the counter the meter puts in its own ciphered APDUs; persisted ahead
#                in reserved blocks so that no value can be handed out twice, even
#                across a kill at any instant;
#   PeerCounter  the highest counter accepted from the client under a key; anything
#                not above it is a replay.
# Both persist through adapters.store.Store (double-buffered records with CRC).
# Neither reads a clock or touches I/O beyond the store it is given.
import struct
import micropython
from micropython import const
from dlms.errors import ProtocolError

MAX_COUNTER = const(0xFFFFFFFF)  # the invocation counter is a u32 on the wire


class ReplayError(ProtocolError):
    """A received invocation counter not above the last one accepted under the key."""

    def __init__(self, ic, last):
        super().__init__("replayed invocation counter")
        self.ic = ic
        self.last = last


class CounterUnavailable(ProtocolError):
    """The counter cannot be used now: its record is unreadable (both slots damaged:
    continuing from a guess could repeat an IV) or exhausted, both until
    reset_for_new_key(); or the store failed to persist it (retry later)."""


def _persist(store, name, buf, fmt, value):
    struct.pack_into(fmt, buf, 0, value)  # preallocated buf: no bytes object per call
    try:
        store.put(name, buf)
    except OSError:
        raise CounterUnavailable("counter not persisted")


class OwnCounter:
    """The meter's own invocation counter for one key.

    The record holds a ceiling C (u64): every value ever returned is below C. Start-up
    resumes at C (1 on an empty store). next() persists value+reserve *before* it
    returns a value that reaches the ceiling, so a kill at any instant, including
    inside that put (the store then keeps the old ceiling, and the value was not
    returned), resumes above every value returned. Cost: one store write per
    `reserve` values; up to `reserve` values are skipped per restart.

    Because a put only ever happens at value == ceiling, the two slots of the record
    always hold C and C + reserve (or an old key's ceiling and 1 + reserve after a
    reset). So when one slot is found invalid, which a cut during a put leaves but so
    does flash damage to the newest slot, resuming at the valid C + reserve is safe
    either way; that resume point is written first (repair), restoring the pairing.
    Both slots invalid can only be damage: the counter is then `lost` and refuses.
    Assumes `reserve` does not shrink between firmware versions."""

    def __init__(self, store, name, reserve=1000):
        if reserve < 1:
            raise ValueError("reserve")
        self._store = store
        self._name = name
        self.reserve = reserve
        self._buf = bytearray(8)
        raw, bad = store.load(name)
        self.lost = bad == 2 or (raw is not None and len(raw) != 8)
        start = 1
        if raw is not None and not self.lost:
            start = max(1, struct.unpack("<Q", raw)[0])
        if bad == 1:
            # One invalid slot: resume a block above the valid one (see above). With
            # no valid slot at all, the other slot file was never created, so every
            # put ever made on this record wrote 1 + reserve (first put, reset, or
            # this repair); start += reserve from 1 gives exactly that.
            start += reserve
        self._repair = bad == 1
        self._next = start
        self._ceiling = start

    @property
    def value(self):
        """The value the next call of next() will return."""
        return self._next

    @micropython.native
    def next(self):
        """A value strictly above every value returned before under this key."""
        v = self._next
        if self.lost:
            raise CounterUnavailable("own counter lost")
        if v > MAX_COUNTER:
            raise CounterUnavailable("own counter exhausted")
        if self._repair:
            _persist(self._store, self._name, self._buf, "<Q", v)
            self._repair = False
        if v >= self._ceiling:
            c = v + self.reserve
            _persist(self._store, self._name, self._buf, "<Q", c)  # FIRST
            self._ceiling = c
        self._next = v + 1
        return v

    def reset_for_new_key(self):
        """Start again at 1 for a new key. Call only once the new key itself is
        durable: a cut between the two must leave the old key with its old (high)
        counter, never the old key with a counter reset to 1."""
        c = 1 + self.reserve
        _persist(self._store, self._name, self._buf, "<Q", c)
        self._next = 1
        self._ceiling = c
        self.lost = False
        self._repair = False


class PeerCounter:
    """The highest invocation counter accepted from the client under one key.

    check_and_update(ic, durable) checks ic against the last accepted counter (held
    in RAM: strict for the meter's whole running life) and persists it:
    - durable=True (AARQ, SET, ACTION, anything that changes state or authenticates):
      before it returns, so the APDU is acted on only once its counter is on flash;
      after a power cut at any point, replaying it is rejected.
    - durable=False (GET: reads change nothing): at most LAZY_SPAN counters behind,
      and with every durable write. On start the counter resumes LAZY_SPAN past the
      stored one, so the reads that may not have reached flash are never accepted
      again either; the client learns where to continue from 0-0:43.1.0.255, as
      after any restart. One flash write per read (more time than the whole rest
      of a ciphered GET on the simulator) becomes one per LAZY_SPAN reads, at the
      cost of LAZY_SPAN counter values skipped per restart out of 2^32."""

    LAZY_SPAN = 256

    def __init__(self, store, name):
        self._store = store
        self._name = name
        self._buf = bytearray(4)
        raw, bad = store.load(name)
        # One invalid slot: a cut during a put (that acceptance was never acted on),
        # so the valid slot is right. Both invalid: damage, refuse until a new key.
        self.lost = bad == 2 or (raw is not None and len(raw) != 4)
        self.value = 0
        if raw is not None and not self.lost:
            # Reads accepted after the last write may not be on flash: skip past them.
            self.value = min(struct.unpack("<I", raw)[0] + self.LAZY_SPAN, MAX_COUNTER)
        self._persisted = self.value

    @micropython.native
    def check_and_update(self, ic, durable=True):
        """Accept ic or raise ReplayError / CounterUnavailable (see the class)."""
        if self.lost:
            raise CounterUnavailable("peer counter lost")
        if ic <= self.value:
            raise ReplayError(ic, self.value)
        if ic > MAX_COUNTER:
            raise ValueError("counter is u32")
        if durable or ic - self._persisted >= self.LAZY_SPAN:
            _persist(self._store, self._name, self._buf, "<I", ic)  # before accepting
            self._persisted = ic
        self.value = ic

    def reset_for_new_key(self):
        """Forget the old key's counter (the client starts again from 1)."""
        _persist(self._store, self._name, self._buf, "<I", 0)
        self.value = self._persisted = 0
        self.lost = False

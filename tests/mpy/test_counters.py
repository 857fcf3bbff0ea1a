# Tests of dlms/counters.py: the meter's own invocation counter never hands out a
# value twice, whatever instant the process dies at; the peer counter rejects replays,
# also after a restart. Restarts are new objects over the same store directory; kills
# are a store whose writes die after N bytes (test_store.cutting_store).
import struct
from adapters.store import Store, HEADER_SIZE
from dlms.counters import OwnCounter, PeerCounter, ReplayError, CounterUnavailable, MAX_COUNTER
from dlms.errors import ProtocolError
from testutil import raises
from test_store import TempDir, PowerCut, cutting_store, check, write_file


class _FailingStore(Store):
    """put() raises OSError while .fail is set (full or worn-out flash)."""

    fail = False

    def put(self, name, payload):
        if self.fail:
            raise OSError(28)
        Store.put(self, name, payload)


def test_first_start_uses_one_and_increases():
    with TempDir() as d:
        s = Store(d)
        c = OwnCounter(s, "own", reserve=10)
        check(c.value == 1)
        got = [c.next() for _ in range(25)]
        check(got == list(range(1, 26)), "got %r" % (got,))
        # one write per reserve block: ceilings 11, 21, 31
        check(s.writes == 3, "writes %d" % s.writes)


def test_restart_resumes_above_every_returned_value():
    with TempDir() as d:
        seen = []
        for life in range(12):
            c = OwnCounter(Store(d), "own", reserve=5)
            for _ in range(life % 4 * 3):  # 0, 3, 6, 9 values per life
                seen.append(c.next())
        c = OwnCounter(Store(d), "own", reserve=5)
        v = c.next()
        check(v > max(seen), "%d not above %d" % (v, max(seen)))
        check(seen == sorted(seen) and len(set(seen)) == len(seen), "values repeat")


def test_kill_at_every_byte_never_repeats_a_value():
    # Each budget kills the process at a different byte of the ceiling writes; several
    # lives in a row, each dying at the same offset into its own writes.
    per_put = HEADER_SIZE + 8
    for budget in range(0, per_put * 3 + 1):
        with TempDir() as d:
            returned = []
            for life in range(4):
                c = OwnCounter(cutting_store(d, budget), "k", reserve=3)
                try:
                    for _ in range(10):
                        returned.append(c.next())
                except PowerCut:
                    pass
            check(len(set(returned)) == len(returned), "repeat at budget %d: %r" % (budget, returned))
            check(returned == sorted(returned), "not increasing at budget %d" % budget)
            if returned:
                v = OwnCounter(Store(d), "k", reserve=3).next()
                check(v > max(returned), "budget %d: resumed at %d" % (budget, v))


def test_failed_persist_returns_no_value():
    with TempDir() as d:
        s = _FailingStore(d)
        c = OwnCounter(s, "own", reserve=2)
        a, b = c.next(), c.next()  # 1, 2 (ceiling 3)
        s.fail = True
        e = raises(CounterUnavailable, c.next)
        check(isinstance(e, ProtocolError))
        s.fail = False
        v = c.next()
        check(v == 3 and a == 1 and b == 2)
        check(OwnCounter(Store(d), "own", reserve=2).next() > v)


def test_own_reset_for_new_key():
    with TempDir() as d:
        c = OwnCounter(Store(d), "own", reserve=4)
        for _ in range(9):
            c.next()
        c.reset_for_new_key()
        check(c.next() == 1 and c.next() == 2)
        c2 = OwnCounter(Store(d), "own", reserve=4)
        v = c2.next()
        check(2 < v < 9, "reset not persisted: %d" % v)


def test_own_lost_record_refuses_until_new_key():
    with TempDir() as d:
        c = OwnCounter(Store(d), "own", reserve=4)
        for _ in range(6):
            c.next()
        write_file(d + "/own.a", b"rot")
        write_file(d + "/own.b", b"")
        s = Store(d)
        c = OwnCounter(s, "own", reserve=4)
        check(c.lost and s.corrupt_seen == 2)
        raises(CounterUnavailable, c.next)  # never restart at 1 under the old key
        c.reset_for_new_key()
        check(c.next() == 1)


def test_own_exhausted():
    with TempDir() as d:
        s = Store(d)
        s.put("own", struct.pack("<Q", MAX_COUNTER))
        c = OwnCounter(s, "own", reserve=4)
        check(c.next() == MAX_COUNTER)
        raises(CounterUnavailable, c.next)
        raises(ValueError, OwnCounter, s, "x", 0)


def test_peer_rejects_replay_and_equal():
    with TempDir() as d:
        p = PeerCounter(Store(d), "peer")
        check(p.value == 0)
        raises(ReplayError, p.check_and_update, 0)
        p.check_and_update(5)
        p.check_and_update(9)
        e = raises(ReplayError, p.check_and_update, 9)
        check(e.ic == 9 and e.last == 9 and isinstance(e, ProtocolError))
        raises(ReplayError, p.check_and_update, 6)
        check(p.value == 9)
        p.check_and_update(MAX_COUNTER)
        raises(ReplayError, p.check_and_update, MAX_COUNTER)


def test_peer_acceptance_survives_restart():
    with TempDir() as d:
        s = Store(d)
        p = PeerCounter(s, "peer")
        for ic in (3, 4, 100):
            p.check_and_update(ic)
        check(s.writes == 3, "one write per accepted counter")
        p2 = PeerCounter(Store(d), "peer")
        check(p2.value == 100 + PeerCounter.LAZY_SPAN)  # skips reads that may not be on flash
        raises(ReplayError, p2.check_and_update, 100)
        raises(ReplayError, p2.check_and_update, 4)
        p2.check_and_update(101 + PeerCounter.LAZY_SPAN)


def test_peer_kill_during_persist():
    # If check_and_update returned, the acceptance is on flash; if it died, the APDU
    # was not acted on, and the restarted meter knows the previous value.
    per_put = HEADER_SIZE + 4
    for budget in range(0, per_put * 2 + 1):
        with TempDir() as d:
            PeerCounter(Store(d), "p").check_and_update(10)
            p = PeerCounter(cutting_store(d, budget), "p")
            accepted = p.value  # 10 and the span skipped on start
            try:
                for ic in (accepted + 1, accepted + 2):
                    p.check_and_update(ic)
                    accepted = ic
            except PowerCut:
                pass
            p2 = PeerCounter(Store(d), "p")
            check(p2.value >= accepted, "budget %d: %d < %d" % (budget, p2.value, accepted))
            raises(ReplayError, p2.check_and_update, accepted)


def test_peer_reset_and_lost():
    with TempDir() as d:
        p = PeerCounter(Store(d), "peer")
        p.check_and_update(50)
        p.reset_for_new_key()
        check(p.value == 0)  # the client starts again from 1 under the new key
        check(PeerCounter(Store(d), "peer").value == PeerCounter.LAZY_SPAN)  # after a restart: span skipped
        p.check_and_update(1)
        write_file(d + "/peer.a", b"x")
        write_file(d + "/peer.b", b"y")
        p = PeerCounter(Store(d), "peer")
        check(p.lost)
        raises(CounterUnavailable, p.check_and_update, 1000)
        p.reset_for_new_key()
        p.check_and_update(1)


def test_one_damaged_slot_resumes_safely():
    # One invalid slot is what a cut during a put leaves, and also what damage to the
    # newest slot looks like. Damage one slot (either) after every life that used the
    # counter: the values must still never repeat.
    with TempDir() as d:
        seen = []
        rnd = 12345
        for life in range(60):
            s = Store(d)
            c = OwnCounter(s, "own", reserve=4)
            rnd = (rnd * 1103515245 + 12345) & 0x7FFFFFFF
            for _ in range(rnd % 11):
                v = c.next()
                check(not seen or v > seen[-1], "life %d: %d after %d" % (life, v, seen[-1] if seen else 0))
                seen.append(v)
            check(not c.lost, "life %d: lost" % life)
            if c._repair is False and seen:  # both slots valid now: damage one of them
                write_file(d + ("/own.a", "/own.b")[rnd >> 8 & 1], b"bitrot")


def test_torn_first_put_is_not_lost():
    per_put = HEADER_SIZE + 8
    for budget in range(0, per_put):
        with TempDir() as d:
            c = OwnCounter(cutting_store(d, budget), "own", reserve=5)
            raises(PowerCut, c.next)
            s = Store(d)
            c = OwnCounter(s, "own", reserve=5)
            check(not c.lost and s.corrupt_seen == 1, "budget %d" % budget)
            check(c.next() == 6)
            s.put("unrelated", b"")
            check(OwnCounter(Store(d), "own", reserve=5).next() == 11)


def test_peer_counter_reads_persist_lazily_writes_at_once():
    with TempDir() as d:
        store = Store(d, fsync=False)
        p = PeerCounter(store, "peer")
        p.check_and_update(3)  # durable (the default): on flash before it returns
        for ic in range(4, 4 + PeerCounter.LAZY_SPAN - 1):
            p.check_and_update(ic, durable=False)
        raises(ReplayError, p.check_and_update, 10, False)  # strict in RAM all the same
        span = PeerCounter.LAZY_SPAN
        # After a restart the reads not yet on flash are skipped over, never accepted again.
        assert PeerCounter(store, "peer").value == 3 + span >= 3 + span - 1
        p.check_and_update(3 + span, durable=False)  # a span behind: written
        assert PeerCounter(store, "peer").value == 3 + 2 * span
        p.check_and_update(3 + span + 10, durable=False)
        p.check_and_update(3 + span + 11)  # a write takes every read before it to flash too
        assert PeerCounter(store, "peer").value == 3 + span + 11 + span

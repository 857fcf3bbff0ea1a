# Tests of adapters/store.py: double-buffered records and ring logs, including power
# cuts at every byte of every write (a file wrapper injected as the store's opener
# writes a prefix of the data and then raises PowerCut, as a dying supply would).
import binascii
import os
import struct
from adapters.store import Store, Log, HEADER_SIZE
from testutil import raises


# -- helpers (also used by test_counters) -------------------------------------------

_BASE = "/tmp/dlms_store_test_" + binascii.hexlify(os.urandom(6)).decode()
_dirs = [0]


def rmtree(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for e in entries:
        p = path + "/" + e[0]
        if e[1] == 0x4000:
            rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


class TempDir:
    """A fresh directory under /tmp, removed on exit."""

    def __enter__(self):
        _dirs[0] += 1
        self.path = _BASE + "/" + str(_dirs[0])
        return self.path

    def __exit__(self, *exc):
        rmtree(_BASE)
        return False


class PowerCut(Exception):
    pass


class _CutFile:
    def __init__(self, f, budget):
        self._f = f
        self._budget = budget

    def write(self, data):
        left = self._budget[0]
        if len(data) > left:
            self._f.write(data[:left])
            self._budget[0] = 0
            self._f.close()
            raise PowerCut()
        self._budget[0] = left - len(data)
        return self._f.write(data)

    def read(self, *a):
        return self._f.read(*a)

    def readinto(self, b):
        return self._f.readinto(b)

    def seek(self, *a):
        return self._f.seek(*a)

    def flush(self):
        return self._f.flush()

    def fileno(self):
        return self._f.fileno()

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False


def cutting_store(path, budget_bytes):
    """A Store whose file writes die after budget_bytes bytes in total."""
    budget = [budget_bytes]
    return Store(path, opener=lambda p, m: _CutFile(open(p, m), budget))


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def read_file(p):
    with open(p, "rb") as f:
        return f.read()


def write_file(p, data):
    with open(p, "wb") as f:
        f.write(data)


def slot_bytes(seq, payload, magic=b"MS", version=1):
    """A slot file built from the documented format, independently of store.py."""
    head = struct.pack("<2sBBII", magic, version, 0, seq, len(payload))
    return head + struct.pack("<I", binascii.crc32(payload, binascii.crc32(head))) + payload


# -- records ------------------------------------------------------------------------


def test_round_trip_and_restart():
    with TempDir() as d:
        s = Store(d + "/sub/dir")  # nested directory created
        check(s.get("energy") is None)
        check(not s.exists("energy"))
        s.put("energy", b"\x01\x02\x03")
        check(s.get("energy") == b"\x01\x02\x03")
        s.put("energy", bytearray(b"second"))
        s.put("other", b"")
        check(s.get("energy") == b"second")
        check(s.get("other") == b"")
        big = bytes(range(256)) * 5
        s.put("big", big)
        s2 = Store(d + "/sub/dir")
        check(s2.get("energy") == b"second", "value lost on restart")
        check(s2.get("other") == b"")
        check(s2.get("big") == big)
        check(s2.corrupt_seen == 0)


def test_put_writes_once_and_alternates_slots():
    with TempDir() as d:
        s = Store(d)
        s.put("r", b"one")
        check(s.writes == 1 and s.bytes_written == HEADER_SIZE + 3, "one write per put")
        check(read_file(d + "/r.a") == slot_bytes(1, b"one"), "slot format")
        s.put("r", b"two")
        check(read_file(d + "/r.b") == slot_bytes(2, b"two"))
        check(read_file(d + "/r.a") == slot_bytes(1, b"one"), "older slot untouched")
        s.put("r", b"three")
        check(read_file(d + "/r.a") == slot_bytes(3, b"three"), "older slot overwritten")
        check(s.writes == 3)


def _two_values(d):
    s = Store(d)
    s.put("r", b"good old value")
    s.put("r", b"newer value!")  # into r.b
    check(read_file(d + "/r.b")[HEADER_SIZE:] == b"newer value!")
    return d + "/r.b"


def _corruptions(p):
    data = read_file(p)
    yield "truncated", data[:-1]
    yield "header only", data[:HEADER_SIZE]
    yield "half header", data[:7]
    yield "empty", b""
    yield "garbage", os.urandom(len(data))
    yield "trailing byte", data + b"\x00"
    for k in (0, 2, 5, 9, 13, len(data) - 1):  # magic, version, seq, length, crc, payload
        flipped = bytearray(data)
        flipped[k] ^= 0x10
        yield "flip %d" % k, flipped


def test_corrupt_newest_slot_falls_back_to_previous():
    with TempDir() as d:
        p = _two_values(d)
        for what, bad in list(_corruptions(p)):
            write_file(p, bad)
            s = Store(d)
            got = s.get("r")
            check(got == b"good old value", what + ": got %r" % (got,))
            check(s.corrupt_seen == 1, what + ": corrupt not counted")


def test_both_slots_corrupt_gives_none_and_counts():
    with TempDir() as d:
        p = _two_values(d)
        write_file(p, b"\x00" * 5)
        write_file(d + "/r.a", read_file(d + "/r.a")[:-3])
        s = Store(d)
        check(s.get("r") is None)
        check(s.corrupt_seen == 2, "corrupt_seen %d" % s.corrupt_seen)
        check(s.exists("r"), "exists tells lost from never written")


def test_put_after_corruption_keeps_the_good_slot():
    with TempDir() as d:
        p = _two_values(d)
        write_file(p, b"junk")
        s = Store(d)
        s.put("r", b"third")  # must overwrite the invalid r.b, not the good r.a
        check(read_file(d + "/r.a")[HEADER_SIZE:] == b"good old value", "good slot overwritten")
        check(Store(d).get("r") == b"third")


def test_many_puts_keep_order_across_restarts():
    with TempDir() as d:
        s = Store(d)
        for i in range(300):
            if i % 7 == 0:
                s = Store(d)
            s.put("n", struct.pack("<I", i))
            if i % 13 == 0:
                check(Store(d).get("n") == struct.pack("<I", i), "order at %d" % i)
        check(Store(d).get("n") == struct.pack("<I", 299))


def test_sequence_wraps_around_u32():
    with TempDir() as d:
        Store(d)
        write_file(d + "/w.a", slot_bytes(0xFFFFFFFF, b"newest"))
        write_file(d + "/w.b", slot_bytes(0xFFFFFFFE, b"older"))
        s = Store(d)
        check(s.get("w") == b"newest")
        s.put("w", b"after wrap")  # seq 0 into w.b
        check(read_file(d + "/w.b") == slot_bytes(0, b"after wrap"))
        check(Store(d).get("w") == b"after wrap", "seq 0 must follow 0xFFFFFFFF")


def test_foreign_magic_or_version_is_corrupt():
    with TempDir() as d:
        Store(d)
        write_file(d + "/x.a", slot_bytes(5, b"alien", magic=b"XX"))
        write_file(d + "/x.b", slot_bytes(6, b"future", version=2))
        s = Store(d)
        check(s.get("x") is None and s.corrupt_seen == 2)


def test_bad_names_rejected():
    with TempDir() as d:
        s = Store(d)
        raises(ValueError, s.put, "a/b", b"")
        raises(ValueError, s.put, "", b"")


def test_power_cut_at_every_byte_of_a_put():
    old, new = b"old value 123", b"the new value, longer"
    total = HEADER_SIZE + len(new)
    with TempDir() as d:
        for budget in range(total + 1):
            rmtree(d)
            Store(d).put("r", old)
            s = cutting_store(d, budget)
            cut = False
            try:
                s.put("r", new)
            except PowerCut:
                cut = True
            check(cut == (budget < total), "cut expected at %d" % budget)
            got = Store(d).get("r")
            check(got == (old if cut else new), "budget %d gave %r" % (budget, got))


def test_power_cuts_through_a_series_of_puts():
    # Lives of the device, each dying at a different byte; after each restart the
    # value is the last completed put (or the one in flight if it landed whole).
    with TempDir() as d:
        done = None
        for life in range(40):
            s = cutting_store(d, life * 7 % 45)
            inflight = None
            try:
                for k in range(3):
                    inflight = b"life %d put %d" % (life, k)
                    s.put("v", inflight)
                    done = inflight
            except PowerCut:
                pass
            got = Store(d).get("v")
            check(got == done or got == inflight, "life %d: %r" % (life, got))
            done = got


# -- logs ---------------------------------------------------------------------------


def _rec(i, size=6):
    return struct.pack("<I", i) + bytes([i & 0xFF]) * (size - 4)


def test_log_append_read_iterate():
    with TempDir() as d:
        s = Store(d)
        log = Log(s, "ev", 6, 10)
        check(len(log) == 0 and list(log) == [])
        for i in range(4):
            log.append(_rec(i))
        check(len(log) == 4)
        check(log.read(0) == _rec(0) and log.read(3) == _rec(3))
        check(list(log) == [_rec(i) for i in range(4)])
        raises(IndexError, log.read, 4)
        raises(IndexError, log.read, -1)
        raises(ValueError, log.append, b"short")
        log2 = Log(Store(d), "ev", 6, 10)
        check(list(log2) == [_rec(i) for i in range(4)], "log lost on restart")


def test_log_wraps_at_capacity():
    with TempDir() as d:
        s = Store(d)
        log = Log(s, "lp", 6, 5)
        for i in range(23):
            log.append(_rec(i))
            want = [_rec(k) for k in range(max(0, i - 4), i + 1)]
            check(list(log) == want, "after %d appends" % (i + 1))
        check(len(log) == 5)
        check(len(read_file(d + "/lp.ring")) == 6 * (6 + 8), "capacity + 1 slots")
        again = Log(Store(d), "lp", 6, 5)
        check(list(again) == [_rec(k) for k in range(18, 23)], "wrapped log on restart")
        again.append(_rec(23))
        check(list(Log(Store(d), "lp", 6, 5)) == [_rec(k) for k in range(19, 24)])


def test_log_append_is_one_write():
    with TempDir() as d:
        s = Store(d)
        log = Log(s, "w", 6, 3)
        w0 = s.writes  # first creation writes the geometry record once
        check(w0 == 1)
        for i in range(7):
            log.append(_rec(i))
        check(s.writes == w0 + 7)
        log.clear()
        check(s.writes == w0 + 8, "clear is one write")
        Log(s, "w", 6, 3)
        check(s.writes == w0 + 8, "reopening writes nothing")


def test_log_power_cut_at_every_byte():
    size, cap = 5, 4
    per = size + 8
    with TempDir() as d:
        for budget in range(0, per * 7 + 1):
            rmtree(d)
            Log(Store(d), "t", size, cap)  # geometry record written without cuts
            log = Log(cutting_store(d, budget), "t", size, cap)
            done = []
            inflight = None
            try:
                for i in range(7):
                    inflight = _rec(i, size)
                    log.append(inflight)
                    done.append(inflight)
                inflight = None
            except PowerCut:
                pass
            s = Store(d)
            got = list(Log(s, "t", size, cap))
            ok = got == done[-cap:] or (inflight is not None and got == (done + [inflight])[-cap:])
            check(ok, "budget %d: %d records" % (budget, len(got)))
            check(s.corrupt_seen == 0, "a torn append is not in the window")
            check(None not in got)


def test_log_torn_tail_in_file():
    with TempDir() as d:
        log = Log(Store(d), "t", 4, 8)
        for i in range(3):
            log.append(_rec(i, 4))
        p = d + "/t.ring"
        data = read_file(p)
        write_file(p, data[:-5])  # last record torn
        check(list(Log(Store(d), "t", 4, 8)) == [_rec(0, 4), _rec(1, 4)])
        log = Log(Store(d), "t", 4, 8)
        log.append(b"next")  # reuses the torn slot
        check(list(Log(Store(d), "t", 4, 8)) == [_rec(0, 4), _rec(1, 4), b"next"])


def test_log_corrupt_middle_record_is_skipped_and_counted():
    with TempDir() as d:
        log = Log(Store(d), "m", 4, 6)
        for i in range(9):
            log.append(_rec(i, 4))
        # window is seqs 3..8 in slots seq % 7; damage seq 5's payload
        p = d + "/m.ring"
        data = bytearray(read_file(p))
        data[(5 % 7) * 12 + 6] ^= 1
        write_file(p, data)
        s = Store(d)
        log = Log(s, "m", 4, 6)
        check(s.corrupt_seen == 1)
        want = [_rec(i, 4) for i in (3, 4, 6, 7, 8)]
        check(len(log) == 5 and list(log) == want, "got %r" % (list(log),))
        check(log.read(2) == _rec(6, 4))
        for i in range(9, 12):  # the damaged record leaves the window
            log.append(_rec(i, 4))
        check(list(log) == [_rec(i, 4) for i in range(6, 12)])


def test_log_clear_is_atomic_and_persistent():
    with TempDir() as d:
        log = Log(Store(d), "c", 4, 5)
        for i in range(7):
            log.append(_rec(i, 4))
        log.clear()
        check(len(log) == 0 and list(log) == [])
        check(len(Log(Store(d), "c", 4, 5)) == 0, "clear lost on restart")
        log = Log(Store(d), "c", 4, 5)
        log.append(b"aft1")
        log.append(b"aft2")
        check(list(Log(Store(d), "c", 4, 5)) == [b"aft1", b"aft2"])
        # a cut at every byte of clear(): all records or none, never a mix
        before = list(log)
        for budget in range(0, 40):
            log = Log(cutting_store(d, budget), "c", 4, 5)
            try:
                log.clear()
                cleared = True
            except PowerCut:
                cleared = False
            got = list(Log(Store(d), "c", 4, 5))
            check(got == ([] if cleared else before), "clear cut at %d" % budget)
            if cleared:
                break
        check(cleared)


def test_log_geometry_change_starts_empty():
    with TempDir() as d:
        log = Log(Store(d), "g", 4, 5)
        for i in range(3):
            log.append(_rec(i, 4))
        check(len(Log(Store(d), "g", 6, 5)) == 0)
        check(len(Log(Store(d), "g", 6, 9)) == 0)
        raises(ValueError, Log, Store(d), "g", 0, 5)

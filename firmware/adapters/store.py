# The power-fail-safe store: the only persistence the firmware uses (DESIGN.md,
# "Decided behaviour": energy totals, counters, profiles and event logs survive a cut
# at any instant). Two shapes:
#
#   Store.put/get   small records, double-buffered: NAME.a and NAME.b each hold a
#                   header (magic, version, sequence, length, CRC-32) and a payload;
#                   put overwrites the older or invalid slot, so the newest *valid*
#                   slot is always a complete earlier or the new value.
#   Log             fixed-size records in a ring file NAME.ring, each with its own
#                   sequence and CRC-32; its geometry and the clear mark live in the
#                   double-buffered record NAME.log.
#
# Why double-buffering and not write-temp-then-rename: a rename is one more metadata
# operation that must itself be atomic. littlefs does commit renames atomically, but
# FAT does not (a cut can leave both names, or neither, or a lost cluster chain), and
# MicroPython's rename over an existing file differs between VFS types. Two slots
# written in place need only "a cut leaves this file's bytes somewhere between old and
# new", which the CRC then arbitrates, on every filesystem. On littlefs a file write is
# even copy-on-write until close, so the torn case reduces to "old content".
#
# Files are opened through an injectable `opener` (default: built-in open) so tests
# can cut power at any byte. On the unix port, data is fsync'ed through libc (ffi);
# on boards flush()+close() is the commit (littlefs) or the best available (FAT).
import binascii
import os
import struct
from micropython import const

MAGIC = b"MS"  # "meter store"
VERSION = const(1)
HEADER_SIZE = const(16)  # "<2sBBIII": magic, version, flags(0), seq, length, crc
_MAX_PAYLOAD = const(65536)  # a slot claiming more is corrupt (no huge allocation)
_MASK = const(0xFFFFFFFF)
_HALF = const(0x80000000)
_SUFFIX = (".a", ".b")

_libc = None  # (fsync, open, close) from libc on the unix port, () elsewhere


def _posix():
    global _libc
    if _libc is None:
        try:
            import ffi

            lib = ffi.open("libc.so.6")
            _libc = (lib.func("i", "fsync", "i"), lib.func("i", "open", "si"), lib.func("i", "close", "i"))
        except Exception:  # ImportError on boards, OSError where there is no such libc
            _libc = ()
    return _libc


def newer(a, b):
    """True if sequence a is after b in u32 serial-number order (RFC 1982 style), so
    the two slots compare correctly across the wrap from 0xFFFFFFFF to 0."""
    d = (a - b) & _MASK
    return 0 < d < _HALF


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _makedirs(path):
    cur = "/" if path[:1] == "/" else ""
    for part in path.split("/"):
        if part:
            cur = cur + part if cur in ("", "/") else cur + "/" + part
            if not _exists(cur):
                os.mkdir(cur)


class Store:
    """Records and logs in `directory` (created if missing).

    writes / bytes_written count file writes (one per put, one per Log.append), for
    the flash-wear benchmark; corrupt_seen counts invalid slots or log records met
    (each detection; a missing file is not corrupt). One Store per directory: it
    caches which slot of each record is the newest."""

    def __init__(self, directory, opener=open, fsync=True):
        if directory.endswith("/") and len(directory) > 1:
            directory = directory[:-1]
        _makedirs(directory)
        self.directory = directory
        self.open = opener
        self.writes = 0
        self.bytes_written = 0
        self.corrupt_seen = 0
        self._libc = _posix() if fsync else ()
        self._hdr = bytearray(HEADER_SIZE)
        self._hdr12 = memoryview(self._hdr)[:12]  # the CRC'd part of the header
        # name -> [newest slot or -1, its seq, present-bits]; slot paths are made when a
        # file is opened (rare) rather than kept: ~100 bytes of heap each.
        self._state = {}

    # -- plumbing shared with Log -------------------------------------------------

    def path(self, filename):
        if not filename or filename[0] == "." or "/" in filename:  # also empty names
            raise ValueError("bad store name")
        return self.directory + "/" + filename

    def _slot_path(self, name, slot):
        return self.path(name + (".a", ".b")[slot])

    def sync(self, f):
        """Push f's data to the medium before the caller relies on it."""
        f.flush()
        if self._libc:
            self._libc[0](f.fileno())

    def sync_dir(self):
        """After creating a file: make its directory entry durable (POSIX needs this;
        littlefs/FAT commit the entry with the file's close)."""
        if self._libc:
            fd = self._libc[1](self.directory, 0)  # O_RDONLY
            if fd >= 0:
                self._libc[0](fd)
                self._libc[2](fd)

    def count_write(self, nbytes):
        self.writes += 1
        self.bytes_written += nbytes

    # -- records ------------------------------------------------------------------

    def _load(self, path):
        """(seq, payload) of a valid slot, None if missing, False if corrupt."""
        try:
            f = self.open(path, "rb")
        except OSError:
            return None
        with f:
            hdr = self._hdr
            if f.readinto(hdr) != HEADER_SIZE:
                return False
            magic, version, _flags, seq, n, crc = struct.unpack("<2sBBIII", hdr)
            if magic != MAGIC or version != VERSION or n > _MAX_PAYLOAD:
                return False
            payload = f.read(n)
            if len(payload) != n or f.read(1):
                return False
        if binascii.crc32(payload, binascii.crc32(self._hdr12)) != crc:
            return False
        return seq, payload

    def _scan(self, name):
        """Validate both slots; refresh the cached state; return the newest payload."""
        st = self._state.get(name)
        if st is None:
            st = [-1, 0, 0]
            self._state[name] = st
        best = None
        st[0] = -1
        st[2] = 0
        for slot in (0, 1):
            r = self._load(self._slot_path(name, slot))
            if r is None:
                continue
            st[2] |= 1 << slot
            if r is False:
                self.corrupt_seen += 1
            elif best is None or newer(r[0], st[1]):
                st[0], st[1], best = slot, r[0], r[1]
        return best

    def get(self, name):
        """Payload of the newest valid slot, or None (never written, or both invalid)."""
        return self._scan(name)

    def load(self, name):
        """(payload or None, number of slot files of `name` found invalid: 0, 1 or 2).
        For callers that must tell "never written" from "written, now unreadable"."""
        before = self.corrupt_seen
        payload = self._scan(name)
        return payload, self.corrupt_seen - before

    def exists(self, name):
        """True if any slot file of `name` exists, valid or not: lets a caller tell
        "never written" from "written once, now unreadable" when get() gives None."""
        return _exists(self._slot_path(name, 0)) or _exists(self._slot_path(name, 1))

    def put(self, name, payload):
        """Write payload into the older/invalid slot and sync it. When put returns the
        value is durable; if it raises (or power fails) get() returns the previous one."""
        n = len(payload)
        if n > _MAX_PAYLOAD:
            raise ValueError("payload too large")
        st = self._state.get(name)
        if st is None:
            self._scan(name)
            st = self._state[name]
        if st[0] < 0:
            slot, seq = 0, 1
        else:
            slot, seq = 1 - st[0], (st[1] + 1) & _MASK
        hdr = self._hdr
        struct.pack_into("<2sBBII", hdr, 0, MAGIC, VERSION, 0, seq, n)
        struct.pack_into("<I", hdr, 12, binascii.crc32(payload, binascii.crc32(self._hdr12)))
        with self.open(self._slot_path(name, slot), "wb") as f:
            f.write(hdr)
            f.write(payload)
            self.sync(f)
        if not st[2] & (1 << slot):
            self.sync_dir()
            st[2] |= 1 << slot
        st[0], st[1] = slot, seq
        self.count_write(HEADER_SIZE + n)


# -- append-only ring logs --------------------------------------------------------

_MAX_LOST = const(32)  # more corrupt records than this: drop the older part of the log


class Log:
    """Ring of `capacity` fixed-size records (load profile, event logs).

    File NAME.ring has capacity+1 slots of [seq u32][record][crc32 u32] (little-endian,
    CRC over seq+record); record seq lives in slot seq % (capacity+1). The spare slot
    means an append only ever overwrites a record that has already left the window, so
    a cut during an append loses at most that new record, never an older one.
    NAME.log (a Store record) holds record_size, capacity and `base`: records with
    seq < base were cleared. clear() is one put of that record, hence atomic.
    A changed record_size/capacity, or an unreadable NAME.log, empties the log (old
    file removed first). Seqs are u32: 4e9 appends per log."""

    def __init__(self, store, name, record_size, capacity):
        if record_size < 1 or capacity < 1:
            raise ValueError("bad log geometry")
        # Only what cannot be derived is kept: six logs live for the meter's life
        # on a 64 KB heap (paths, slot sizes and views are made when used).
        self.store = store
        self.name = name
        self.record_size = record_size
        self.capacity = capacity
        self._buf = bytearray(8 + record_size)  # one slot: [seq][record][crc]
        meta = store.get(name + ".log")
        if meta is None or len(meta) != 12 or struct.unpack_from("<II", meta) != (record_size, capacity):
            self._reset_layout()
        else:
            self._base = struct.unpack_from("<I", meta, 8)[0]
        self._recover()

    def _reset_layout(self):
        # Remove first, then record the new geometry: a cut in between only repeats this.
        try:
            os.remove(self._path())
        except OSError:
            pass
        self._put_meta(0)
        self._base = 0

    def _put_meta(self, base):
        self.store.put(self.name + ".log", struct.pack("<III", self.record_size, self.capacity, base))

    def _path(self):
        return self.store.path(self.name + ".ring")

    def _at(self, f, seq):
        f.seek((seq % (self.capacity + 1)) * len(self._buf))

    def _buf_seq(self):
        """Seq of the record in _buf, or -1 if its CRC fails."""
        buf = self._buf
        n = len(buf) - 4  # the CRC covers seq + record
        if struct.unpack_from("<I", buf, n)[0] != binascii.crc32(memoryview(buf)[:n]):
            return -1
        return struct.unpack_from("<I", self._buf, 0)[0]

    def _valid(self, f, seq):
        """Read the slot of seq into _buf; True if it holds exactly record seq."""
        self._at(f, seq)
        return f.readinto(self._buf) == len(self._buf) and self._buf_seq() == seq

    def _top(self, f):
        """Highest seq among the valid records of the file (-1: none)."""
        top = -1
        slots = self.capacity + 1
        for slot in range(slots):
            if f.readinto(self._buf) != len(self._buf):
                break  # short file: never grown this far, or a torn tail
            seq = self._buf_seq()
            if seq > top and seq % slots == slot:
                top = seq
        return top

    def _recover(self):
        # Head = one past the newest valid record (a torn append simply is not there).
        # The window is the `capacity` seqs before it; a record missing from inside
        # it is damage, counted and skipped (kept in _lost, normally empty).
        self._lost = []
        self._head = self._oldest = self._base
        try:
            f = self.store.open(self._path(), "rb")
        except OSError:
            return
        with f:
            self._head = max(self._top(f) + 1, self._base)
            low = max(self._base, self._head - self.capacity)
            seq = self._head - 1
            while seq >= low:  # newest first, so a flood of damage cuts the oldest part
                if not self._valid(f, seq):
                    self.store.corrupt_seen += 1
                    if len(self._lost) == _MAX_LOST:
                        low = seq + 1
                        break
                    self._lost.append(seq)
                seq -= 1
        self._lost.reverse()
        self._oldest = low

    def appended(self):
        """Records appended since the log was created or last cleared (a counter
        that survives restarts and the ring's overwriting)."""
        return self._head - self._base

    def __len__(self):
        return self._head - self._oldest - len(self._lost)

    def _seq_of(self, index):
        if index < 0 or index >= len(self):
            raise IndexError("log index")
        seq = self._oldest + index
        for lost in self._lost:
            if lost > seq:
                break
            seq += 1
        return seq

    def _payload(self, f, seq):
        if self._valid(f, seq):
            return bytes(memoryview(self._buf)[4 : 4 + self.record_size])
        self.store.corrupt_seen += 1  # went bad since recovery
        return None

    def read(self, index):
        """Record `index` (0 = oldest) as bytes; None if it went bad after start-up."""
        seq = self._seq_of(index)
        with self.store.open(self._path(), "rb") as f:
            return self._payload(f, seq)

    def __iter__(self):
        n = len(self)
        if n:
            with self.store.open(self._path(), "rb") as f:
                for i in range(n):
                    yield self._payload(f, self._seq_of(i))

    def append(self, record):
        """Write one record (exactly record_size bytes) and sync it: one file write."""
        if len(record) != self.record_size:
            raise ValueError("record size")
        seq = self._head
        buf = self._buf
        n = len(buf) - 4
        struct.pack_into("<I", buf, 0, seq)
        buf[4:n] = record
        struct.pack_into("<I", buf, n, binascii.crc32(memoryview(buf)[:n]))
        path = self._path()
        try:
            f = self.store.open(path, "r+b")
            created = False
        except OSError:
            f = self.store.open(path, "w+b")
            created = True
        with f:
            self._at(f, seq)
            f.write(buf)
            self.store.sync(f)
        if created:
            self.store.sync_dir()
        self.store.count_write(len(buf))
        self._head = seq + 1
        if self._head - self._oldest > self.capacity:
            self._oldest = self._head - self.capacity
            if self._lost and self._lost[0] < self._oldest:  # rare: only after damage
                self._lost = [s for s in self._lost if s >= self._oldest]

    def clear(self):
        """Forget every record: one atomic put of the clear mark (base = next seq)."""
        self._put_meta(self._head)  # if this raises, nothing changed
        self._base = self._head
        self._oldest = self._head
        self._lost = []

"""IEC 62056-47 TCP wrapper, server side, sans-IO (docs/INTERFACES.md, "Links").

Every APDU travels behind an 8-octet header: version (0x0001), source wPort,
destination wPort, length of the APDU; all big-endian unsigned16. The client's
wPort is its SAP, so one TCP connection may carry several clients; the server
keeps one association per source wPort.

Refusals, as the wrapper has no error message of its own:
- a header with another version means the stream has lost its framing: the link
  is closed (`closed` becomes True, EV_DISCONNECT for every client seen) and the
  transport drops the TCP connection;
- an APDU longer than max_length, or for another destination wPort, is skipped
  (its bytes are read and discarded, the count kept in `stats`), the stream stays
  usable.
"""
from micropython import const

from dlms.events import NEED_DATA, EV_APDU, EV_DISCONNECT, link_buffers

VERSION = const(1)
HEADER_LEN = const(8)


def link_stats():
    """A fresh counter dict for WrapperLink(stats=)."""
    return {"apdus": 0, "too_long": 0, "other_wport": 0, "bad_version": 0}


def encode_header(source, destination, length):
    return bytes((0, VERSION, source >> 8, source & 0xFF, destination >> 8, destination & 0xFF,
                  length >> 8, length & 0xFF))


class WrapperLink:
    def __init__(self, wport=1, max_length=2048, buffers=None, stats=None):
        self.wport = wport
        self.max_length = max_length
        # Counters: the link's own, or the port's (shared by the links the transport
        # builds per connection, so they outlive a connection).
        self.stats = stats if stats is not None else link_stats()
        # Received bytes, and replies copied in at once (an APDU handed over may be a
        # view of the server's one response buffer, reused for the next reply): rooms
        # of at least HEADER_LEN + max_length octets, lent by the transport.
        self.attach(buffers or link_buffers(HEADER_LEN + max_length))

    def attach(self, buffers):
        """Work in this pair of link buffers (the transport lends one to each
        connection), as a fresh link."""
        self.buffers = buffers
        self._rx, self._out = buffers
        self.reset()

    def reset(self):
        """A fresh link for the next TCP connection (statistics are kept)."""
        self.closed = False
        self._rx[:] = b""
        self._pos = 0  # octets of _rx parsed already
        self._skip = 0  # octets still to discard of a refused APDU
        self._clients = set()
        self._events = []
        self._out[:] = b""
        self._taken = False  # data_to_send() handed out a view of _out

    def receive_data(self, data):
        """Bytes in. An APDU event's payload is a view of the link's own buffer, valid
        until the next receive_data: the server takes each at once, so even a 1 KB
        request costs no allocation its size. data is taken in pieces that fit the
        room (a read may be larger than a core meter's room), so it never grows."""
        data = memoryview(data)
        while data and not self.closed:
            rx = self._rx
            if self._events:  # not taken yet: they get their own copies before rx moves
                self._events = [(k, c, None if p is None else bytes(p)) for k, c, p in self._events]
            if self._pos:
                rx[:self._pos] = b""
            n = min(len(data), HEADER_LEN + self.max_length - len(rx))
            if n <= 0:  # cannot happen: a whole message always fits the room
                self._close()
                return
            rx.extend(data[:n])
            data = data[n:]
            self._pos = self._parse(rx)  # what is parsed goes at the next piece or call

    def _parse(self, rx):
        """Events for the whole messages in rx; -> how many octets were parsed."""
        pos = 0
        while True:
            if self._skip:
                k = min(self._skip, len(rx) - pos)
                self._skip -= k
                pos += k
                if self._skip:
                    return pos
            if len(rx) - pos < HEADER_LEN:
                return pos
            if rx[pos] != 0 or rx[pos + 1] != VERSION:
                self.stats["bad_version"] += 1
                self._close()
                return pos
            source = (rx[pos + 2] << 8) | rx[pos + 3]
            destination = (rx[pos + 4] << 8) | rx[pos + 5]
            length = (rx[pos + 6] << 8) | rx[pos + 7]
            if length > self.max_length or destination != self.wport:
                self.stats["too_long" if length > self.max_length else "other_wport"] += 1
                self._skip = length
                pos += HEADER_LEN
                continue
            if len(rx) - pos < HEADER_LEN + length:
                return pos
            self.stats["apdus"] += 1
            self._clients.add(source)
            start = pos + HEADER_LEN
            pos = start + length
            self._events.append((EV_APDU, source, memoryview(rx)[start:pos]))

    def _close(self):
        self.closed = True  # _rx stays as it is: events may still view it (reset() empties it)
        for client in self._clients:
            self._events.append((EV_DISCONNECT, client, None))
        self._clients = set()

    def next_event(self):
        if not self._events:
            return NEED_DATA
        return self._events.pop(0)

    def send_apdu(self, client, apdu):
        if not self.closed:
            self._release()
            self._out += encode_header(self.wport, client, len(apdu))
            self._out += apdu

    def data_to_send(self):
        """The bytes to send now: a view of the link's buffer, valid until the next
        call to the link (the transport writes it at once; no copy of a reply)."""
        self._release()
        if not self._out:
            return b""
        self._taken = True
        return memoryview(self._out)

    def _release(self):
        if self._taken:
            self._out[:] = b""
            self._taken = False

    def tick(self, now_ms):
        pass  # the TCP connection's own lifetime bounds the wrapper's

# Events handed up by the link layers (docs/INTERFACES.md, "Links").
# An event is a tuple (kind, client_address, payload); next_event() returns the
# NEED_DATA sentinel when nothing is pending. Kinds are small ints so that a
# dispatcher can index a table with them.
from micropython import const

EV_CONNECT = const(1)  # payload None: the client opened the data link (HDLC UA sent)
EV_APDU = const(2)  # payload: one whole APDU, link headers (LLC, wrapper) removed
EV_DISCONNECT = const(3)  # payload None: link closed (DISC, timeout, reset, fatal error)


class _NeedData:
    """Sentinel: the link needs more bytes before it has another event."""

    def __repr__(self):
        return "NEED_DATA"


NEED_DATA = _NeedData()


def room(capacity):
    """An empty bytearray already holding `capacity` octets of heap: MicroPython keeps a
    bytearray's allocation when it is emptied, so filling it up to capacity later needs
    no new block. Links take their buffers this way, at start-up, while the heap is
    still one free run."""
    buf = bytearray(capacity)
    buf[:] = b""
    return buf


def link_buffers(capacity):
    """The two large buffers a link works in, the APDU received and the reply: rooms
    of `capacity` octets. The transport plans a few such pairs at start-up and lends
    one to each connection's link, so idle links and ports cost no large block."""
    return (room(capacity), room(capacity))

# Small helpers for tests that run inside MicroPython (micropython-lib's unittest
# cannot be had offline). Kept tiny so that a failure points at the test, not here.
import json
import os

VECTORS = os.getenv("DLMS_VECTORS") or "../shared/vectors"


def load_vectors(name):
    """Parsed JSON of a published vector file from shared/vectors."""
    with open(VECTORS + "/" + name + ".json") as f:
        return json.load(f)


def unhex(s):
    return bytes.fromhex(s.replace(" ", "").replace(":", ""))


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and fail unless it raises exc_type; return the exception."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("%s not raised by %s" % (exc_type.__name__, fn))


def feed_bytewise(receive, data):
    """Feed data one byte at a time, as a slow UART would."""
    for k in range(len(data)):
        receive(data[k : k + 1])


def value(v):
    """A value tree from what an object's get returns: large values come as streams
    (read(n) / done, sent by the server in GET blocks) and are read out here."""
    if hasattr(v, "read"):
        from dlms.axdr import decode_data

        data = bytearray()
        while not v.done:
            data.extend(v.read(4096))
        return decode_data(data)[0]
    return v

# The one error tree of the firmware (docs/INTERFACES.md, "Errors").
# Two families: AccessError is raised by COSEM objects and carries the
# data-access-result to answer with; ProtocolError is raised by codecs and
# state machines. Which wire response an exception becomes is decided in one
# place per layer (server.py for APDUs, hdlc.py for frames), never here.
from micropython import const

# Data-Access-Result (Green Book, xDLMS Data-Access-Result ENUMERATED);
# Action-Result uses the same numbers.
SUCCESS = const(0)
HARDWARE_FAULT = const(1)
TEMPORARY_FAILURE = const(2)
READ_WRITE_DENIED = const(3)
OBJECT_UNDEFINED = const(4)
_OBJECT_CLASS_INCONSISTENT = const(9)
OBJECT_UNAVAILABLE = const(11)
TYPE_UNMATCHED = const(12)
_SCOPE_OF_ACCESS_VIOLATED = const(13)
_DATA_BLOCK_UNAVAILABLE = const(14)
LONG_GET_ABORTED = const(15)
NO_LONG_GET_IN_PROGRESS = const(16)
LONG_SET_ABORTED = const(17)
NO_LONG_SET_IN_PROGRESS = const(18)
_DATA_BLOCK_NUMBER_INVALID = const(19)
OTHER_REASON = const(250)


class DlmsError(Exception):
    pass


class AccessError(DlmsError):
    """Raised by COSEM objects; .code is the data-access-result to answer with."""

    def __init__(self, code, msg=None):
        super().__init__(msg or code)
        self.code = code


class ProtocolError(DlmsError):
    """Raised by codecs and state machines."""


class DecodeError(ProtocolError):
    """Malformed or truncated input."""

# Value-holding interface classes: Data (IC 1) and Register (IC 3), Blue Book
# 4.3.1 and 4.3.2. Values come from a callable handed in by the owner of the
# quantity (metering task, security layer), so the object model never caches a
# number that something else keeps.
from micropython import const


from cosem.base import CosemObject, check_type
from dlms.errors import AccessError, READ_WRITE_DENIED

# A-XDR tags as local constants: tables of them stay in flash (dlms/axdr.py).
_ENUM = const(22)
_INTEGER = const(15)
_STRUCTURE = const(2)
_UNSIGNED = const(17)

# Units (Blue Book 4.3.2, enumeration of the unit field of scaler_unit).
UNIT_W = const(27)
UNIT_WH = const(30)
_UNIT_A = const(33)
_UNIT_V = const(35)
_UNIT_HZ = const(44)
_UNIT_NONE = const(255)  # count, or no unit


class Data(CosemObject):
    """IC 1. `value` is an A-XDR value or a callable returning one. With
    `settable_tag` the value is static and a SET of that tag replaces it;
    without, attribute 2 is read-only whatever the access table says."""

    class_id = 1
    version = 0
    ATTRIBUTES = ((1, "logical_name", None), (2, "value", None))

    def __init__(self, logical_name, value, settable_tag=None):
        super().__init__(logical_name)
        self._value = value
        self._settable_tag = settable_tag

    def get_value(self, ctx):
        v = self._value
        return v() if callable(v) else v

    def set_value(self, value, ctx):
        if self._settable_tag is None or callable(self._value):
            raise AccessError(READ_WRITE_DENIED, "read-only value")
        check_type(value, self._settable_tag)
        self._value = value


class StatusWord(Data):
    """Data 0-0:96.10.1.255, the status captured with each load-profile row (IDIS
    status bits). A bit stays set until a row has carried it (captured())."""

    CLOCK_ADJUSTED = const(0x20)
    POWER_DOWN = const(0x80)

    def __init__(self, logical_name):
        super().__init__(logical_name, None)
        self.flags = 0

    def get_value(self, ctx):
        return (_UNSIGNED, self.flags)

    def raise_flag(self, bit):
        self.flags |= bit

    def captured(self):
        self.flags = 0


class Register(CosemObject):
    """IC 3. `read()` returns the integer value, sent with data tag `tag` and
    scaled by 10**scaler in `unit`. `reset` is None or a callable: billing
    registers get None, so no access right can ever reset them (MID)."""

    class_id = 3
    version = 0
    ATTRIBUTES = ((1, "logical_name", None), (2, "value", None), (3, "scaler_unit", None))
    METHODS = ((1, "reset", _INTEGER),)  # reset(data): data ::= integer(0)

    def __init__(self, logical_name, tag, read, scaler=0, unit=_UNIT_NONE, reset=None):
        super().__init__(logical_name)
        self.tag = tag
        self._read = read
        self.scaler = scaler
        self.unit = unit
        self._reset = reset

    def get_value(self, ctx):
        return (self.tag, self._read())

    def get_scaler_unit(self, ctx):
        return (_STRUCTURE, [(_INTEGER, self.scaler), (_ENUM, self.unit)])

    def do_reset(self, value, ctx):
        if self._reset is None:
            raise AccessError(READ_WRITE_DENIED, "register cannot be reset")
        self._reset()
        return None

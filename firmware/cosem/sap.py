# SAP assignment (IC 17, version 0, Blue Book 4.4.6): which logical device
# answers at which server SAP. One logical device (the management logical
# device, SAP 1) for now; the list is fixed by the configuration.

from micropython import const
from cosem.base import CosemObject

# A-XDR tags as local constants: tables of them stay in flash (dlms/axdr.py).
_ARRAY = const(1)
_LONG_UNSIGNED = const(18)
_OCTET_STRING = const(9)
_STRUCTURE = const(2)


class SapAssignment(CosemObject):
    class_id = 17
    version = 0
    ATTRIBUTES = ((1, "logical_name", None), (2, "SAP_assignment_list", None))
    # connect_logical_device(data): declared, not implemented (fixed list).
    METHODS = ((1, "connect_logical_device", _STRUCTURE),)

    def __init__(self, logical_name, assignments):
        """assignments: ((server SAP, logical device name bytes), ...)"""
        super().__init__(logical_name)
        self.assignments = tuple(assignments)

    def get_SAP_assignment_list(self, ctx):
        return (_ARRAY, [
            (_STRUCTURE, [(_LONG_UNSIGNED, sap), (_OCTET_STRING, name)])
            for sap, name in self.assignments
        ])

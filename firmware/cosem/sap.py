# SAP assignment (IC 17, version 0, Blue Book 4.4.6): which logical device
# answers at which server SAP. One logical device (the management logical
# device, SAP 1) for now; the list is fixed by the configuration.
from dlms.axdr import ARRAY, LONG_UNSIGNED, OCTET_STRING, STRUCTURE
from cosem.base import CosemObject


class SapAssignment(CosemObject):
    class_id = 17
    version = 0
    ATTRIBUTES = ((1, "logical_name", None), (2, "SAP_assignment_list", None))
    # connect_logical_device(data): declared, not implemented (fixed list).
    METHODS = ((1, "connect_logical_device", STRUCTURE),)

    def __init__(self, logical_name, assignments):
        """assignments: ((server SAP, logical device name bytes), ...)"""
        super().__init__(logical_name)
        self.assignments = tuple(assignments)

    def get_SAP_assignment_list(self, ctx):
        return (ARRAY, [
            (STRUCTURE, [(LONG_UNSIGNED, sap), (OCTET_STRING, name)])
            for sap, name in self.assignments
        ])

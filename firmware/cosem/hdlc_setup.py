# IEC HDLC setup (IC 23, version 1, Blue Book 4.7.3): the link parameters the
# HDLC layer starts a connection with, shown to clients. The values come from
# the board configuration the link is built from (config["hdlc"]), so the
# object and the link cannot disagree; they are read-only until the link can
# take new values between connections.

from micropython import const
from cosem.base import CosemObject

# A-XDR tags as local constants: tables of them stay in flash (dlms/axdr.py).
_ENUM = const(22)
_LONG_UNSIGNED = const(18)
_UNSIGNED = const(17)

# comm_speed enum (Blue Book 4.7.3): baud rate -> enum value.
BAUD_ENUM = {300: 0, 600: 1, 1200: 2, 2400: 3, 4800: 4, 9600: 5, 19200: 6, 38400: 7, 57600: 8, 115200: 9}

# Defaults of IEC 62056-46 / Blue Book 4.7.3 where the config is silent.
_DEFAULTS = {
    "baud": 9600,
    "window": 1,
    "max_info": 128,
    "inter_octet_ms": 25,
    "inactivity_s": 120,
    "physical": 16,
}


class HdlcSetup(CosemObject):
    class_id = 23
    version = 1
    ATTRIBUTES = (
        (1, "logical_name", None),
        (2, "comm_speed", None),
        (3, "window_size_transmit", None),
        (4, "window_size_receive", None),
        (5, "max_info_field_length_transmit", None),
        (6, "max_info_field_length_receive", None),
        (7, "inter_octet_time_out", None),
        (8, "inactivity_time_out", None),
        (9, "device_address", None),
    )

    def __init__(self, logical_name, hdlc_config):
        """hdlc_config: the board's config["hdlc"] dict (keys as in _DEFAULTS;
        window and max_info serve both directions unless *_tx/*_rx are given)."""
        super().__init__(logical_name)
        c = dict(_DEFAULTS)
        c.update(hdlc_config or {})
        if c["baud"] not in BAUD_ENUM:
            raise ValueError("unsupported HDLC baud rate")
        self.config = c

    def _c(self, key, fallback):
        return self.config.get(key, self.config[fallback])

    def get_comm_speed(self, ctx):
        return (_ENUM, BAUD_ENUM[self.config["baud"]])

    def get_window_size_transmit(self, ctx):
        return (_UNSIGNED, self._c("window_tx", "window"))

    def get_window_size_receive(self, ctx):
        return (_UNSIGNED, self._c("window_rx", "window"))

    def get_max_info_field_length_transmit(self, ctx):
        return (_LONG_UNSIGNED, self._c("max_info_tx", "max_info"))

    def get_max_info_field_length_receive(self, ctx):
        return (_LONG_UNSIGNED, self._c("max_info_rx", "max_info"))

    def get_inter_octet_time_out(self, ctx):
        return (_LONG_UNSIGNED, self.config["inter_octet_ms"])

    def get_inactivity_time_out(self, ctx):
        return (_LONG_UNSIGNED, self.config["inactivity_s"])

    def get_device_address(self, ctx):
        return (_LONG_UNSIGNED, self.config["physical"])

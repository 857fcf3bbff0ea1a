"""The simulated meter board (unix port): what differs from a real board.

Everything a real board reads from its own pins, flash and RTC is simulated here; the
firmware above is identical."""

BOARD = {
    "name": "UNIX simulator",
    # Logical device name: 16 octets, the manufacturer's FLAG id first (DLMS UA list of
    # manufacturer ids); "MPY" is this project's placeholder until one is registered.
    "ldn": b"MPY0000000000001",
    "flag_id": b"MPY",
    "serial": 1,
    "hdlc": {"physical": 16, "logical": 1, "max_info": 128, "window": 1, "inactivity_s": 120},
    "max_pdu": 1024,
    # "auto": the whole meter when the heap holds it (-X heapsize of 72k and up), else a
    # core meter (main.core_meter). A board for the field says "full" or "core".
    "features": "auto",
    "sim": True,
    # Test credentials: published example values, never for a device in the field.
    "lls_password": b"12345678",
}

"""An ESP32 meter prototype board (stock MicroPython firmware + this project's Python
code, copied by tools/deploy.py). NOT TESTED ON HARDWARE here: no board is attached to
the machines this project is developed and tested on.

The analog front end: voltage divider on GPIO 34, current transformer burden on GPIO 35,
both biased to mid-scale; the LSB values below are the front end's design values and are
replaced by a calibration."""

BOARD = {
    "name": "ESP32 prototype",
    "flag_id": b"MPY",
    "serial": 2,
    "ldn": b"MPY0000000000002",
    "hdlc": {"physical": 16, "logical": 1, "max_info": 128, "window": 1, "inactivity_s": 120},
    "max_pdu": 1024,
    "sim": False,  # ciphered associations refused until tools/provision_keys.py has run
    "adc": {"v_pin": 34, "i_pin": 35, "sample_rate": 4000, "block": 200, "timer": 0,
            "v_uv_per_lsb": 250000, "i_ua_per_lsb": 62500},
}

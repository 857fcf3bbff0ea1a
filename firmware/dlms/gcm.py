# dlms.gcm: the AES-GCM the security layer uses. The C module _dlmsgcm (mbedTLS) when
# the firmware was built with it, else the pure-Python twin dlms._gcm; both have the same
# API (docs/INTERFACES.md) and are tested against each other (tests/mpy/test_gcm.py).
# On the unix port, DLMS_GCM=python in the environment forces the twin.
try:
    from os import getenv  # unix port only
except ImportError:
    getenv = None

if getenv is not None and getenv("DLMS_GCM") == "python":
    from dlms._gcm import AESGCM

    IMPLEMENTATION = "python"
else:
    try:
        from _dlmsgcm import AESGCM

        IMPLEMENTATION = "c"
    except ImportError:
        from dlms._gcm import AESGCM

        IMPLEMENTATION = "python"

del getenv

"""Where the meter's heap goes: run inside the unix MicroPython build (frozen firmware),
from the repository root:

    build/micropython -X heapsize=1m tools/heap_report.py [--features core]

Prints the live heap (gc.mem_alloc after gc.collect) each firmware module costs when
imported in main.py's order, then what each start-up step of main.start keeps. A
diagnostic for RAM work on the 64 KB heap target, not a test: it asserts nothing.
"""
import gc
import sys

sys.path.remove("") if "" in sys.path else None  # the frozen firmware, not the sources
gc.collect()
_base = gc.mem_alloc()
_last = [_base]


def step(name):
    gc.collect()
    now = gc.mem_alloc()
    print("%-28s %6d %7d" % (name, now - _last[0], now - _base))
    _last[0] = now


MODULES = ("board dlms.errors dlms.crc dlms.hdlc dlms.wrapper dlms.axdr dlms.ber dlms.apdu dlms.acse "
           "dlms.gcm dlms.counters dlms.keys dlms.security dlms.server cosem.base cosem.data cosem.clock "
           "cosem.association cosem.profile cosem.demand cosem.security_setup cosem.hdlc_setup cosem.sap "
           "cosem.table adapters.net adapters.store adapters.rtc metering.kernel metering.energy "
           "metering.task adapters.adc_sim main").split()

print("%-28s %6s %7s" % ("import / step", "bytes", "total"))
for m in MODULES:
    __import__(m)
    step(m)

import main  # noqa: E402

# The meter as main.start builds it, on its own state and free ports, measured after
# every stage (its start-up lines print in between).
main.start(main.parse_args(["--state", "/tmp/heap_report_state", "--hdlc-port", "0", "--wrapper-port", "0"]
                           + sys.argv[1:]), step)

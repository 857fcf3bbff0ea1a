"""Where the meter's heap goes: run inside the unix MicroPython build (frozen firmware),
from the repository root:

    build/micropython -X heapsize=1m tools/heap_report.py

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
from main import (BOARD, MAX_APDU, SimulatedClock, net, client_policies, make_hdlc_factory, WrapperLink,  # noqa: E402
                  Store, load_security, make_source, MeteringTask, build_objects, DlmsServer,
                  Housekeeping, parse_args, link_buffer_pairs, response_buffer, wrapper_link_stats)

config = parse_args(["--state", "/tmp/heap_report_state", "--hdlc-port", "0", "--wrapper-port", "0"])
clock = SimulatedClock(1)
elapsed = SimulatedClock(1, start=0)
tx = response_buffer(BOARD)
step("response buffer")
loop = net.Loop(None, link_buffer_pairs())
step("link buffers")
clients = [p[0] for p in client_policies()]
loop.listen(config["host"], 0, make_hdlc_factory(dict(BOARD["hdlc"]), config["physical"], clients))
wrapper_stats = wrapper_link_stats()
loop.listen(config["host"], 0, lambda buffers: WrapperLink(1, MAX_APDU, buffers, wrapper_stats))
step("listeners")
store = Store(config["state"])
step("store")
security = load_security(store, BOARD)
step("security")
source = make_source(config)
step("ADC source")
task = MeteringTask(source, source.calibration(), store, lambda: elapsed.now_ms() / 1000, budget_pairs=2000000)
step("metering task")
objects = build_objects(BOARD, clock, sources=task, store=store, security=security)
step("object table")
server = loop.server = DlmsServer(objects, BOARD, clock=clock, security=security, events=objects.security_log, tx=tx)
step("server")
housekeeping = Housekeeping(task, objects, clock, store, 0)
housekeeping(0)
step("housekeeping")

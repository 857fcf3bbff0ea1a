"""Composition root: board config -> object model -> server -> the transport's poll loop.

Imports only define; everything is built in main(). On the unix port:
    micropython -m main --hdlc-port 4061 --wrapper-port 4059 --state build/state
"""
import gc
import sys

from board import BOARD
from dlms.hdlc import HDLCLink, link_stats as hdlc_link_stats
from dlms.wrapper import WrapperLink, HEADER_LEN as WRAPPER_HEADER_LEN, link_stats as wrapper_link_stats
from dlms.events import link_buffers
from dlms.server import DlmsServer, response_buffer
from cosem.table import build_objects, client_policies
from dlms.keys import describe_keys
from dlms.security import load_security
from adapters import net
from adapters.store import Store
from adapters.rtc import BoardRTC, Elapsed, SimulatedClock
from cosem.data import StatusWord
from cosem.profile import EV_CLOCK_NEW, EV_CLOCK_OLD, EV_POWER_DOWN, EV_POWER_UP
from metering.task import MeteringTask

def options():
    """Command-line options of the simulator: name -> (config key, converter), and the
    defaults. Built when parsing, not kept: module-level tables would hold RAM for good."""
    return {
        "--host": ("host", str),
        "--hdlc-port": ("hdlc_port", int),
        "--wrapper-port": ("wrapper_port", int),
        "--state": ("state", str),
        "--speed": ("speed", int),
        "--physical-address": ("physical", int),
        # The board's "features" (see core_meter): full, core or auto.
        "--features": ("features", str),
        # The simulated load (adapters/adc_sim.py): RMS values, current lag in degrees
        # (negative leads), mains frequency, harmonics "v3=0.05,i3=0.3,i5=0.1" (fractions
        # of the fundamental), noise (LSB RMS), DC offset (LSB), or a recorded-sample file.
        "--sim-voltage": ("voltage", float),
        "--sim-current": ("current", float),
        "--sim-phase": ("phase", float),
        "--sim-frequency": ("frequency", float),
        "--sim-harmonics": ("harmonics", str),
        "--sim-noise": ("noise", float),
        "--sim-offset": ("offset", float),
        "--sim-replay": ("replay", str),
        # Load for this many simulated seconds from start, then stop sampling (energy
        # frozen): lets a test compare the energy with an exactly known integral.
        "--sim-duration": ("duration", int),
    }, {
        "host": "127.0.0.1", "hdlc_port": 4061, "wrapper_port": 4059, "state": "build/state", "speed": 1,
        "physical": 16, "voltage": 230.0, "current": 5.0, "phase": 0.0, "frequency": 50.0, "harmonics": "",
        "noise": 1.0, "offset": 0.0, "replay": "", "duration": 0, "features": "",
    }


SIM_KEYS = ("voltage", "current", "phase", "frequency", "noise", "offset")
ALIVE = "alive"  # Store record: the last simulated second the meter knew it was running
ALIVE_PERIOD_S = 60


def parse_args(argv):
    table, config = options()
    k = 0
    while k < len(argv):
        if argv[k] not in table or k + 1 >= len(argv):
            raise SystemExit("unknown option or missing value: " + argv[k] + "\noptions: " + " ".join(table))
        key, convert = table[argv[k]]
        config[key] = convert(argv[k + 1])
        k += 2
    return config


# Connections served at once, over all ports: each holds a pair of link buffers.
CONNECTIONS = 2
# The heap the whole meter needs (make bench: two sessions at once from -X heapsize=72k,
# which the GC reports as a little over 70 KiB). Below it a board whose features are
# "auto" (the simulator) runs as a core meter, with a PDU of CORE_MAX_PDU octets.
FULL_HEAP = 70 * 1024
CORE_MAX_PDU = 256


def core_meter(features):
    """features (--features, else the board's): "full" (the default), "core", or "auto":
    core when the heap is below FULL_HEAP. A core meter is the readable meter with its
    security, security log and metering, without the load and daily profiles and the
    standard, power-failure and audit logs (cosem/table.py NEEDS_STORE), and with a PDU
    of CORE_MAX_PDU octets."""
    if features not in ("full", "core", "auto"):
        raise SystemExit("features: full, core or auto, not " + features)
    if features == "auto":
        gc.collect()
        return gc.mem_free() + gc.mem_alloc() < FULL_HEAP
    return features == "core"


def max_apdu():
    """The largest APDU a link carries: the PDU with room for a ciphering header and tag."""
    return BOARD["max_pdu"] + 64


def link_buffer_pairs():
    """Sized for either link: HDLC reassembles LLC + APDU, the wrapper adds its header."""
    return [link_buffers(max_apdu() + WRAPPER_HEADER_LEN) for _ in range(CONNECTIONS)]


def make_hdlc_factory(hdlc, physical, clients):
    stats = hdlc_link_stats()  # the port's counters, over all its connections

    def make(buffers):
        return HDLCLink(
            server_logical=hdlc["logical"],
            server_physical=physical,
            clients=clients,
            max_info_tx=hdlc["max_info"],
            max_info_rx=hdlc["max_info"],
            window=hdlc["window"],
            inactivity_ms=hdlc["inactivity_s"] * 1000,
            max_apdu=max_apdu(),
            buffers=buffers,
            stats=stats,
        )

    return make


def announce(config, server, core=False):
    print("DLMS/COSEM meter on", BOARD["name"])
    print("  logical device name:", BOARD["ldn"].decode())
    print("  HDLC over TCP:  %s:%d  (server logical 1, physical %d)" % (config["host"], config["hdlc_port"], config["physical"]))
    print("  wrapper (IEC 62056-47): %s:%d  (server wPort 1)" % (config["host"], config["wrapper_port"]))
    print("  state directory:", config["state"])
    for line in server.describe_clients():
        print("  client", line)
    if core:
        print("  core meter (heap below %d KiB, or the board's choice): no load or daily profile, no"
              " standard, power-failure or audit log; PDU %d octets" % (FULL_HEAP // 1024, BOARD["max_pdu"]))
    gc.collect()
    print("  heap: %d bytes free after start-up" % gc.mem_free())


def make_source(config):
    if not BOARD.get("sim"):
        from adapters.adc_board import BoardADC

        return BoardADC(BOARD["adc"])
    if config["replay"]:
        from adapters.adc_sim import ReplayADC

        return ReplayADC(config["replay"], loop=True)
    from adapters.adc_sim import from_params

    params = {k: config[k] for k in SIM_KEYS}
    params["noise_shape"] = "hp"  # ADC noise dithers the 12-bit quantiser, as on a board
    if config["harmonics"]:
        params["harmonics"] = {k: float(v) for k, v in (h.split("=") for h in config["harmonics"].split(","))}
    return from_params(params)


class Housekeeping:
    """What the poll loop runs between requests: sampling, captures, the demand
    period, and the power-failure bookkeeping."""

    def __init__(self, task, objects, clock, store, duration=0):
        self.task = task
        self.duration = duration
        self.duration_left = True
        self.t = objects
        self.clock = clock
        self.store = store
        self.next_alive = 0
        self.power_up()
        clock_obj = objects.find(b"\x00\x00\x01\x00\x00\xff")
        clock_obj.on_set = self.clock_set

    def power_up(self):
        # The last "alive" second is when the power went; a kill -9 gives no warning.
        last = self.store.get(ALIVE)
        now = self.clock.now()
        log = self.t.power_log  # None on a core meter
        if last is not None:
            if log is not None:
                log.record(EV_POWER_DOWN, int(last))
            self.t.status.raise_flag(StatusWord.POWER_DOWN)
        if log is not None:
            log.record(EV_POWER_UP, now)
        self.store.put(ALIVE, b"%d" % now)  # a cut before the first period is logged too

    def clock_set(self, old, new):
        if self.t.event_log is not None:  # None on a core meter
            self.t.event_log.record(EV_CLOCK_OLD, old)
            self.t.event_log.record(EV_CLOCK_NEW, new)
        self.t.status.raise_flag(StatusWord.CLOCK_ADJUSTED)
        self.next_alive = 0

    def __call__(self, now_ms):
        elapsed = self.task.clock()
        # The load lasts `duration` s from the task's own start (t0: the clock ran while
        # the ADC tables and objects were built), so the energy is exactly P * duration.
        if self.duration and elapsed >= self.task.t0 + self.duration:
            if self.duration_left:  # the load has ended: save the exact totals once
                self.task.advance(self.task.t0 + self.duration)
                self.task.flush()
                self.duration_left = False
        else:
            self.task.advance(elapsed)
        utc = self.clock.now()
        if self.t.profiles and self.t.profiles[0].tick(utc):  # none on a core meter
            self.t.status.captured()
        for p in self.t.profiles[1:]:
            p.tick(utc)
        self.t.demand.tick(utc)
        if utc >= self.next_alive:
            self.store.put(ALIVE, b"%d" % utc)
            self.next_alive = utc + ALIVE_PERIOD_S


def legal_signature():
    try:
        from legal import SIGNATURE  # generated and frozen by the build

        return SIGNATURE
    except ImportError:
        return b""  # running from source: no signed build


def _no_step(name):
    pass


def start(config, step=_no_step):
    """Build the meter: -> (poll loop, housekeeping) for loop.run(housekeeping).
    step(name) is called after each stage (tools/heap_report.py measures the heap)."""
    # Start-up allocates long-lived objects among short-lived ones: collecting every
    # 2 KB lets each new object fill the hole a dead one left (allocation takes the
    # lowest free block), instead of leaving holes under long-lived objects.
    gc.threshold(2048)
    core = core_meter(config["features"] or BOARD.get("features", "full"))
    if core:
        BOARD["max_pdu"] = min(BOARD["max_pdu"], CORE_MAX_PDU)
    BOARD["firmware_signature"] = legal_signature()
    BOARD["hdlc"]["physical"] = config["physical"]  # IEC HDLC setup shows what the link uses
    if BOARD.get("sim"):
        clock = SimulatedClock(config["speed"])
        # The metering task runs on simulated time that a clock SET cannot move.
        elapsed = SimulatedClock(config["speed"], start=0)
    else:
        clock, elapsed = BoardRTC(), Elapsed()
    # The large buffers first, while the heap is one free run: the server's response
    # buffer and the links' (every block the meter needs at run time is one of these,
    # planned here; the GC does not move objects, and once the many small objects are
    # built around them a fragmented heap might no longer have 1 KB in one piece).
    tx = response_buffer(BOARD)
    step("response buffer")
    loop = net.Loop(None, link_buffer_pairs())
    step("link buffers")
    clients = [policy[0] for policy in client_policies()]
    loop.listen(config["host"], config["hdlc_port"], make_hdlc_factory(dict(BOARD["hdlc"]), config["physical"], clients))
    wrapper_stats = wrapper_link_stats()
    loop.listen(config["host"], config["wrapper_port"], lambda buffers: WrapperLink(1, max_apdu(), buffers, wrapper_stats))
    step("listeners")
    store = Store(config["state"])
    step("store")
    security = load_security(store, BOARD)
    step("security")
    source = make_source(config)
    step("ADC source")
    task = MeteringTask(source, source.calibration(), store, lambda: elapsed.now_ms() / 1000,
                        budget_pairs=2000000)
    step("metering task")
    objects = build_objects(BOARD, clock, sources=task, store=store, security=security, core=core)
    step("object table")
    server = loop.server = DlmsServer(objects, BOARD, clock=clock, security=security, events=objects.security_log,
                                      tx=tx)
    step("server")
    print(describe_keys(security.keys if security else None))
    housekeeping = Housekeeping(task, objects, clock, store, config["duration"])
    step("housekeeping")
    announce(config, server, core)
    print("  simulated load: %s" % ("replay " + config["replay"] if config["replay"] else
          "%.1f V, %.2f A, %.1f deg, %.1f Hz, speed %dx" % tuple(config[k] for k in SIM_KEYS[:4] + ("speed",))))
    gc.threshold(-1)  # serving: collect when the heap is full
    return loop, housekeeping


def main(argv=None):
    config = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        loop, housekeeping = start(config)
    except MemoryError:
        # Start-up plans the RAM the meter needs: a heap that cannot hold it is a
        # configuration error, and says so rather than with a traceback.
        gc.collect()
        print("meter: the heap (%d bytes) is too small for this firmware to start; README, Memory"
              " gives what it needs" % (gc.mem_free() + gc.mem_alloc()), file=sys.stderr)
        sys.exit(1)
    loop.run(housekeeping)


if __name__ == "__main__":
    main()

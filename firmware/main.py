"""Composition root: board config -> object model -> server -> the transport's poll loop.

Imports only define; everything is built in main(). On the unix port:
    micropython -m main --hdlc-port 4061 --wrapper-port 4059 --state build/state
"""
import gc
import sys

from board import BOARD
from dlms.hdlc import HDLCLink
from dlms.wrapper import WrapperLink
from dlms.server import DlmsServer
from cosem.table import build_objects
from dlms.keys import describe_keys
from dlms.security import load_security
from adapters import net
from adapters.store import Store
from adapters.rtc import SimulatedClock

# Command-line options of the simulator: name -> (config key, converter).
OPTIONS = {
    "--host": ("host", str),
    "--hdlc-port": ("hdlc_port", int),
    "--wrapper-port": ("wrapper_port", int),
    "--state": ("state", str),
    "--speed": ("speed", int),
    "--physical-address": ("physical", int),
}
DEFAULTS = {"host": "127.0.0.1", "hdlc_port": 4061, "wrapper_port": 4059, "state": "build/state", "speed": 1, "physical": 16}


def parse_args(argv):
    config = dict(DEFAULTS)
    k = 0
    while k < len(argv):
        if argv[k] not in OPTIONS or k + 1 >= len(argv):
            raise SystemExit("unknown option or missing value: " + argv[k] + "\noptions: " + " ".join(OPTIONS))
        key, convert = OPTIONS[argv[k]]
        config[key] = convert(argv[k + 1])
        k += 2
    return config


def make_hdlc_factory(hdlc, physical, clients):
    def make():
        return HDLCLink(
            server_logical=hdlc["logical"],
            server_physical=physical,
            clients=clients,
            max_info_tx=hdlc["max_info"],
            max_info_rx=hdlc["max_info"],
            window=hdlc["window"],
            inactivity_ms=hdlc["inactivity_s"] * 1000,
            max_apdu=BOARD["max_pdu"] + 64,  # room for a ciphering header and tag
        )

    return make


def announce(config, server):
    print("DLMS/COSEM meter on", BOARD["name"])
    print("  logical device name:", BOARD["ldn"].decode())
    print("  HDLC over TCP:  %s:%d  (server logical 1, physical %d)" % (config["host"], config["hdlc_port"], config["physical"]))
    print("  wrapper (IEC 62056-47): %s:%d  (server wPort 1)" % (config["host"], config["wrapper_port"]))
    print("  state directory:", config["state"])
    for line in server.describe_clients():
        print("  client", line)
    gc.collect()
    print("  heap: %d bytes free after start-up" % gc.mem_free())


def serve(config):
    clock = SimulatedClock(config["speed"])
    store = Store(config["state"])
    security = load_security(store, BOARD)
    objects = build_objects(BOARD, clock, store=store, security=security)
    server = DlmsServer(objects, BOARD, clock=clock, security=security, events=objects.security_log)
    print(describe_keys(security.keys if security else None))
    loop = net.Loop(server)
    hdlc = dict(BOARD["hdlc"])
    loop.listen(config["host"], config["hdlc_port"], make_hdlc_factory(hdlc, config["physical"], objects.clients()))
    loop.listen(config["host"], config["wrapper_port"], lambda: WrapperLink(1, BOARD["max_pdu"] + 64))
    announce(config, server)
    loop.run(lambda now_ms: None)


def main(argv=None):
    config = parse_args(sys.argv[1:] if argv is None else argv)
    serve(config)


if __name__ == "__main__":
    main()

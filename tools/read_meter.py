#!/usr/bin/env python3
"""Read a running meter with a real client library: gurux-dlms or dlms-cosem.

    build/venv/bin/python tools/read_meter.py                      # gurux, HDLC, port 4061
    build/venv/bin/python tools/read_meter.py --lib dlms-cosem --interface wrapper --port 4059
    build/venv/bin/python tools/read_meter.py --client 32 --password 12345678 1-0:0.2.0.255:1:2
    build/venv/bin/python tools/read_meter.py --list               # the object list
    build/venv/bin/python tools/read_meter.py --serial /dev/ttyUSB0   # optical probe / pty

Each ATTRIBUTE is OBIS:class:attribute (e.g. 1-0:1.8.0.255:3:2). Without any, the
logical device name, the clock and the energy registers (value and scaler_unit) are
read. Exit status 0 when every read succeeded.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "host_tests"))

from clients import CosemClient, GuruxClient, SerialLink  # noqa: E402

DEFAULT_READS = ("0-0:42.0.0.255:1:2", "0-0:1.0.0.255:8:2", "1-0:1.8.0.255:3:2", "1-0:1.8.0.255:3:3",
                 "1-0:2.8.0.255:3:2", "1-0:2.8.0.255:3:3")


def parse_attribute(text):
    obis, class_id, attr = text.rsplit(":", 2)
    return obis, int(class_id), int(attr)


def show(value):
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        return "%s (%s)" % (raw.hex(), raw.decode("ascii")) if raw.isascii() and raw.decode().isprintable() else raw.hex()
    return str(value)


def open_client(args):
    password = args.password.encode() if args.password else None
    if args.lib == "gurux":
        if args.serial:
            return GuruxClient(SerialLink(args.serial, args.baud), "hdlc", client=args.client, password=password)
        return GuruxClient.tcp(args.port, args.interface, host=args.host, client=args.client, password=password)
    return CosemClient(args.port, args.interface, client=args.client, password=password, host=args.host,
                       device=args.serial)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("attributes", nargs="*", metavar="ATTRIBUTE")
    ap.add_argument("--lib", choices=("gurux", "dlms-cosem"), default="gurux")
    ap.add_argument("--interface", choices=("hdlc", "wrapper"), default="hdlc")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=None, help="default 4061 (hdlc) or 4059 (wrapper)")
    ap.add_argument("--serial", help="serial device instead of TCP (HDLC)")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--client", type=int, default=16, help="client SAP: 16 public, 32 LLS reader")
    ap.add_argument("--password", help="LLS password")
    ap.add_argument("--list", action="store_true", help="print the object list")
    args = ap.parse_args()
    if args.port is None:
        args.port = 4061 if args.interface == "hdlc" else 4059
    reads = [parse_attribute(a) for a in (args.attributes or DEFAULT_READS)]
    failed = 0
    with open_client(args) as c:
        if args.list:
            if args.lib == "gurux":
                for obj in c.get_object_list():
                    print("%-18s class %-3d version %d" % (obj.logicalName, obj.objectType, obj.version))
            else:
                for entry in c.get("0-0:40.0.0.255", 15, 2):
                    print("%-18s class %-3d version %d" % (".".join(str(b) for b in entry[2]), entry[0], entry[1]))
        for obis, class_id, attr in reads:
            try:
                if args.lib == "gurux":
                    value, _ = c.read(obis, class_id, attr)
                else:
                    value = c.get(obis, class_id, attr)
                print("%s:%d:%d = %s" % (obis, class_id, attr, show(value)))
            except Exception as e:  # report and go on: one refusal says nothing of the rest
                failed += 1
                print("%s:%d:%d refused: %s" % (obis, class_id, attr, e))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

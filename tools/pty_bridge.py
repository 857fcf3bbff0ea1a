#!/usr/bin/env python3
"""Serial port for the simulated meter: relays a pseudo-terminal to the meter's
HDLC-over-TCP port, so serial clients (an optical-probe tool, Gurux Director,
gurux-serial, pyserial, dlms-cosem's SerialIO) can talk to it as to a real optical port.

    python3 tools/pty_bridge.py --link /tmp/meter-tty --port 4061 [--host 127.0.0.1]

The bridge opens a pty pair, puts the slave in raw mode, symlinks it to --link and
prints one line "pty_bridge: <link> -> <slave> <-> <host>:<port>" when ready. Bytes from
the pty go to the meter's HDLC TCP port and back. The TCP connection is opened on the
first bytes from the pty and re-opened after the meter closes it (e.g. after its HDLC
inactivity timeout), just as a real optical port stays usable. The bridge keeps its own
slave descriptor open, so a client may close and re-open the device.

SIGTERM or SIGINT: close everything, remove the symlink, exit with status 0.
CPython only (host tool); it carries no protocol knowledge.
"""
import argparse
import os
import select
import signal
import socket
import sys
import tty


class Stop(Exception):
    pass


def _stop(signum, frame):
    raise Stop()


def relay(master, host, port):
    sock = None
    try:
        while True:
            fds = [master] + ([sock] if sock else [])
            ready, _, _ = select.select(fds, [], [])
            if master in ready:
                data = os.read(master, 4096)
                if sock is None:
                    try:
                        sock = socket.create_connection((host, port), timeout=10)
                    except OSError as e:  # meter not there: the bytes are lost, as on a dead line
                        print("pty_bridge: cannot reach %s:%d: %s" % (host, port, e), file=sys.stderr, flush=True)
                        continue
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    sock.sendall(data)
                except OSError:
                    sock.close()
                    sock = None
            if sock is not None and sock in ready:
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:  # meter closed the link: reconnect on the next bytes
                    sock.close()
                    sock = None
                    continue
                os.write(master, data)
    finally:
        if sock is not None:
            sock.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--link", required=True, help="path of the symlink to the pty slave")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4061, help="the meter's HDLC-over-TCP port")
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    master, slave = os.openpty()
    tty.setraw(slave)
    slave_name = os.ttyname(slave)
    if os.path.lexists(args.link):
        os.unlink(args.link)
    os.symlink(slave_name, args.link)
    try:
        print("pty_bridge: %s -> %s <-> %s:%d" % (args.link, slave_name, args.host, args.port), flush=True)
        relay(master, args.host, args.port)
    except Stop:
        pass
    finally:
        if os.path.islink(args.link):
            os.unlink(args.link)
        os.close(master)
        os.close(slave)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What security suite 0 costs the meter: meter CPU per ciphered GET against per plain
GET, and per complete HLS-5 association. Run with the venv's Python:

    build/venv/bin/python tools/bench_security.py [--gets 6000] [--associations 100]

Prints lines "name: value unit note". Every figure is the meter process's own CPU
time (its CPU-time clock, host_tests/meter.Meter.cpu_seconds) over a batch,
divided by the batch size, with the meter's idle load (its metering task, measured
first) subtracted for the batch's wall time, so the client's speed barely matters.

GETs: 1-0:1.8.0.255 attribute 2 over HDLC-over-TCP, the management client (SAP 1,
HLS-GMAC, authenticated and encrypted general-glo-ciphering) against the public
client (SAP 16, plain), both associated by gurux-dlms first; the GET loop itself
frames the APDUs directly (ciphered with `cryptography`), because gurux's
pure-Python AES would make a few thousand ciphered GETs take a minute. A batch's
requests are ciphered before it and its replies deciphered and checked after it, so
both kinds pace the meter alike. Plain and ciphered batches alternate, both
connections open, in one run; medians over the rounds. Reference for the ratio:
GuruxDLMS.c 1.8x; target <= 1.3x. Then the same with the meter forced onto the
pure-Python GCM twin (DLMS_GCM=python).

Association: SNRM/UA, AARQ/AARE, HLS pass 3/4, RLRQ/RLRE, DISC/UA by gurux over one
TCP connection, averaged. Nothing here asserts; the machine may be shared: run twice
before believing a few percent.
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from statistics import median

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tests"))

from clients import GuruxClient, TcpLink  # noqa: E402
from meter import Meter  # noqa: E402
from secure_clients import (GURUX_TITLE, METER_TITLE, SecureGuruxClient, _hdlc_frames,  # noqa: E402
                            decipher, encipher, next_counter)

GET_ENERGY = bytes.fromhex("c001c1" "0003" "0100010800ff" "02" "00")  # get-request-normal
LLC_REQUEST = b"\xe6\xe6\x00"


def report(name, value, unit, note=""):
    print("%s: %s %s %s" % (name, value, unit, note))


# ---------------------------------------------------------------------------------
# A minimal HDLC client for the measurement loop, on a link gurux associated
# ---------------------------------------------------------------------------------
def _crc16(data):
    """HDLC FCS/HCS (CRC-16/X.25, IEC 62056-46 annex)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    crc ^= 0xFFFF
    return bytes((crc & 0xFF, crc >> 8))


class RawHdlc:
    """Sends one-frame requests and reads one-frame responses on an HDLC link that
    gurux has opened and associated: addresses and sequence numbers taken from the
    frames gurux exchanged."""

    def __init__(self, link):
        self.sock = link.sock
        sent = [f for f in _hdlc_frames(b"".join(link.sent)) if not f[1] & 1]
        got = [f for f in _hdlc_frames(b"".join(link.received)) if not f[1] & 1]
        self.ns = ((sent[-1][1] >> 1) + 1) & 7
        self.nr = ((got[-1][1] >> 1) + 1) & 7
        first = b"".join(link.sent)
        start = first.index(b"\x7e")
        # destination (server, 2 octets here) and source (client, 1 octet) as gurux sent them
        self.addresses = first[start + 3:start + 6]
        self.buf = bytearray()

    def request(self, apdu):
        control = (self.nr << 5) | 0x10 | (self.ns << 1)
        info = LLC_REQUEST + apdu
        length = 2 + len(self.addresses) + 1 + 2 + len(info) + 2
        head = bytes((0xA0 | (length >> 8), length & 0xFF)) + self.addresses + bytes((control,))
        body = head + _crc16(head) + info
        self.sock.sendall(b"\x7e" + body + _crc16(body) + b"\x7e")
        self.ns = (self.ns + 1) & 7
        frame = self._frame()
        control = frame[2 + len(self.addresses)]
        if control & 1 or frame[0] & 0x08:
            raise RuntimeError("expected one unsegmented I-frame, got %s" % frame.hex())
        self.nr = ((control >> 1) + 1) & 7
        return frame[2 + len(self.addresses) + 3 + 3:-2]  # after control, HCS, LLC; before FCS

    def _frame(self):
        """The next frame (format .. FCS), delimited by its length field."""
        buf = self.buf
        while True:
            while buf and (buf[0] != 0x7E or buf[1:2] == b"\x7e"):
                del buf[0]  # up to the opening flag (a closing flag may come first)
            if len(buf) >= 3:
                end = 1 + (((buf[1] & 7) << 8) | buf[2])
                if len(buf) > end:
                    frame = bytes(buf[1:end])
                    del buf[:end + 1]
                    return frame
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("meter closed the connection")
            buf += chunk

    def disconnect(self):
        head = bytes((0xA0, 2 + len(self.addresses) + 1 + 2)) + self.addresses + b"\x53"
        self.sock.sendall(b"\x7e" + head + _crc16(head) + b"\x7e")


# ---------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------
def idle_load(meter, seconds=2.0):
    """The meter's CPU seconds per wall second with no client (its metering task)."""
    time.sleep(0.2)
    c0, t0 = meter.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (meter.cpu_seconds() - c0) / (time.monotonic() - t0)


class Batches:
    """CPU and wall time accumulated over batches, idle load subtracted."""

    def __init__(self, meter, idle):
        self.meter, self.idle = meter, idle
        self.cpu = self.wall = 0.0
        self.count = 0

    def run(self, fn, count):
        """Run fn count times; -> this batch's us each."""
        c0, t0 = self.meter.cpu_seconds(), time.monotonic()
        for _ in range(count):
            fn()
        return self._add(c0, t0, count)

    def send(self, link, requests):
        """Send the prepared requests on link, one at a time; -> (us each, replies)."""
        replies = []
        c0, t0 = self.meter.cpu_seconds(), time.monotonic()
        for apdu in requests:
            replies.append(link.request(apdu))
        return self._add(c0, t0, len(requests)), replies

    def _add(self, c0, t0, count):
        cpu, wall = self.meter.cpu_seconds() - c0, time.monotonic() - t0
        self.cpu += cpu
        self.wall += wall
        self.count += count
        return max(0.0, cpu - self.idle * wall) / count * 1e6

    def us_each(self):
        return max(0.0, self.cpu - self.idle * self.wall) / self.count * 1e6


def get_costs(meter, gets, idle, rounds=30):
    """(plain us, ciphered us, ratio, GETs of each kind) of meter CPU per GET: batches
    alternate, each figure the median over the rounds, the ratio the median of each
    round's ratio (the machine is shared: a round slowed by a neighbour is outvoted)."""
    public = GuruxClient.tcp(meter.hdlc_port, "hdlc").connect()
    mgmt = SecureGuruxClient.tcp(meter.hdlc_port, "hdlc")
    with redirect_stdout(StringIO()):  # gurux prints a line per ciphered APDU
        mgmt.connect()
    plain_link, secure_link = RawHdlc(public.link), RawHdlc(mgmt.link)
    counter = [mgmt.counter]

    # Requests are made before a batch and replies checked after it, so that both
    # batches pace the meter alike: the client's own ciphering (tens of us a request
    # with `cryptography`) would otherwise change the meter's idle and wake-up costs.
    def plain_batch(n):
        return [GET_ENERGY] * n

    def ciphered_batch(n):
        ic = counter[0]
        counter[0] = ic + n
        return [encipher(GET_ENERGY, GURUX_TITLE, ic + k, True) for k in range(n)]

    def check(replies, is_ciphered):
        for reply in replies:
            if is_ciphered and reply[:1] != b"\xdb":
                raise RuntimeError("ciphered GET answered %s" % reply.hex())
            if (decipher(reply, METER_TITLE) if is_ciphered else reply)[:4] != b"\xc4\x01\xc1\x00":
                raise RuntimeError("GET answered %s" % reply.hex())

    plain, ciphered = Batches(meter, idle), Batches(meter, idle)
    p_us, c_us = [], []
    kinds = ((plain_link, plain_batch, False, plain, p_us), (secure_link, ciphered_batch, True, ciphered, c_us))
    for link, batch, is_ciphered, _, _ in kinds:  # warm-up: first-use allocations
        check([link.request(apdu) for apdu in batch(50)], is_ciphered)
    per = max(1, gets // rounds)
    for _ in range(rounds):  # plain and ciphered batches alternate
        for link, batch, is_ciphered, batches, us in kinds:
            cost, replies = batches.send(link, batch(per))
            us.append(cost)
            check(replies, is_ciphered)
    for raw, c in ((plain_link, public), (secure_link, mgmt)):
        raw.disconnect()
        c.close()
    return median(p_us), median(c_us), median([c / p for p, c in zip(p_us, c_us)]), plain.count


def association_cost(meter, count, idle):
    """Meter CPU per complete HLS-5 association on one TCP connection."""
    # The meter serves two connections at once and refuses a third: give its poll loop
    # time to see that the GET benchmark's two connections have closed.
    time.sleep(0.5)
    link = TcpLink("127.0.0.1", meter.hdlc_port)
    counter = [next_counter(meter.hdlc_port, "hdlc")]

    def associate():
        c = SecureGuruxClient(link, "hdlc", counter=counter[0])
        c.connect()  # SNRM/UA, AARQ/AARE, pass 3/4
        c.release()  # RLRQ/RLRE
        c.disconnect()  # DISC/UA
        counter[0] = c.counter

    with redirect_stdout(StringIO()):
        for _ in range(5):
            associate()
        b = Batches(meter, idle)
        b.run(associate, count)
    link.close()
    return b.us_each()


def start_meter(state, gcm):
    saved = os.environ.get("DLMS_GCM")
    try:
        if gcm == "python":
            os.environ["DLMS_GCM"] = "python"
        else:
            os.environ.pop("DLMS_GCM", None)
        return Meter(state).start()
    finally:
        os.environ.pop("DLMS_GCM", None)
        if saved is not None:
            os.environ["DLMS_GCM"] = saved


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gets", type=int, default=6000, help="GETs of each kind per meter")
    ap.add_argument("--associations", type=int, default=100)
    args = ap.parse_args()
    for gcm in ("c", "python"):
        with tempfile.TemporaryDirectory() as tmp:
            m = start_meter(pathlib.Path(tmp) / "state", gcm)
            try:
                idle = idle_load(m)
                plain, ciphered, ratio, n = get_costs(m, args.gets, idle)
                tag = "" if gcm == "c" else "_gcm_python"
                note = "meter GCM %s; HDLC; %d GETs of 1-0:1.8.0.255/2 each; idle load %.1f ms/s subtracted" % (
                    "C module" if gcm == "c" else "Python twin (DLMS_GCM=python)", n, idle * 1e3)
                report("get_plain_public" + tag, "%.1f" % plain, "us", note)
                report("get_ciphered_management" + tag, "%.1f" % ciphered, "us",
                       "HLS-GMAC association, authenticated+encrypted general-glo-ciphering; " + note)
                report("ciphered_vs_plain_get" + tag, "%.2f" % ratio, "x",
                       "median of the rounds' ratios; reference GuruxDLMS.c 1.8x; target <= 1.3x")
                us = association_cost(m, args.associations, idle)
                report("hls5_association" + tag, "%.0f" % us, "us",
                       "SNRM, AARQ/AARE, pass 3/4, RLRQ, DISC; %d associations, gurux, one TCP connection"
                       % args.associations)
            finally:
                m.stop()


if __name__ == "__main__":
    main()

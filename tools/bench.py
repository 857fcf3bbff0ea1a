#!/usr/bin/env python3
"""`make bench`: the meter's figures, measured side by side in one run.

    build/venv/bin/python tools/bench.py [--gets 3000] [--cycles 300] [--only NAME ...]

Every CPU figure is the meter process's own CPU time (its CPU-time clock), read before
and after each of 10 batches of requests from a real client (gurux-dlms over HDLC-over-
TCP, public client), divided by the batch size, the median batch reported with the
range: it does not depend on the client's speed.
Reference figures for the same measurement on this kind of machine (from the issue):
GuruxDLMS.c server 95 us per GET and 415 us per connect-associate-read-release-
disconnect cycle, Gurux Python server 216 us per GET. The machine is shared: run it
twice before believing a difference of a few percent. Nothing here asserts.

Sections: get, cycle, heap, frozen, then the layer benchmarks, each printing its own
figures: gcm (on the 32- and 64-bit builds), secure (ciphered vs plain GET and the
HLS-5 association, tools/bench_security.py), metering, accuracy.
"""
import argparse
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tests"))

from clients import GuruxClient  # noqa: E402
from meter import Meter, MeterError  # noqa: E402

ENERGY = "1-0:1.8.0.255"
REFERENCE = {"get": (95, "GuruxDLMS.c"), "cycle": (415, "GuruxDLMS.c")}


def report(name, value, unit, note=""):
    print("%-34s %10s %-6s %s" % (name + ":", value, unit, note))


def cpu_rounds(meter, fn, count, rounds=10):
    """Meter CPU us per fn() over `rounds` rounds of count/rounds calls: (median, lowest,
    highest) of the rounds. The machine is shared: a round slowed by a neighbour (or by
    the meter's own metering and flash writes) shows as a high round, not in the median."""
    per = max(1, count // rounds)
    us = []
    for _ in range(rounds):
        before = meter.cpu_seconds()
        for _ in range(per):
            fn()
        us.append((meter.cpu_seconds() - before) / per * 1e6)
    return statistics.median(us), min(us), max(us)


def cpu_per_get(meter, count):
    with GuruxClient.tcp(meter.hdlc_port, "hdlc") as c:
        obj = c.make_object(ENERGY, 3)
        for _ in range(50):  # warm-up: first-use allocations are not the steady state
            c.read_object(obj, 2)
        return cpu_rounds(meter, lambda: c.read_object(obj, 2), count)


def cpu_per_cycle(meter, count):
    def cycle():
        with GuruxClient.tcp(meter.hdlc_port, "hdlc") as c:
            c.read(ENERGY, 3, 2)

    for _ in range(10):
        cycle()
    return cpu_rounds(meter, cycle, count)


def serves_with_heap(state, heap, features):
    """True when a meter with this heap (and --features) serves an association and a
    full object-list read, over both ports at once, twice."""
    m = Meter(state, heap=heap, extra_args=("--features", features))
    try:
        m.start()
        for _ in range(2):
            with GuruxClient.tcp(m.hdlc_port, "hdlc") as c, GuruxClient.tcp(m.wrapper_port, "wrapper") as w:
                c.get_object_list()
                w.get_object_list()
                w.read(ENERGY, 3, 2)
        return m.running()
    except (MeterError, Exception):
        return False
    finally:
        m.kill()


def smallest_heap_kb(features, lo=16, hi=256, step=1):
    """Smallest -X heapsize (KiB, `step` granularity) that serves the session above:
    the peak heap the meter needs, measured as the meter itself experiences it."""
    with tempfile.TemporaryDirectory() as tmp:
        if not serves_with_heap(pathlib.Path(tmp) / "hi", "%dk" % hi, features):
            return None
        while hi - lo > step:
            mid = (lo + hi) // 2 // step * step
            if serves_with_heap(pathlib.Path(tmp) / ("s%d" % mid), "%dk" % mid, features):
                hi = mid
            else:
                lo = mid
        return hi


def frozen_size():
    """Bytes of .mpy bytecode for the frozen firmware (what the manifest freezes)."""
    total = 0
    files = sorted((ROOT / "firmware").glob("*/*.py")) + [ROOT / "firmware" / "main.py"]
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            out = pathlib.Path(tmp) / (path.stem + ".mpy")
            subprocess.run([str(ROOT / "build" / "mpy-cross"), "-march=x86", "-o", str(out), str(path)],
                           check=True, cwd=path.parent)
            total += out.stat().st_size
    return total, len(files)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gets", type=int, default=3000)
    ap.add_argument("--cycles", type=int, default=300)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    want = (lambda name: args.only is None or name in args.only)

    if want("get") or want("cycle"):
        with tempfile.TemporaryDirectory() as tmp:
            m = Meter(pathlib.Path(tmp) / "state")
            m.start()
            try:
                if want("get"):
                    us, lo, hi = cpu_per_get(m, args.gets)
                    ref, who = REFERENCE["get"]
                    report("meter CPU per GET (HDLC, public)", "%.1f" % us, "us",
                           "%.2fx %s (%d us); target <= 95 us; median of 10 rounds (%.0f-%.0f), %d GETs"
                           % (us / ref, who, ref, lo, hi, args.gets))
                if want("cycle"):
                    us, lo, hi = cpu_per_cycle(m, args.cycles)
                    ref, who = REFERENCE["cycle"]
                    report("meter CPU per assoc. cycle", "%.0f" % us, "us",
                           "%.2fx %s (%d us); SNRM,AARQ,GET,RLRQ,DISC; median of 10 rounds (%.0f-%.0f), %d cycles"
                           % (us / ref, who, ref, lo, hi, args.cycles))
            finally:
                m.stop()
    if want("heap"):
        for features, what in (("full", "whole meter"), ("core", "core meter")):
            kb = smallest_heap_kb(features)
            report("smallest heap, " + what, kb if kb else "none", "KiB",
                   "--features %s; association + full object list on HDLC and wrapper at once, twice"
                   " (-X heapsize); target 64 KiB" % features)
    if want("frozen"):
        size, count = frozen_size()
        report("frozen firmware bytecode", size, "bytes", "%d modules, mpy-cross -march=x86" % count)
    # The layer benchmarks, each printing its own figures. GCM runs on both builds (the
    # meter's 32-bit one and its 64-bit twin), each over its own mbedTLS 3.6.
    layers = (
        ("gcm", ["tools/bench_gcm.py", "--micropython", "build/micropython"]),
        ("gcm", ["tools/bench_gcm.py", "--micropython", "build/micropython64"]),
        ("secure", [sys.executable, "tools/bench_security.py"]),
        ("metering", ["build/micropython", "tools/bench_metering.py"]),
        ("accuracy", [sys.executable, "tools/bench_accuracy.py"]),
    )
    for name, cmd in layers:
        script = next(a for a in cmd if a.startswith("tools/"))
        if want(name) and (ROOT / script).exists():
            if cmd[0].startswith("tools/"):
                cmd = [sys.executable] + cmd
            print("--- %s" % " ".join(cmd), flush=True)
            subprocess.run(cmd, cwd=ROOT, check=False)


if __name__ == "__main__":
    main()

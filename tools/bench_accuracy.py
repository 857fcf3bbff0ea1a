#!/usr/bin/env python3
"""Accuracy of the running meter, read by real clients, and its flash writes.

    build/venv/bin/python tools/bench_accuracy.py [--speed 400] [--parallel 2]
        [--only table writes kills] [--kills N] [--points 1,5,...] [--table build/accuracy_table.md]

table   the accuracy table of issue 4: current 5 %, 10 %, 100 % of Iref = 5 A and
        Imax = 60 A, x power factor 1, 0.5 lagging (60 deg), 0.8 leading (-36.87 deg),
        x pure sine / with harmonics (v3 = 5 %, i3 = 30 %, i5 = 10 % of the fundamental,
        in phase with the voltage harmonic). Each point is one fresh meter process
        loaded for exactly one simulated hour (--sim-duration 3600, at --speed), then
        1-0:1.8.0.255 (mWh) is read with gurux-dlms (HDLC) or dlms-cosem (wrapper),
        alternately, and compared with the analytic integral
            E = (V I cos(phi) + sum_h V_h I_h cos(phi_h)) * 1 h
        where only harmonics present on both channels carry power (i5 has no v5).
        Prints "point: expected Wh, measured Wh, error %" lines and the worst error.
writes  flash writes per simulated hour at rated load (5 A) and at Imax (60 A): the
        composition root's Housekeeping (sampling, energy persistence, alive mark,
        profile captures, demand) driven inside build/micropython second by second for
        one simulated hour on a counting Store; prints the energy record writes
        (MeteringTask.writes) and every store write (Store.writes).
kills   the SIGKILL loop of host_tests/test_power_cuts.py, --kills N times (default
        200), printing its figures (needs the host test modules on sys.path).

Nothing asserts here; host_tests/test_metering.py runs the same table with
`run_table` and asserts |error| <= 0.05 %. Speeds above ~400 exceed what the kernel
does in real time with two meters on two cores (README: thinning above ~500x).
"""
import argparse
import concurrent.futures
import math
import pathlib
import random
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tests"))

from clients import CosemClient, GuruxClient  # noqa: E402
from meter import Meter  # noqa: E402

VOLTAGE = 230.0
IREF, IMAX = 5.0, 60.0
HARMONICS = {"v3": 0.05, "i3": 0.3, "i5": 0.1}  # fractions of each fundamental, phase 0
DURATION = 3600  # simulated seconds of load per point
ENERGY = "1-0:1.8.0.255"
CLOCK = "0-0:1.0.0.255"
LIMIT_PCT = 0.05

PF_POINTS = ((0.0, "PF 1"), (60.0, "PF 0.5 lag"), (-36.87, "PF 0.8 lead"))
CURRENTS = ((0.05 * IREF, "5% Iref"), (0.1 * IREF, "10% Iref"), (IREF, "Iref"), (IMAX, "Imax"))


class Point:
    def __init__(self, index, amps, amps_label, phase, pf_label, harmonics):
        self.index = index
        self.amps = amps
        self.phase = phase
        self.harmonics = harmonics
        self.label = "%s (%g A), %s, %s" % (amps_label, amps, pf_label, "h3+h5" if harmonics else "sine")

    def args(self, speed, duration=DURATION):
        a = ["--speed", str(speed), "--sim-voltage", "%g" % VOLTAGE, "--sim-current", "%g" % self.amps,
             "--sim-phase", "%g" % self.phase, "--sim-duration", str(duration)]
        if self.harmonics:
            a += ["--sim-harmonics", ",".join("%s=%g" % kv for kv in sorted(HARMONICS.items()))]
        return a

    def power_w(self):
        return analytic_power(VOLTAGE, self.amps, self.phase, HARMONICS if self.harmonics else None)

    def expected_wh(self, duration=DURATION):
        return self.power_w() * duration / 3600.0


def analytic_power(volts, amps, phase_deg, harmonics=None):
    """Active power, W: the fundamental, plus V_h * I_h for every harmonic h that both
    channels carry (the simulator puts them in phase: cos = 1)."""
    p = volts * amps * math.cos(math.radians(phase_deg))
    for key, frac in (harmonics or {}).items():
        if key.startswith("v") and ("i" + key[1:]) in harmonics:
            p += volts * frac * amps * harmonics["i" + key[1:]]
    return p


def all_points():
    points = []
    for harmonics in (False, True):
        for amps, amps_label in CURRENTS:
            for phase, pf_label in PF_POINTS:
                points.append(Point(len(points) + 1, amps, amps_label, phase, pf_label, harmonics))
    return points


# -- reading -----------------------------------------------------------------------------
def read_energy_mwh(meter, lib):
    """1-0:1.8.0.255 value (mWh) with gurux over HDLC or dlms-cosem over the wrapper."""
    if lib == "gurux":
        with GuruxClient.tcp(meter.hdlc_port, "hdlc") as c:
            value, _ = c.read(ENERGY, 3, 2)
            return int(value)
    with CosemClient(meter.wrapper_port, "wrapper") as c:
        return int(c.get(ENERGY, 3, 2))


def run_point(point, speed, workdir, lib, duration=DURATION, timeout_margin=30.0):
    """Start a fresh meter for `point`, wait until its simulated load is over and the
    energy register is stable, read it. Returns a result dict."""
    state = pathlib.Path(workdir) / ("p%02d" % point.index) / "state"
    m = Meter(state, extra_args=point.args(speed, duration))
    m.start()
    t0 = time.monotonic()
    try:
        # The load lasts `duration` simulated seconds from the metering task's start;
        # the meter was up a moment before the announce, so this wait is long enough.
        time.sleep(max(0.0, duration / speed + 0.3 - (time.monotonic() - t0)))
        deadline = time.monotonic() + timeout_margin
        last = read_energy_mwh(m, lib)
        while True:
            time.sleep(0.25)
            now = read_energy_mwh(m, lib)
            if now == last:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("energy still moving after %.0f s: %s" % (timeout_margin, point.label))
            last = now
        cpu = m.cpu_seconds()
    finally:
        m.stop()
    expected = point.expected_wh(duration)
    measured = last / 1000.0
    return {"point": point, "lib": lib, "expected_wh": expected, "measured_wh": measured,
            "error_pct": 100.0 * (measured - expected) / expected, "wall_s": time.monotonic() - t0,
            "cpu_s": cpu, "output": m.output(1500)}


def run_table(points, speed=400, parallel=2, workdir=None, duration=DURATION, progress=None):
    """Run the points `parallel` at a time; results in the order of `points`.
    Clients alternate across points: even index gurux/HDLC, odd dlms-cosem/wrapper."""
    own = None
    if workdir is None:
        own = tempfile.TemporaryDirectory(prefix="accuracy-")
        workdir = own.name
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [pool.submit(run_point, p, speed, workdir, "gurux" if k % 2 == 0 else "dlms-cosem", duration)
                       for k, p in enumerate(points)]
            results = []
            for f in futures:
                r = f.result()
                if progress:
                    progress(r)
                results.append(r)
            return results
    finally:
        if own is not None:
            own.cleanup()


def format_line(r):
    return "%-40s expected %12.4f Wh, measured %12.4f Wh, error %+8.4f %%  (%s)" % (
        r["point"].label + ":", r["expected_wh"], r["measured_wh"], r["error_pct"], r["lib"])


def markdown_table(results, speed, duration=DURATION):
    lines = [
        "# Metering accuracy, black-box",
        "",
        "Each point: a fresh simulated meter (`tools/run_meter.sh`) loaded at %g V for exactly %d simulated"
        " seconds (`--sim-duration`, speed %dx, ADC noise 1 LSB), then active energy import 1-0:1.8.0.255"
        " (mWh) read with a real client and compared with the analytic integral. Harmonics:"
        " `--sim-harmonics %s` (power in V3*I3 only). Limit: |error| <= %.2f %%."
        % (VOLTAGE, duration, speed, ",".join("%s=%g" % kv for kv in sorted(HARMONICS.items())), LIMIT_PCT),
        "Generated by host_tests/test_metering.py (tools/bench_accuracy.py prints the same).",
        "",
        "| point | client | expected Wh | measured Wh | error % |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append("| %s | %s | %.4f | %.3f | %+.4f |" % (r["point"].label, r["lib"], r["expected_wh"],
                                                          r["measured_wh"], r["error_pct"]))
    worst = max(results, key=lambda r: abs(r["error_pct"]))
    lines += ["", "Worst: %+.4f %% (%s)." % (worst["error_pct"], worst["point"].label), ""]
    return "\n".join(lines)


# -- flash writes --------------------------------------------------------------------------
_WRITES_SCRIPT = r"""
import os, sys
import main
from board import BOARD
from adapters.store import Store
from cosem.table import build_objects
from dlms.security import load_security
from metering.task import MeteringTask

class Manual:
    def __init__(self, t):
        self.t = t
    def now(self):
        return self.t
    def now_ms(self):
        return self.t * 1000
    def set(self, s):
        self.t = s

amps = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
d = sys.argv[2]
config = main.parse_args([])
config["current"] = amps
store = Store(d, fsync=False)
security = load_security(store, BOARD)
source = main.make_source(config)
clock = Manual(788918400)  # 2025-01-01 00:00:00 UTC, a profile boundary
elapsed = Manual(0)
task = MeteringTask(source, source.calibration(), store, lambda: elapsed.t, budget_pairs=2000000)
objects = build_objects(BOARD, clock, sources=task, store=store, security=security)
hk = main.Housekeeping(task, objects, clock, store)
hk(0)
w_task, w_store, b_store = task.writes, store.writes, store.bytes_written
for s in range(3600):
    clock.t += 1
    elapsed.t += 1
    hk(0)
print("RESULT", amps, task.writes - w_task, store.writes - w_store, store.bytes_written - b_store,
      task.energy_import_wh(), task.thinned_s)
"""


def writes_per_hour(amps):
    """(energy record writes, all store writes, bytes written, Wh) in one simulated hour."""
    with tempfile.TemporaryDirectory(prefix="writes-") as d:
        script = pathlib.Path(d) / "writes.py"
        script.write_text(_WRITES_SCRIPT)
        out = subprocess.run([str(ROOT / "build" / "micropython"), str(script), "%g" % amps, d + "/state"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            _, a, w_task, w_store, nbytes, wh, thinned = line.split()
            return int(w_task), int(w_store), int(nbytes), int(wh), int(thinned)
    raise RuntimeError("writes script failed:\n%s\n%s" % (out.stdout, out.stderr))


# -- main ------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speed", type=int, default=400)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=["table", "writes"], choices=["table", "writes", "kills"])
    ap.add_argument("--points", default="", help="comma-separated point numbers (1-24), default all")
    ap.add_argument("--kills", type=int, default=0, help="run the SIGKILL loop N times (adds 'kills')")
    ap.add_argument("--kill-speed", type=int, default=200)
    ap.add_argument("--table", default="", help="also write the markdown table here")
    args = ap.parse_args()
    only = set(args.only)
    if args.kills:
        only.add("kills")

    if "table" in only:
        points = all_points()
        if args.points:
            keep = {int(x) for x in args.points.split(",")}
            points = [p for p in points if p.index in keep]
        t0 = time.monotonic()
        results = run_table(points, args.speed, args.parallel, progress=lambda r: print(format_line(r), flush=True))
        worst = max(results, key=lambda r: abs(r["error_pct"]))
        print("worst error: %+.4f %% (%s); %d points in %.0f s, speed %dx, %d in parallel"
              % (worst["error_pct"], worst["point"].label, len(results), time.monotonic() - t0,
                 args.speed, args.parallel))
        if args.table:
            pathlib.Path(args.table).write_text(markdown_table(results, args.speed))

    if "writes" in only:
        for amps in (IREF, IMAX):
            w_task, w_store, nbytes, wh, thinned = writes_per_hour(amps)
            print("flash writes per hour at %g A (%.0f W): energy records %d, all store writes %d"
                  " (%d bytes; alive mark, profile rows, logs), %d Wh metered, %d s thinned"
                  % (amps, VOLTAGE * amps, w_task, w_store, nbytes, wh, thinned))

    if "kills" in only:
        import test_power_cuts as tpc

        n = args.kills or 200
        with tempfile.TemporaryDirectory(prefix="kills-") as d:
            m = Meter(pathlib.Path(d) / "state", extra_args=tpc.meter_args(args.kill_speed))
            m.start()
            try:
                stats = tpc.power_cut_loop(m, n, random.Random(), args.kill_speed)
            finally:
                m.stop()
        print("power cuts: %d kills in %.0f s; %s" % (n, stats["wall_s"], tpc.describe(stats)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""AES-GCM throughput, side by side in one run: the C module _dlmsgcm and the pure-Python
twin dlms._gcm (both inside the unix MicroPython, timed there with time.ticks_us), and
CPython's `cryptography` AESGCM (OpenSSL) as the yardstick.

    build/venv/bin/python tools/bench_gcm.py [--micropython build/micropython] [--time 0.3]

Messages of 64 B, 256 B and 1 KiB with a 17-byte AAD (SC || AK, as for DLMS SC 0x30);
DLMS tags are 12 bytes, OpenSSL computes 16 (the truncation costs nothing). Each figure
is the best of three runs of at least --time seconds. Numbers are for comparison on one
machine, never for assertions.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIZES = (64, 256, 1024)
AAD_LEN = 17

# Runs inside MicroPython; %-formatted with the implementation, sizes and minimum time.
SNIPPET = r"""
import sys, time
sys.path.insert(0, "firmware")
try:
    if %(impl)r == "c":
        from _dlmsgcm import AESGCM
    else:
        from dlms._gcm import AESGCM
except ImportError:
    print("MISSING")
    raise SystemExit
g = AESGCM(bytes(range(16)))
iv = bytes(range(12))
aad = bytes(%(aad)d)
for n in %(sizes)r:
    pt = bytes(n)
    best = 0
    for _ in range(3):
        it = 8
        while True:
            t0 = time.ticks_us()
            for _ in range(it):
                g.encrypt(iv, pt, aad)
            dt = time.ticks_diff(time.ticks_us(), t0)
            if dt >= %(min_us)d:
                break
            it *= 2
        rate = n * it * 1000000 // dt
        if rate > best:
            best = rate
    print(n, best)
"""


def micropython_rates(binary, impl, min_time):
    code = SNIPPET % {"impl": impl, "aad": AAD_LEN, "sizes": SIZES, "min_us": int(min_time * 1e6)}
    env = dict(os.environ)
    env.pop("DLMS_GCM", None)
    proc = subprocess.run([str(binary), "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit("micropython (%s) failed:\n%s%s" % (impl, proc.stdout, proc.stderr))
    if proc.stdout.strip() == "MISSING":
        return None
    return {int(a): int(b) for a, b in (line.split() for line in proc.stdout.split("\n") if line.strip())}


def openssl_rates(min_time):
    try:
        import cryptography
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        return None, "cryptography not installed (pip install cryptography, e.g. in build/venv)"
    g = AESGCM(bytes(range(16)))
    iv, aad = bytes(range(12)), bytes(AAD_LEN)
    rates = {}
    for n in SIZES:
        pt = bytes(n)
        best = 0.0
        for _ in range(3):
            it = 64
            while True:
                t0 = time.perf_counter()
                for _ in range(it):
                    g.encrypt(iv, pt, aad)
                dt = time.perf_counter() - t0
                if dt >= min_time:
                    break
                it *= 2
            best = max(best, n * it / dt)
        rates[n] = best
    return rates, "cryptography %s (%s)" % (cryptography.__version__, _openssl_version())


def _openssl_version():
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        return backend.openssl_version_text()
    except Exception:
        return "OpenSSL"


def _kbs(rate):
    return "%10.0f" % (rate / 1024) if rate else "%10s" % "n/a"


def _ratio(a, b):
    return "%9.2f" % (a / b) if a and b else "%9s" % "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--micropython", default=str(ROOT / "build" / "micropython"))
    ap.add_argument("--time", type=float, default=0.3, help="minimum seconds per timed run")
    args = ap.parse_args()
    binary = pathlib.Path(args.micropython)
    if not binary.exists():
        raise SystemExit("no %s: run make micropython first" % binary)

    c = micropython_rates(binary, "c", args.time)
    twin = micropython_rates(binary, "python", args.time)
    ossl, ossl_name = openssl_rates(args.time)

    print("AES-128-GCM encrypt, AAD %d B, KB/s (1 KB = 1024 B), best of 3" % AAD_LEN)
    print("  MicroPython: %s%s" % (binary, "" if c else "  (no _dlmsgcm built in)"))
    print("  OpenSSL:     %s" % ossl_name)
    print("%8s %10s %10s %10s %9s %9s" % ("size", "C module", "twin", "OpenSSL", "C/OpenSSL", "twin/C"))
    for n in SIZES:
        rc = c and c[n]
        rt = twin[n]
        ro = ossl and ossl[n]
        print("%6d B %s %s %s %s %s" % (n, _kbs(rc), _kbs(rt), _kbs(ro), _ratio(rc, ro), _ratio(rt, rc)))


if __name__ == "__main__":
    sys.exit(main())

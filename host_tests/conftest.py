"""Shared fixtures for the host tests: where things are, and a running meter."""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
MICROPYTHON = ROOT / "build" / "micropython"
VECTORS = pathlib.Path(os.environ.get("DLMS_VECTORS", ROOT.parent / "shared" / "vectors"))


# ---------------------------------------------------------------------------------
# A running meter for the black-box tests (host_tests/meter.py).
# ---------------------------------------------------------------------------------
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from meter import Meter, MeterError  # noqa: E402

# The black-box tests run against the heap the developer chose (MPY_HEAP, else the
# unix port's default) and against two microcontroller-sized heaps:
# - SMALL_HEAP, the whole meter (DLMS, security, metering with its simulated ADC,
#   profiles and logs): `make bench` measures it serving two sessions from 70-71 KiB;
# - CORE_HEAP, 64 KiB, the heap of the readable-meter issue: below 70 KiB the simulator
#   starts as a core meter (no load/daily profile, no standard, power-failure or audit
#   log; 256-octet PDU: firmware/main.py core_meter), which every test of this fixture
#   reads as it reads the whole meter. See README, "Memory".
SMALL_HEAP = "76k"
CORE_HEAP = "64k"
_HEAPS = []
for _h in (os.environ.get("MPY_HEAP") or None, SMALL_HEAP, CORE_HEAP):
    if _h not in _HEAPS:
        _HEAPS.append(_h)


def _start_meter(tmp_path_factory, heap, name):
    state = tmp_path_factory.mktemp(name)
    m = Meter(state / "state", heap=heap)
    try:
        m.start()
    except MeterError as e:
        pytest.fail(str(e), pytrace=False)
    return m


@pytest.fixture(scope="module", params=_HEAPS, ids=lambda h: "heap-" + (h or "default"))
def meter(request, tmp_path_factory):
    """A meter started once per test module (and per heap size) on free ports, with its
    own state directory. Its output is attached to the report of a failing test."""
    m = _start_meter(tmp_path_factory, request.param, "meter")
    yield m
    m.stop()


@pytest.fixture(scope="module", params=(SMALL_HEAP, CORE_HEAP), ids=lambda h: "heap-" + h)
def meter_small(request, tmp_path_factory):
    """A meter with the small heaps only, for tests that only need those cases."""
    m = _start_meter(tmp_path_factory, request.param, "metersmall")
    yield m
    m.stop()


@pytest.fixture
def fresh_meter(tmp_path):
    """A meter of the test's own (function scope): for tests that kill or restart it."""
    m = Meter(tmp_path / "state")
    try:
        m.start()
    except MeterError as e:
        pytest.fail(str(e), pytrace=False)
    yield m
    m.stop()


@pytest.fixture
def serial_port(meter, tmp_path):
    """Path of a serial device (pty) bridged to the meter's HDLC port by tools/pty_bridge.py."""
    link = tmp_path / "meter-tty"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "pty_bridge.py"), "--link", str(link),
                             "--port", str(meter.hdlc_port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("pty_bridge:") or not link.exists():
        proc.kill()
        pytest.fail("pty_bridge did not start: %r %s" % (line, proc.stderr.read()), pytrace=False)
    yield str(link)
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("pty_bridge ignored SIGTERM")
    assert rc == 0, "pty_bridge exit status %s: %s" % (rc, proc.stderr.read())
    assert not link.exists(), "pty_bridge left its symlink behind"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of the meter's stdout/stderr to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("meter", "meter_small", "fresh_meter"):
            m = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if m is not None:
                alive = "running" if m.running() else "NOT RUNNING (exit %s)" % m.proc.returncode
                report.sections.append(("meter (%s, %s)" % (name, alive), m.output(2000)))

"""The simulated meter as a process the host tests can drive.

`Meter` starts the firmware under the unix port (tools/run_meter.sh) on free TCP ports
with its own STATE directory, waits until it announces itself, and stops, kills (-9)
and restarts it on the same state. It also reads the process's own CPU time (its POSIX
CPU-time clock, nanoseconds; else /proc/<pid>/stat in 10 ms ticks), so benchmarks can
compare work done rather than wall-clock time.

    m = Meter(state_dir)          # heap from the environment (MPY_HEAP), or heap="64k"
    m.start()                     # raises MeterError with the meter's output on failure
    m.hdlc_port, m.wrapper_port
    m.kill(); m.start()           # power cut, then boot on the same state
    m.cpu_seconds()               # CPU time of the meter process
    m.stop()
"""
import ctypes
import ctypes.util
import os
import pathlib
import signal
import socket
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUN_METER = ROOT / "tools" / "run_meter.sh"
READY_MARK = "  HDLC over TCP:"


_LIBC = []  # loaded once, when first asked for


def cpu_clock(pid):
    """The CPU-time clock of process pid (clock_getcpuclockid(3)), or None."""
    try:
        if not _LIBC:
            _LIBC.append(ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True))
        clock = ctypes.c_int()
        if _LIBC[0].clock_getcpuclockid(pid, ctypes.byref(clock)) == 0:
            return clock.value
    except (OSError, AttributeError):
        pass
    return None


class MeterError(RuntimeError):
    """The meter did not start or died; the message carries its stdout and stderr."""


def free_ports(count, host="127.0.0.1"):
    """`count` distinct TCP ports that were free a moment ago (held together while chosen)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Meter:
    def __init__(self, state_dir, heap=None, host="127.0.0.1", extra_args=(), log_dir=None):
        self.state_dir = pathlib.Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Logs live beside the state, never inside it: the state directory is the meter's.
        self.log_dir = pathlib.Path(log_dir) if log_dir else self.state_dir.parent / (self.state_dir.name + "-logs")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.heap = heap if heap is not None else (os.environ.get("MPY_HEAP") or None)
        self.host = host
        self.extra_args = list(extra_args)
        self.hdlc_port, self.wrapper_port = free_ports(2, host)
        self.proc = None
        self.starts = 0
        self._out = self._err = None

    # -- lifecycle -----------------------------------------------------------------
    def command(self):
        return [str(RUN_METER), "--host", self.host, "--hdlc-port", str(self.hdlc_port),
                "--wrapper-port", str(self.wrapper_port), "--state", str(self.state_dir)] + self.extra_args

    def start(self, timeout=20.0):
        if self.running():
            raise MeterError("meter already running (pid %d)" % self.proc.pid)
        self.starts += 1
        env = dict(os.environ)
        env.pop("MPY_HEAP", None)
        if self.heap:
            env["MPY_HEAP"] = self.heap
        self._out = self.log_dir / ("stdout.%d.txt" % self.starts)
        self._err = self.log_dir / ("stderr.%d.txt" % self.starts)
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            # run_meter.sh execs MicroPython, so proc.pid is the meter itself.
            self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_MARK in self.stdout():
                if self._accepts(self.hdlc_port) and self._accepts(self.wrapper_port):
                    return
            if self.proc.poll() is not None:
                raise MeterError("meter exited with status %s before it was ready\n%s" % (self.proc.returncode, self.output()))
            time.sleep(0.05)
        self.kill()
        raise MeterError("meter not ready within %.0f s\n%s" % (timeout, self.output()))

    def _accepts(self, port):
        try:
            socket.create_connection((self.host, port), timeout=1).close()
            return True
        except OSError:
            return False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=5.0):
        """Orderly stop (SIGTERM, then SIGKILL if it does not go)."""
        if not self.running():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        """Power cut: SIGKILL, no chance to flush anything."""
        if self.running():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def restart(self, hard=True, timeout=20.0):
        """Kill -9 (hard) or stop, then boot again on the same ports and state."""
        self.kill() if hard else self.stop()
        return self.start(timeout)

    def __enter__(self):
        return self.start() if not self.running() else self

    def __exit__(self, *exc):
        self.stop()

    # -- observation ------------------------------------------------------------------
    def stdout(self):
        return self._out.read_text(errors="replace") if self._out and self._out.exists() else ""

    def stderr(self):
        return self._err.read_text(errors="replace") if self._err and self._err.exists() else ""

    def output(self, tail=4000):
        return "--- meter command: %s (heap %s)\n--- stdout:\n%s\n--- stderr:\n%s" % (
            " ".join(self.command()), self.heap or "default", self.stdout()[-tail:], self.stderr()[-tail:])

    def cpu_seconds(self):
        """CPU time of the meter process, in seconds: from its CPU-time clock (ns
        resolution), else utime + stime from /proc/<pid>/stat (10 ms ticks)."""
        if not self.running():
            raise MeterError("meter not running")
        clock = cpu_clock(self.proc.pid)
        if clock is not None:
            try:
                return time.clock_gettime(clock)
            except OSError:
                raise MeterError("meter not running") from None
        with open("/proc/%d/stat" % self.proc.pid) as f:
            stat = f.read()
        # The command name (field 2) may hold spaces and ')': split after the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

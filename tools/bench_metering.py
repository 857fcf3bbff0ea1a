# Metering benchmark, run inside MicroPython (from the repository root):
#   build/micropython tools/bench_metering.py
# Prints "name: value" lines: kernel throughput (sample pairs/s and multiple of real
# time at 4 kHz per channel), bytes allocated per block by the sampling path and per
# window by update(), the accuracy table, and flash writes per hour from the task.
import gc
import sys
import time
from array import array

sys.path.insert(0, "firmware")
sys.path.insert(0, "tests/mpy")

from adapters.adc_sim import SimADC
from adapters.store import Store
from metering.energy import Meter
from metering.task import MeteringTask
import test_metering as tm

BLOCK = 200
RATE = 4000


def throughput():
    src = SimADC({"current": 5.0, "phase": 30.0, "noise": 1.0, "freq": 49.99})
    m = Meter(src.calibration())
    blocks = []
    for _ in range(20):  # one pre-generated window, replayed: times the kernel alone
        v = array("h", bytes(2 * BLOCK))
        i = array("h", bytes(2 * BLOCK))
        src.fill(v, i)
        blocks.append((v, i))
    n = 0
    t0 = time.ticks_us()
    while time.ticks_diff(time.ticks_us(), t0) < 2000000:
        for v, i in blocks:
            if m.process(v, i):
                m.update()
        n += 20 * BLOCK
    dt = time.ticks_diff(time.ticks_us(), t0) / 1e6
    print("kernel_pairs_per_s: %d" % (n / dt))
    print("kernel_x_realtime_at_4kHz: %.0f" % (n / dt / RATE))
    v, i = blocks[0]
    t0 = time.ticks_us()
    for _ in range(500):
        src.fill(v, i)
    dt = time.ticks_diff(time.ticks_us(), t0) / 1e6
    print("sim_adc_pairs_per_s: %d" % (500 * BLOCK / dt))
    return m, blocks


def allocation(m, blocks):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    done = 0
    for _ in range(5):
        for v, i in blocks:
            done += m.process(v, i)
    per_block = (gc.mem_alloc() - before) / (5 * len(blocks))
    before = gc.mem_alloc()
    m.update()
    per_window = gc.mem_alloc() - before
    gc.enable()
    print("bytes_alloc_per_block: %d" % per_block)
    print("bytes_alloc_per_window_update: %d" % per_window)


def accuracy():
    for harm, label in ((None, "sine"), (tm.HARMONICS, "h3h5")):
        for amps, phase, secs in tm.POINTS:
            err = tm.accuracy(amps, phase, secs, harm)
            print("error_pct %s I=%gA phase=%gdeg (%ds): %.4f" % (label, amps, phase, secs, err))


def writes_per_hour():
    for amps in (5.0, 60.0):
        d = "/tmp/bench_metering_%d" % amps
        store = Store(d, fsync=False)
        src = SimADC({"current": amps})
        t = MeteringTask(src, src.calibration(), store, lambda: 0, persist_wh=1, persist_s=60)
        w0 = t.writes
        t0 = time.ticks_ms()
        t.advance(3600)
        dt = time.ticks_diff(time.ticks_ms(), t0) / 1000
        print("task_flash_writes_per_hour I=%gA (%d W, persist_wh=1 persist_s=60): %d" % (amps, 230 * amps, t.writes - w0))
        print("task_x_realtime I=%gA (sim ADC + meter + store): %.0f" % (amps, 3600 / dt))


m, blocks = throughput()
allocation(m, blocks)
accuracy()
writes_per_hour()

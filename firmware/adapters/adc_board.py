"""ADC source for real boards (ESP32, RP2040): machine.ADC on the voltage and current
channels named by the board's config, sampled by a hardware timer.

NOT RUNNABLE HERE: the unix port has no machine.ADC/Timer. This module is only
compile-checked (mpy-cross) in this repository; it has not run on hardware yet.

Board config (board.py, key "adc"):
    {"v_pin": 26, "i_pin": 27, "sample_rate": 4000, "block": 200,
     "timer": 0 (ESP32 hardware timer id; -1 on RP2040 = virtual timer)}

Same interface as adapters/adc_sim.py: sample_rate, fill(v_block, i_block) -> pairs,
signed 12-bit codes with mid-scale removed. The timer callback only writes into two
preallocated ping-pong blocks (no allocation in an IRQ); fill() blocks until the next
full block is ready and copies it out. Both channels are read back to back, so the
current sample lags the voltage one by one conversion time: put that delay into the
calibration's i_delay_q16 (negative: current sampled after voltage), together with
the current transformer's own phase error. A block the consumer did not take in time
is overwritten and counted in `overruns` (energy is then missing for that block)."""
import machine
import micropython
from array import array

_MID = 2048


class BoardADC:
    def __init__(self, config):
        self.sample_rate = config.get("sample_rate", 4000)
        n = config.get("block", 200)
        self._adc_v = machine.ADC(machine.Pin(config["v_pin"]))
        self._adc_i = machine.ADC(machine.Pin(config["i_pin"]))
        self._bufs = (
            (array("h", bytes(2 * n)), array("h", bytes(2 * n))),
            (array("h", bytes(2 * n)), array("h", bytes(2 * n))),
        )
        self._n = n
        self._k = 0  # next index in the block being filled
        self._fill = 0  # which ping-pong block the IRQ writes
        self._ready = -1  # block complete and not yet taken
        self.overruns = 0
        self.samples = 0
        self._timer = machine.Timer(config.get("timer", -1))
        self._timer.init(freq=self.sample_rate, mode=machine.Timer.PERIODIC, callback=self._irq)

    @micropython.native
    def _irq(self, _t):
        # read_u16 is scaled to 16 bits on every port; >> 4 gives the 12-bit code.
        v, i = self._bufs[self._fill]
        k = self._k
        v[k] = (self._adc_v.read_u16() >> 4) - _MID
        i[k] = (self._adc_i.read_u16() >> 4) - _MID
        k += 1
        if k == self._n:
            k = 0
            if self._ready >= 0:
                self.overruns += 1
            self._ready = self._fill
            self._fill ^= 1
        self._k = k

    def fill(self, v_block, i_block):
        """Copy the next complete block (len(v_block) must equal the block size)."""
        if len(v_block) != self._n or len(i_block) != self._n:
            raise ValueError("block size is fixed by the board config")
        while self._ready < 0:
            machine.idle()
        v, i = self._bufs[self._ready]
        self._ready = -1
        for k in range(self._n):
            v_block[k] = v[k]
            i_block[k] = i[k]
        self.samples += self._n
        return self._n

    def skip(self, n):
        raise OSError("a real ADC cannot skip time")

    def calibration(self):
        return {}

    def close(self):
        self._timer.deinit()

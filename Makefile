# Thin wrapper: the logic lives in tools/. See README.md.
HDLC_PORT ?= 4061
WRAPPER_PORT ?= 4059
STATE ?= build/state
HEAP ?=
# The simulated load: V RMS, A RMS, degrees the current lags (negative leads), and
# simulated seconds per real second.
SIM_VOLTAGE ?= 230
SIM_CURRENT ?= 5
SIM_PHASE ?= 0
SIM_SPEED ?= 1
PYTEST_ARGS ?=

.PHONY: all micropython venv run test test-mpy bench deploy clean
all: micropython venv

micropython:
	@tools/build_micropython.sh

venv:
	@tools/setup_venv.sh

run: micropython
	MPY_HEAP=$(HEAP) tools/run_meter.sh --hdlc-port $(HDLC_PORT) --wrapper-port $(WRAPPER_PORT) --state $(STATE) \
	    --sim-voltage $(SIM_VOLTAGE) --sim-current $(SIM_CURRENT) --sim-phase $(SIM_PHASE) --speed $(SIM_SPEED) $(RUN_ARGS)

test: micropython venv
	build/venv/bin/python -m pytest host_tests $(PYTEST_ARGS)

bench: micropython venv
	build/venv/bin/python tools/bench.py

deploy: venv
	build/venv/bin/python tools/deploy.py $(DEPLOY_ARGS)

clean:
	rm -rf build/unix build/unix32 build/micropython build/state

# Thin wrapper: the logic lives in tools/. See README.md.
HDLC_PORT ?= 4061
WRAPPER_PORT ?= 4059
STATE ?= build/state
HEAP ?=
PYTEST_ARGS ?=

.PHONY: all micropython venv run test test-mpy bench deploy clean
all: micropython venv

micropython:
	@tools/build_micropython.sh

venv:
	@tools/setup_venv.sh

run: micropython
	MPY_HEAP=$(HEAP) tools/run_meter.sh --hdlc-port $(HDLC_PORT) --wrapper-port $(WRAPPER_PORT) --state $(STATE) $(RUN_ARGS)

test: micropython venv
	build/venv/bin/python -m pytest host_tests $(PYTEST_ARGS)

bench: micropython venv
	build/venv/bin/python tools/bench.py

deploy: venv
	build/venv/bin/python tools/deploy.py $(DEPLOY_ARGS)

clean:
	rm -rf build/unix build/unix32 build/micropython build/state

#!/bin/sh
# Starts the simulated meter: the unix-port MicroPython with the firmware frozen in.
# All arguments go to firmware/main.py (see README: --hdlc-port, --wrapper-port, --state ...).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
exec build/micropython ${MPY_HEAP:+-X heapsize=$MPY_HEAP} -m main "$@"

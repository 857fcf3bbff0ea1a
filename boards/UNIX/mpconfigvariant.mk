# Unix simulator board. FROZEN_MANIFEST and USER_C_MODULES come from tools/build_micropython.sh.
PROG ?= micropython

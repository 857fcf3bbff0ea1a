# Unix simulator board. FROZEN_MANIFEST and USER_C_MODULES come from tools/build_micropython.sh.
PROG ?= micropython
MPY_CROSS_FLAGS += -march=x86  # native/viper code (metering kernel, GCM twin) for the 32-bit build

# Unix simulator board. FROZEN_MANIFEST and USER_C_MODULES come from tools/build_micropython.sh.
PROG ?= micropython
MPY_CROSS_FLAGS += -march=x64  # native/viper code in the metering kernel and the GCM twin

# Unix simulator board. FROZEN_MANIFEST and USER_C_MODULES come from tools/build_micropython.sh.
PROG ?= micropython
MPY_CROSS_FLAGS += -march=x86  # native/viper code (metering kernel, GCM twin) for the 32-bit build
# The meter is one poll loop: no threads. Without them every access to the VM state
# stops going through pthread_getspecific (about a tenth of the CPU per request).
MICROPY_PY_THREAD = 0

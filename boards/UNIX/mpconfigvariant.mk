# Unix simulator board. FROZEN_MANIFEST and USER_C_MODULES come from tools/build_micropython.sh.
PROG ?= micropython
# Native/viper code (metering kernel, CRC, GCM twin) for the build's architecture.
ifeq ($(MICROPY_FORCE_32BIT),1)
MPY_CROSS_FLAGS += -march=x86
else
MPY_CROSS_FLAGS += -march=x64
endif
# The meter is one poll loop: no threads. Without them every access to the VM state
# stops going through pthread_getspecific (about a tenth of the CPU per request).
MICROPY_PY_THREAD = 0

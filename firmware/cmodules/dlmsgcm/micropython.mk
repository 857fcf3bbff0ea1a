# _dlmsgcm for Makefile-based ports (unix, qemu): AES-GCM over the mbedTLS the port
# already links (unix: MICROPY_SSL_MBEDTLS=1, the mbedTLS 3.6 tools/build_micropython.sh
# builds).
# Same source list as micropython.cmake.
DLMSGCM_MOD_DIR := $(USERMOD_DIR)

SRC_USERMOD_C += $(DLMSGCM_MOD_DIR)/dlmsgcm.c
CFLAGS_USERMOD += -I$(DLMSGCM_MOD_DIR)

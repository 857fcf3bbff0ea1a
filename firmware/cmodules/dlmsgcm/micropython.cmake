# _dlmsgcm for CMake-based ports (esp32, rp2): AES-GCM over the port's own mbedTLS.
# Same source list as micropython.mk. Pass this file (or a folder micropython.cmake that
# includes it) as USER_C_MODULES.
#
# No extra include path or library is needed: esp32 builds MicroPython as an ESP-IDF
# component that requires `mbedtls` (GCM enabled in the IDF default config), and rp2
# links micropy_lib_mbedtls, whose config (extmod/mbedtls/mbedtls_config_common.h)
# defines MBEDTLS_GCM_C; user-module sources compile inside the firmware target and
# inherit those include paths and the MBEDTLS_CONFIG_FILE definition.
add_library(usermod_dlmsgcm INTERFACE)

target_sources(usermod_dlmsgcm INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/dlmsgcm.c
)

target_include_directories(usermod_dlmsgcm INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}
)

target_link_libraries(usermod INTERFACE usermod_dlmsgcm)

#!/bin/sh
# Builds the simulated meter: MicroPython 1.25.0 from Debian's source package, its unix
# port with our variant (boards/UNIX), our firmware frozen in and our C user modules,
# over mbedTLS 3.6 built from Debian's source package.
# Idempotent: each step is skipped when its result is already there, so a second run
# only re-runs make (a few seconds). Everything lands in build/.
#
# MPY_DIR=/path/to/micropython uses an existing checkout instead of Debian's source.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
MPY_VERSION=1.25.0+ds-1
SRC=${MPY_DIR:-$BUILD/micropython-src}
JOBS=$(nproc 2>/dev/null || echo 2)

need_packages() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "build: installing Debian packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
}

# Debian trixie's source packages, through a private apt configuration whose mirror is
# the one this machine already uses (taken from its own sources), so no host is
# written here. dpkg-source applies Debian's patches.
apt_dir=$BUILD/apt
apt_opts="-o Dir::Etc::SourceList=$apt_dir/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$apt_dir/lists"
debian_source() {  # package[=version], destination directory
    [ -f "$2/.dlms-source-ok" ] && return 0
    if [ ! -f "$apt_dir/sources.list" ] || ! ls "$apt_dir/lists/"*Sources* >/dev/null 2>&1; then
        mkdir -p "$apt_dir/lists/partial"
        mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
            awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit} /^deb / && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^http/) {print $i; exit}}')
        [ -n "$mirror" ] || { echo "build: no Debian mirror in this machine's apt sources" >&2; exit 1; }
        echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$apt_dir/sources.list"
        apt-get -qq $apt_opts update
    fi
    rm -rf "$apt_dir/pkg" "$2" && mkdir -p "$apt_dir/pkg"
    (cd "$apt_dir/pkg" && apt-get -qq $apt_opts source --download-only "$1" 2>/dev/null &&
        dpkg-source -x --no-check ./*.dsc src >/dev/null)
    mv "$apt_dir/pkg/src" "$2"
    touch "$2/.dlms-source-ok"
}

# mbedTLS 3.6, the series MicroPython 1.25 embeds on the ESP32 and RP2040 boards, so the C
# module is built against the API the boards have. Debian's own mbedTLS here is 2.28,
# whose i386 build has no AES-NI; 3.6 uses AES-NI and PCLMUL on both word sizes (chosen at
# run time from cpuid). Static libraries, one set per word size; only the crypto library
# is used, the other two satisfy the unix port's link line.
MBEDTLS_SRC=$BUILD/mbedtls-src
build_mbedtls() {  # output directory, C compiler, C flags
    [ "$(cat "$1/.flags" 2>/dev/null)" = "$2 $3" ] && return 0
    rm -rf "$1" && cp -r "$MBEDTLS_SRC" "$1"
    make -s -C "$1/library" -j"$JOBS" CC="$2" CFLAGS="$3" libmbedcrypto.a libmbedx509.a libmbedtls.a >/dev/null
    echo "$2 $3" > "$1/.flags"
}

# The unix port is built 32-bit (MICROPY_FORCE_32BIT), like the ESP32 and RP2040 boards:
# objects then take the RAM they take on a board, and "runs in a 64 KB heap" on the
# simulator means what it says. Its libraries come from Debian's i386 architecture. It
# is linked at a fixed address (-no-pie), as board firmware is: position-independent
# code on i386 fetches its own address in every function that touches a global, which
# cost the interpreter an eighth of a GET.
dpkg --print-foreign-architectures | grep -qx i386 || { dpkg --add-architecture i386 && apt-get update -qq; }
need_packages build-essential dpkg-dev pkgconf python3 gcc-multilib libffi-dev:i386 libffi-dev
[ -n "${MPY_DIR:-}" ] || debian_source "micropython=$MPY_VERSION" "$SRC"
debian_source mbedtls "$MBEDTLS_SRC"
case $(sed -n 's/^#define MBEDTLS_VERSION_STRING  *"\(.*\)"/\1/p' "$MBEDTLS_SRC/include/mbedtls/build_info.h") in
    3.6.*) ;;
    *) echo "build: expected mbedTLS 3.6 in Debian trixie, found another version" >&2; exit 1 ;;
esac
NO_PIE32="-fno-pie"
build_mbedtls "$BUILD/mbedtls32" "gcc -m32" "-O2 $NO_PIE32"
build_mbedtls "$BUILD/mbedtls64" gcc "-O2"
make -s -C "$SRC/mpy-cross" -j"$JOBS" >/dev/null
python3 "$ROOT/tools/legal_signature.py" --module "$BUILD/legal/legal.py" >/dev/null
# The meter runs on the 32-bit build; a 64-bit twin (build/micropython64) proves the
# firmware on the other word size.
build_port() {  # build dir, mbedTLS dir, output name, C flags, link flags, make arguments
    dir=$1 tls=$2 out=$3 cflags="-I$MBEDTLS_SRC/include $4" ldflags="-L$2/library $5"; shift 5
    # A build made with other flags (an older checkout used the system mbedTLS) is
    # rebuilt from scratch: make does not see changed flags.
    stamp=$BUILD/$dir/.flags
    if [ "$(cat "$stamp" 2>/dev/null)" != "$cflags $ldflags" ]; then rm -rf "$BUILD/$dir"; fi
    make -s -C "$SRC/ports/unix" -j"$JOBS" \
        VARIANT_DIR="$ROOT/boards/UNIX" BUILD="$BUILD/$dir" "$@" \
        FROZEN_MANIFEST="$ROOT/boards/UNIX/manifest.py" USER_C_MODULES="$ROOT/firmware/cmodules" \
        MICROPY_SSL_AXTLS=0 MICROPY_SSL_MBEDTLS=1 MICROPY_PY_BTREE=0 STRIP=true \
        CFLAGS_EXTRA="$cflags" LDFLAGS_EXTRA="$ldflags"
    echo "$cflags $ldflags" > "$stamp"
    cp "$BUILD/$dir/micropython" "$BUILD/$out.new" && mv -f "$BUILD/$out.new" "$BUILD/$out"
}
build_port unix32 "$BUILD/mbedtls32" micropython "$NO_PIE32" -no-pie \
    MICROPY_FORCE_32BIT=1 PKG_CONFIG_PATH=/usr/lib/i386-linux-gnu/pkgconfig
build_port unix64 "$BUILD/mbedtls64" micropython64 "" ""
cp "$SRC/mpy-cross/build/mpy-cross" "$BUILD/mpy-cross"
echo "build: $BUILD/micropython ready"

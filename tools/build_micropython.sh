#!/bin/sh
# Builds the simulated meter: MicroPython 1.25.0 from Debian's source package, its unix
# port with our variant (boards/UNIX), our firmware frozen in and our C user modules.
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

fetch_source() {
    # Debian trixie's source package, through a private apt configuration whose mirror is
    # the one this machine already uses (taken from its own sources), so no host is
    # written here. dpkg-source applies Debian's patches (system mbedTLS among them).
    [ -f "$SRC/.dlms-source-ok" ] && return 0
    apt_dir=$BUILD/apt
    mkdir -p "$apt_dir/lists/partial"
    mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit} /^deb / && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^http/) {print $i; exit}}')
    [ -n "$mirror" ] || { echo "build: no Debian mirror in this machine's apt sources" >&2; exit 1; }
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$apt_dir/sources.list"
    apt_opts="-o Dir::Etc::SourceList=$apt_dir/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$apt_dir/lists"
    apt-get -qq $apt_opts update
    rm -rf "$apt_dir/pkg" "$SRC" && mkdir -p "$apt_dir/pkg"
    (cd "$apt_dir/pkg" && apt-get -qq $apt_opts source --download-only "micropython=$MPY_VERSION" 2>/dev/null &&
        dpkg-source -x --no-check ./*.dsc src >/dev/null)
    mv "$apt_dir/pkg/src" "$SRC"
    touch "$SRC/.dlms-source-ok"
}

# The unix port is built 32-bit (MICROPY_FORCE_32BIT), like the ESP32 and RP2040 boards:
# objects then take the RAM they take on a board, and "runs in a 64 KB heap" on the
# simulator means what it says. Its libraries come from Debian's i386 architecture.
dpkg --print-foreign-architectures | grep -qx i386 || { dpkg --add-architecture i386 && apt-get update -qq; }
need_packages build-essential dpkg-dev pkgconf python3 gcc-multilib libmbedtls-dev:i386 libffi-dev:i386 \
    libmbedtls-dev libffi-dev
[ -n "${MPY_DIR:-}" ] || fetch_source
make -s -C "$SRC/mpy-cross" -j"$JOBS" >/dev/null
python3 "$ROOT/tools/legal_signature.py" --module "$BUILD/legal/legal.py" >/dev/null
# The meter runs on the 32-bit build; a 64-bit twin (build/micropython64) proves the
# firmware on the other word size and gives the C module mbedTLS's AES-NI path, which
# mbedTLS 2.28 has on x86-64 only (ESP32 and RP2040 use their own AES hardware).
build_port() {  # build dir, output name, extra make arguments
    dir=$1 out=$2; shift 2
    make -s -C "$SRC/ports/unix" -j"$JOBS" \
        VARIANT_DIR="$ROOT/boards/UNIX" BUILD="$BUILD/$dir" "$@" \
        FROZEN_MANIFEST="$ROOT/boards/UNIX/manifest.py" USER_C_MODULES="$ROOT/firmware/cmodules" \
        MICROPY_SSL_AXTLS=0 MICROPY_SSL_MBEDTLS=1 MICROPY_PY_BTREE=0 STRIP=true
    cp "$BUILD/$dir/micropython" "$BUILD/$out.new" && mv -f "$BUILD/$out.new" "$BUILD/$out"
}
build_port unix32 micropython MICROPY_FORCE_32BIT=1 PKG_CONFIG_PATH=/usr/lib/i386-linux-gnu/pkgconfig
build_port unix64 micropython64
cp "$SRC/mpy-cross/build/mpy-cross" "$BUILD/mpy-cross"
echo "build: $BUILD/micropython ready"

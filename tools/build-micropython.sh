#!/usr/bin/env bash
# Build the MicroPython unix port with our manifest frozen in, and mpy-cross.
#
#   tools/build-micropython.sh            # Debian's micropython source package (pinned)
#   MICROPY_DIR=/path tools/build-micropython.sh   # a MicroPython checkout of your own
#
# Leaves build/micropython and build/mpy-cross.  The build is cached under
# .cache/ keyed by the source tree and the content of everything frozen, so
# a second run that changed nothing copies the cached binary in seconds.
#
# The `tls` module (extmod/modtls_mbedtls.c) is in: mbedTLS comes from the
# same Debian source package the RP2040 image uses (MBEDTLS_DEB_VERSION in
# firmware/common.sh), built once into static libraries with MicroPython's
# own unix mbedTLS config (TLS 1.2, 16 KiB in / 4 KiB out, as on the board)
# and cached apart from the port, so libmbedtls-dev is not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

die() { echo "build-micropython: $*" >&2; exit 1; }
say() { echo "build-micropython: $*" >&2; }

for tool in gcc make python3 sha256sum; do
    command -v "$tool" >/dev/null || die "'$tool' not found; run .ci/run --deps-only (or apt-get install build-essential python3)"
done

. tools/micropython-source.sh
micropython_source unix
src=$mpy_src src_id=$mpy_id tag=$mpy_tag

# mbedTLS: the version pinned for the images (one place: firmware/common.sh).
mbedtls_ver=$(sed -n 's/^MBEDTLS_DEB_VERSION=\([^ #]*\).*/\1/p' firmware/common.sh)
[ -n "$mbedtls_ver" ] || die "no MBEDTLS_DEB_VERSION in firmware/common.sh"

# Everything that changes the binary: the source identity, the mbedTLS
# version, the manifests, the frozen modules and this script.
key=$( { echo "$src_id mbedtls-$mbedtls_ver"; cat tools/build-micropython.sh tools/unix-manifest.py manifest.py;
         find manifests modules -type f -name '*.py' | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done; } \
       | sha256sum | cut -c1-16)
work=$top/.cache/unix-build/$tag
mkdir -p "$work" build
# One build at a time per tree (parallel `make test` runs share the cache).
exec 9>"$work.lock"
flock 9

# Install by rename, so a test still running the old binary is not disturbed.
install_outputs() {
    local f
    for f in micropython mpy-cross; do
        cp "$work/$f" "build/.$f.new" && mv -f "build/.$f.new" "build/$f"
    done
}

if [ -x "$work/micropython" ] && [ "$(cat "$work/key" 2>/dev/null)" = "$key" ]; then
    install_outputs
    say "up to date ($tag, key $key): build/micropython"
    exit 0
fi

# A user's tree may lack the micropython-lib submodule; we require() nothing
# from it, so an empty folder with a README.md satisfies MicroPython's check.
mkdir -p "$work/empty-lib" && touch "$work/empty-lib/README.md"
log=$work/build.log
: > "$log"
run() {
    if ! "$@" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "failed: $* (full log: $log)"
    fi
}

start=$(date +%s)

# mbedTLS.  Debian's micropython links the system's mbedTLS (its patch
# 0006 makes extmod.mk add -lmbedx509 -lmbedtls -lmbedcrypto instead of
# compiling lib/mbedtls): we give it static libraries of our own, built with
# mbedTLS's Makefile from a private copy of the source (the shared Debian
# folder stays pristine) and MicroPython's ports/unix mbedTLS config.  An
# upstream tree (MICROPY_DIR, extmod.mk unpatched) compiles its own
# lib/mbedtls submodule with the same config instead.
ssl_args=(MICROPY_PY_SSL=1 MICROPY_SSL_MBEDTLS=1 MICROPY_SSL_AXTLS=0)
if grep -q -- '-lmbedtls' "$src/extmod/extmod.mk"; then
    tls_src=$top/.cache/debian/mbedtls-$mbedtls_ver
    tools/debian-source.sh source mbedtls "$mbedtls_ver" "$tls_src"
    tls_conf=$src/ports/unix/mbedtls/mbedtls_config_port.h
    [ -f "$tls_conf" ] || die "$tls_conf not found"
    tls_def="-DMBEDTLS_CONFIG_FILE='\"$tls_conf\"'"
    tls=$work/mbedtls-$mbedtls_ver
    # Keyed by the version, the config headers and the flags.
    tls_key=$( { echo "$mbedtls_ver $tls_def"; gcc --version | head -1
                 cat "$tls_conf" "$src/extmod/mbedtls/mbedtls_config_common.h"; } | sha256sum | cut -c1-16)
    if [ "$(cat "$tls/key" 2>/dev/null)" != "$tls_key" ] || [ ! -f "$tls/library/libmbedcrypto.a" ]; then
        say "building mbedTLS $mbedtls_ver static libraries (once; log: $log)"
        rm -rf "$tls"
        mkdir -p "$tls"
        # (scripts/: the generated sources' order-only prerequisites; the
        # generated files themselves ship in the source and are not remade.)
        mkdir -p "$tls/framework"
        cp -a "$tls_src/include" "$tls_src/library" "$tls_src/3rdparty" "$tls_src/scripts" "$tls/"
        cp -a "$tls_src/framework/scripts" "$tls/framework/"
        run make -C "$tls/library" -j"$JOBS" libmbedcrypto.a libmbedx509.a libmbedtls.a \
            CFLAGS="-O2 -I$src -I$src/ports/unix $tls_def"
        echo "$tls_key" > "$tls/key"
    fi
    # extmod.mk's -l flags find these through -L; the group resolves the
    # static libraries' references to each other whatever their order.
    ssl_args+=(CFLAGS_EXTRA="-I$tls/include $tls_def"
               LDFLAGS_EXTRA="-L$tls/library -Wl,--start-group $tls/library/libmbedtls.a $tls/library/libmbedx509.a $tls/library/libmbedcrypto.a -Wl,--end-group")
else
    [ -f "$src/lib/mbedtls/library/ssl_tls.c" ] \
        || die "$src has no lib/mbedtls (the tls module needs it); run 'make -C $src/ports/unix submodules'"
fi

say "building mpy-cross from $src (log: $log)"
run make -C "$src/mpy-cross" -j"$JOBS" BUILD="$work/mpy-cross-build"
say "building the unix port with manifest.py frozen in"
# makemanifest.py recompiles a frozen module, and regenerates frozen_content.c,
# only when a source file is newer than its output: a manifest change alone (a
# module dropped, reordered) would be missed, and so would an older file from
# another checkout sharing this cache (a worktree of an older commit).  The
# frozen part is small (~1 s): rebuild it every time the key changed.
rm -rf "$work/unix-build/frozen_content.c" "$work/unix-build/frozen_mpy"
port_args=(BUILD="$work/unix-build"
    MICROPY_MPYCROSS="$work/mpy-cross-build/mpy-cross" MICROPY_MPYCROSS_DEPENDENCY="$work/mpy-cross-build/mpy-cross"
    FROZEN_MANIFEST="$top/tools/unix-manifest.py" MPY_LIB_DIR="$work/empty-lib"
    MICROPY_PY_BTREE=0 MICROPY_PY_FFI=0 "${ssl_args[@]}")
# make does not rebuild objects (nor the QSTR list) when only the options
# change: a build made with other options starts afresh.
conf=$(printf '%s\n' "${port_args[@]}" | sha256sum | cut -c1-16)
if [ "$(cat "$work/configured" 2>/dev/null)" != "$conf" ]; then
    rm -rf "$work/unix-build" "$work/configured"
fi
run make -C "$src/ports/unix" -j"$JOBS" "${port_args[@]}"
echo "$conf" > "$work/configured"
cp "$work/unix-build/micropython" "$work/micropython"
cp "$work/mpy-cross-build/mpy-cross" "$work/mpy-cross"
echo "$key" > "$work/key"
install_outputs
say "built build/micropython ($("$work/micropython" -c 'import sys; print(sys.implementation.name, ".".join(map(str, sys.implementation.version[:3])))')) in $(( $(date +%s) - start )) s"

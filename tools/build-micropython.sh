#!/usr/bin/env bash
# Build the MicroPython unix port with our manifest frozen in, and mpy-cross.
#
#   tools/build-micropython.sh            # Debian's micropython source package (pinned)
#   MICROPY_DIR=/path tools/build-micropython.sh   # a MicroPython checkout of your own
#
# Leaves build/micropython and build/mpy-cross.  The build is cached under
# .cache/ keyed by the source tree and the content of everything frozen, so
# a second run that changed nothing copies the cached binary in seconds.
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

# Everything that changes the binary: the source identity, the manifests,
# the frozen modules and this script.
key=$( { echo "$src_id"; cat tools/build-micropython.sh tools/unix-manifest.py manifest.py;
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
say "building mpy-cross from $src (log: $log)"
run make -C "$src/mpy-cross" -j"$JOBS" BUILD="$work/mpy-cross-build"
say "building the unix port with manifest.py frozen in"
# makemanifest.py recompiles a frozen module, and regenerates frozen_content.c,
# only when a source file is newer than its output: a manifest change alone (a
# module dropped, reordered) would be missed, and so would an older file from
# another checkout sharing this cache (a worktree of an older commit).  The
# frozen part is small (~1 s): rebuild it every time the key changed.
rm -rf "$work/unix-build/frozen_content.c" "$work/unix-build/frozen_mpy"
run make -C "$src/ports/unix" -j"$JOBS" BUILD="$work/unix-build" \
    MICROPY_MPYCROSS="$work/mpy-cross-build/mpy-cross" MICROPY_MPYCROSS_DEPENDENCY="$work/mpy-cross-build/mpy-cross" \
    FROZEN_MANIFEST="$top/tools/unix-manifest.py" MPY_LIB_DIR="$work/empty-lib" \
    MICROPY_PY_BTREE=0 MICROPY_PY_FFI=0 MICROPY_PY_SSL=0 MICROPY_SSL_MBEDTLS=0 MICROPY_SSL_AXTLS=0
cp "$work/unix-build/micropython" "$work/micropython"
cp "$work/mpy-cross-build/mpy-cross" "$work/mpy-cross"
echo "$key" > "$work/key"
install_outputs
say "built build/micropython ($("$work/micropython" -c 'import sys; print(sys.implementation.name, ".".join(map(str, sys.implementation.version[:3])))')) in $(( $(date +%s) - start )) s"

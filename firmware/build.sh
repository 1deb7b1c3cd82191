#!/usr/bin/env bash
# Build a firmware image for one board of boards/ with MicroPython's own
# build system (the board folder is passed as an out-of-tree board).
#
#   firmware/build.sh BOARD              # -> firmware/BOARD.{uf2,elf} or .{bin,elf}, firmware/SHA256SUMS
#   firmware/build.sh BOARD --baseline   # the same board frozen with manifest_port.py only
#                                        # (for `make size`); prints the ELF's path, copies nothing
#   firmware/build.sh BOARD --no-tls     # RP2040: the same board built with MICROPY_PY_SSL=0
#                                        # (for `make size`: what TLS costs); prints the ELF's path
#
# Environment: MICROPY_DIR (a MicroPython checkout of your own instead of
# Debian's source package), JOBS, SOURCE_DATE_EPOCH (build date; default:
# the MicroPython source's own release date), IDF_PATH (ESP32 boards).
#
# RP2040 sources: Debian's micropython, pico-sdk-source, tinyusb-source and
# mbedtls packages, composed under .cache/firmware/tree/ (hard links); picotool
# is built from Debian's source for the UF2.  The result is cached under
# .cache/firmware/build/ keyed by everything that goes into the image, so a
# second run that changed nothing only copies the image out.
set -euo pipefail
me=firmware
. "$(dirname "$0")/common.sh"

[ $# -ge 1 ] || die "usage: firmware/build.sh BOARD [--baseline|--no-tls]"
BOARD=$1
mode=${2:-}
case $mode in
    ""|--baseline|--no-tls) ;;
    *) die "unknown option $mode; usage: firmware/build.sh BOARD [--baseline|--no-tls]" ;;
esac
baseline=0
[ -n "$mode" ] && baseline=1   # a comparison build for `make size`: ELF path out, nothing copied
board_port "$BOARD"
cd "$top"
start=$(date +%s)

need python3 "apt-get install python3"
need make "apt-get install build-essential"
need sha256sum "apt-get install coreutils"
need flock "apt-get install util-linux"

# Content key of the product part: board folder, top-level and component manifests, modules/.
product_key() {
    { (cd "$board_dir" && find . -type f | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done)
      cat manifest.py
      find manifests modules -type f -name '*.py' | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done
      cat firmware/build.sh firmware/common.sh; } | sha256sum | cut -c1-16
}

# Write OUT/NAME's checksum into OUT/SHA256SUMS (replacing an older line).
record_sum() {
    local out=$1 name=$2 sums=$1/SHA256SUMS
    touch "$sums"
    { grep -v "  $name\$" "$sums" || true; (cd "$out" && sha256sum "$name"); } | LC_ALL=C sort -k2 > "$sums.new"
    mv "$sums.new" "$sums"
}

# The build date: fixed, so two builds of the same inputs are byte-identical.
source_date() {
    if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then echo "$SOURCE_DATE_EPOCH"
    elif [ -f "$mpy_src/debian/changelog" ] && command -v dpkg-parsechangelog >/dev/null; then
        dpkg-parsechangelog -l "$mpy_src/debian/changelog" -STimestamp
    elif git -C "$mpy_src" log -1 --format=%ct >/dev/null 2>&1; then git -C "$mpy_src" log -1 --format=%ct
    else stat -c %Y "$mpy_src/py/mpconfig.h"
    fi
}

out=$top/firmware
log_fail() {  # log_fail LOG MESSAGE
    tail -n 40 "$1" >&2
    die "$2 (full log: $1)"
}

###########################################################################
build_rp2() {
    need arm-none-eabi-gcc "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"
    [ "$(arm-none-eabi-gcc -print-file-name=libc.a)" != libc.a ] \
        || die "newlib (the ARM C library) not found; apt-get install libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"
    need cmake "apt-get install cmake"
    need g++ "apt-get install build-essential (picotool is built from source with it)"
    need pkg-config "apt-get install pkg-config"
    pkg-config --exists libusb-1.0 || die "libusb-1.0 headers not found (picotool needs them); apt-get install libusb-1.0-0-dev"

    # One preparation at a time (fetches, source tree, picotool): several
    # builds or test runs may start at once on the same cache.
    mkdir -p "$cache/firmware"
    exec 7>"$cache/firmware/prepare.lock"
    flock 7
    micropython_source
    local tree libs_id
    if [ -n "${MICROPY_DIR:-}" ]; then
        # A checkout of your own is used in place, with its own submodules.
        [ -f "$mpy_src/lib/pico-sdk/pico_sdk_init.cmake" ] && [ -f "$mpy_src/lib/tinyusb/src/tusb.h" ] \
            && [ -d "$mpy_src/lib/mbedtls/library" ] \
            || die "MICROPY_DIR=$MICROPY_DIR lacks lib/pico-sdk, lib/tinyusb or lib/mbedtls; run 'make -C $MICROPY_DIR/ports/rp2 submodules' there, or unset MICROPY_DIR to use Debian's sources"
        tree=$mpy_src
        libs_id=in-tree
    else
        local sdk=$cache/debian/pico-sdk-source-$PICO_SDK_DEB_VERSION
        local tusb=$cache/debian/tinyusb-source-$TINYUSB_DEB_VERSION
        local tls=$cache/debian/mbedtls-$MBEDTLS_DEB_VERSION
        tools/debian-source.sh deb pico-sdk-source "$PICO_SDK_DEB_VERSION" "$sdk"
        tools/debian-source.sh deb tinyusb-source "$TINYUSB_DEB_VERSION" "$tusb"
        tools/debian-source.sh source mbedtls "$MBEDTLS_DEB_VERSION" "$tls"
        libs_id=sdk-$PICO_SDK_DEB_VERSION+tinyusb-$TINYUSB_DEB_VERSION+mbedtls-$MBEDTLS_DEB_VERSION
        # MicroPython's tree with the submodule folders filled (hard links: no copy).
        tree=$cache/firmware/tree/micropython-$MICROPY_DEB_VERSION+$libs_id
        if [ ! -f "$tree/.complete" ]; then
            say "composing the source tree $tree"
            rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"
            cp -al "$mpy_src/." "$tree.tmp/"
            rm -rf "$tree.tmp/lib/pico-sdk" "$tree.tmp/lib/tinyusb" "$tree.tmp/lib/mbedtls"
            cp -al "$sdk/usr/src/pico-sdk" "$tree.tmp/lib/pico-sdk"
            cp -al "$tusb/usr/src/tinyusb" "$tree.tmp/lib/tinyusb"
            cp -al "$tls" "$tree.tmp/lib/mbedtls"
            touch "$tree.tmp/.complete"
            rm -rf "$tree" && mv "$tree.tmp" "$tree"
        fi
    fi

    # picotool, built once from Debian's source, turns the ELF into the UF2
    # (installed flat, as the pico-sdk's own fetch does: picotool/picotoolConfig.cmake).
    local picotool_prefix=$cache/firmware/picotool-$PICOTOOL_DEB_VERSION
    local picotool_dir=${PICOTOOL_DIR:-$picotool_prefix/picotool}
    if [ ! -x "$picotool_dir/picotool" ] || [ ! -f "$picotool_dir/picotoolConfig.cmake" ]; then
        local ptsrc=$cache/debian/picotool-$PICOTOOL_DEB_VERSION
        firmware/debian-orig.sh picotool "$PICOTOOL_DEB_VERSION" "$ptsrc"
        local ptlog=$picotool_prefix.log
        say "building picotool $PICOTOOL_DEB_VERSION from source (once; log: $ptlog)"
        rm -rf "$picotool_prefix" "$picotool_prefix.build"
        { cmake -S "$ptsrc" -B "$picotool_prefix.build" -DCMAKE_BUILD_TYPE=Release -DPICO_SDK_PATH="$tree/lib/pico-sdk" \
              -DUSE_PRECOMPILED=false -DPICOTOOL_FLAT_INSTALL=1 -DCMAKE_INSTALL_PREFIX="$picotool_prefix" \
            && make -C "$picotool_prefix.build" -j"$JOBS" && cmake --install "$picotool_prefix.build"; } > "$ptlog" 2>&1 \
            || { rm -rf "$picotool_prefix"; log_fail "$ptlog" "building picotool failed"; }
        rm -rf "$picotool_prefix.build"
        picotool_dir=${PICOTOOL_DIR:-$picotool_prefix/picotool}
    fi

    # mpy-cross from the same tree freezes the modules.
    mpy_cross_build
    flock -u 7

    local variant=$BOARD manifest_arg=() extra_cflags=()
    if [ "$mode" = --baseline ]; then
        variant=$BOARD-baseline
        manifest_arg=(-DMICROPY_FROZEN_MANIFEST="$board_dir/manifest_port.py")
    elif [ "$mode" = --no-tls ]; then
        # MicroPython's CMake hands CFLAGS_EXTRA to the compiler and to the
        # QSTR scan alike; the board's mpconfigboard.h defines MICROPY_PY_SSL
        # only #ifndef, so this builds the same image without the tls module.
        variant=$BOARD-no-tls
        extra_cflags=(CFLAGS_EXTRA=-DMICROPY_PY_SSL=0)
    fi
    local work=$cache/firmware/build/$mpy_tag+$libs_id/$variant
    mkdir -p "$work"
    exec 9>"$work.lock"
    flock 9

    local sde; sde=$(source_date)
    local key; key=$( { echo "$mpy_id $libs_id $sde $mode"; arm-none-eabi-gcc --version | head -1; cmake --version | head -1
                        product_key; } | sha256sum | cut -c1-16)
    local b=$work/build
    if [ "$(cat "$work/key" 2>/dev/null)" = "$key" ] && [ -f "$b/firmware.uf2" ] && [ -f "$b/firmware.elf" ]; then
        say "up to date ($variant, key $key)"
    else
        local log=$work/build.log
        : > "$log"
        say "building $variant from $tree (log: $log)"
        # Reproducible: fixed date, every absolute path mapped to a fixed name,
        # no version lookup in an enclosing git repository (ours).
        # (-fdebug-prefix-map too: gcc 12 hands only that one on to the assembler.)
        local map="" from to
        for from in "$top" "$tree" "$work"; do
            case $from in "$top") to=/project ;; "$tree") to=/micropython ;; *) to=/build ;; esac
            map+=" -ffile-prefix-map=$from=$to -fdebug-prefix-map=$from=$to"
        done
        # PYTHONHASHSEED: MicroPython's generators iterate Python sets of
        # strings (tools/boardgen.py: a pin's board names), whose order
        # otherwise changes from run to run; seen as two pins.h lines, then
        # two table entries, swapped between two otherwise identical builds.
        local genv=(env SOURCE_DATE_EPOCH="$sde" PYTHONHASHSEED=0 MICROPY_MPYCROSS="$mpyc"
                    CFLAGS="$map" CXXFLAGS="$map" ASMFLAGS="$map" "${extra_cflags[@]}")
        [ "$libs_id" = in-tree ] || genv+=(GIT_CEILING_DIRECTORIES="$(dirname "$tree")")
        rm -f "$work/key"
        # CMake caches the flags at the first configure: a changed configuration starts afresh.
        # So does a changed board config (mpconfigboard.h, .cmake, pins.csv...):
        # make rebuilds the objects that include it, but the QSTR list is
        # collected incrementally, so a module the change switches on (say
        # MICROPY_PY_SSL) fails to link on missing MP_QSTR_... names.  The
        # board's Python files (board.py, manifests) only change the frozen
        # part, which is regenerated below on every build anyway.
        local board_conf; board_conf=$( (cd "$board_dir" && find . -type f ! -name '*.py' | LC_ALL=C sort \
                                          | while read -r f; do echo "$f"; cat "$f"; done) | sha256sum)
        local conf; conf=$(printf '%s\n' "${genv[@]}" "$board_dir" "$board_conf" "${manifest_arg[@]}" "$picotool_dir" | sha256sum)
        [ "$(cat "$work/configured" 2>/dev/null)" = "$conf" ] || rm -rf "$b" "$work/configured"
        "${genv[@]}" cmake -S "$tree/ports/rp2" -B "$b" -DPICO_BUILD_DOCS=0 \
            -DMICROPY_BOARD="$BOARD" -DMICROPY_BOARD_DIR="$board_dir" "${manifest_arg[@]}" \
            -DMICROPY_LIB_DIR="$(empty_lib)" -Dpicotool_DIR="$picotool_dir" >>"$log" 2>&1 \
            || log_fail "$log" "cmake could not configure the rp2 build"
        echo "$conf" > "$work/configured"
        # makemanifest.py recompiles a frozen module, and regenerates
        # frozen_content.c, only when a source is newer than its output: a
        # manifest change alone (a module dropped, reordered), or an older file
        # from another checkout sharing this cache, would be missed.
        rm -rf "$b/frozen_content.c" "$b/frozen_mpy"
        "${genv[@]}" make -C "$b" -j"$JOBS" >>"$log" 2>&1 || log_fail "$log" "the rp2 build failed"
        [ -f "$b/firmware.uf2" ] || log_fail "$log" "the build made no firmware.uf2 (picotool not used?)"
        echo "$key" > "$work/key"
    fi
    if [ $baseline = 1 ]; then
        echo "$b/firmware.elf"
        return
    fi
    mkdir -p "$out"
    cp "$b/firmware.uf2" "$out/.$BOARD.uf2.new" && mv -f "$out/.$BOARD.uf2.new" "$out/$BOARD.uf2"
    cp "$b/firmware.elf" "$out/.$BOARD.elf.new" && mv -f "$out/.$BOARD.elf.new" "$out/$BOARD.elf"
    record_sum "$out" "$BOARD.uf2"
    record_sum "$out" "$BOARD.elf"
    say "firmware/$BOARD.uf2 ($(stat -c %s "$out/$BOARD.uf2") bytes) and firmware/$BOARD.elf in $(( $(date +%s) - start )) s"
}

###########################################################################
build_esp32() {
    if [ -z "${IDF_PATH:-}" ] || [ ! -f "$IDF_PATH/tools/idf.py" ]; then
        die "BOARD=$BOARD needs ESP-IDF ($IDF_SUPPORTED; MicroPython 1.25 is tested with $IDF_RECOMMENDED), which no package registry here ships.
  Install it (Espressif's installer: clone esp-idf at $IDF_RECOMMENDED with submodules, ./install.sh esp32,
  then '. ./export.sh' so IDF_PATH is set and idf.py is on PATH), or let CI build it
  (.github/workflows/firmware.yml runs in Espressif's IDF container).
  What can be checked without IDF: make firmware-check BOARD=$BOARD"
    fi
    command -v idf.py >/dev/null || die "IDF_PATH=$IDF_PATH is set but idf.py is not on PATH; run '. \$IDF_PATH/export.sh' first"
    micropython_source
    # The esp32 port always builds btree: it needs the berkeley-db submodule,
    # which Debian's +ds source package leaves out.
    [ -n "$(ls -A "$mpy_src/lib/berkeley-db-1.xx" 2>/dev/null)" ] \
        || die "$mpy_src has no lib/berkeley-db-1.xx (Debian's source package strips submodules) and the esp32 port needs it.
  Set MICROPY_DIR to a MicroPython v1.25.0 checkout and run 'make -C \$MICROPY_DIR/ports/esp32 submodules' in it."
    [ "$mode" != --no-tls ] || die "--no-tls is for RP2040 boards (an ESP32 image keeps the port's own ssl)"
    local variant=$BOARD manifest=()
    if [ $baseline = 1 ]; then
        variant=$BOARD-baseline
        manifest=(FROZEN_MANIFEST="$board_dir/manifest_port.py")
    fi
    local work=$cache/firmware/build/$mpy_tag+idf/$variant
    mkdir -p "$work"
    exec 9>"$work.lock"
    flock 9
    local sde; sde=$(source_date)
    local idf_id; idf_id=$(git -C "$IDF_PATH" describe --tags --always 2>/dev/null || echo "$IDF_PATH")
    local key; key=$( { echo "$mpy_id $idf_id $sde $baseline"; product_key; } | sha256sum | cut -c1-16)
    local b=$work/build
    if [ "$(cat "$work/key" 2>/dev/null)" = "$key" ] && [ -f "$b/firmware.bin" ]; then
        say "up to date ($variant, key $key)"
    else
        local log=$work/build.log
        : > "$log"
        say "building $variant with ESP-IDF $idf_id from $mpy_src (log: $log)"
        rm -f "$work/key"
        SOURCE_DATE_EPOCH="$sde" PYTHONHASHSEED=0 make -C "$mpy_src/ports/esp32" BOARD="$BOARD" BOARD_DIR="$board_dir" BUILD="$b" \
            "${manifest[@]}" CMAKE_ARGS="-DMICROPY_LIB_DIR=$(empty_lib)" >>"$log" 2>&1 \
            || log_fail "$log" "the esp32 build failed"
        echo "$key" > "$work/key"
    fi
    if [ $baseline = 1 ]; then
        echo "$b/micropython.elf"
        return
    fi
    mkdir -p "$out"
    # firmware.bin = bootloader + partition table + app, flashed at 0x1000.
    cp "$b/firmware.bin" "$out/.$BOARD.bin.new" && mv -f "$out/.$BOARD.bin.new" "$out/$BOARD.bin"
    cp "$b/micropython.elf" "$out/.$BOARD.elf.new" && mv -f "$out/.$BOARD.elf.new" "$out/$BOARD.elf"
    record_sum "$out" "$BOARD.bin"
    record_sum "$out" "$BOARD.elf"
    say "firmware/$BOARD.bin ($(stat -c %s "$out/$BOARD.bin") bytes, flash at 0x1000) in $(( $(date +%s) - start )) s"
}

"build_$port"

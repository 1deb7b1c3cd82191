# Shared by the firmware/*.sh scripts (sourced, not run).  Pinned source
# versions, board lookup, error helpers and the host-tool lookup.

# Debian (trixie) sources the images are built from.
PICO_SDK_DEB_VERSION=2.1.1-1             # binary package pico-sdk-source (all)
TINYUSB_DEB_VERSION=0.18.0+dfsg-1        # binary package tinyusb-source (all)
MBEDTLS_DEB_VERSION=3.6.6-0.1~deb13u1    # source package mbedtls
PICOTOOL_DEB_VERSION=2.1.1+dfsg-1        # source package picotool
# ESP-IDF versions MicroPython 1.25 supports (ports/esp32/README.md).
IDF_SUPPORTED="v5.2, v5.2.2, v5.3, v5.4"
IDF_RECOMMENDED=v5.2.2

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=$top/.cache
JOBS=${JOBS:-$(nproc)}

die() { echo "$me: $*" >&2; exit 1; }
say() { echo "$me: $*" >&2; }

boards_list() { (cd "$top/boards" && for d in */; do [ -f "$d/board.json" ] && printf '%s ' "${d%/}"; done); }

# board_port BOARD: sets $board_dir and $port (rp2 or esp32) or dies listing the boards.
board_port() {
    local b=$1
    [ -n "$b" ] || die "BOARD is empty; choose one of: $(boards_list)"
    board_dir=$top/boards/$b
    [ -f "$board_dir/board.json" ] || die "unknown BOARD=$b; the boards are: $(boards_list)(folders in boards/)"
    port=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("port", ""))' "$board_dir/board.json")
    case $port in
        rp2|esp32) ;;
        *) die "boards/$b/board.json has no \"port\": \"rp2\" or \"esp32\"" ;;
    esac
}

need() {  # need TOOL WHAT-TO-INSTALL
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; $2"
}

# The host tools from firmware/requirements.txt: .venv's copy first, then PATH.
host_tool() {
    if [ -x "$top/.venv/bin/$1" ]; then echo "$top/.venv/bin/$1"
    elif command -v "$1" >/dev/null 2>&1; then command -v "$1"
    else die "'$1' not found; run 'make firmware-tools' (installs firmware/requirements.txt into .venv)"
    fi
}

# micropython_source: MICROPY_DIR (a checkout of your own) or Debian's package.
. "$top/tools/micropython-source.sh"

# A folder holding only an empty README.md: satisfies MicroPython's
# "micropython-lib submodule" check; our manifests require() nothing from it.
empty_lib() {
    local d=$cache/firmware/empty-lib
    mkdir -p "$d" && touch "$d/README.md"
    echo "$d"
}

# mpy_cross_build: sets $mpyc to an mpy-cross built from $mpy_src (cached per tree).
mpy_cross_build() {
    local d=$cache/firmware/mpy-cross/$mpy_tag
    mpyc=$d/mpy-cross
    mkdir -p "$cache/firmware/mpy-cross"
    (
        flock 8
        if [ ! -x "$mpyc" ]; then
            say "building mpy-cross from $mpy_src"
            make -C "$mpy_src/mpy-cross" -j"$JOBS" BUILD="$d" > "$d.log" 2>&1 \
                || { tail -n 20 "$d.log" >&2; die "building mpy-cross failed (log: $d.log)"; }
        fi
    ) 8>"$d.lock" || exit 1
}

# Sourced by tools/build-micropython.sh and firmware/common.sh: which
# MicroPython tree to build from.  Needs $top (project root) and die().
#
# micropython_source [PORT]  (PORT defaults to $port)
#   MICROPY_DIR set: that checkout, checked to be a MicroPython tree with
#   ports/PORT; identified by its commit plus local changes, else its path.
#   Otherwise: Debian's pinned source package, fetched into .cache/debian/.
# Sets $mpy_src (the tree), $mpy_id (what the build cache keys on) and
# $mpy_tag (a folder name for this tree's build cache).
MICROPY_DEB_VERSION=${MICROPY_DEB_VERSION:-1.25.0+ds-1}

micropython_source() {
    local p=${1:-$port}
    if [ -n "${MICROPY_DIR:-}" ]; then
        mpy_src=$(realpath -m "$MICROPY_DIR")
        [ -d "$mpy_src" ] || die "MICROPY_DIR=$MICROPY_DIR does not exist; point it at a MicroPython checkout (the folder holding py/ and ports/), or unset it to use Debian's source"
        [ -f "$mpy_src/py/mkrules.mk" ] && [ -f "$mpy_src/py/mkrules.cmake" ] && [ -d "$mpy_src/ports/$p" ] \
            && [ -d "$mpy_src/mpy-cross" ] \
            || die "MICROPY_DIR=$MICROPY_DIR is not a MicroPython source tree (no py/mkrules.mk, py/mkrules.cmake, ports/$p or mpy-cross/); point it at the top of a checkout"
        mpy_id=$( (git -C "$mpy_src" rev-parse HEAD 2>/dev/null && git -C "$mpy_src" status --porcelain 2>/dev/null) || echo "$mpy_src")
        mpy_tag=custom-$(echo "$mpy_src" | sha256sum | cut -c1-12)
    else
        mpy_src=$top/.cache/debian/micropython-$MICROPY_DEB_VERSION
        "$top/tools/debian-source.sh" source micropython "$MICROPY_DEB_VERSION" "$mpy_src"
        mpy_id=debian-$MICROPY_DEB_VERSION
        mpy_tag=debian-$MICROPY_DEB_VERSION
    fi
}

#!/usr/bin/env bash
# Write a firmware image to a board.
#
#   firmware/flash.sh BOARD      (make flash BOARD=... PORT=... [IMAGE=...] [ERASE=1])
#
# IMAGE   the image to write; default firmware/BOARD.uf2 (RP2040) or
#         firmware/BOARD.bin (ESP32).  It must match the SHA256SUMS file
#         beside it (a downloaded release image: download SHA256SUMS too).
# PORT    RP2040: the serial port of a running board (it is rebooted into
#         its bootloader with mpremote, then written with picotool), the
#         mounted RPI-RP2 drive (the UF2 is copied there), or empty for a
#         board already in BOOTSEL mode (picotool finds it over USB).
#         ESP32: the serial port (required), e.g. /dev/ttyUSB0.
# ERASE=1 ESP32: erase the whole flash first (the filesystem too).
# DRY_RUN=1 print the commands instead of running them.
set -euo pipefail
me=flash
. "$(dirname "$0")/common.sh"

[ $# -ge 1 ] || die "usage: firmware/flash.sh BOARD"
BOARD=$1
board_port "$BOARD"
PORT=${PORT:-}
ERASE=${ERASE:-}
case $port in rp2) ext=uf2 ;; esp32) ext=bin ;; esac
image=${IMAGE:-$top/firmware/$BOARD.$ext}
if [ ! -f "$image" ]; then
    if [ -n "${IMAGE:-}" ]; then die "IMAGE=$IMAGE does not exist"; fi
    die "no image firmware/$BOARD.$ext; build it with 'make firmware BOARD=$BOARD', or give IMAGE=path/to/$BOARD.$ext"
fi
image=$(realpath "$image")
case $image in
    *."$ext") ;;
    *) die "IMAGE=$image is not a .$ext file; BOARD=$BOARD ($port) is flashed with a .$ext image" ;;
esac

run() {
    if [ -n "${DRY_RUN:-}" ]; then printf '%q ' "$@"; echo; else "$@"; fi
}

# 1. The image matches the SHA256SUMS beside it.
sums=$(dirname "$image")/SHA256SUMS
name=$(basename "$image")
[ -f "$sums" ] || die "no SHA256SUMS beside $image; download the SHA256SUMS of the same release into $(dirname "$image")"
want=$(awk -v n="$name" '$2 == n || $2 == "*" n {print $1}' "$sums" | head -1)
[ -n "$want" ] || die "$sums has no line for $name"
have=$(sha256sum "$image" | cut -d' ' -f1)
[ "$have" = "$want" ] || die "$image does not match its SHA256SUMS line (got $have, expected $want): refusing to flash a corrupted or different image"

# 2. The image is one the board's tools accept, for the board's chip.
flash_rp2() {
    local picotool=${PICOTOOL:-$cache/firmware/picotool-$PICOTOOL_DEB_VERSION/picotool/picotool}
    [ -x "$picotool" ] || picotool=$(command -v picotool || true)
    [ -n "$picotool" ] || die "picotool not found; 'make firmware' builds it from Debian's source (or give PICOTOOL=path)"
    local info
    info=$("$picotool" info "$image" 2>&1) || die "picotool cannot read $image: $info"
    grep -q "family ID 'rp2040'" <<<"$info" || die "$image is not an RP2040 UF2 image: $(head -1 <<<"$info")"
    say "$name: $(tr -s ' ' <<<"$info" | grep -E '^ (version|frozen modules):' | tr '\n' ' ')"

    if [ -n "$PORT" ] && [ -d "$PORT" ]; then
        # The mounted bootloader drive: copying the UF2 flashes and reboots the board.
        [ -f "$PORT/INFO_UF2.TXT" ] || die "PORT=$PORT is a folder but not the RPI-RP2 drive (no INFO_UF2.TXT); hold BOOTSEL while plugging the board in and give its mount point"
        grep -q RP2 "$PORT/INFO_UF2.TXT" || die "PORT=$PORT is a UF2 drive of another board: $(head -2 "$PORT/INFO_UF2.TXT" | tr '\n' ' ')"
        run cp "$image" "$PORT/"
        run sync
        say "copied $name to $PORT; the board reboots into the new firmware"
        return
    fi
    if [ -n "$PORT" ]; then
        # A running MicroPython board: reboot it into the bootloader first.
        [ -c "$PORT" ] || case $PORT in socket://*|rfc2217://*) ;; *) die "PORT=$PORT is not a serial device (a running board is /dev/ttyACM0 or similar; ls /dev/ttyACM*), nor the mounted RPI-RP2 drive" ;; esac
        local mpremote; mpremote=$(host_tool mpremote)
        run "$mpremote" connect "$PORT" bootloader
        [ -n "${DRY_RUN:-}" ] || sleep 3
    fi
    if [ -z "${DRY_RUN:-}" ]; then
        local i
        for i in 1 2 3 4 5 6 7 8 9 10; do
            "$picotool" info >/dev/null 2>&1 && break
            [ "$i" = 10 ] && die "no RP2040 in BOOTSEL mode found over USB; hold BOOTSEL while plugging the board in (or give PORT=/dev/ttyACM0 of a running board, or PORT=<mounted RPI-RP2 drive>); on Linux picotool may need the udev rule or root"
            sleep 1
        done
    fi
    # -v verifies what was written, -x starts the new firmware.
    run "$picotool" load -v -x "$image"
}

flash_esp32() {
    local esptool; esptool=$(host_tool esptool)
    local info
    info=$("$esptool" --chip esp32 image-info "$image" 2>&1) || die "esptool cannot read $image as an ESP32 image: $(tail -1 <<<"$info")"
    [ -n "$PORT" ] || die "PORT is missing: give the board's serial port, e.g. make flash BOARD=$BOARD PORT=/dev/ttyUSB0 (ls /dev/ttyUSB* /dev/ttyACM*)"
    [ -c "$PORT" ] || case $PORT in socket://*|rfc2217://*) ;; *) die "PORT=$PORT is not a serial device (ls /dev/ttyUSB* /dev/ttyACM*)" ;; esac
    if [ "$ERASE" = 1 ]; then
        run "$esptool" --chip esp32 --port "$PORT" erase-flash
    fi
    # firmware.bin holds bootloader, partition table and app: it goes at 0x1000.
    run "$esptool" --chip esp32 --port "$PORT" --baud 460800 write-flash -z 0x1000 "$image"
}

"flash_$port"

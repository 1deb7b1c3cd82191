#!/usr/bin/env bash
# What can be checked about a board without its SDK (no ESP-IDF here):
#
#   firmware/check.sh BOARD      (make firmware-check BOARD=...)
#
# 1. the board folder has what the port's CMake reads (mpconfigboard.cmake
#    is run by cmake itself; every sdkconfig file and the manifest it names
#    exist; mpconfigboard.h; board.py with the modem wiring);
# 2. the board manifest evaluates with MicroPython's tools/manifestfile.py;
# 3. every file it freezes compiles with the tree's own mpy-cross for both
#    armv6m (RP2040) and xtensawin (ESP32), at the manifest's opt level.
set -euo pipefail
me=firmware-check
. "$(dirname "$0")/common.sh"

[ $# -ge 1 ] || die "usage: firmware/check.sh BOARD"
BOARD=$1
board_port "$BOARD"
cd "$top"
need python3 "apt-get install python3"
need cmake "apt-get install cmake"
need make "apt-get install build-essential"
micropython_source
port_dir=$mpy_src/ports/$port

# 1. The board folder, as the port's CMake reads it.
for f in mpconfigboard.cmake mpconfigboard.h manifest.py manifest_port.py board.py; do
    [ -f "$board_dir/$f" ] || die "boards/$BOARD/$f is missing"
done
cmake -DMICROPY_BOARD_DIR="$board_dir" -DPORT="$port" -DPORT_DIR="$port_dir" -P firmware/check-board.cmake \
    || die "boards/$BOARD does not have what the $port port's CMake reads (see above)"
python3 - "$board_dir/board.py" <<'EOF' || die "boards/$BOARD/board.py lacks the modem wiring the app reads"
import ast, sys
names = {t.id for n in ast.parse(open(sys.argv[1]).read()).body if isinstance(n, ast.Assign)
         for t in n.targets if isinstance(t, ast.Name)}
funcs = {n.name for n in ast.parse(open(sys.argv[1]).read()).body if isinstance(n, ast.FunctionDef)}
need = {"NAME", "WIFI", "MODEM_UART", "MODEM_TX", "MODEM_RX", "MODEM_BAUD", "MODEM_PWRKEY", "MODEM_RESET"}
missing = sorted(need - names) + sorted({"modem_uart", "modem_pins"} - funcs)
if missing:
    print("board.py: missing " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
EOF

mpy_cross_build

# 2 and 3. Evaluate the manifest; compile what it freezes.
python3 - "$mpy_src" "$port_dir" "$board_dir" "$(empty_lib)" "$mpyc" <<'EOF' || die "boards/$BOARD: see above"
import os, subprocess, sys, tempfile
mpy_dir, port_dir, board_dir, lib_dir, mpyc = sys.argv[1:]
sys.path.insert(0, os.path.join(mpy_dir, "tools"))
import manifestfile

m = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, {
    "MPY_DIR": mpy_dir, "PORT_DIR": port_dir, "BOARD_DIR": board_dir, "MPY_LIB_DIR": lib_dir})
try:
    m.execute(os.path.join(board_dir, "manifest.py"))
except manifestfile.ManifestFileError as e:
    sys.exit("manifest.py does not evaluate: %s" % e)
files = [f for f in m.files() if f.kind == manifestfile.KIND_FREEZE_AS_MPY]
if not files:
    sys.exit("manifest.py freezes nothing")
bad = 0
with tempfile.TemporaryDirectory() as tmp:
    for f in files:
        for arch in ("armv6m", "xtensawin"):
            cmd = [mpyc, "-march=" + arch, "-O%d" % (f.opt or 0), "-s", f.target_path,
                   "-o", os.path.join(tmp, "out.mpy"), f.full_path]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                bad += 1
                print("%s (%s): %s" % (f.target_path, arch, (r.stderr or r.stdout).strip()), file=sys.stderr)
print("firmware-check: %s freezes %d modules: %s" % (
    os.path.basename(board_dir), len(files), " ".join(f.target_path[:-3] for f in files)))
if bad:
    sys.exit("%d compilations failed" % bad)
print("firmware-check: all compile with mpy-cross -march=armv6m and -march=xtensawin")
EOF

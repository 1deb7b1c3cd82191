#!/usr/bin/env bash
# Flash taken by our frozen code in a board's image:
#
#   firmware/size.sh BOARD      (make size BOARD=...)
#
# Builds the board twice (both cached): as shipped, and frozen with its
# manifest_port.py only (the port's modules and asyncio, i.e. the same board
# without board.py and modules/).  The difference of the images' flash
# footprint (text + data of the ELF) is what our modules cost, qstrs
# included.  A per-module split (from the ELF's symbols; shared qstrs
# are not in it) follows.
#
# RP2040 boards also report what TLS costs: a third build (cached too), the
# same board with -DMICROPY_PY_SSL=0; the difference is the tls module plus
# the mbedTLS code it pulls in (the hashes and ciphers hashlib and cryptolib
# already use from mbedTLS are in both images, so they are not counted).
set -euo pipefail
me=size
. "$(dirname "$0")/common.sh"
[ $# -ge 1 ] || die "usage: firmware/size.sh BOARD"
BOARD=$1
board_port "$BOARD"
cd "$top"
case $port in
    rp2) size_tool=arm-none-eabi-size nm_tool=arm-none-eabi-nm
         need arm-none-eabi-size "apt-get install binutils-arm-none-eabi" ;;
    esp32) size_tool=xtensa-esp32-elf-size nm_tool=xtensa-esp32-elf-nm
         need xtensa-esp32-elf-size "run '. \$IDF_PATH/export.sh' (ESP-IDF's toolchain)" ;;
esac

firmware/build.sh "$BOARD"
base_elf=$(firmware/build.sh "$BOARD" --baseline)
notls_elf=
[ "$port" = rp2 ] && notls_elf=$(firmware/build.sh "$BOARD" --no-tls)
full_elf=$top/firmware/$BOARD.elf

# Our modules' names, as the frozen code's symbols spell them (board.py and modules/).
ours=$( (echo board; cd modules && find . -name '*.py' | sed 's|^\./||; s|\.py$||; s|/|_|g') | LC_ALL=C sort)
python3 - "$size_tool" "$nm_tool" "$full_elf" "$base_elf" "${notls_elf:--}" "$BOARD" $ours <<'PY'
import re, subprocess, sys
size_tool, nm_tool, full, base, notls, board, *ours = sys.argv[1:]

def flash(elf):  # text + data: what the image occupies in flash
    out = subprocess.run([size_tool, elf], capture_output=True, text=True, check=True).stdout
    text, data = out.splitlines()[1].split()[:2]
    return int(text) + int(data)

f, b = flash(full), flash(base)
print("%s: flash used (text+data)" % board)
print("  %-32s %8d bytes" % ("without our modules (baseline)", b))
print("  %-32s %8d bytes" % ("with board.py + modules/", f))
print("  %-32s %8d bytes (%.1f KiB)" % ("our frozen modules take", f - b, (f - b) / 1024))
if notls != "-":
    n = flash(notls)
    print("  %-32s %8d bytes" % ("without TLS (MICROPY_PY_SSL=0)", n))
    print("  %-32s %8d bytes (%.1f KiB)" % ("TLS (tls module + mbedTLS) takes", f - n, (f - n) / 1024))

# Per module: the sizes of the symbols mpy-tool names after each frozen module.
nm = subprocess.run([nm_tool, "-S", full], capture_output=True, text=True, check=True).stdout
per = dict.fromkeys(ours, 0)
names = sorted(ours, key=len, reverse=True)   # sim800l_uart before sim800l
for line in nm.splitlines():
    parts = line.split()
    if len(parts) != 4:
        continue
    size, sym = int(parts[1], 16), parts[3]
    m = re.match(r"(?:frozen_module|fun_data|const_obj_table_data|const_obj|raw_code|proto_fun|children|const_table)_(.*)", sym)
    if not m:
        continue
    rest = m.group(1)
    for n in names:
        if rest == n or rest.startswith(n + "_"):
            per[n] += size
            break
print("  per module (bytecode, constants, tables; shared qstrs not counted):")
for n in ours:
    print("    %-28s %8d bytes" % (n, per[n]))
missing = [n for n in ours if per[n] == 0]
if missing:
    sys.exit("size: no frozen code found for %s in %s" % (", ".join(missing), full))
PY

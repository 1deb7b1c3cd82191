# Generic ESP32 (WROOM, 4 MiB flash) + SIM800L modem: MicroPython's
# ESP32_GENERIC board with the product frozen in.  Built out of tree:
#   make -C ports/esp32 BOARD_DIR=<this folder> (firmware/build.sh does it).
# Relative SDKCONFIG paths are read from ports/esp32 (the IDF project folder).
set(IDF_TARGET esp32)

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    boards/sdkconfig.ble
    ${MICROPY_BOARD_DIR}/sdkconfig.board
)

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)

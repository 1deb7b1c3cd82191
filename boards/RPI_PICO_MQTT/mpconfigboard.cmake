# Raspberry Pi Pico + SIM800L modem: MicroPython's RPI_PICO board with the
# product frozen in.  Built out of tree: cmake -S ports/rp2
#   -DMICROPY_BOARD_DIR=<this folder> (firmware/build.sh does it).
set(PICO_BOARD "pico")
set(PICO_PLATFORM "rp2040")
set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)

// Raspberry Pi Pico + SIM800L modem (the product's board; see board.py for the wiring).
#define MICROPY_HW_BOARD_NAME                   "Raspberry Pi Pico (MQTT)"
#define MICROPY_HW_FLASH_STORAGE_BYTES          (1408 * 1024)

// The `tls` module (extmod/modtls_mbedtls.c) for MQTT over TLS through the
// modem (issue 13).  rp2's mpconfigport.h turns MICROPY_PY_SSL on only
// with networking (MICROPY_PY_NETWORK: Wi-Fi/Ethernet boards), which this
// board has not; mbedTLS itself is compiled in on every rp2 board
// (ports/rp2/CMakeLists.txt), so this define is all the module needs.
// (#ifndef: `make size` builds the board with -DMICROPY_PY_SSL=0 to measure it.)
#ifndef MICROPY_PY_SSL
#define MICROPY_PY_SSL                          (1)
#endif

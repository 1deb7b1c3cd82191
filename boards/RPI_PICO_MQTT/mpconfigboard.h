// Raspberry Pi Pico + SIM800L modem (the product's board; see board.py for the wiring).
#define MICROPY_HW_BOARD_NAME                   "Raspberry Pi Pico (MQTT)"
#define MICROPY_HW_FLASH_STORAGE_BYTES          (1408 * 1024)

// Generic ESP32 module + SIM800L modem (the product's board; see board.py for the wiring).
#define MICROPY_HW_BOARD_NAME "Generic ESP32 module (MQTT)"
#define MICROPY_HW_MCU_NAME "ESP32"

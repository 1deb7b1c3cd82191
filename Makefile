# Front door of the project.  `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
PYTEST_ARGS ?=
export MICROPY_DIR

.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup:  ## create .venv with the pinned host tools (pytest, hypothesis, paho-mqtt)
	@test -x .venv/bin/python || python3 -m venv .venv
	@.venv/bin/python -m pip install -q -r requirements-dev.txt

micropython:  ## build build/micropython (unix port, manifest.py frozen in, tls module on the boards' mbedTLS) and build/mpy-cross; MICROPY_DIR= for your own tree
	@tools/build-micropython.sh

test: setup micropython  ## run every test (starts mosquitto; CPython and build/micropython)
	@$(PYTHON) -m pytest tests $(PYTEST_ARGS)

clean:  ## remove build outputs (keeps the source and build cache in .cache/)
	rm -rf build

distclean: clean  ## remove build outputs and every cache
	rm -rf .cache .venv

.PHONY: help setup micropython test clean distclean

# Firmware, flashing and deployment targets live beside the board files.
-include firmware/firmware.mk
# The emulated board (rp2040js + our own boot ROM): rom, emulate, demo.
-include emulator/emulator.mk
-include bench/bench.mk
-include mip/mip.mk
# Long randomized runs of the client against its model: fuzz.
-include tests/fuzz.mk

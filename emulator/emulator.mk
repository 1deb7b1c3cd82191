# Emulated board: our own RP2040 boot ROM, the rp2040js harness and its tests.
# Included by the top-level Makefile.
EMU_DIR      := emulator
ROM_OUT      := build/emulator
ROM_BIN      := $(ROM_OUT)/bootrom.bin
ROM_SRCS     := $(EMU_DIR)/rom/start.S $(EMU_DIR)/rom/rom.c $(EMU_DIR)/rom/abi.h $(EMU_DIR)/rom/rom.ld
ROM_CC       ?= arm-none-eabi-gcc
ROM_OBJCOPY  ?= arm-none-eabi-objcopy
ROM_CFLAGS   := -mcpu=cortex-m0plus -mthumb -Os -ffreestanding -fno-builtin \
                -fno-tree-loop-distribute-patterns -ffunction-sections -Wall -Wextra -Werror \
                -nostdlib -nostartfiles -Wl,--gc-sections -Wl,-T,$(EMU_DIR)/rom/rom.ld
ROM_REVISION := 0x$(shell (git log -1 --format=%h -- $(EMU_DIR)/rom 2>/dev/null || echo 0) | cut -c1-8)

rom: $(ROM_BIN)  ## build our own RP2040 boot ROM for the emulator (build/emulator/bootrom.bin)

$(ROM_BIN): $(ROM_SRCS) $(EMU_DIR)/emulator.mk
	@command -v $(ROM_CC) >/dev/null || { echo "rom: $(ROM_CC) not found; run .ci/run --deps-only (apt-get install gcc-arm-none-eabi)" >&2; exit 1; }
	@mkdir -p $(ROM_OUT)
	$(ROM_CC) $(ROM_CFLAGS) -DROM_GIT_REVISION=$(if $(filter 0x,$(ROM_REVISION)),0,$(ROM_REVISION)) \
	    -o $(ROM_OUT)/bootrom.elf $(EMU_DIR)/rom/start.S $(EMU_DIR)/rom/rom.c
	$(ROM_OBJCOPY) -O binary $(ROM_OUT)/bootrom.elf $@
	@echo "rom: $@ ($$(stat -c %s $@) bytes of 16384)"

.PHONY: rom

EMU_NODE_STAMP := $(EMU_DIR)/node_modules/.package-lock.json

emulator-deps: $(EMU_NODE_STAMP)  ## install the emulator's pinned npm packages (rp2040js) with npm ci

$(EMU_NODE_STAMP): $(EMU_DIR)/package.json $(EMU_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "emulator-deps: npm not found; install Node.js >= 18 with npm" >&2; exit 1; }
	cd $(EMU_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: emulator-deps

EMU_FLASH ?= build/emulator/flash.bin

emulate: rom emulator-deps  ## boot firmware/$(BOARD).uf2 on the emulated Pico, its REPL in this terminal (Ctrl-] quits); flash kept in build/emulator/flash.bin
	@test -f firmware/$(BOARD).uf2 || $(MAKE) -s firmware
	@node $(EMU_DIR)/run.js --image firmware/$(BOARD).uf2 --flash $(EMU_FLASH) --usb stdio

demo: setup firmware rom emulator-deps firmware-tools  ## the product with no hardware: emulated Pico + example app + SIM800L simulator + local mosquitto, over TLS (DEMO_ARGS=--plain: without)
	@$(PYTHON) $(EMU_DIR)/demo.py $(DEMO_ARGS)

.PHONY: emulate demo

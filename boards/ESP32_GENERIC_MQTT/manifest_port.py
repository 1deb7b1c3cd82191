# What the stock ESP32_GENERIC image freezes and the product uses: the
# port's own modules and asyncio (none of micropython-lib's extras).
# `make size` builds the board with this manifest alone to measure ours.
freeze("$(PORT_DIR)/modules")
include("$(MPY_DIR)/extmod/asyncio")

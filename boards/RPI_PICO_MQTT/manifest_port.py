# What the stock RPI_PICO image freezes and the product uses: the port's own
# modules and asyncio (none of micropython-lib's extras).  `make size`
# builds the board with this manifest alone to measure what ours cost.
freeze("$(PORT_DIR)/modules")
include("$(MPY_DIR)/extmod/asyncio")

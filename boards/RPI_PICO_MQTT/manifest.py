# Frozen into the RPI_PICO_MQTT image (paths relative to this file).
include("manifest_port.py")
# The board's modem wiring, read by the app and the modem driver.
module("board.py")
# The product: the MQTT client, the SIM800L modem driver and OTA, each a
# component manifest in ../../manifests/ (docs/firmware.md: "Pick the components").
include("../../manifest.py")

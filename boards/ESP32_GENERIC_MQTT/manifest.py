# Frozen into the ESP32_GENERIC_MQTT image (paths relative to this file).
include("manifest_port.py")
# The board's modem wiring, read by the app and the modem driver.
module("board.py")
# The product: everything in the top-level modules/.
include("../../manifest.py")

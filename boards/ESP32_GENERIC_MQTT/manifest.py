# Frozen into the ESP32_GENERIC_MQTT image (paths relative to this file).
include("manifest_port.py")
# The board's modem wiring, read by the app and the modem driver.
module("board.py")
# The product: the MQTT client, the SIM800L modem driver and OTA, each a
# component manifest in ../../manifests/ (docs/firmware.md: "Pick the components").
include("../../manifest.py")
# A Wi-Fi-only ESP32 (no modem) leaves the driver out: instead of the
# include above, require the components it uses (mpcompat comes with them):
#   add_library("mqtt-device", "../../manifests")
#   require("mqtt", library="mqtt-device")
#   require("ota", library="mqtt-device")       # if it takes OTA app updates

# The product's device code, frozen into every image we build: the unix port
# (`make micropython`, via tools/unix-manifest.py) and every board in boards/
# (include("../../manifest.py")).  It is the sum of the components in
# manifests/, one manifest each, as micropython-lib lays out its packages:
#
#   mqtt     the MQTT client                 (async_mqtt_client, mqtt_*)
#   sim800l  the SIM800L modem driver        (sim800l, sim800l_*)
#   ota      OTA updates and the app runner  (ota, app_runner; requires mqtt)
#   mpcompat the shims all three require     (frozen once: a manifest
#            required twice is evaluated once)
#
# A board that needs less requires the components itself instead of
# including this file; docs/firmware.md ("Pick the components") shows a
# Wi-Fi-only ESP32 without the modem driver.  This file must freeze every
# modules/*.py: the mip package (mip/build.py) is what it freezes, and
# tests/test_mip_stubs.py checks both.
add_library("mqtt-device", "manifests")
require("mqtt", library="mqtt-device")
require("sim800l", library="mqtt-device")
require("ota", library="mqtt-device")

# ota: OTA app updates (ota) and the app runner that fetches them over MQTT
# (app_runner imports async_mqtt_client, hence the mqtt component).
metadata(description="OTA app updates and the app runner")
add_library("mqtt-device", "..")  # its siblings, for require(); also when included alone
require("mpcompat", library="mqtt-device")
require("mqtt", library="mqtt-device")
module("ota.py", base_path="../../modules")
module("app_runner.py", base_path="../../modules")

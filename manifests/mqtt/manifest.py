# mqtt: the allocation-free async MQTT 3.1.1 client (async_mqtt_client and
# the mqtt_* modules it is built from).  Any transport: a socket (Wi-Fi,
# Ethernet, the unix port) or the SIM800L driver's socket class.
metadata(description="Async MQTT 3.1.1 client")
add_library("mqtt-device", "..")  # its siblings, for require(); also when included alone
require("mpcompat", library="mqtt-device")
for name in (
    "mqtt_codec.py",
    "mqtt_config.py",
    "mqtt_transport.py",
    "mqtt_tls.py",
    "mqtt_reader.py",
    "mqtt_session.py",
    "mqtt_supervisor.py",
    "async_mqtt_client.py",
):
    module(name, base_path="../../modules")

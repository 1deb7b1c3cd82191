# Settings of the example app (main.py beside this file).  Edit, then
# `make deploy PORT=...` copies both files to the board and resets it.

# "modem": the SIM800L wired as the frozen board.py says (every board);
# "wifi": the board's Wi-Fi (ESP32), or the host's network on the unix port.
TRANSPORT = "modem"

APN = "internet"  # your SIM operator's APN
APN_USER = ""
APN_PASSWORD = ""
SIM_PIN = None  # e.g. "1234" if the SIM asks for one

WIFI_SSID = ""
WIFI_PASSWORD = ""

# The AsyncMQTTClient config (see the client's README for every key).
MQTT = {
    "client_id": b"device-1",
    "server": "mqtt.example.com",
    "port": 1883,
    # TLS (port 8883): the broker's CA as ca.der beside this file (make deploy
    # carries it), and the board's clock from the modem; see docs/tls.md.
    # "ssl": {"cafile": "ca.der"},
    "user": b"",
    "password": b"",
    "keepalive": 60,
    "reconnect": True,
}

TOPIC = b"devices/device-1"  # publishes TOPIC/telemetry, listens on TOPIC/commands
TELEMETRY_EVERY_MS = 30000

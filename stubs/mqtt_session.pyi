"""The client's MQTT session state (internal)."""
from typing import Any

from mqtt_reader import MQTTReader

class MQTTSession(MQTTReader):
    session_present: bool
    def __init__(self, cfg: dict[str, Any], recv_buf: memoryview) -> None: ...

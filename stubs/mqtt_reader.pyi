"""The client's packet reader (internal)."""
from typing import Any, Callable

from mqtt_transport import MQTTTransport

class MQTTReader(MQTTTransport):
    dropped: int
    on_drop: Callable[[int], object] | None
    last_error: BaseException | None
    msg_flags: int
    def __init__(self, cfg: dict[str, Any], recv_buf: memoryview) -> None: ...

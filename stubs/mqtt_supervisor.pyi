"""The client's lost-link decision and reconnect supervisor (internal)."""
from typing import Any, Callable

from mqtt_session import MQTTSession

class MQTTSupervisor(MQTTSession):
    reconnects: int
    disconnects: int
    on_disconnect: Callable[[BaseException], object] | None
    def __init__(self, cfg: dict[str, Any], recv_buf: memoryview) -> None: ...
    async def reconnect(self, attempts: int = 0) -> None:
        """Re-establish the session with exponential backoff and jitter."""

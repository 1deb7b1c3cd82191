"""Allocation-free async MQTT 3.1.1 client (see the module's docstring and README.md)."""
from typing import Any, Awaitable, Callable, Union

from mqtt_codec import MQTTError as MQTTError, MQTTRefused as MQTTRefused

__all__ = ("AsyncMQTTClient", "MQTTError", "MQTTRefused")

_Buffer = Union[bytes, bytearray, memoryview]
_Topic = Union[bytes, bytearray, memoryview, str]

class AsyncMQTTClient:
    """config keys: client_id, server, port, user, password, keepalive (s),
    last_will {topic, msg, qos, retain}, clean_session, ssl (False, True or
    {cafile, verify, server_hostname}), reconnect, reconnect_min_ms,
    reconnect_max_ms, timeout_ms, backlog (bytes).  recv_buf holds one
    incoming message."""

    session_present: bool
    dropped: int
    """Messages too big for the receive buffer: read off the wire and dropped."""
    reconnects: int
    disconnects: int
    last_error: BaseException | None
    on_drop: Callable[[int], object] | None
    """on_drop(size), when a message is dropped."""
    on_disconnect: Callable[[BaseException], object] | None
    """on_disconnect(exc), when the link is lost."""
    msg_flags: int
    """First byte of the delivered PUBLISH: retain bit 0, QoS bits 1-2, DUP bit 3."""

    def __init__(self, config: dict[str, Any], recv_buf: memoryview | bytearray) -> None: ...
    async def connect(self, sock_cls: type[Any] | None = None, async_sock: bool = False,
                      clean_session: bool | None = None) -> None:
        """Open the transport (the native socket, or sock_cls) and the session;
        MQTTRefused (an MQTTError) on refusal."""
    async def disconnect(self) -> None: ...
    def isconnected(self) -> bool: ...
    async def reconnect(self, attempts: int = 0) -> None:
        """Reconnect with backoff and jitter; attempts=0: until it works."""
    def publish(self, topic: _Topic, msg: _Topic, retain: bool = False,
                qos: int = 0) -> Awaitable[bool | None]:
        """Await it.  QoS 1: True once the PUBACK came, False if the ack was
        deferred; MQTTError without one within timeout_ms.  QoS 0: None."""
    async def subscribe(self, topic: _Topic, qos: int = 0) -> bool:
        """True once the SUBACK came (False: deferred); MQTTRefused if refused."""
    async def unsubscribe(self, topic: _Topic) -> bool: ...
    def check_msg(self) -> Awaitable[memoryview | None]:
        """Await it: [topic_len, end] when a message is in the buffer, else None."""
    @property
    def topic(self) -> memoryview:
        """The delivered message's topic (a view of the receive buffer)."""
    @property
    def msg(self) -> memoryview:
        """The delivered message's payload (a view of the receive buffer)."""
    @property
    def inflight(self) -> int:
        """QoS 1 publishes sent and not acknowledged yet."""
    def mark_read(self) -> None:
        """Done with the message: the buffer may be reused."""

"""The client's lowest layer: opening, writing and closing the link (internal)."""
from typing import Any, Awaitable, Final

ENOTCONN: Final[int]
ECONNRESET: Final[int]
ETIMEDOUT: Final[int]
ECONNABORTED: Final[int]
EIO: Final[int]
DONE: Awaitable[None]

class MQTTTransport:
    def __init__(self, cfg: dict[str, Any]) -> None: ...

def count(n: int | None, most: int) -> int: ...
def discard(aw: object) -> None: ...
async def quietly(aw: Awaitable[Any]) -> None: ...
def awaitable(answer: object) -> Awaitable[Any]: ...

"""Boot the OTA'd app; roll back a new one that crashes or never confirms health (docs/ota.md)."""
from types import ModuleType
from typing import Any, Awaitable, Callable, Final, NoReturn

from async_mqtt_client import AsyncMQTTClient
from ota import Agent

_Transport = Callable[[], Awaitable[tuple[type[Any] | None, bool]]]
"""async () -> (sock_cls, async_sock) for AsyncMQTTClient.connect()."""

CONF: Final[str]

def load_conf(d: str = "") -> dict[str, Any]: ...
def boot_state(conf: dict[str, Any]) -> dict[str, Any]:
    """Pick the app this boot runs (rolling back a failed trial); returns the state."""
def load_app(d: str, version: int) -> ModuleType: ...

class Device:
    """What the app's `async def main(dev)` gets."""

    id: str
    client: AsyncMQTTClient
    on_message: Callable[[memoryview, memoryview], object] | None
    """on_message(topic, msg): the app's messages (views valid during the call)."""
    version: int
    failure: str | None
    stopping: bool
    def __init__(self, conf: dict[str, Any], agent: Agent, client: AsyncMQTTClient) -> None: ...
    def healthy(self) -> None:
        """This version works: a new version must say so within health_ms."""

async def boot(conf: dict[str, Any] | None = None, transport: _Transport | None = None) -> str:
    """One boot: "reboot" after an install, "crashed" after the app failed; raises otherwise."""
def reset() -> NoReturn: ...
def run(conf: dict[str, Any] | None = None, transport: _Transport | None = None) -> NoReturn:
    """The whole main.py of an OTA-managed board: never returns (Ctrl-C raises KeyboardInterrupt)."""

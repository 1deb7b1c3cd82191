"""OTA app updates over MQTT: signed, streamed in chunks, atomic, with rollback (docs/ota.md)."""
from typing import IO, Any, Final, Union

from async_mqtt_client import AsyncMQTTClient

_Buffer = Union[bytes, bytearray, memoryview]

ANN: Final[int]
CHUNK: Final[int]
ANN_LEN: Final[int]
SIGNED: Final[int]
CHUNK_HEAD: Final[int]
STATE: Final[str]
STATE_TMP: Final[str]
STATE2: Final[str]
STATE2_TMP: Final[str]
DL: Final[str]

def hmac_sha256(key: bytes, msg: _Buffer) -> bytes: ...
def same(a: _Buffer, b: _Buffer) -> bool:
    """Constant-time comparison."""
def u32(b: _Buffer, i: int) -> int: ...
def path(d: str, name: str) -> str: ...
def app_file(d: str, ver: int) -> str: ...
def exists(p: str) -> bool: ...
def remove(p: str) -> None: ...
def replace(src: str, dst: str) -> None: ...
def load_state(d: str) -> dict[str, Any] | None:
    """The state dict ({"cur", "prev", "floor", "trial", "tries", ...}) or None."""
def text(s: object, n: int = 120) -> str:
    """s as printable ASCII, at most n characters (a reason for the state file)."""
def save_state(d: str, st: dict[str, Any]) -> None: ...
def clean(d: str, st: dict[str, Any]) -> None: ...

class Agent:
    """The OTA agent on a connected client; app_runner drives it."""

    c: AsyncMQTTClient
    id: str
    t_dev: bytes
    group: str
    t_grp: bytes
    t_status: bytes
    key: bytes
    dir: str
    max_size: int
    retry_ms: int
    give_up: int
    buf: memoryview
    st: dict[str, Any]
    out: list[tuple[bytes, bool]]
    reboot: bool
    f: IO[bytes] | None
    ver: int
    nonce: int
    asked_at: int
    def __init__(self, client: AsyncMQTTClient, conf: dict[str, Any], state: dict[str, Any],
                 buf: memoryview) -> None: ...
    async def start(self) -> None: ...
    def wants(self, tl: int) -> bool: ...
    def status(self, st: str, retain: bool = True, **kw: Any) -> None: ...
    async def report(self) -> None: ...
    def handle(self, tl: int, end: int) -> None: ...
    def failed(self, e: BaseException) -> None: ...
    def tick(self) -> None: ...

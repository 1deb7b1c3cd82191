"""MQTT 3.1.1 packet codec: encode into and decode from caller-owned buffers."""
from typing import Final, Union

_Buffer = Union[bytes, bytearray, memoryview]
_WBuffer = Union[bytearray, memoryview]

CONNECT: Final[int]
CONNACK: Final[int]
PUBLISH: Final[int]
PUBACK: Final[int]
SUBSCRIBE: Final[int]
SUBACK: Final[int]
UNSUBSCRIBE: Final[int]
UNSUBACK: Final[int]
PINGREQ: Final[int]
PINGRESP: Final[int]
DISCONNECT: Final[int]
MAX_REMAINING: Final[int]
CONNACK_REASONS: Final[tuple[str, ...]]

TYPE_BITS: Final[int]
RETAIN_BIT: Final[int]
QOS_BITS: Final[int]
DUP_BIT: Final[int]

class MQTTError(Exception):
    """A protocol-level failure: malformed packet, no reply in time, a broken
    promise of the server.  `code` is None, except in MQTTRefused."""

    code: int | None
    def __init__(self, message: str, code: int | None = None) -> None: ...

class MQTTRefused(MQTTError):
    """The server said no: a CONNACK return code (1-5), a subscription
    refused (0x80) or granted QoS 2 (2); `code` says which."""

def to_bytes(value: _Buffer | str, what: str) -> _Buffer:
    """Topics, payloads, ids and passwords as bytes (str is encoded)."""

def check_topic(topic: _Buffer, wildcards_ok: bool) -> None:
    """ValueError for what MQTT forbids in a topic (or filter, with wildcards_ok)."""
def check_utf8(s: _Buffer, what: str) -> None:
    """ValueError unless s is UTF-8 a broker accepts (MQTT 3.1.1 section 1.5.3)."""

def put_bytes(buf: _WBuffer, i: int, src: _Buffer, n: int) -> int: ...
def put_str(buf: _WBuffer, i: int, s: _Buffer) -> int: ...
def remaining_len_size(n: int) -> int: ...
def put_header(buf: _WBuffer, first: int, remaining: int) -> int: ...
def packet_length(buf: _Buffer) -> int:
    """Whole length of the packet whose fixed header starts buf."""
def publish_size(topic_len: int, msg_len: int, qos: int) -> int: ...
def encode_publish(buf: _WBuffer, topic: _Buffer, msg: _Buffer, qos: int, retain: bool,
                   dup: bool, pid: int) -> int: ...
def encode_connect(buf: _WBuffer, client_id: _Buffer, user: _Buffer, password: _Buffer,
                   keepalive: int, clean: bool, will_topic: _Buffer, will_msg: _Buffer,
                   will_qos: int, will_retain: bool) -> int: ...
def encode_subscribe(buf: _WBuffer, pid: int, topic: _Buffer, qos: int) -> int: ...
def encode_unsubscribe(buf: _WBuffer, pid: int, topic: _Buffer) -> int: ...
def encode_ack(buf: _WBuffer, first: int, pid: int) -> int: ...
def decode_remaining(hdr: _Buffer, n: int) -> int: ...
def check_fixed_header(first: int, remaining: int) -> None: ...

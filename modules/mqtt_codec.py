# MQTT 3.1.1 packet codec: plain functions that encode into and decode from
# caller-owned buffers.  No I/O, no asyncio, no protocol state.
#
# Why byte loops instead of slice assignment: on MicroPython `buf[a:b] = src`
# allocates a 32-byte slice object per call, a `while` loop over indices
# allocates nothing (measured on the 1.25 unix port).  Encoders return the
# number of bytes written; the caller sends buf[0:n] in ONE write (several
# small writes per packet meet Nagle's algorithm and delayed ACK: ~40 ms).
import sys

try:
    from micropython import const
except ImportError:           # CPython
    def const(x):
        return x

_MICROPYTHON = sys.implementation.name == "micropython"

CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)      # reserved flag bits 0b0010 included
SUBACK = const(0x90)
UNSUBSCRIBE = const(0xA2)
UNSUBACK = const(0xB0)
PINGREQ = const(0xC0)
PINGRESP = const(0xD0)
DISCONNECT = const(0xE0)

MAX_REMAINING = const(268435455)   # 4 bytes of remaining length

# CONNACK return codes (MQTT 3.1.1, 3.2.2.3)
CONNACK_REASONS = (
    "accepted",
    "unacceptable protocol version",
    "identifier rejected",
    "server unavailable",
    "bad user name or password",
    "not authorised",
)


# Bits of a packet's first byte (MQTT 3.1.1, 2.2): the type in the high
# nibble, a PUBLISH's flags in the low one.
TYPE_BITS = const(0xF0)
RETAIN_BIT = const(0x01)
QOS_BITS = const(0x06)     # QoS 1 is 0x02, QoS 2 is 0x04 (0x06: QoS 3, malformed)
DUP_BIT = const(0x08)


class MQTTError(Exception):
    """A protocol-level failure: malformed packet, no reply in time, a
    broken promise of the server.  `code` is None, except in MQTTRefused."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class MQTTRefused(MQTTError):
    """The server said no: a CONNACK return code (1-5: `code`), a
    subscription refused (0x80) or granted a QoS this client cannot take (2).
    Unlike a broken link, trying again on a new link will not help."""


# A tuple written inside isinstance() would be built (allocated) per call.
_BYTES_TYPES = (bytes, bytearray, memoryview)


def to_bytes(value, what):
    """Topics, payloads, ids and passwords as bytes (str accepted)."""
    if isinstance(value, _BYTES_TYPES):
        if type(value) is memoryview and _wide(value):
            raise TypeError("%s: a memoryview of wider items (e.g. array('H')) would be cut "
                            "short: pass bytes, or a memoryview of bytes" % what)
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError("%s must be bytes or str, not %s" % (what, type(value).__name__))


def _wide(view):
    """A memoryview whose items are not single bytes (len() counts items).
    MicroPython's memoryview has no itemsize: one item copied tells."""
    if not _MICROPYTHON:
        return view.itemsize != 1 or not view.contiguous
    return len(view) and len(bytes(view[:1])) != 1


def check_topic(topic, wildcards_ok):
    """Reject what the spec forbids before anything is sent (4.7, 1.5.3)."""
    n = len(topic)
    if n == 0 or n > 65535:
        raise ValueError("topic length must be 1..65535 bytes")
    i = 0
    while i < n:
        c = topic[i]
        if c == 0x23 or c == 0x2B:   # '#' or '+'
            if not wildcards_ok:
                raise ValueError("wildcards (+ #) are not allowed in a publish topic")
            # '+' and '#' must fill a whole level; '#' must be last
            if (i > 0 and topic[i - 1] != 0x2F) or (i + 1 < n and topic[i + 1] != 0x2F):
                raise ValueError("a wildcard must fill a whole topic level")
            if c == 0x23 and i != n - 1:
                raise ValueError("'#' must be the last character of a filter")
        i += 1
    check_utf8(topic, "topic")


def check_utf8(s, what):
    """Raise ValueError unless s is UTF-8 a broker accepts.

    MQTT 3.1.1 section 1.5.3: well-formed UTF-8 (RFC 3629: no overlong
    forms, no surrogates U+D800..U+DFFF, nothing past U+10FFFF), no U+0000;
    a receiver MAY close the connection on control characters (U+0001..
    U+001F, U+007F..U+009F) and non-characters, and mosquitto does.  A
    string the broker would drop the link over must fail here, at the call,
    not as a reconnect storm.  A loop over indices: allocates nothing.
    """
    n = len(s)
    i = 0
    while i < n:
        c = s[i]
        if c < 0x80:
            if c < 0x20 or c == 0x7F:
                raise ValueError("%s contains control character 0x%02x" % (what, c))
            i += 1
            continue
        # lead byte: how many continuation bytes, and the smallest code
        # point this length may carry (anything smaller is an overlong form)
        if 0xC2 <= c <= 0xDF:
            k, cp, low = 1, c & 0x1F, 0x80
        elif 0xE0 <= c <= 0xEF:
            k, cp, low = 2, c & 0x0F, 0x800
        elif 0xF0 <= c <= 0xF4:
            k, cp, low = 3, c & 0x07, 0x10000
        else:
            raise ValueError("%s is not valid UTF-8 (byte 0x%02x at %d)" % (what, c, i))
        if i + k >= n:
            raise ValueError("%s is not valid UTF-8 (truncated at %d)" % (what, i))
        j = i + 1
        while j <= i + k:
            b = s[j]
            if b & 0xC0 != 0x80:
                raise ValueError("%s is not valid UTF-8 (byte 0x%02x at %d)" % (what, b, j))
            cp = (cp << 6) | (b & 0x3F)
            j += 1
        if cp < low or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
            raise ValueError("%s is not valid UTF-8 (overlong, surrogate or out of range at %d)"
                             % (what, i))
        if cp <= 0x9F or 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE:
            raise ValueError("%s contains U+%04X (control or non-character)" % (what, cp))
        i = j


def _put_loop(buf, i, src, n):
    j = 0
    while j < n:
        buf[i] = src[j]
        i += 1
        j += 1
    return i


if _MICROPYTHON:
    # struct.pack_into with an "<n>s" format copies without allocating, ~15x
    # faster than the byte loop (0.26 vs 4 us for 64 bytes on the unix
    # port); the format strings are made once per length and kept, for up to
    # _FORMATS_KEPT lengths (then the loop: slower, still allocation-free).
    from struct import pack_into as _pack_into
    _formats = {}
    _FORMATS_KEPT = const(48)

    def put_bytes(buf, i, src, n):
        """Copy src[0:n] into buf at i; returns the index after it."""
        f = _formats.get(n)
        if f is None:
            if len(_formats) >= _FORMATS_KEPT:
                return _put_loop(buf, i, src, n)
            f = _formats[n] = "%ds" % n
        _pack_into(f, buf, i, src)
        return i + n
else:
    def put_bytes(buf, i, src, n):
        """Copy src[0:n] into buf at i; returns the index after it."""
        buf[i:i + n] = src[:n]
        return i + n


def put_str(buf, i, s):
    """A 2-byte length then the bytes (MQTT UTF-8 string / binary data)."""
    n = len(s)
    buf[i] = n >> 8
    buf[i + 1] = n & 0xFF
    return put_bytes(buf, i + 2, s, n)


def remaining_len_size(n):
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def put_header(buf, first, remaining):
    """Fixed header at buf[0]; returns the index where the body starts."""
    if remaining > MAX_REMAINING:
        raise ValueError("packet too large for MQTT")
    buf[0] = first
    i = 1
    while True:
        b = remaining & 0x7F
        remaining >>= 7
        if remaining:
            buf[i] = b | 0x80
            i += 1
        else:
            buf[i] = b
            return i + 1


def packet_length(buf):
    """Whole length of the packet whose fixed header starts buf."""
    n = 2
    while buf[n - 1] & 0x80:
        n += 1
    return n + decode_remaining(buf, n)


def publish_size(topic_len, msg_len, qos):
    body = 2 + topic_len + (2 if qos else 0) + msg_len
    return 1 + remaining_len_size(body) + body


def encode_publish(buf, topic, msg, qos, retain, dup, pid):
    """PUBLISH into buf (must hold publish_size(...) bytes); returns its length."""
    tl = len(topic)
    ml = len(msg)
    first = PUBLISH | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    i = put_header(buf, first, 2 + tl + (2 if qos else 0) + ml)
    i = put_str(buf, i, topic)
    if qos:
        buf[i] = pid >> 8
        buf[i + 1] = pid & 0xFF
        i += 2
    return put_bytes(buf, i, msg, ml)


def encode_connect(buf, client_id, user, password, keepalive, clean,
                   will_topic, will_msg, will_qos, will_retain):
    """CONNECT; returns its length.  user/password/will_topic: b'' = absent."""
    flags = 0x02 if clean else 0
    body = 10 + 2 + len(client_id)
    if will_topic:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        body += 4 + len(will_topic) + len(will_msg)
    if user:
        flags |= 0x80
        body += 2 + len(user)
        if password:
            flags |= 0x40
            body += 2 + len(password)
    i = put_header(buf, CONNECT, body)
    i = put_str(buf, i, b"MQTT")
    buf[i] = 4                         # protocol level 3.1.1
    buf[i + 1] = flags
    buf[i + 2] = keepalive >> 8
    buf[i + 3] = keepalive & 0xFF
    i = put_str(buf, i + 4, client_id)
    if will_topic:
        i = put_str(buf, i, will_topic)
        i = put_str(buf, i, will_msg)
    if user:
        i = put_str(buf, i, user)
        if password:
            i = put_str(buf, i, password)
    return i


def encode_subscribe(buf, pid, topic, qos):
    i = put_header(buf, SUBSCRIBE, 2 + 2 + len(topic) + 1)
    buf[i] = pid >> 8
    buf[i + 1] = pid & 0xFF
    i = put_str(buf, i + 2, topic)
    buf[i] = qos
    return i + 1


def encode_unsubscribe(buf, pid, topic):
    i = put_header(buf, UNSUBSCRIBE, 2 + 2 + len(topic))
    buf[i] = pid >> 8
    buf[i + 1] = pid & 0xFF
    return put_str(buf, i + 2, topic)


def encode_ack(buf, first, pid):
    """A 4-byte packet with a packet id: PUBACK (or PUBREC/PUBREL/...)."""
    buf[0] = first
    buf[1] = 2
    buf[2] = pid >> 8
    buf[3] = pid & 0xFF
    return 4


def decode_remaining(hdr, n):
    """Remaining length from the fixed header bytes hdr[1:n].

    Returns the length, -1 if more header bytes are needed, raises
    MQTTError if the encoding is malformed (more than 4 bytes).
    """
    value = 0
    shift = 0
    i = 1
    while i < n:
        b = hdr[i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7
        i += 1
        if i > 4:
            raise MQTTError("malformed remaining length")
    return -1


def check_fixed_header(first, remaining):
    """Validate a server-to-client fixed header (type, flags, length)."""
    kind = first & 0xF0
    if kind == PUBLISH:
        if first & 0x06 == 0x06:
            raise MQTTError("malformed PUBLISH: QoS 3")
        if first & 0x06 == 0x04:
            raise MQTTError("QoS 2 PUBLISH from server (this client subscribes with QoS <= 1)")
        if remaining < 3 + (2 if first & 0x06 else 0):   # topic length, >= 1 byte of topic, id
            raise MQTTError("malformed PUBLISH: too short")
        return
    if first & 0x0F:
        raise MQTTError("malformed packet: reserved flags set (0x%02x)" % first)
    if kind == CONNACK or kind == PUBACK or kind == UNSUBACK:
        ok = remaining == 2
    elif kind == SUBACK:
        ok = remaining == 3
    elif kind == PINGRESP:
        ok = remaining == 0
    elif kind == 0x50 or kind == 0x60 or kind == 0x70:   # PUBREC/PUBREL/PUBCOMP (QoS2)
        raise MQTTError("QoS 2 packet from server (this client never asks for QoS 2)")
    else:
        raise MQTTError("packet type 0x%02x is not sent by servers" % first)
    if not ok:
        raise MQTTError("malformed packet 0x%02x: remaining length %d" % (first, remaining))

"""Configuration checking: every value a user gives the client, checked for
type and range (and copied) before anything else happens.

    cfg = check_config(config)       # a new dict of checked values, or ValueError/TypeError
    rbuf = check_buffer(recv_buf)    # the receive buffer as a writable memoryview of bytes

The checkers below are also used on each call (`check_qos`, `flag`): they
take and return plain values and allocate nothing when the value is right.
A bad value raises at once, naming the key, not later at connect() or as a
broker dropping the link.
"""
import sys

import mqtt_codec as codec
from mqtt_codec import to_bytes

_NO_CA_STORE = sys.implementation.name == "micropython"

# ticks_diff() spans +-2**29 ms on 32-bit ports (period 2**30): a longer
# delay or timeout would wrap.
MAX_MS = 0x1FFFFFFF


def check_buffer(recv_buf):
    """The caller's receive buffer: a writable memoryview of bytes, >= 8."""
    if isinstance(recv_buf, bytearray):
        recv_buf = memoryview(recv_buf)
    if not isinstance(recv_buf, memoryview):
        raise TypeError("recv_buf must be a memoryview of a bytearray")
    if len(recv_buf) < 8:
        raise ValueError("recv_buf must hold at least 8 bytes")
    try:                            # bytes, or a memoryview of bytes: read-only
        recv_buf[0] = recv_buf[0]
    except TypeError:
        raise TypeError("recv_buf must be writable (a memoryview of a bytearray)")
    if len(bytes(recv_buf[:1])) != 1:   # (MicroPython's memoryview has no itemsize)
        raise TypeError("recv_buf must be a memoryview of bytes, not of wider items")
    return recv_buf


def check_config(c, recv_len):
    """Every value checked (and copied: a bytearray changed later must not
    change the session) here, so a bad one raises now, not at connect or
    on the wire.  recv_len: the receive buffer's size (the backlog's default)."""
    if not isinstance(c, dict):
        raise TypeError("config must be a dict")
    cfg = {}
    cfg["backlog"] = int_in(c.get("backlog", recv_len), "backlog", 0, codec.MAX_REMAINING)
    cfg["client_id"] = string(c.get("client_id", b""), "client_id")
    cfg["clean_session"] = flag(c.get("clean_session", True), "clean_session")
    if not cfg["client_id"] and not cfg["clean_session"]:
        raise ValueError("an empty client_id needs clean_session=True (MQTT 3.1.3.1)")
    server = c.get("server")
    if not isinstance(server, str) or not server:
        raise ValueError("config['server'] must be a host name or address (str)")
    cfg["server"] = server
    tls = c.get("ssl", False)
    if not isinstance(tls, (bool, dict)):
        raise TypeError("config['ssl'] must be a bool or a dict")
    if isinstance(tls, dict):
        tls = check_tls(tls)
    if tls and _NO_CA_STORE:
        t = tls if isinstance(tls, dict) else {}
        if t.get("verify", True) and "cafile" not in t and "cadata" not in t:
            raise ValueError("config['ssl']: MicroPython has no CA store to check the broker's "
                             "certificate against: give cafile or cadata (see docs/tls.md), "
                             "or verify: False")
    cfg["ssl"] = tls
    cfg["port"] = int_in(c.get("port", 8883 if tls else 1883), "port", 1, 65535)
    cfg["user"] = string(c.get("user") or b"", "user")
    cfg["password"] = binary(c.get("password") or b"", "password")
    if cfg["password"] and not cfg["user"]:
        raise ValueError("a password needs a user name (MQTT 3.1.2.9)")
    cfg["keepalive"] = int_in(c.get("keepalive", 0), "keepalive", 0, 65535)
    will = c.get("last_will")
    if will is None:
        will = {}
    if not isinstance(will, dict):
        raise TypeError("config['last_will'] must be a dict (topic, msg, qos, retain)")
    wt = will.get("topic") or b""
    wt = to_bytes(wt, "last_will topic")
    if wt:
        codec.check_topic(wt, False)
    wq = int_in(will.get("qos", 0), "last_will qos", 0, 2)
    cfg["will"] = (bytes(wt), binary(will.get("msg") or b"", "last_will msg"), wq,
                   flag(will.get("retain", False), "last_will retain"))
    cfg["reconnect"] = flag(c.get("reconnect", False), "reconnect")
    lo = cfg["reconnect_min_ms"] = int_in(c.get("reconnect_min_ms", 500), "reconnect_min_ms",
                                        1, MAX_MS)
    cfg["reconnect_max_ms"] = int_in(c.get("reconnect_max_ms", 30000), "reconnect_max_ms",
                                   lo, MAX_MS)
    cfg["timeout_ms"] = int_in(c.get("timeout_ms", 10000), "timeout_ms", 1, MAX_MS)
    # (below 65,535: a SUBSCRIBE needs a packet id of its own)
    cfg["max_inflight"] = int_in(c.get("max_inflight", 16), "max_inflight", 1, 65000)
    return cfg


def int_in(value, what, lo, hi):
    """An int option in [lo, hi]; a bool or a float is a mistake, not a number."""
    if type(value) is not int:
        raise TypeError("%s must be an int, not %s" % (what, type(value).__name__))
    if not lo <= value <= hi:
        raise ValueError("%s must be %d..%d, not %d" % (what, lo, hi, value))
    return value


def check_qos(qos):
    """0 or 1, an int: 1.0 or True would pass `qos == 1` and break later."""
    if type(qos) is not int:
        raise TypeError("qos must be an int (0 or 1), not %s" % type(qos).__name__)
    if qos != 0 and qos != 1:
        raise ValueError("qos must be 0 or 1")


def flag(value, what):
    """True/False (or 0/1): anything else is more likely a mistake than a choice."""
    if value is True or value is False:
        return value
    if type(value) is int and (value == 0 or value == 1):
        return bool(value)
    raise TypeError("%s must be True or False, not %r" % (what, value))


def binary(value, what):
    """Binary data of a CONNECT field: bytes (a copy), at most 65,535."""
    b = bytes(to_bytes(value, what))
    if len(b) > 65535:
        raise ValueError("%s is longer than 65535 bytes" % what)
    return b


def string(value, what):
    """A CONNECT UTF-8 string field: binary(), and well-formed UTF-8."""
    b = binary(value, what)
    codec.check_utf8(b, what)
    return b


_TLS_KEYS = ("cafile", "cadata", "certfile", "keyfile", "verify", "server_hostname")


def check_tls(opts):
    """The "ssl" dict: known keys, the right types, files that exist, a
    certificate and its key together."""
    tls = dict(opts)
    for k in tls:
        if k not in _TLS_KEYS:
            raise ValueError("config['ssl'] has no key %r (%s)" % (k, ", ".join(_TLS_KEYS)))
    for k in ("cafile", "certfile", "keyfile", "server_hostname"):
        if k in tls and (not isinstance(tls[k], str) or not tls[k]):
            raise TypeError("config['ssl'][%r] must be a non-empty str" % k)
    if "cadata" in tls:
        ca = tls["cadata"]
        if not isinstance(ca, (str, bytes, bytearray)) or not ca:
            raise TypeError("config['ssl']['cadata'] must be PEM text or DER bytes")
        tls["cadata"] = bytes(ca.encode() if isinstance(ca, str) else ca)
        if "cafile" in tls:
            raise ValueError("config['ssl']: give cafile or cadata, not both")
    if ("certfile" in tls) != ("keyfile" in tls):
        raise ValueError("config['ssl']: a client certificate needs both certfile and keyfile")
    for k in ("cafile", "certfile", "keyfile"):
        if k in tls:
            try:
                import os
                st = os.stat(tls[k])
            except OSError:
                raise ValueError("config['ssl'][%r]: no such file %r" % (k, tls[k]))
            if st[0] & 0o170000 == 0o040000:
                raise ValueError("config['ssl'][%r]: %r is a folder, not a file" % (k, tls[k]))
            if not st[6]:
                raise ValueError("config['ssl'][%r]: %r is empty" % (k, tls[k]))
    if "verify" in tls:
        tls["verify"] = flag(tls["verify"], "config['ssl']['verify']")
    return tls

"""Codec and reader on their own (CPython): byte-exact packets, property tests.

The reader is exercised through a real socket pair: bytes written at one end
are parsed by the client at the other, exactly as from a broker.
"""
import asyncio
import socket
import sys
import os

import pytest
from hypothesis import given, settings, strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "modules"))
import mqtt_codec as codec                      # noqa: E402
from async_mqtt_client import AsyncMQTTClient, MQTTError   # noqa: E402
from mqtt_transport import _StdSocket   # noqa: E402  (CPython only)


def test_connect_bytes_exact():
    buf = bytearray(100)
    n = codec.encode_connect(buf, b"cid", b"u", b"p", 60, True, b"w/t", b"bye", 1, True)
    assert bytes(buf[:n]) == (b"\x10\x1f\x00\x04MQTT\x04\xee\x00\x3c\x00\x03cid"
                              b"\x00\x03w/t\x00\x03bye\x00\x01u\x00\x01p")


def test_publish_subscribe_ack_bytes_exact():
    buf = bytearray(300)
    n = codec.encode_publish(buf, b"a/b", b"hi", 1, True, True, 0x1234)
    assert bytes(buf[:n]) == b"\x3b\x09\x00\x03a/b\x12\x34hi"
    n = codec.encode_publish(buf, b"t", b"x" * 200, 0, False, False, 0)
    assert bytes(buf[:4]) == b"\x30\xcb\x01\x00" and n == 3 + 203
    n = codec.encode_subscribe(buf, 7, b"a/#", 1)
    assert bytes(buf[:n]) == b"\x82\x08\x00\x07\x00\x03a/#\x01"
    n = codec.encode_unsubscribe(buf, 8, b"a/#")
    assert bytes(buf[:n]) == b"\xa2\x07\x00\x08\x00\x03a/#"
    assert codec.encode_ack(buf, codec.PUBACK, 258) == 4 and bytes(buf[:4]) == b"\x40\x02\x01\x02"


@pytest.mark.parametrize("n", [0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455])
def test_remaining_length_boundaries(n):
    buf = bytearray(5)
    end = codec.put_header(buf, 0x30, n)
    assert end - 1 == codec.remaining_len_size(n)
    assert codec.decode_remaining(buf, end) == n


def test_remaining_length_too_big_and_malformed():
    with pytest.raises(ValueError):
        codec.put_header(bytearray(5), 0x30, 268435456)
    with pytest.raises(MQTTError):
        codec.decode_remaining(b"\x30\xff\xff\xff\xff\x01", 6)


class Wire:
    """A client whose socket's other end is ours to write to."""

    def __init__(self, bufsize=128, backlog=None):
        cfg = {"client_id": b"c", "server": "127.0.0.1"}
        if backlog is not None:
            cfg["backlog"] = backlog
        self.client = AsyncMQTTClient(cfg, memoryview(bytearray(bufsize)))
        a, self.peer = socket.socketpair()
        a.setblocking(False)
        self.client._sock = _StdSocket(a)
        self.client._connack = 0        # as if the session were open: packets may come

    def feed(self, data):
        self.peer.sendall(data)

    def messages(self):
        """Every message the client delivers for what was fed so far."""
        async def run():
            out = []
            for _ in range(10000):
                meta = await self.client.check_msg()
                if not meta:
                    break
                out.append((bytes(self.client.topic), bytes(self.client.msg)))
                self.client.mark_read()
            return out
        return asyncio.run(run())

    def close(self):
        self.peer.close()


topics = st.binary(min_size=1, max_size=40).filter(lambda t: 0 not in t and b"+" not in t
                                                    and b"#" not in t)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(topics, st.binary(max_size=80), st.integers(0, 1), st.booleans()),
                min_size=1, max_size=8))
def test_encoded_publishes_come_out_of_the_reader_intact(msgs):
    w = Wire(bufsize=128)
    buf = bytearray(300)
    for i, (t, m, qos, retain) in enumerate(msgs):
        n = codec.encode_publish(buf, t, m, qos, retain, False, i + 1)
        w.feed(bytes(buf[:n]))
    got = w.messages()
    fits = [(t, m) for t, m, qos, _ in msgs if len(t) + 2 * qos + len(m) <= 128]
    assert got == fits
    assert w.client.dropped == len(msgs) - len(fits)
    # every QoS 1 message was acknowledged on the wire, in order
    w.peer.setblocking(False)
    acks = w.peer.recv(10000) if any(q for _, _, q, _ in msgs) else b""
    expect = b"".join(b"\x40\x02" + (i + 1).to_bytes(2, "big")
                      for i, (_, _, q, _) in enumerate(msgs) if q)
    assert acks == expect
    w.close()


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_random_bytes_raise_nothing_but_mqtterror(data):
    w = Wire(bufsize=64)
    w.feed(data)
    try:
        w.messages()
    except MQTTError:
        pass
    w.close()


def broker_accepts_utf8(b):
    """The model: what mosquitto accepts in a UTF-8 field (MQTT 3.1.1
    section 1.5.3, plus its closing the link on control characters and
    non-characters), from CPython's own UTF-8 decoder."""
    try:
        text = b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    for ch in text:
        cp = ord(ch)
        if cp < 0x20 or 0x7F <= cp <= 0x9F or 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE:
            return False
    return True


def codec_accepts_utf8(b):
    try:
        codec.check_utf8(b, "t")
        return True
    except ValueError:
        return False


def test_check_utf8_agrees_with_the_model_on_every_code_point():
    wrong = [cp for cp in range(0x110000)
             if not 0xD800 <= cp <= 0xDFFF
             and broker_accepts_utf8(chr(cp).encode()) != codec_accepts_utf8(chr(cp).encode())]
    assert wrong == []
    # encodings CPython's encoder never makes: surrogates, overlong forms, past U+10FFFF
    for bad in (b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf",
                b"\xf0\x80\x80\xaf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff",
                b"\x80", b"a\xc3", b"\xe2\x82", b"\x00"):
        assert not codec_accepts_utf8(bad), bad


# lead bytes, continuation bytes and ASCII mixed, so that near-valid sequences are common
_utf8ish = st.lists(st.one_of(st.integers(0, 255), st.integers(0x80, 0xBF),
                              st.sampled_from([0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5]),
                              st.integers(0x20, 0x7E)), max_size=12).map(bytes)


@settings(max_examples=2000, deadline=None)
@given(_utf8ish)
def test_check_utf8_agrees_with_the_model_on_random_bytes(b):
    assert codec_accepts_utf8(b) == broker_accepts_utf8(b)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(min_size=1, max_size=60), _utf8ish.filter(len)), st.binary(max_size=60))
def test_check_topic_accepts_only_valid_publish_topics(t, _):
    ok = b"+" not in t and b"#" not in t and broker_accepts_utf8(t)
    if ok:
        codec.check_topic(t, False)
    else:
        with pytest.raises(ValueError):
            codec.check_topic(t, False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(topics, st.binary(max_size=100), st.integers(0, 1)), min_size=1,
                max_size=4), st.integers(1, 7))
def test_packets_split_into_pieces_are_reassembled(msgs, piece):
    w = Wire(bufsize=128)
    buf = bytearray(300)
    wire = b""
    for i, (t, m, qos) in enumerate(msgs):
        n = codec.encode_publish(buf, t, m, qos, False, False, i + 1)
        wire += bytes(buf[:n])
    got = []
    for k in range(0, len(wire), piece):      # the broker's bytes trickle in
        w.feed(wire[k:k + piece])
        got += w.messages()
    assert got == [(t, m) for t, m, q in msgs if len(t) + 2 * q + len(m) <= 128]
    w.close()

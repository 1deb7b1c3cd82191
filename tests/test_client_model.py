"""Stateful property-based test of the client against a model (issue 11).

A hypothesis RuleBasedStateMachine drives one AsyncMQTTClient (CPython,
reconnect on; persistent or clean session; receive buffer 24..160 bytes,
backlog 0..2 messages; the native socket or a sock_cls transport of either
flavour, sync or async, optionally taking 1, 3 or 7 bytes a call as a modem
would) through random sequences of publish (QoS 0/1, sizes clustered around
the buffer's limit, bursts of oversize ones), subscribe, unsubscribe,
check_msg, mark_read (holding a message unread for several steps, so the
backlog fills and the client must stall), several tasks at once, messages
injected by another client (paho-mqtt) and a flood of 20 kB ones, app-side
disconnect/connect and reconnect(), and link faults, against a real
mosquitto.  Between the client and mosquitto sits FaultProxy, a small TCP
proxy that can cut the link (FIN or RST), stall it, or cut it in the middle
of a packet (either way), and that parses every packet both ways.

Checked against the model after every step:
- every delivered message is one that was published, on its topic, intact
  (payloads carry their id and a pattern), with the QoS the subscription
  gives, never one bigger than the receive buffer;
- per publisher and QoS, first deliveries come in publish order while the
  link did not change; a message comes twice only if it is QoS 1 and the
  link changed meanwhile;
- the client acknowledges each QoS 1 PUBLISH with that packet's id (the
  proxy keeps the ids the broker sent on this connection: an ack for any
  other id is an error); a resent (DUP) PUBLISH of the client is the same
  bytes as the first; every packet the client sends is well formed (a
  PUBLISH topic is valid UTF-8 without wildcards);
- no step hangs (each is bounded) and a heartbeat task in the same event
  loop never waits longer than HEARTBEAT_MAX_MS;
and at each settle (and at the end of a run), once everything was read:
- every message that fits was delivered: QoS 1 always (at least once across
  faults), QoS 0 when the link did not change since it was published;
- client.dropped counts the oversize ones; nothing stays in flight either
  way; every QoS 1 message the broker sent on this link was acknowledged.

Budget: CI runs a fixed, derandomized budget (FUZZ_EXAMPLES x FUZZ_STEPS,
default 6 x 30); `make fuzz` (tests/fuzz.mk) runs a long random one.
FUZZ_SEED=n makes a long run repeatable (as far as timing allows);
FUZZ_SHRINK=1 lets hypothesis shrink a failure (slow: every try is real I/O).
A failure prints the steps of the first failing run, as recorded (a
timing-dependent failure may not replay: hypothesis then says "Flaky").
"""
import asyncio
import os
import select
import socket
import sys
import threading
import time

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, get_state_machine_test, initialize,
                                 invariant, precondition, rule)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "modules"))

from async_mqtt_client import AsyncMQTTClient, MQTTError  # noqa: E402

FUZZ = bool(os.environ.get("FUZZ_EXAMPLES"))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
STEPS = int(os.environ.get("FUZZ_STEPS", "30"))
STEP_TIMEOUT_S = 12          # no single step may take longer (a hang)
HEARTBEAT_MAX_MS = 600       # longest the event loop may be held by one call
TIMEOUT_MS = 1000            # the client's ack timeout


# ---- MQTT packets, as the proxy sees them ------------------------------------------

class Parser:
    """Splits a byte stream into MQTT packets: feed(data) -> [(first, body)]."""

    def __init__(self):
        self.buf = bytearray()

    def _next_len(self, b):
        """Whole length of the packet at b[0], or None if its header is incomplete."""
        mult, value, i = 1, 0, 1
        while True:
            if i >= len(b):
                return None
            d = b[i]
            value += (d & 0x7F) * mult
            i += 1
            if not d & 0x80:
                return i + value
            mult *= 128
            if i > 4:
                return -1          # malformed: the caller reports it

    def feed(self, data):
        self.buf += data
        out = []
        while self.buf:
            n = self._next_len(self.buf)
            if n is None or n > len(self.buf):
                break
            if n < 0:
                out.append((None, bytes(self.buf)))
                self.buf.clear()
                break
            hdr = n - self._body_len(self.buf)
            out.append((self.buf[0], bytes(self.buf[hdr:n])))
            del self.buf[:n]
        return out

    def _body_len(self, b):
        mult, value, i = 1, 0, 1
        while True:
            d = b[i]
            value += (d & 0x7F) * mult
            i += 1
            if not d & 0x80:
                return value
            mult *= 128

    def boundaries(self, data):
        """Offsets k in 1..len(data) where a packet ends after data[:k] (the
        parser's pending bytes taken into account), without consuming."""
        pend = bytes(self.buf)
        b = bytearray(pend) + data
        ends, pos = set(), 0
        while pos < len(b):
            n = self._next_len(b[pos:])
            if n is None or n < 0 or pos + n > len(b):
                break
            pos += n
            ends.add(pos - len(pend))
        return ends


def parse_publish(first, body):
    """(qos, dup, topic, pid, payload) of a PUBLISH body."""
    qos = (first >> 1) & 3
    tl = (body[0] << 8) | body[1]
    topic = body[2:2 + tl]
    i = 2 + tl
    pid = 0
    if qos:
        pid = (body[i] << 8) | body[i + 1]
        i += 2
    return qos, bool(first & 8), topic, pid, body[i:]


class Conn:
    """One client connection through the proxy."""

    def __init__(self, proxy, c, b, number):
        self.proxy, self.c, self.b, self.number = proxy, c, b, number
        self.up = Parser()          # client -> broker
        self.down = Parser()        # broker -> client
        self.to_b = bytearray()
        self.to_c = bytearray()
        self.outstanding = {}       # pid -> count: QoS 1 PUBLISHes the broker sent, not acked yet
        self.heads = {}             # pid -> payload head (the model's message id) of that PUBLISH
        self.closed = False
        self.client_id = None
        self.ctl_sent = 0           # SUBSCRIBE/UNSUBSCRIBE from the client on this link
        self.ctl_acked = 0          # SUBACK/UNSUBACK from the broker on this link

    def on_up(self, first, body):
        p = self.proxy
        if first is None:
            p.error("client sent a malformed remaining length: %r" % body[:8])
            return
        kind = first & 0xF0
        if kind == 0x40:                                   # PUBACK from the client
            pid = (body[0] << 8) | body[1] if len(body) == 2 else -1
            if len(body) != 2:
                p.error("client PUBACK with %d body bytes" % len(body))
            elif self.outstanding.get(pid, 0) <= 0:
                p.error("client PUBACK id %d, but the broker has no QoS 1 message %d "
                        "outstanding on this link (outstanding: %s)" % (
                            pid, pid, sorted(k for k, v in self.outstanding.items() if v)))
            else:
                self.outstanding[pid] -= 1
                p.acks_seen += 1
                head = self.heads.get(pid)
                if head is not None:
                    p.acked_heads.add(head)
        elif kind == 0x30:                                 # PUBLISH from the client
            qos, dup, topic, pid, payload = parse_publish(first, body)
            try:
                topic.decode("utf-8")
            except UnicodeDecodeError:
                p.error("client PUBLISH topic is not UTF-8: %r" % topic[:40])
            if b"+" in topic or b"#" in topic or b"\0" in topic or not topic:
                p.error("client PUBLISH topic invalid: %r" % topic[:40])
            if qos == 3 or qos == 2:
                p.error("client PUBLISH with QoS %d" % qos)
            if qos == 1:
                key = pid
                pkt = (first & ~8, body)
                if dup:
                    prev = p.client_pubs.get(key)
                    if prev is not None and prev != pkt:
                        p.error("client resent PUBLISH id %d (DUP) with different bytes: "
                                "first %r, resend %r" % (pid, prev[1][:40], body[:40]))
                p.client_pubs[key] = pkt
        elif kind == 0xA0:
            self.ctl_sent += 1
        elif kind == 0x80:                                 # SUBSCRIBE: what the client asks for
            self.ctl_sent += 1
            if first != 0x82:
                p.error("client SUBSCRIBE with flags 0x%02x" % first)
            i = 2
            while i + 2 <= len(body):
                tl = (body[i] << 8) | body[i + 1]
                topic = bytes(body[i + 2:i + 2 + tl])
                qos = body[i + 2 + tl] if i + 2 + tl < len(body) else -1
                p.subscribes.append((topic, qos))
                i += 3 + tl
        elif kind == 0x10:
            p.connects += 1
        elif kind not in (0x80, 0xA0, 0xC0, 0xE0):
            p.error("client sent packet type 0x%02x" % first)

    def on_down(self, first, body):
        if first is None:
            return
        kind = first & 0xF0
        if kind == 0x30:
            qos, dup, topic, pid, payload = parse_publish(first, body)
            if qos == 1:
                self.outstanding[pid] = self.outstanding.get(pid, 0) + 1
                self.heads[pid] = bytes(payload[:6])
            self.proxy.down_publishes.append((self.number, qos, bytes(topic), len(payload),
                                              bytes(payload[:6]), dup))
        elif kind in (0x90, 0xB0):                         # the broker has (un)subscribed
            self.ctl_acked += 1
        elif kind == 0x40:                                 # the broker acked a client publish
            pid = (body[0] << 8) | body[1]
            self.proxy.client_pubs.pop(pid, None)


class FaultProxy:
    """A TCP proxy between the client and mosquitto: cut, stall, cut mid-packet.

    One thread, select(), non-blocking sockets with a buffer per direction
    (read from a side only while the other side's buffer is small: TCP's
    back-pressure is kept, so a client that stops reading stalls the broker
    as it would without the proxy)."""

    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.RLock()
        self.conns = []
        self.count = 0
        self.connects = 0
        self.stalled = False
        self.cut_mid = None          # "up"/"down": the next chunk that way is cut inside a packet
        self.errors = []
        self.client_pubs = {}        # pid -> (first less DUP, body) of the client's QoS 1 publishes
        self.down_publishes = []     # (conn number, qos, topic, payload length)
        self.acks_seen = 0
        self.subscribes = []         # (topic, qos) of every SUBSCRIBE the client sent
        self.acked_heads = set()     # payload heads of the QoS 1 messages the client acknowledged
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def error(self, text):
        self.errors.append(text)

    def current(self):
        with self.lock:
            live = [c for c in self.conns if not c.closed]
            return live[-1] if live else None

    def ctl_pending(self):
        """SUBSCRIBE/UNSUBSCRIBE on the current link the broker has not answered yet."""
        c = self.current()
        return 0 if c is None else c.ctl_sent - c.ctl_acked

    def cut(self, rst=False):
        with self.lock:
            for c in self.conns:
                self._close(c, rst)

    def stall(self, on):
        with self.lock:
            self.stalled = on

    def stop(self):
        self.running = False
        self.thread.join(2)
        self.cut()
        self.lsock.close()

    def _close(self, conn, rst=False):
        if conn.closed:
            return
        conn.closed = True
        for s in (conn.c, conn.b):
            try:
                if rst:
                    import struct
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass

    def run(self):
        while self.running:
            with self.lock:
                self.conns = [c for c in self.conns if not c.closed]
                rd, wr = [self.lsock], []
                if not self.stalled:
                    for c in self.conns:
                        if len(c.to_b) < 65536:
                            rd.append(c.c)
                        if len(c.to_c) < 65536:
                            rd.append(c.b)
                        if c.to_b:
                            wr.append(c.b)
                        if c.to_c:
                            wr.append(c.c)
            try:
                r, w, _ = select.select(rd, wr, [], 0.005)
            except (OSError, ValueError):
                continue
            with self.lock:
                if self.lsock in r:
                    self._accept()
                for conn in list(self.conns):
                    if conn.closed or self.stalled:
                        continue
                    try:
                        if conn.c in r:
                            self._pump(conn, conn.c, "up")
                        if not conn.closed and conn.b in r:
                            self._pump(conn, conn.b, "down")
                        if not conn.closed and conn.b in w and conn.to_b:
                            n = conn.b.send(conn.to_b)
                            del conn.to_b[:n]
                        if not conn.closed and conn.c in w and conn.to_c:
                            n = conn.c.send(conn.to_c)
                            del conn.to_c[:n]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        self._close(conn)

    def _accept(self):
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        b = socket.create_connection(self.upstream)
        for s in (c, b):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.count += 1
        self.conns.append(Conn(self, c, b, self.count))

    def _pump(self, conn, src, way):
        data = src.recv(65536)
        if not data:
            # one side closed: pass what is queued, then close both
            self._close(conn)
            return
        parser = conn.up if way == "up" else conn.down
        if self.cut_mid == way:
            ends = parser.boundaries(data)
            inner = [k for k in range(1, len(data)) if k not in ends]
            if inner:
                k = inner[len(inner) // 2]
                self.cut_mid = None
                data = data[:k]
                self._forward(conn, parser, data, way)
                # what was queued goes out, then the link dies mid-packet
                other = conn.b if way == "up" else conn.c
                q = conn.to_b if way == "up" else conn.to_c
                try:
                    other.setblocking(True)
                    other.settimeout(0.5)
                    other.sendall(q)
                except OSError:
                    pass
                q.clear()
                self._close(conn)
                return
        self._forward(conn, parser, data, way)

    def _forward(self, conn, parser, data, way):
        for first, body in parser.feed(data):
            (conn.on_up if way == "up" else conn.on_down)(first, body)
        (conn.to_b if way == "up" else conn.to_c).extend(data)


# ---- transports (the client's sock_cls contract) -------------------------------------------

def make_transport(kind, chunk):
    """None (the native socket) or a sock_cls: sync or async flavour, reading
    and writing at most `chunk` bytes a call when chunk (partial packets
    everywhere, as over a modem)."""
    if kind == "native":
        return None, False

    class Sock:
        @staticmethod
        def _gai(host, port):
            return socket.getaddrinfo(host, port)

        def __init__(self):
            self.s = socket.socket()

        def _connect(self, addr):
            self.s.connect(addr)
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def setblocking(self, flag):
            self.s.setblocking(flag)

        def readinto(self, buf, n):
            if chunk:
                n = min(n, chunk)
            try:
                return self.s.recv_into(buf, n)
            except BlockingIOError:
                return None

        def _write(self, buf, n):
            if chunk:
                n = min(n, chunk)
            try:
                return self.s.send(memoryview(buf)[:n])
            except BlockingIOError:
                return None

    if kind == "sync":
        class SyncSock(Sock):
            getaddrinfo = staticmethod(Sock._gai)

            def connect(self, addr):
                self._connect(addr)

            def write(self, buf, n):
                return self._write(buf, n)

            def close(self):
                self.s.close()
        return SyncSock, False

    class AsyncSock(Sock):
        @staticmethod
        async def getaddrinfo(host, port):
            return Sock._gai(host, port)

        async def connect(self, addr):
            self._connect(addr)

        def readinto(self, buf, n):
            r = Sock.readinto(self, buf, n)
            return None if r is None else _value(r)     # a plain None when nothing waits

        async def write(self, buf, n):
            return self._write(buf, n)

        async def close(self):
            self.s.close()
    return AsyncSock, True


async def _value(v):
    return v


# ---- the model -------------------------------------------------------------------------

class Msg:
    __slots__ = ("id", "publisher", "topic", "payload", "qos", "dqos", "fits", "epoch", "routed",
                 "maybe")

    def __init__(self, mid, publisher, topic, payload, qos, dqos, fits, epoch, routed):
        self.id, self.publisher, self.topic, self.payload = mid, publisher, topic, payload
        self.qos, self.dqos, self.fits, self.epoch, self.routed = qos, dqos, fits, epoch, routed
        self.maybe = False          # routed or not: a (un)subscribe was still unanswered


def make_payload(mid, n):
    head = b"#%05d" % mid
    body = bytes((mid * 7 + i * 13) & 0xFF for i in range(max(0, n - len(head))))
    return head + body


RUN = [0]
STATS = {"runs": 0, "steps": 0, "messages": 0, "routed": 0, "fit": 0, "delivered": 0,
         "dropped": 0, "faults": 0,
         "reconnects": 0, "acks": 0}


class ExtPublisher:
    """Another client (paho-mqtt) straight to the broker (not through the proxy)."""

    def __init__(self, port, cid):
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        deadline = time.monotonic() + 5
        while not self.c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.005)
        self.barrier_topic = cid + "/barrier"

    def publish(self, topic, payload, qos):
        info = self.c.publish(topic.decode(), payload, qos=qos)
        info.wait_for_publish(5)

    def barrier(self):
        """Returns once the broker has routed everything published before."""
        self.c.publish(self.barrier_topic, b"", qos=1).wait_for_publish(5)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


FAILURES = []          # (error, steps) of every failing run, the first one reported


def logged(f):
    """Record each step (name and arguments) so a failure prints its run,
    even when hypothesis cannot replay a timing-dependent failure."""
    import functools

    @functools.wraps(f)
    def step(self, **kw):
        self.steps.append("%s(%s)" % (f.__name__, ", ".join(
            "%s=%r" % kv for kv in sorted(kw.items()) if kv[0] != "data")))
        try:
            return f(self, **kw)
        except BaseException as e:
            FAILURES.append(("%s: %s" % (type(e).__name__, e), list(self.steps)))
            raise
    return step


class ClientModel(RuleBasedStateMachine):
    broker = None                     # set by the test

    def __init__(self):
        super().__init__()
        self.loop = None
        self.proxy = None
        self.client = None
        self.ext = None
        self.hb_task = None
        self.steps = []

    # ---- setup ----------------------------------------------------------------

    @initialize(bufsize=st.sampled_from([24, 40, 64, 160]),
                backlog=st.sampled_from(["default", "one", "two", "small", "zero"]),
                keepalive=st.sampled_from([0, 3]),
                subs=st.lists(st.sampled_from([None, 0, 1, 1]), min_size=3, max_size=3),
                transport=st.sampled_from(["native", "native", "sync", "async"]),
                chunk=st.sampled_from([0, 0, 1, 3, 7]),
                clean=st.sampled_from([False, False, True]))
    @logged
    def setup(self, bufsize, backlog, keepalive, subs, transport, chunk, clean):
        RUN[0] += 1
        self.run = RUN[0]
        tag = "%d-%d" % (os.getpid(), self.run)
        self.topics = [("m%s/a" % tag).encode(), ("m%s/bb/c" % tag).encode(),
                       ("m%s/a/much/longer/topic" % tag).encode()]
        self.buflen = bufsize
        self.clean = clean
        bl = {"default": None, "one": bufsize + 5, "two": 2 * (bufsize + 5),
              "small": 12, "zero": 0}[backlog]
        self.backlog = bufsize if bl is None else bl
        self.loop = asyncio.new_event_loop()
        self.proxy = FaultProxy(self.broker.port)
        cfg = {"client_id": ("cm-" + tag).encode(), "server": "127.0.0.1",
               "port": self.proxy.port, "keepalive": keepalive, "clean_session": clean,
               "reconnect": True, "reconnect_min_ms": 20, "reconnect_max_ms": 100,
               "timeout_ms": TIMEOUT_MS}
        if bl is not None:
            cfg["backlog"] = bl
        self.buf = bytearray(bufsize)
        self.client = AsyncMQTTClient(cfg, memoryview(self.buf))
        self.ext = ExtPublisher(self.broker.port, "ext-" + tag)
        self.subs = {}                 # topic -> qos
        self.asked = set()             # every (topic, qos) the app subscribed to
        self.uncertain = set()         # topics whose (un)subscribe the broker has not answered
        self.msgs = {}                 # id -> Msg
        self.next_id = 1
        self.delivered = {}            # id -> times
        self.first_epoch = {}          # id -> epoch of first delivery
        self.first_step = {}           # id -> step of first delivery
        self.stream_last = {}          # (publisher, dqos) -> (id, epoch)
        self.holding = None            # id of the message held unread
        self.hold_steps = 0
        self.cuts = 0
        self.manual = 0
        self.lossy = False             # a QoS 0 flood: the broker may drop some
        self.refused = 0               # publishes refused (too many in flight)
        self.floods = 0
        self.hb_gap = 0
        self.hb_last = time.monotonic()
        self.hb_task = self.loop.create_task(self._heartbeat())
        self.chunk = chunk if transport != "native" else 0
        self.sock_cls, self.async_sock = make_transport(transport, chunk)
        for attempt in range(3):        # a loaded machine may miss the 1 s CONNACK once
            try:
                self._run(self._connect(), "connect")
                break
            except MQTTError:
                if attempt == 2:
                    raise
        self.epoch0 = self.epoch()
        for topic, qos in zip(self.topics, subs):
            if qos is not None:
                self.asked.add((topic, qos))
                self._run(self.client.subscribe(topic, qos), "subscribe")
                self.subs[topic] = qos

    def teardown(self):
        if self.client is not None:
            STATS["runs"] += 1
            STATS["messages"] += len(self.msgs)
            STATS["routed"] += sum(1 for m in self.msgs.values() if m.routed)
            STATS["fit"] += sum(1 for m in self.msgs.values() if m.routed and m.fits)
            STATS["delivered"] += sum(self.delivered.values())
            STATS["dropped"] += self.client.dropped
            STATS["faults"] += self.cuts
            STATS["reconnects"] += self.client.reconnects
            STATS["acks"] += self.proxy.acks_seen
        try:
            if self.client is not None and self.loop is not None:
                try:
                    self.steps.append("teardown: settle")
                    self.check_everything_arrived()
                except BaseException as e:
                    FAILURES.append(("%s: %s" % (type(e).__name__, e), list(self.steps)))
                    raise
                finally:
                    try:
                        self._run(self.client.disconnect(), "disconnect")
                    except Exception:
                        pass
        finally:
            if self.hb_task is not None and self.loop is not None:
                self.hb_task.cancel()
                try:
                    self.loop.run_until_complete(asyncio.sleep(0))
                except Exception:
                    pass
            if self.ext is not None:
                self.ext.close()
            if self.proxy is not None:
                self.proxy.stop()
            if self.loop is not None:
                self.loop.close()

    # ---- driving asyncio ----------------------------------------------------------

    async def _heartbeat(self):
        while True:
            now = time.monotonic()
            self.hb_gap = max(self.hb_gap, (now - self.hb_last) * 1000)
            self.hb_last = now
            await asyncio.sleep(0.005)

    def _run(self, aw, what, limit=STEP_TIMEOUT_S):
        """Run one step's coroutine: bounded, heartbeat watched."""
        async def bounded():
            self.hb_last = time.monotonic()
            self.hb_gap = 0
            await asyncio.sleep(0)
            try:
                return await asyncio.wait_for(_await(aw), limit)
            except asyncio.TimeoutError:
                raise AssertionError("%s hung: no result within %d s" % (what, limit))
        t = time.monotonic()
        # (the heartbeat's timer may fire before bounded() starts: the time
        # between steps, outside the loop, must not count as a gap)
        self.hb_last = t
        self.hb_gap = 0
        r = self.loop.run_until_complete(bounded())
        took = (time.monotonic() - t) * 1000
        # the gap measured while the step ran, plus the tail after the last beat
        gap = max(self.hb_gap, (time.monotonic() - self.hb_last) * 1000 if took > 0 else 0)
        assert gap <= HEARTBEAT_MAX_MS, (
            "%s held the event loop for %d ms (heartbeat every 5 ms)" % (what, gap))
        return r

    def _settle_ctl(self, topic):
        """A deferred (un)subscribe (False: the client's reading is stalled)
        reached the broker at some point: wait until the broker has answered
        it (the proxy sees the SUBACK/UNSUBACK), else the topic's routing is
        uncertain for a while (messages to it may or may not arrive)."""
        end = time.monotonic() + 1
        while self.proxy.ctl_pending() > 0 and time.monotonic() < end:
            time.sleep(0.005)
        if self.proxy.ctl_pending() > 0:
            self.uncertain.add(topic)

    def _connect(self):
        return self.client.connect(sock_cls=self.sock_cls, async_sock=self.async_sock)

    def epoch(self):
        c = self.client
        return (self.proxy.count, c.disconnects, c.reconnects, self.cuts, self.manual)

    # ---- the model's helpers --------------------------------------------------------

    def _fits(self, topic, n, dqos):
        return len(topic) + n + (2 if dqos else 0) <= self.buflen

    def _new_msg(self, publisher, topic, qos, n):
        mid = self.next_id
        self.next_id += 1
        payload = make_payload(mid, n)
        sub = self.subs.get(topic)
        routed = sub is not None
        dqos = min(qos, sub) if routed else qos
        m = Msg(mid, publisher, topic, payload, qos, dqos, self._fits(topic, len(payload), dqos),
                self.epoch(), routed)
        if self.uncertain and not self.proxy.ctl_pending():
            self.uncertain.clear()
        if topic in self.uncertain:
            m.maybe = True
            m.routed = True
        self.msgs[mid] = m
        return m

    def _size(self, topic, qos, delta, far):
        """A payload length around the limit for this topic and delivered QoS."""
        sub = self.subs.get(topic)
        dq = min(qos, sub) if sub is not None else qos
        limit = self.buflen - len(topic) - (2 if dq else 0)
        n = limit + (far if far is not None else delta)
        if self.chunk:
            n = min(n, limit + 400)     # a few bytes a read: keep the run short
        return max(6, n)

    def _take(self, what):
        """The client has a message ready: check it against the model."""
        c = self.client
        topic, msg, flags = bytes(c.topic), bytes(c.msg), c.msg_flags
        if len(msg) < 6 or not msg.startswith(b"#"):
            raise AssertionError("%s: delivered a message that nobody published (corrupted?): "
                                 "topic %r payload %r" % (what, topic, msg[:40]))
        try:
            mid = int(msg[1:6])
        except ValueError:
            raise AssertionError("%s: corrupted payload head %r on %r" % (what, msg[:8], topic))
        m = self.msgs.get(mid)
        assert m is not None, "%s: unknown message id %d on %r" % (what, mid, topic)
        assert topic == m.topic, "%s: message %d delivered on %r, published on %r" % (
            what, mid, topic, m.topic)
        assert msg == m.payload, "%s: message %d corrupted: %d bytes %r..., want %d bytes %r..." % (
            what, mid, len(msg), msg[:24], len(m.payload), m.payload[:24])
        got_qos = (flags >> 1) & 3
        # a copy routed again after a link change (our own QoS 1 publish resent
        # with DUP) gets the subscriptions of that moment
        rerouted = (m.epoch != self.epoch() and m.publisher != "ext" and m.qos == 1) or (
            m.maybe and got_qos <= m.qos)
        assert m.routed or rerouted, (
            "%s: message %d delivered, but we were not subscribed to %r" % (what, mid, topic))
        if got_qos != m.dqos and not rerouted:
            sent = [(conn, q, dup) for conn, q, t, n, head, dup in self.proxy.down_publishes
                    if head == m.payload[:6]]
            raise AssertionError(
                "%s: message %d (published by %s with QoS %d on %r) came with QoS %d (msg_flags "
                "0x%02x), want %d; the broker sent it as (connection, QoS, DUP): %r; subscribed "
                "%r; SUBSCRIBEs sent: %r" % (
                    what, mid, m.publisher, m.qos, m.topic, (flags >> 1) & 3, flags, m.dqos,
                    sent, self.subs, self.proxy.subscribes))
        fits = self._fits(topic, len(msg), got_qos) if rerouted else m.fits
        assert fits, ("%s: message %d delivered although it does not fit the %d-byte buffer "
                        "(topic %d + payload %d, QoS %d)" % (what, mid, self.buflen, len(topic),
                                                           len(msg), m.dqos))
        now = self.epoch()
        times = self.delivered.get(mid, 0)
        if times:
            # at least once: a copy again after the link changed (the broker resends an
            # unacknowledged one; a publisher resends its own: the broker routes each copy)
            dup_ok = (m.dqos == 1 and self.first_epoch[mid] != now) or (
                m.qos == 1 and m.epoch != now)
            assert dup_ok, (
                "%s: message %d (QoS %d from %s, %d+%d bytes, first delivered at step %d) "
                "delivered again without a link change (connection %d, disconnects %d, "
                "reconnects %d; buffer %d, backlog %d)" % (
                    what, mid, m.dqos, m.publisher, len(m.topic), len(m.payload),
                    self.first_step[mid], self.proxy.count, self.client.disconnects,
                    self.client.reconnects, self.buflen, self.backlog))
        else:
            key = (m.publisher, m.dqos)
            last = self.stream_last.get(key)
            if last is not None and last[1] == now and m.epoch == now:
                assert last[0] < mid, ("%s: %s QoS %d messages out of order: %d after %d" % (
                    what, m.publisher, m.dqos, mid, last[0]))
            self.stream_last[key] = (mid, now)
            self.first_epoch[mid] = now
            self.first_step[mid] = len(self.steps)
        self.delivered[mid] = times + 1
        return mid

    async def _poll(self, tries, hold, what):
        """check_msg() up to tries times; a message is checked and (unless
        hold) marked read.  Returns the ids taken."""
        c = self.client
        taken = []
        for _ in range(tries):
            d = _progress(c)
            meta = await _await(c.check_msg())
            if meta:
                if self.holding is not None:
                    # the held message again (check_msg while unread)
                    assert bytes(c.msg).startswith(b"#%05d" % self.holding), (
                        "%s: check_msg() while holding %d returned another message %r" % (
                            what, self.holding, bytes(c.msg)[:8]))
                    return taken
                mid = self._take(what)
                taken.append(mid)
                if hold:
                    self.holding = mid
                    self.hold_steps = hold
                    return taken
                c.mark_read()
            else:
                await asyncio.sleep(0 if _progress(c) != d else 0.002)   # no pause while reading
        return taken

    async def _publish(self, m, qos):
        """The client publishes m; a refusal for too many unacknowledged QoS 1
        publishes (MQTTError before anything is sent) takes m out of the model."""
        try:
            r = await _await(self.client.publish(m.topic, m.payload, qos=qos))
        except MQTTError as e:
            if "inflight" not in str(e):
                raise
            del self.msgs[m.id]            # never sent: must never arrive (an unknown id)
            self.refused += 1
            return None
        if qos:
            assert r in (True, False), "QoS 1 publish returned %r" % (r,)
        else:
            assert r is None, "QoS 0 publish returned %r" % (r,)
        return r

    def _check_proxy(self):
        assert not self.proxy.errors, "protocol errors seen by the proxy:\n  " + \
            "\n  ".join(self.proxy.errors[:10])
        for sub in self.proxy.subscribes:
            assert sub in self.asked, "the client sent SUBSCRIBE %r, the app never asked for it " \
                "(asked: %s)" % (sub, sorted(self.asked))

    # ---- rules ------------------------------------------------------------------------

    @rule(ti=st.integers(0, 2), qos=st.sampled_from([0, 0, 1]),
          delta=st.integers(-3, 3), far=st.none() | st.integers(-60, 30))
    @logged
    def publish(self, ti, qos, delta, far):
        """The client publishes (to a topic it may or may not be subscribed to)."""
        topic = self.topics[ti]
        n = self._size(topic, qos, delta, far)
        m = self._new_msg("self", topic, qos, n)

        self._run(self._publish(m, qos), "publish")

    @rule(ti=st.integers(0, 2), qos=st.sampled_from([0, 1, 1]), count=st.integers(2, 12),
          extra=st.integers(1, 300), ext=st.booleans())
    @logged
    def oversize_burst(self, ti, qos, count, extra, ext):
        """Many oversize messages in a row (then a small one), from us or from another client."""
        topic = self.topics[ti]
        publisher = "ext" if ext else "self"
        sizes = [self._size(topic, qos, 0, extra + i) for i in range(count)] + [6]
        msgs = [self._new_msg(publisher, topic, qos, n) for n in sizes]
        if ext:
            for m in msgs:
                self.ext.publish(topic, m.payload, qos)
            self.ext.barrier()
            self._run(self._poll(3, 0, "oversize_burst"), "oversize_burst poll")
        else:
            async def go():
                for m in msgs:
                    await self._publish(m, qos)
            self._run(go(), "oversize_burst")

    @rule(ti=st.integers(0, 2), qos=st.sampled_from([0, 1]), delta=st.integers(-3, 3),
          far=st.none() | st.integers(-60, 40) | st.integers(100, 20000), count=st.integers(1, 6))
    @logged
    def ext_publish(self, ti, qos, delta, far, count):
        """Another client publishes messages of random size and QoS."""
        topic = self.topics[ti]
        for i in range(count):
            n = self._size(topic, qos, delta, None if far is None else far + i)
            m = self._new_msg("ext", topic, qos, n)
            self.ext.publish(topic, m.payload, qos)
        self.ext.barrier()

    @rule(ti=st.integers(0, 2), qos=st.sampled_from([0, 1]))
    @logged
    def subscribe(self, ti, qos):
        topic = self.topics[ti]
        self.asked.add((topic, qos))
        r = self._run(self.client.subscribe(topic, qos), "subscribe")
        assert r in (True, False), "subscribe returned %r" % (r,)
        self.subs[topic] = qos
        self._settle_ctl(topic)

    @rule(ti=st.integers(0, 2))
    @logged
    def unsubscribe(self, ti):
        topic = self.topics[ti]
        self.subs.pop(topic, None)
        r = self._run(self.client.unsubscribe(topic), "unsubscribe")
        assert r in (True, False), "unsubscribe returned %r" % (r,)
        self._settle_ctl(topic)

    @precondition(lambda self: self.holding is None)
    @rule(tries=st.integers(1, 20), hold=st.sampled_from([0, 0, 0, 1, 3, 6]))
    @logged
    def check_msg(self, tries, hold):
        """Poll; maybe hold the message unread for a few steps."""
        self._run(self._poll(tries, hold, "check_msg"), "check_msg")

    @precondition(lambda self: self.holding is not None)
    @rule()
    @logged
    def mark_read(self):
        self.client.mark_read()
        self.holding = None

    @rule(kind=st.sampled_from(["cut", "cut_mid_packet", "stall", "disconnect_connect",
                                "app_reconnect"]),
          data=st.data())
    @logged
    def fault(self, kind, data):
        """One link fault (one rule, so faults are a fraction of the steps)."""
        if kind == "cut":
            args = dict(rst=data.draw(st.booleans(), "rst"))
        elif kind == "cut_mid_packet":
            args = dict(way=data.draw(st.sampled_from(["up", "down"]), "way"),
                        ti=data.draw(st.integers(0, 2), "ti"),
                        qos=data.draw(st.sampled_from([0, 1]), "qos"),
                        far=data.draw(st.integers(-10, 100), "far"))
        elif kind == "stall":
            args = dict(ms=data.draw(st.sampled_from([50, 300, 800, 1500]), "ms"),
                        qos=data.draw(st.sampled_from([None, 0, 1]), "qos"),
                        ti=data.draw(st.integers(0, 2), "ti"))
        elif kind == "app_reconnect":
            args = {}
        else:
            args = dict(ext_msgs=data.draw(st.integers(0, 3), "ext_msgs"),
                        qos=data.draw(st.sampled_from([0, 1]), "qos"))
        self.steps[-1] = "fault.%s(%s)" % (kind, ", ".join(
            "%s=%r" % kv for kv in sorted(args.items())))
        getattr(self, kind)(**args)

    def app_reconnect(self):
        """The app calls reconnect() on a live link (resubscribes, resends)."""
        self.manual += 1
        self._run(self.client.reconnect(), "reconnect")
        self.manual += 1

    def cut(self, rst):
        """The link dies (FIN or RST) between two calls."""
        self.cuts += 1
        self.proxy.cut(rst)
        self._run(self._poll(5, 0, "after cut") if self.holding is None else asyncio.sleep(0.01),
                  "after cut")

    def cut_mid_packet(self, way, ti, qos, far):
        """The link dies in the middle of the next packet (either way)."""
        self.cuts += 1
        self.proxy.cut_mid = way
        topic = self.topics[ti]
        m = self._new_msg("self", topic, qos, self._size(topic, qos, 0, far))

        async def go():
            await self._publish(m, qos)
            if self.holding is None:
                await self._poll(5, 0, "cut_mid_packet")
        self._run(go(), "cut_mid_packet")
        self.proxy.cut_mid = None

    def stall(self, ms, qos, ti):
        """The link stalls for ms (nothing moves either way), maybe with a
        publish during it; the client must neither hang nor lose QoS 1."""
        self.proxy.stall(True)
        topic = self.topics[ti]
        m = None if qos is None else self._new_msg("self", topic, qos,
                                                  self._size(topic, qos, -5, None))

        async def go():
            if m is not None:
                t = asyncio.ensure_future(self._publish(m, qos))
            end = time.monotonic() + ms / 1000
            while time.monotonic() < end:
                if self.holding is None:
                    await self._poll(1, 0, "stall")
                await asyncio.sleep(0.005)
            self.proxy.stall(False)
            if m is not None:
                await t
        try:
            self._run(go(), "stall")
        finally:
            self.proxy.stall(False)

    def disconnect_connect(self, ext_msgs, qos):
        """disconnect(), others publish meanwhile, connect() (persistent session)."""
        self.manual += 1
        self._run(self.client.disconnect(), "disconnect")
        assert not self.client.isconnected(), "isconnected() after disconnect()"
        self.manual += 1
        for _ in range(ext_msgs):
            topic = self.topics[0]
            m = self._new_msg("ext", topic, qos, 6)
            self.ext.publish(topic, m.payload, qos)
        self.ext.barrier()
        self._run(self._connect(), "connect")
        self.manual += 1
        if self.clean:                  # a new clean session: the app subscribes again
            for topic, q in self.subs.items():
                self._run(self.client.subscribe(topic, q), "subscribe")

    @precondition(lambda self: self.holding is not None)
    @rule()
    @logged
    def hold_longer(self):
        """Time passes while the app holds its message (the client does nothing)."""
        self.hold_steps -= 1
        if self.hold_steps <= 0:
            self.client.mark_read()
            self.holding = None

    @rule(n=st.integers(2, 4), qos=st.sampled_from([0, 1]), ti=st.integers(0, 2),
          sub_ti=st.none() | st.integers(0, 2), size=st.integers(-20, 5))
    @logged
    def concurrent(self, n, qos, ti, sub_ti, size):
        """Several tasks at once: publishes (each its own publisher: their
        relative order is the scheduler's), a reader, maybe a subscribe."""
        topic = self.topics[ti]
        if sub_ti == ti:
            sub_ti = None
        msgs = [self._new_msg("task%d" % k, topic, qos, self._size(topic, qos, 0, size))
                for k in range(n)]

        async def pub(m):
            await self._publish(m, qos)

        async def go():
            jobs = [pub(m) for m in msgs]
            if self.holding is None:
                jobs.append(self._poll(10, 0, "concurrent"))
            if sub_ti is not None:
                self.asked.add((self.topics[sub_ti], 1))
                jobs.append(self.client.subscribe(self.topics[sub_ti], 1))
            await asyncio.gather(*jobs)
        self._run(go(), "concurrent")
        if sub_ti is not None:
            self.subs[self.topics[sub_ti]] = 1
            self._settle_ctl(self.topics[sub_ti])

    @rule(ms=st.sampled_from([300, 1000]), ti=st.integers(0, 2))
    @logged
    def flood(self, ms, ti):
        """Another client floods a subscribed topic with 20 kB messages (too big:
        drained) for ms: every check_msg() must stay short (the heartbeat)."""
        topic = self.topics[ti]
        if topic not in self.subs or self.chunk or self.floods >= 2:
            return                      # (a few bytes a read: a flood only takes long)
        self.floods += 1
        pre = [self._new_msg("flood", topic, 0, 20000) for _ in range(200)]
        for m in pre:
            m.routed = False            # routed once sent
        self.lossy = True
        sent = []
        stop = time.monotonic() + ms / 1000

        def blast():
            s = socket.create_connection(("127.0.0.1", self.broker.port))
            cid = b"flood-%d" % self.run
            body = b"\x00\x04MQTT\x04\x02\x00\x00" + bytes([0, len(cid)]) + cid
            s.sendall(bytes([0x10, len(body)]) + body)
            s.recv(4)
            for m in pre:
                if time.monotonic() > stop:
                    break
                b = bytes([0, len(topic)]) + topic + m.payload
                n, hdr = len(b), bytearray([0x30])
                while True:
                    d, n = n & 0x7F, n >> 7
                    hdr.append(d | (0x80 if n else 0))
                    if not n:
                        break
                s.sendall(bytes(hdr) + b)
                sent.append(m)
            s.sendall(b"\xe0\x00")
            s.close()
        th = threading.Thread(target=blast)
        th.start()

        async def go():
            while th.is_alive():
                if self.holding is None:
                    await self._poll(1, 0, "flood")
                await asyncio.sleep(0.001)
        try:
            self._run(go(), "flood")
        finally:
            th.join(5)
        for m in sent:
            m.routed = True

    @rule()
    @logged
    def settle(self):
        self.check_everything_arrived()

    # ---- invariants -----------------------------------------------------------------

    @invariant()
    def protocol_ok(self):
        STATS["steps"] += 1
        if self.proxy is not None:
            self._check_proxy()

    def check_everything_arrived(self):
        """Read until quiet, then compare with the model."""
        c = self.client
        if self.holding is not None:
            c.mark_read()
            self.holding = None

        async def drain():
            quiet_since = time.monotonic()
            end = time.monotonic() + 30
            dropped = _progress(c)
            while time.monotonic() < end and time.monotonic() - quiet_since < 8:
                got = await self._poll(1, 0, "settle")
                if got or _progress(c) != dropped:   # progress: a delivery, a drop, bytes read
                    quiet_since = time.monotonic()
                    dropped = _progress(c)
                    continue                        # (no pause while it makes progress)
                busy = not c.isconnected() or c.inflight
                if not busy and time.monotonic() - quiet_since > 0.3:
                    return True
                await asyncio.sleep(0.003)
            return False
        settled = self._run(drain(), "settle", 40)
        self._check_proxy()
        now = self.epoch()
        missing = []
        for m in self.msgs.values():
            if not m.routed or not m.fits or m.maybe or self.delivered.get(m.id):
                continue
            # persistent session: QoS 1 survives link changes; a clean session
            # loses what the broker held for us when the link changed
            if m.epoch == now or (m.dqos == 1 and not self.clean):
                missing.append("%d (%s, QoS %d, %d+%d bytes%s%s)" % (
                    m.id, m.publisher, m.dqos, len(m.topic), len(m.payload),
                    "" if m.epoch == now else ", link changed since",
                    ", ACKNOWLEDGED by the client" if m.payload[:6] in self.proxy.acked_heads
                    else ""))
        assert not missing, (
            "never delivered: %s (client: connected %s, inflight %d, dropped %d)" % (
                ", ".join(missing[:12]), c.isconnected(), c.inflight, c.dropped))
        assert settled, ("the client did not settle: 8 s without a delivery or a drop, or 30 s "
                         "in all (connected %s, inflight %d)" % (c.isconnected(), c.inflight))
        assert c.inflight == 0, "%d QoS 1 publishes still in flight" % c.inflight
        conn = self.proxy.current()
        if conn is not None:
            left = sorted(k for k, v in conn.outstanding.items() if v > 0)
            assert not left, "the broker's QoS 1 messages %s were never acknowledged" % left
        oversize = [m for m in self.msgs.values() if m.routed and not m.fits and not m.maybe]
        maybe = len([m for m in self.msgs.values() if m.maybe and not m.fits])
        if self.epoch() == self.epoch0 and not self.lossy:
            assert len(oversize) <= c.dropped <= len(oversize) + maybe, (
                "dropped %d, want %d oversize (+ up to %d)" % (c.dropped, len(oversize), maybe))
        else:
            sure = [m for m in oversize if m.publisher != "flood" and (
                m.epoch == now or (m.dqos == 1 and not self.clean))]
            assert c.dropped >= len(sure), "dropped %d, at least %d oversize arrived" % (
                c.dropped, len(sure))


async def _await(aw):
    return await aw


def _progress(c):
    """Something that changes while the client reads (a pacing hint only:
    the reader's private counters, if it has them)."""
    return (c.dropped, getattr(c, "_got", 0), getattr(c, "_hn", 0), getattr(c, "_rem", 0))


def _settings():
    if FUZZ:
        return settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                        database=None, derandomize=False,
                        suppress_health_check=list(HealthCheck),
                        phases=[Phase.explicit, Phase.generate] + (
                            [Phase.shrink] if os.environ.get("FUZZ_SHRINK") else []))
    return settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                    database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.generate])   # no shrinking in CI: bounded time


@pytest.fixture
def model_broker(tmp_path):
    """A mosquitto of this test's own whose queue per client is unbounded:
    the model's floods must not make the broker drop the messages it checks
    (mosquitto's default, max_queued_messages 1000, drops QoS 1 too)."""
    import conftest
    from broker import Broker
    b = Broker(str(tmp_path / "mosquitto"), extra_config="max_queued_messages 0\n").start()
    conftest.RUNNING_BROKERS.append(b)        # its log goes into a failure's report
    yield b
    b.stop()
    conftest.RUNNING_BROKERS.remove(b)


def test_client_against_model(model_broker):
    ClientModel.broker = model_broker
    t = time.monotonic()
    del FAILURES[:]
    machine_test = get_state_machine_test(ClientModel, settings=_settings())
    if FUZZ and os.environ.get("FUZZ_SEED"):
        seed(int(os.environ["FUZZ_SEED"]))(machine_test)
    try:
        machine_test()
    except Exception as e:
        if FAILURES:
            err, steps = FAILURES[0]
            pytest.fail("%s\n\nfirst failing run (%d steps):\n  %s\n\n(hypothesis: %s: %s)" % (
                err, len(steps), "\n  ".join(steps), type(e).__name__, str(e)[:2000]),
                pytrace=False)
        raise
    finally:
        print("model: %d runs, %d steps (incl. setup), %d messages published (%d to a "
              "subscription, %d of them fit), %d deliveries, "
              "%d dropped, %d cuts, %d reconnects, %d PUBACKs checked, %.1f s" % (
                  STATS["runs"], STATS["steps"], STATS["messages"], STATS["routed"],
                  STATS["fit"], STATS["delivered"],
                  STATS["dropped"], STATS["faults"], STATS["reconnects"], STATS["acks"],
                  time.monotonic() - t))


# ---- the machinery's own checks (fast): the proxy parses, cuts inside packets ----------

def test_parser_splits_packets_and_finds_boundaries():
    p = Parser()
    pub = bytes([0x32, 9, 0, 3]) + b"a/b" + bytes([0, 7]) + b"xy"
    ack = bytes([0x40, 2, 0, 7])
    assert p.boundaries(pub + ack) == {len(pub), len(pub) + 4}
    got = p.feed(pub[:5])
    assert got == []
    got = p.feed(pub[5:] + ack)
    assert [g[0] for g in got] == [0x32, 0x40]
    assert parse_publish(0x32, got[0][1]) == (1, False, b"a/b", 7, b"xy")


def test_proxy_flags_a_puback_with_an_id_the_broker_never_sent(own_broker):
    proxy = FaultProxy(own_broker.port)
    try:
        s = socket.create_connection(("127.0.0.1", proxy.port))
        cid = b"pxy"
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + bytes([0, len(cid)]) + cid
        s.sendall(bytes([0x10, len(body)]) + body)
        assert s.recv(4)[:1] == b"\x20"
        s.sendall(b"\x40\x02\x00\x05")           # PUBACK for id 5: nothing outstanding
        deadline = time.monotonic() + 2
        while not proxy.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        s.close()
        assert proxy.errors and "id 5" in proxy.errors[0]
    finally:
        proxy.stop()

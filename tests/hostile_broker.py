"""A scriptable, byte-level MQTT server for attacks a real broker cannot make.

Real mosquitto (tests/broker.py) stays the broker for everything a real
broker does.  This one says exactly the bytes a test scripts, in the order
and at the speed it scripts, and records every byte the client sent.

    hb = HostileBroker([                     # one script per connection
        [expect(CONNECT), send(connack()),
         expect(SUBSCRIBE), send(lambda c: suback(c.last.pid, 1)),
         send(publish(b"t", b"x" * 500, qos=1, pid=7)),
         stall(0.2), flood(publish(b"t", bytes(20000)), seconds=3),
         close_mid(publish(b"t", b"cut"), 5)],
        [serve()],                           # the reconnect: a polite broker
    ], lifetime=20).start()
    ... run the client against hb.port ...
    hb.stop()
    hb.conns[0].packets                      # what the client sent, parsed
    hb.packets("PUBACK")                     # ... across all connections

Steps (a script is a list of them; each runs in the connection's thread):
    expect(match, timeout=5)     wait for the next client packet matching
                                 `match` (type code like PUBLISH, a name like
                                 "PUBLISH", exact bytes, or a predicate on
                                 the Packet); packets that do not match are
                                 skipped (they are recorded anyway).  The
                                 matched packet is `conn.last`.  Times out:
                                 the error is recorded, the connection closed.
    send(data)                   bytes, or a function conn -> bytes
    stall(seconds)               send nothing (still reading and recording)
    flood(data, count=None, seconds=None, answer_pings=True)
                                 send data (bytes or function i -> bytes)
                                 again and again, as fast as the client
                                 reads, `count` times or for `seconds`;
                                 PINGREQs are answered between two pieces
    close()                      close the connection (FIN)
    close_mid(data, n)           send data[:n], then close
    serve(seconds=None, until=None, connack=0, session_present=False)
                                 a polite broker: CONNACK, SUBACK (granted
                                 QoS as asked), UNSUBACK, PUBACK, PINGRESP;
                                 ends on DISCONNECT (closes), after
                                 `seconds`, or when until(packet) is true
    call(fn)                     fn(conn), for anything else

After its script a connection stays open, read and recorded, until the
client closes it or the broker's lifetime ends.  Each connection's kernel
send buffer is kept small (sndbuf, 32 KiB) so a flood does not pile up
megabytes in front of the next packet the script sends.  Connections beyond the
scripts get the last script again (repeat_last=True) or are closed at
once (still recorded).  The whole broker stops by itself after `lifetime`
seconds.  Every step is bounded in time.
"""
import queue
import select
import socket
import threading
import time

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
PUBREC = 0x50
PUBREL = 0x60
PUBCOMP = 0x70
SUBSCRIBE = 0x80
SUBACK = 0x90
UNSUBSCRIBE = 0xA0
UNSUBACK = 0xB0
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

NAMES = {CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
         PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE",
         SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK",
         PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT", 0: "RESERVED0",
         0xF0: "RESERVED15"}


# ---- encoding what a server sends ---------------------------------------------

def remaining_length(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def packet(first, body=b""):
    return bytes((first,)) + remaining_length(len(body)) + bytes(body)


def _str(s):
    s = s.encode() if isinstance(s, str) else bytes(s)
    return len(s).to_bytes(2, "big") + s


def connack(rc=0, session_present=False):
    return packet(CONNACK, bytes((1 if session_present else 0, rc)))


def suback(pid, code=0):
    return packet(SUBACK, pid.to_bytes(2, "big") + bytes((code,)))


def unsuback(pid):
    return packet(UNSUBACK, pid.to_bytes(2, "big"))


def puback(pid):
    return packet(PUBACK, pid.to_bytes(2, "big"))


def pingresp():
    return packet(PINGRESP)


def publish(topic, payload=b"", qos=0, pid=None, retain=False, dup=False):
    """A PUBLISH; qos 1 needs a pid (any int, also 0 for an attack)."""
    first = PUBLISH | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = _str(topic)
    if qos:
        body += (pid if pid is not None else 1).to_bytes(2, "big")
    return packet(first, body + bytes(payload))


def publish_header(topic, payload_len, qos=0, pid=1):
    """The first bytes of a PUBLISH whose payload_len bytes of payload
    follow separately (e.g. by a flood): header, topic, packet id."""
    t = _str(topic)
    rem = len(t) + (2 if qos else 0) + payload_len
    out = bytes((PUBLISH | (qos << 1),)) + remaining_length(rem) + t
    return out + (pid.to_bytes(2, "big") if qos else b"")


def connect_packet(client_id=b"", keepalive=0, clean=True):
    """A client's CONNECT (to test the broker itself)."""
    body = _str(b"MQTT") + bytes((4, 2 if clean else 0)) + keepalive.to_bytes(2, "big")
    return packet(CONNECT, body + _str(client_id))


# ---- parsing what the client sent ------------------------------------------------

class Packet:
    """One packet from the client.  Always: t (monotonic time it completed),
    first, type (0x10..0xF0), name, flags, raw.  PUBLISH: topic, payload,
    qos, dup, retain, pid.  PUBACK/SUBSCRIBE/UNSUBSCRIBE/...: pid.
    SUBSCRIBE: topics [(filter, qos)]; UNSUBSCRIBE: topics [filter].
    CONNECT: client_id, keepalive, clean, will_topic, will_msg, will_qos,
    will_retain, user, password.  A body that does not parse: error."""

    def __init__(self, raw, t):
        self.raw = bytes(raw)
        self.t = t
        self.first = raw[0]
        self.type = raw[0] & 0xF0
        self.flags = raw[0] & 0x0F
        self.name = NAMES.get(self.type, "0x%02x" % self.type)
        self.pid = None
        self.topic = self.payload = None
        self.topics = []
        self.error = None
        i = 1
        while raw[i] & 0x80:
            i += 1
        self.body = self.raw[i + 1:]
        try:
            self._parse()
        except (IndexError, ValueError) as e:
            self.error = "unparsable %s: %s" % (self.name, e)

    def _parse(self):
        b = self.body
        t = self.type
        if t == PUBLISH:
            self.qos = (self.flags >> 1) & 3
            self.dup = bool(self.flags & 8)
            self.retain = bool(self.flags & 1)
            tl = int.from_bytes(b[0:2], "big")
            if 2 + tl > len(b):
                raise ValueError("topic length %d beyond the body" % tl)
            self.topic = b[2:2 + tl]
            i = 2 + tl
            if self.qos:
                self.pid = int.from_bytes(b[i:i + 2], "big")
                i += 2
            self.payload = b[i:]
        elif t in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK):
            self.pid = int.from_bytes(b[0:2], "big")
        elif t in (SUBSCRIBE, UNSUBSCRIBE):
            self.pid = int.from_bytes(b[0:2], "big")
            i = 2
            while i < len(b):
                n = int.from_bytes(b[i:i + 2], "big")
                f = b[i + 2:i + 2 + n]
                if len(f) != n:
                    raise ValueError("filter beyond the body")
                i += 2 + n
                if t == SUBSCRIBE:
                    self.topics.append((f, b[i]))
                    i += 1
                else:
                    self.topics.append(f)
            self.topic = self.topics[0][0] if t == SUBSCRIBE and self.topics else \
                (self.topics[0] if self.topics else None)
        elif t == CONNECT:
            n = int.from_bytes(b[0:2], "big")
            self.protocol = b[2:2 + n]
            i = 2 + n
            self.level = b[i]
            fl = b[i + 1]
            self.keepalive = int.from_bytes(b[i + 2:i + 4], "big")
            self.clean = bool(fl & 2)
            i += 4

            def field():
                nonlocal i
                n = int.from_bytes(b[i:i + 2], "big")
                v = b[i + 2:i + 2 + n]
                if len(v) != n:
                    raise ValueError("CONNECT field beyond the body")
                i += 2 + n
                return v
            self.client_id = field()
            self.will_topic = self.will_msg = self.user = self.password = None
            self.will_qos = (fl >> 3) & 3
            self.will_retain = bool(fl & 0x20)
            if fl & 4:
                self.will_topic = field()
                self.will_msg = field()
            if fl & 0x80:
                self.user = field()
            if fl & 0x40:
                self.password = field()
            if i != len(b):
                raise ValueError("%d bytes after the CONNECT fields" % (len(b) - i))

    def __repr__(self):
        extra = ""
        if self.type == PUBLISH:
            extra = " q%d%s%s pid=%s topic=%r len=%d" % (
                self.qos, " dup" if self.dup else "", " retain" if self.retain else "",
                self.pid, self.topic, len(self.payload or b""))
        elif self.pid is not None:
            extra = " pid=%d" % self.pid
        if self.topics:
            extra += " topics=%r" % (self.topics,)
        if self.error:
            extra += " ERROR " + self.error
        return "<%s%s>" % (self.name, extra)


def _match(m, p):
    if m is None:
        return True
    if isinstance(m, int):
        return p.type == (m & 0xF0)
    if isinstance(m, str):
        return p.name == m
    if isinstance(m, (bytes, bytearray)):
        return p.raw == bytes(m)
    return bool(m(p))


# ---- steps ------------------------------------------------------------------------

def expect(match=None, timeout=5.0):
    return ("expect", match, timeout)


def send(data):
    return ("send", data)


def stall(seconds):
    return ("stall", seconds)


def flood(data, count=None, seconds=None, answer_pings=True):
    if count is None and seconds is None:
        raise ValueError("a flood needs a count or seconds (it must end)")
    return ("flood", data, count, seconds, answer_pings)


def close():
    return ("close",)


def close_mid(data, n):
    return ("close_mid", data, n)


def serve(seconds=None, until=None, connack=0, session_present=False):
    return ("serve", seconds, until, connack, session_present)


def call(fn):
    return ("call", fn)


class ScriptError(Exception):
    pass


class Conn:
    """One accepted connection: what the client sent and what happened."""

    def __init__(self, broker, sock, index):
        self.broker = broker
        self.sock = sock
        self.index = index
        self.accepted_at = time.monotonic()
        self.raw = bytearray()        # every byte received, in order
        self.packets = []             # parsed, in order
        self.queue = queue.Queue()    # the same packets, for expect()/serve()
        self.last = None              # the packet the last expect() matched
        self.errors = []              # script failures, unparsable bytes
        self.closed_at = None
        self.closed_by = None         # "peer", "script", "lifetime", "error"
        self.peer_closed = threading.Event()
        self.sent = 0                 # bytes sent
        self._pings = 0               # PINGREQs the flood has not answered yet
        self._lock = threading.Lock()

    def names(self):
        return [p.name for p in self.packets]

    # -- the reader (its own thread): record everything --
    def _read(self):
        buf = bytearray()
        try:
            while not self.broker._stop.is_set():
                try:
                    r, _, _ = select.select([self.sock], [], [], 0.05)
                except (OSError, ValueError):
                    break
                if not r:
                    continue
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                self.raw += data
                buf += data
                while True:
                    n = _complete_length(buf)
                    if n is None:
                        break
                    if n < 0:
                        self.errors.append("malformed remaining length: %r" % bytes(buf[:8]))
                        p = Packet(bytes((buf[0], 0)), time.monotonic())
                        p.error = "malformed remaining length"
                        self._got(p)
                        buf = bytearray()
                        break
                    p = Packet(buf[:n], time.monotonic())
                    del buf[:n]
                    self._got(p)
        finally:
            self.peer_closed.set()
            if self.closed_by is None:
                self.closed_by = "peer"
                self.closed_at = time.monotonic()

    def _got(self, p):
        if p.error:
            self.errors.append(p.error)
        self.packets.append(p)
        if p.type == PINGREQ:
            with self._lock:
                self._pings += 1
        self.queue.put(p)

    # -- the script (its own thread) --
    def _send_all(self, data, deadline=None):
        """Send everything, bounded by deadline (else the broker's end)."""
        view = memoryview(data)
        end = min(deadline or self.broker.ends_at, self.broker.ends_at)
        while view:
            if self.broker._stop.is_set() or time.monotonic() > end:
                raise ScriptError("send did not complete (client not reading)")
            try:
                _, w, _ = select.select([], [self.sock], [], 0.05)
            except (OSError, ValueError):
                raise ScriptError("socket gone")
            if not w:
                continue
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                continue
            except OSError as e:
                raise ScriptError("send failed: %s" % e)
            self.sent += n
            view = view[n:]

    def _next(self, timeout):
        end = time.monotonic() + timeout
        while True:
            left = min(end, self.broker.ends_at) - time.monotonic()
            if left <= 0:
                return None
            try:
                return self.queue.get(timeout=min(left, 0.05))
            except queue.Empty:
                if self.peer_closed.is_set() and self.queue.empty():
                    return "closed"

    def run_step(self, step):
        kind = step[0]
        if kind == "expect":
            _, match, timeout = step
            while True:
                p = self._next(timeout)
                if p is None:
                    raise ScriptError("expect(%r): nothing within %ss" % (match, timeout))
                if p == "closed":
                    raise ScriptError("expect(%r): the client closed the connection" % (match,))
                if _match(match, p):
                    self.last = p
                    return
        elif kind == "send":
            data = step[1](self) if callable(step[1]) else step[1]
            self._send_all(data)
        elif kind == "stall":
            end = time.monotonic() + step[1]
            while time.monotonic() < min(end, self.broker.ends_at):
                time.sleep(0.01)
        elif kind == "flood":
            _, data, count, seconds, answer = step
            end = time.monotonic() + seconds if seconds is not None else self.broker.ends_at
            i = 0
            while (count is None or i < count) and time.monotonic() < end:
                if self.peer_closed.is_set():
                    raise ScriptError("flood: the client closed the connection")
                piece = data(i) if callable(data) else data
                # one piece goes out whole (a flood ends at a piece boundary),
                # given two more seconds if the client reads slowly
                self._send_all(piece, max(end, time.monotonic()) + 2)
                i += 1
                if answer:
                    with self._lock:
                        n, self._pings = self._pings, 0
                    for _ in range(n):
                        self._send_all(pingresp())
            self.flooded = i
        elif kind == "close":
            self._close("script")
        elif kind == "close_mid":
            _, data, n = step
            self._send_all(data[:n])
            self._close("script")
        elif kind == "serve":
            self._serve(*step[1:])
        elif kind == "call":
            step[1](self)
        else:
            raise ValueError("unknown step %r" % (step,))

    def _serve(self, seconds, until, rc, sp):
        end = time.monotonic() + seconds if seconds is not None else self.broker.ends_at
        while True:
            p = self._next(max(0.0, end - time.monotonic()))
            if p is None or p == "closed":
                return
            t = p.type
            if t == CONNECT:
                self._send_all(connack(rc, sp))
            elif t == SUBSCRIBE and not p.error:
                self._send_all(packet(SUBACK, p.pid.to_bytes(2, "big") +
                                      bytes(min(q, 1) for _, q in p.topics)))
            elif t == UNSUBSCRIBE and not p.error:
                self._send_all(unsuback(p.pid))
            elif t == PUBLISH and not p.error and p.qos == 1:
                self._send_all(puback(p.pid))
            elif t == PINGREQ:
                with self._lock:
                    self._pings = max(0, self._pings - 1)
                self._send_all(pingresp())
            elif t == DISCONNECT:
                self._close("script")
                return
            if until is not None and until(p):
                self.last = p
                return

    def _close(self, why):
        if self.closed_by is None:
            self.closed_by = why
            self.closed_at = time.monotonic()
        try:
            self.sock.close()
        except OSError:
            pass

    def _run(self, script):
        try:
            for step in script or ():
                if self.closed_by is not None and self.closed_by != "peer":
                    break
                self.run_step(step)
            # after the script: stay open until the client closes or the end
            while not self.peer_closed.wait(0.05):
                if self.broker._stop.is_set() or self.closed_by is not None:
                    break
        except ScriptError as e:
            self.errors.append(str(e))
            self._close("error")
        except Exception as e:  # noqa: B902 -- a bug in a script must show in the test
            self.errors.append("script raised %r" % (e,))
            self._close("error")


def _complete_length(buf):
    """Length of the complete packet at buf's start, None if not complete
    yet, -1 if the remaining length is malformed."""
    if len(buf) < 2:
        return None
    value = shift = 0
    i = 1
    while True:
        if i >= len(buf):
            return None
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
        if i > 4:
            return -1
    return i + value if len(buf) >= i + value else None


class HostileBroker:
    def __init__(self, scripts, repeat_last=False, lifetime=20.0, sndbuf=32768):
        self.scripts = list(scripts)
        self.sndbuf = sndbuf
        self.repeat_last = repeat_last
        self.lifetime = lifetime
        self.conns = []
        self._stop = threading.Event()
        self._threads = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.ends_at = None

    def start(self):
        self.ends_at = time.monotonic() + self.lifetime
        t = threading.Thread(target=self._accept, daemon=True, name="hostile-broker")
        t.start()
        self._threads.append(t)
        return self

    def __enter__(self):
        return self.start() if self.ends_at is None else self

    def __exit__(self, *exc):
        self.stop()

    def _accept(self):
        try:
            while not self._stop.is_set() and time.monotonic() < self.ends_at:
                r, _, _ = select.select([self.sock], [], [], 0.05)
                if not r:
                    continue
                s, _ = self.sock.accept()
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.sndbuf:     # a shallow send queue: what a flood sends next
                    # (a PINGRESP) reaches the client soon, as from a real broker
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
                i = len(self.conns)
                c = Conn(self, s, i)
                self.conns.append(c)
                if i < len(self.scripts):
                    script = self.scripts[i]
                elif self.repeat_last and self.scripts:
                    script = self.scripts[-1]
                else:
                    c._close("script")
                    script = None
                for fn, args in ((c._read, ()), (c._run, (script,))):
                    t = threading.Thread(target=fn, args=args, daemon=True,
                                         name="hostile-conn-%d" % i)
                    t.start()
                    self._threads.append(t)
        finally:
            self._stop.set()
            self.sock.close()
            for c in self.conns:
                c._close("lifetime")

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(2)

    # -- what happened --
    def packets(self, match=None):
        """Every packet the client sent, over all connections, in order."""
        return [p for c in self.conns for p in c.packets if _match(match, p)]

    def errors(self):
        return [(c.index, e) for c in self.conns for e in c.errors]

    def wait_for(self, pred, timeout=5.0):
        """Wait (in the test's thread) until pred(self) is true; returns it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred(self):
                return True
            time.sleep(0.01)
        return bool(pred(self))

    def summary(self):
        out = []
        for c in self.conns:
            out.append("conn %d at +%.3fs closed by %s: %s%s" % (
                c.index, c.accepted_at - (self.ends_at - self.lifetime), c.closed_by,
                c.packets[:40], " errors=%r" % c.errors if c.errors else ""))
        return "\n".join(out) or "(no connection)"

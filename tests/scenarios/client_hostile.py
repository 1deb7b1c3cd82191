# The client against a hostile broker (tests/hostile_broker.py), a flooding
# peer, and careless callers.  Runs under CPython and MicroPython.  Each
# scenario returns what it saw (a dict); the test decides.  A heartbeat task
# runs wherever the loop could be starved: its longest gap is returned.
from heartbeat import Heartbeat
import asyncio
import sys

from async_mqtt_client import AsyncMQTTClient, MQTTError

from mpcompat import ticks_ms, ticks_diff


_MICROPYTHON = sys.implementation.name == "micropython"


class AsyncSock:
    """The transport contract's async flavour (async_sock=True) over a plain
    socket: readinto answers None when nothing waits, else an awaitable."""

    @staticmethod
    async def getaddrinfo(host, port):
        import socket
        return socket.getaddrinfo(host, port)

    def __init__(self):
        import socket
        self.s = socket.socket()

    async def connect(self, addr):
        self.s.connect(addr)

    def setblocking(self, flag):
        self.s.setblocking(flag)

    def readinto(self, buf, n):
        try:
            r = self.s.readinto(buf, n) if _MICROPYTHON else self.s.recv_into(buf, n)
        except OSError as e:
            if e.args[0] == 11:          # EAGAIN (BlockingIOError on CPython)
                return None
            raise
        if r is None:
            return None
        return _value(r)

    async def write(self, buf, n):
        try:
            return self.s.write(buf, n) if _MICROPYTHON else self.s.send(memoryview(buf)[:n])
        except OSError as e:
            if e.args[0] == 11:
                return None
            raise

    async def close(self):
        self.s.close()


async def _value(v):
    return v


async def connect(client, p):
    """connect() over the native socket, or p["transport"] == "async": AsyncSock."""
    if p.get("transport") == "async":
        await client.connect(sock_cls=AsyncSock, async_sock=True)
    else:
        await client.connect()


def cfg(p, **kw):
    c = {"client_id": b"hostile", "server": "127.0.0.1", "port": p["port"], "keepalive": 0}
    c.update(kw)
    return c


async def _await(f):
    r = f()
    if r is None or isinstance(r, (bool, int)):
        return r
    return await r


def construct(p, kw, buf=None):
    """AsyncMQTTClient(cfg(p, **kw), buf): "accepted" or the exception's name."""
    try:
        AsyncMQTTClient(cfg(p, **kw), memoryview(bytearray(64)) if buf is None else buf)
    except Exception as e:  # noqa: B902 -- the test decides what was acceptable
        return family(e)
    return "accepted"


def family(e):
    """ValueError / TypeError for those and their subclasses (UnicodeError
    is a ValueError), else the exception's own name."""
    if isinstance(e, ValueError):
        return "ValueError"
    if isinstance(e, TypeError):
        return "TypeError"
    return type(e).__name__


async def attempt(f, timeout_s=3):
    """Run f() (a client call, maybe a plain method returning an awaitable)
    and await it, bounded: ["ok", value] / ["timeout"] / [exception name,
    message, family(exception)]."""
    try:
        r = await asyncio.wait_for(_await(f), timeout_s)
    except asyncio.TimeoutError:
        return ["timeout"]
    except Exception as e:  # noqa: B902 -- the test decides what was acceptable
        return [type(e).__name__, str(e), family(e)]
    if r is None or isinstance(r, (bool, int)):
        return ["ok", r]
    return ["ok", "meta"]


async def poll(client, ms, stop_after=None):
    """check_msg() for ms milliseconds; returns [(topic, payload)] read."""
    got = []
    start = ticks_ms()
    while ticks_diff(ticks_ms(), start) < ms:
        if await client.check_msg():
            got.append((bytes(client.topic), bytes(client.msg)))
            client.mark_read()
            if stop_after is not None and len(got) >= stop_after:
                break
        else:
            await asyncio.sleep(0.002)
    return got


async def quiet_disconnect(client):
    try:
        await asyncio.wait_for(_await(client.disconnect), 2)
    except Exception as e:  # noqa: B902
        return type(e).__name__
    return None


# ---- 1. oversize QoS 1 messages in a row ----------------------------------------

async def oversize_qos1(p):
    """Subscribe QoS 1 with a small buffer; the peer sends oversize QoS 1
    messages, then small ones: collect the small ones."""
    client = AsyncMQTTClient(cfg(p, client_id=p.get("client_id", "ovq").encode()),
                             memoryview(bytearray(64)))
    await client.connect()
    await client.subscribe(p["topic"].encode(), qos=1)
    print("READY")
    got = await poll(client, p.get("wait_ms", 4000), p["small"])
    out = {"got": [m for _, m in got], "dropped": client.dropped}
    await asyncio.sleep(0.05)
    out["disconnect"] = await quiet_disconnect(client)
    return out


# ---- 2. inbound floods --------------------------------------------------------------

async def flood_poll(p):
    """Poll check_msg() (like an app's main loop) for p["seconds"] while the
    peer floods: how long did one call take, how long did the heartbeat
    wait, when did the link fail (if it did)."""
    client = AsyncMQTTClient(cfg(p, client_id=p.get("client_id", "flood").encode(),
                                 keepalive=p.get("keepalive", 0),
                                 timeout_ms=p.get("timeout_ms", 2000)),
                             memoryview(bytearray(p.get("buf", 256))))
    await connect(client, p)
    if p.get("topic"):
        await client.subscribe(p["topic"].encode())
    print("READY")
    hb = Heartbeat()
    worst = calls = got = 0
    error = error_at = None
    start = ticks_ms()
    while ticks_diff(ticks_ms(), start) < p["seconds"] * 1000:
        t0 = ticks_ms()
        try:
            if await client.check_msg():
                got += 1
                client.mark_read()
        except (MQTTError, OSError) as e:
            error = [type(e).__name__, str(e)]
            error_at = ticks_diff(ticks_ms(), start)
            break
        dt = ticks_diff(ticks_ms(), t0)
        if dt > worst:
            worst = dt
        calls += 1
        await asyncio.sleep(0.002)
    gap = hb.stop()
    out = {"worst_call_ms": worst, "max_gap_ms": gap, "calls": calls, "got": got,
           "dropped": client.dropped, "error": error, "error_at_ms": error_at,
           "elapsed_ms": ticks_diff(ticks_ms(), start)}
    out["disconnect"] = await quiet_disconnect(client)
    return out


async def flood_ack(p):
    """A QoS 1 publish whose PUBACK never comes while the peer floods:
    MQTTError after timeout_ms, and the loop keeps running meanwhile."""
    client = AsyncMQTTClient(cfg(p, client_id=b"flood-ack", timeout_ms=p["timeout_ms"]),
                             memoryview(bytearray(256)))
    await connect(client, p)
    hb = Heartbeat()
    start = ticks_ms()
    r = await attempt(lambda: client.publish(b"fa/t", b"no ack for me", qos=1), 30)
    out = {"result": r, "elapsed_ms": ticks_diff(ticks_ms(), start), "max_gap_ms": hb.stop()}
    out["disconnect"] = await quiet_disconnect(client)
    return out


async def flood_connect(p):
    """connect() to a server that floods PUBLISHes instead of a CONNACK:
    MQTTError after timeout_ms, the loop running meanwhile."""
    client = AsyncMQTTClient(cfg(p, client_id=b"flood-connack", timeout_ms=p["timeout_ms"]),
                             memoryview(bytearray(256)))
    hb = Heartbeat()
    start = ticks_ms()
    r = await attempt(lambda: connect(client, p), 30)
    out = {"result": r, "elapsed_ms": ticks_diff(ticks_ms(), start), "max_gap_ms": hb.stop(),
           "connected": client.isconnected()}
    out["disconnect"] = await quiet_disconnect(client)
    return out


# ---- 3. a reused (mutated) topic buffer ---------------------------------------------

async def topic_reuse(p):
    client = AsyncMQTTClient(cfg(p, client_id=p.get("client_id", "reuse").encode()),
                             memoryview(bytearray(64)))
    await client.connect()
    pre = p["prefix"].encode()
    n = len(pre)
    steps = []

    async def pub(topic, msg, qos=0):
        r = await attempt(lambda: client.publish(topic, msg, qos=qos))
        steps.append([bytes(topic), msg, r])

    t = bytearray(pre + b"aaa")
    await pub(t, b"one")
    t[n:] = b"bbb"                        # same length, same payload length
    await pub(t, b"two")
    q = bytearray(pre + b"q1a")
    await pub(q, b"q-one", 1)
    q[n:] = b"q1b"
    await pub(q, b"q-two", 1)
    back = bytearray(pre + b"mva")
    mv = memoryview(back)
    await pub(mv, b"m-one")
    back[n + 2] = ord("b")
    await pub(mv, b"m-two")
    # forbidden contents written into the buffers that were accepted before
    for buf, new, qos in ((t, b"+/x", 0), (t, b"x/#", 0), (t, b"#", 0), (t, b"a\x00b", 0),
                          (q, b"q/#", 1), (q, b"+", 1)):
        buf[n:] = new
        await pub(buf, b"bad" if qos == 0 else b"bad-q", qos)
    mv[n:] = b"+/x"
    await pub(mv, b"m-bad")
    await pub(pre + b"end", b"end", 1)
    return {"steps": steps, "connected": client.isconnected(),
            "disconnect": await quiet_disconnect(client)}


# ---- 4. wrong-typed qos / retain -------------------------------------------------------

async def bad_publish_args(p):
    client = AsyncMQTTClient(cfg(p, client_id=b"badq", reconnect=True, reconnect_min_ms=50,
                                 reconnect_max_ms=200, timeout_ms=2000),
                             memoryview(bytearray(64)))
    await client.connect()
    t = b"badq/t"
    strict = []
    for q in (1.0, 0.0, 1.5, "1", b"\x01", None, 2, -1, [1]):
        r = await attempt(lambda: client.publish(t, b"bad", qos=q))
        strict.append([repr(q), r, client.inflight])
    for args in ((123, b"bad"), (t, 5), (t, None), (None, b"bad")):
        r = await attempt(lambda: client.publish(args[0], args[1], qos=1))
        strict.append([repr(args), r, client.inflight])
    lenient = []
    for kw in ({"qos": True}, {"qos": False}, {"retain": None}, {"retain": 1},
               {"retain": "yes"}, {"retain": 2.5}):
        r = await attempt(lambda: client.publish(t, b"lenient", **kw))
        lenient.append([repr(kw), r, client.inflight])
    sync1 = await attempt(lambda: client.publish(t, b"sync1", qos=1))
    inflight_sync1 = client.inflight
    # the broker closes the link after sync1: the supervisor reconnects
    start = ticks_ms()
    while client.reconnects < 1 and ticks_diff(ticks_ms(), start) < 3000:
        await attempt(client.check_msg)
        await asyncio.sleep(0.01)
    after = await attempt(lambda: client.publish(t, b"after", qos=1))
    await poll(client, 300)
    out = {"strict": strict, "lenient": lenient, "sync1": sync1, "inflight_sync1": inflight_sync1,
           "after": after, "inflight": client.inflight, "reconnects": client.reconnects,
           "disconnects": client.disconnects}
    out["disconnect"] = await quiet_disconnect(client)
    return out


# ---- 5. topics that are not UTF-8; backoff when sessions die at once ---------------------

async def bad_utf8_topics(p):
    client = AsyncMQTTClient(cfg(p, client_id=b"utf8", reconnect=True, reconnect_min_ms=50,
                                 reconnect_max_ms=200, timeout_ms=1500),
                             memoryview(bytearray(64)))
    await client.connect()
    out = []
    for h in p["topics"]:
        topic = bytes.fromhex(h)
        row = [h]
        row.append(await attempt(lambda: client.publish(topic, b"x"), 2))
        row.append(await attempt(lambda: client.publish(topic, b"x", qos=1), 2))
        row.append(await attempt(lambda: client.subscribe(topic), 2))
        row.append(await attempt(lambda: client.unsubscribe(topic), 2))
        will = {"topic": topic, "msg": b"gone", "qos": 0, "retain": False}
        row.append(construct(p, {"last_will": will}))
        out.append(row)
    end = await attempt(lambda: client.publish(b"utf8/end", b"end", qos=1))
    return {"rows": out, "end": end, "reconnects": client.reconnects,
            "disconnect": await quiet_disconnect(client)}


async def session_dies(p):
    """Every session dies right after its CONNACK: with reconnect on, poll
    for p["seconds"]; the broker records when each attempt came."""
    client = AsyncMQTTClient(cfg(p, client_id=b"dies", reconnect=True,
                                 reconnect_min_ms=p["min_ms"], reconnect_max_ms=p["max_ms"],
                                 timeout_ms=1000), memoryview(bytearray(64)))
    await client.connect()
    hb = Heartbeat()
    errors = []
    start = ticks_ms()
    while ticks_diff(ticks_ms(), start) < p["seconds"] * 1000:
        try:
            await client.check_msg()
        except (MQTTError, OSError) as e:
            errors.append(type(e).__name__)
        await asyncio.sleep(0.01)
    out = {"reconnects": client.reconnects, "disconnects": client.disconnects,
           "max_gap_ms": hb.stop(), "errors": errors[:5]}
    client._cfg["reconnect"] = False        # stop the supervisor before leaving
    return out


# ---- 9. a receive buffer over 64 KiB, a big message into the backlog ------------------------

def pattern(n):
    chunk = bytes(range(251))
    return (chunk * (n // 251 + 1))[:n]


async def big_backlog(p):
    """rbuf of p["buf"] bytes.  A small message is delivered and held (not
    marked read); during a QoS 1 publish's ack wait a message of
    p["big"] payload bytes and a small one arrive (to the backlog).  Then
    read everything."""
    size = p["buf"]
    client = AsyncMQTTClient(cfg(p, client_id=b"bigbl", timeout_ms=3000),
                             memoryview(bytearray(size)))
    await client.connect()
    held = None
    start = ticks_ms()
    while held is None and ticks_diff(ticks_ms(), start) < 3000:
        if await client.check_msg():
            held = [bytes(client.topic), bytes(client.msg)]
        else:
            await asyncio.sleep(0.002)
    acked = await attempt(lambda: client.publish(b"bigbl/sync", b"sync", qos=1), 5)
    client.mark_read()
    got = []
    expect = pattern(p["big"])
    start = ticks_ms()
    while ticks_diff(ticks_ms(), start) < 1500 and len(got) < 10:
        try:
            meta = await client.check_msg()
        except Exception as e:  # noqa: B902 -- whatever it is, the test shows it
            got.append(["error", type(e).__name__, str(e)])
            break
        if meta:
            m = client.msg
            got.append([bytes(client.topic), len(m),
                        bytes(m) == expect if len(m) > 100 else bytes(m)])
            client.mark_read()
        else:
            await asyncio.sleep(0.002)
    return {"held": held, "acked": acked, "got": got, "dropped": client.dropped,
            "disconnect": await quiet_disconnect(client)}


# ---- 11. disconnect() sticks with reconnect on --------------------------------------------------

async def disconnect_sticks(p):
    client = AsyncMQTTClient(cfg(p, client_id=b"sticks", reconnect=True, reconnect_min_ms=50,
                                 reconnect_max_ms=200, timeout_ms=1000),
                             memoryview(bytearray(64)))
    await client.connect()
    first = await attempt(lambda: client.publish(b"sticks/t", b"one", qos=1))
    await client.disconnect()
    hb = Heartbeat()
    checks = []
    start = ticks_ms()
    while ticks_diff(ticks_ms(), start) < 800:
        r = await attempt(client.check_msg, 1)
        if r not in checks:
            checks.append(r)
        await asyncio.sleep(0.02)
    pub = await attempt(lambda: client.publish(b"sticks/t", b"while down"), 1.5)
    pub1 = await attempt(lambda: client.publish(b"sticks/t", b"while down q1", qos=1), 1.5)
    sub = await attempt(lambda: client.subscribe(b"sticks/s"), 1.5)
    await asyncio.sleep(0.3)
    down = {"checks": checks, "publish": pub, "publish_q1": pub1, "subscribe": sub,
            "connected": client.isconnected(), "reconnects": client.reconnects,
            "max_gap_ms": hb.stop()}
    print("EXPLICIT CONNECT")
    again = await attempt(client.connect, 3)
    second = await attempt(lambda: client.publish(b"sticks/t", b"two", qos=1))
    return {"first": first, "down": down, "again": again, "second": second,
            "disconnect": await quiet_disconnect(client)}


# ---- 12. config values that must be refused by the constructor -----------------------------------

async def bad_config(p):
    big = b"x" * 65536
    buf = memoryview(bytearray(64))
    cases = [
        ("client_id 65536 B", {"client_id": big}),
        ("user 65536 B", {"user": big, "password": b"pw"}),
        ("password 65536 B", {"user": b"u", "password": big}),
        ("will topic 65536 B", {"last_will": {"topic": big, "msg": b"x"}}),
        ("will msg 65536 B", {"last_will": {"topic": b"w", "msg": big}}),
        ("timeout_ms=-1", {"timeout_ms": -1}),
        ("timeout_ms='1000'", {"timeout_ms": "1000"}),
        ("timeout_ms=None", {"timeout_ms": None}),
        ("last_will='x'", {"last_will": "x"}),
        ("last_will=[('topic', 'w')]", {"last_will": [("topic", "w")]}),
        ("last_will qos=1.0", {"last_will": {"topic": b"w", "msg": b"x", "qos": 1.0}}),
        ("last_will qos='1'", {"last_will": {"topic": b"w", "msg": b"x", "qos": "1"}}),
        ("keepalive=True", {"keepalive": True}),
        ("keepalive=1.5", {"keepalive": 1.5}),
        ("port=True", {"port": True}),
        ("reconnect_min_ms > reconnect_max_ms",
         {"reconnect_min_ms": 5000, "reconnect_max_ms": 100}),
        ("reconnect_min_ms=-1", {"reconnect_min_ms": -1}),
        ("reconnect_min_ms=0 (no backoff ever)", {"reconnect_min_ms": 0}),
        ("reconnect_max_ms='30000'", {"reconnect_max_ms": "30000"}),
        ("backlog=-1", {"backlog": -1}),
        ("backlog='100'", {"backlog": "100"}),
        ("backlog=1.5", {"backlog": 1.5}),
    ]
    out = []
    for name, kw in cases:
        out.append([name, construct(p, kw, buf)])
    for name, rb in (("recv_buf memoryview(bytes)", memoryview(bytes(64))),
                     ("recv_buf bytes", bytes(64)),
                     ("recv_buf memoryview(bytes) slice", memoryview(bytes(100))[10:90])):
        out.append([name, construct(p, {}, rb)])
    # what must still be accepted
    ok = []
    for name, kw in (("client_id 65535 B", {"client_id": big[:65535]}),
                     ("password 65535 B", {"user": b"u", "password": big[:65535]}),
                     ("reconnect_min_ms == reconnect_max_ms",
                      {"reconnect_min_ms": 1000, "reconnect_max_ms": 1000}),
                     ("timeout_ms=1", {"timeout_ms": 1}),
                     ("backlog=0", {"backlog": 0}),
                     ("last_will=None", {"last_will": None}),
                     ("keepalive=0", {"keepalive": 0})):
        ok.append([name, construct(p, kw, buf)])
    return {"refused": out, "accepted": ok}

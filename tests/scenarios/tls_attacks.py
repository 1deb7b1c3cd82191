# Attacks on the client's TLS (modules/mqtt_tls.py), device side.
# Runs under CPython and build/micropython; tests/test_tls_attacks.py
# starts the hostile servers, the TLS mosquitto and the SIM800L simulator.
#
# p["via"]: "native" (the interpreter's socket), "sim_sync" / "sim_async"
# (the SIM800L driver over the simulator), "gated" (an async sock_cls over
# the native socket whose write the scenario can hold: "nothing now").
import sys
import asyncio
from async_mqtt_client import AsyncMQTTClient
from client_hostile import AsyncSock
from mpcompat import asleep_ms, ticks_ms, ticks_diff

_MICROPYTHON = sys.implementation.name == "micropython"


def config(p, **kw):
    c = {"client_id": p.get("cid", "tls-attack").encode(), "server": p.get("server", "127.0.0.1"),
         "port": p["port"], "user": b"", "password": b"", "keepalive": p.get("keepalive", 0),
         "last_will": {"topic": "", "msg": "", "qos": 0, "retain": False},
         "timeout_ms": p.get("timeout_ms", 3000), "ssl": p.get("ssl", True)}
    c.update(kw)
    return c


def err(e):
    return {"type": type(e).__name__, "errno": e.args[0] if e.args and type(e.args[0]) is int else None,
            "text": str(e)}


# ---- an async sock_cls whose write can be held ("nothing now") -------------

GATE = [False]          # True: write answers None


class Gated(AsyncSock):
    """AsyncSock (client_hostile), answering plainly, and its write held
    ("nothing now") while GATE[0] is set."""

    async def connect(self, addr):
        self.s.connect(addr)
        self.s.setblocking(False)

    def setblocking(self, flag):
        pass

    def readinto(self, buf, n):
        try:
            if _MICROPYTHON:
                return self.s.readinto(buf, n)
            return self.s.recv_into(buf, n)
        except OSError as e:
            if e.args and e.args[0] == 11:
                return None
            raise

    def write(self, buf, n):
        if GATE[0]:
            return None
        try:
            if _MICROPYTHON:
                return self.s.write(memoryview(buf)[:n])
            return self.s.send(memoryview(buf)[:n])
        except OSError as e:
            if e.args and e.args[0] == 11:
                return None
            raise


async def connect_args(p):
    via = p.get("via", "native")
    if via == "native":
        return {}
    if via == "gated":
        return {"sock_cls": Gated, "async_sock": True}
    from sim800l_mqtt import started_modem
    is_async = via == "sim_async"
    modem = await started_modem(dict(p, flavour="async" if is_async else "sync"))
    return {"sock_cls": modem.socket_class(async_=is_async), "async_sock": is_async}


class Heartbeat:
    def __init__(self):
        self.gap = 0
        self.run = True

    async def beat(self):
        last = ticks_ms()
        while self.run:
            await asleep_ms(10)
            now = ticks_ms()
            self.gap = max(self.gap, ticks_diff(now, last))
            last = now


async def next_msg(client, ms):
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < ms:
        if await client.check_msg():
            out = (bytes(client.topic), bytes(client.msg))
            client.mark_read()
            return out
        await asleep_ms(1)
    return None


# ---- scenarios -----------------------------------------------------------

async def connect_fails(p):
    """connect() against a hostile server: the error, how long it took, the
    heartbeat's longest gap; then (p["again"]) whether a second connect()
    to p["port2"] (a good server) works."""
    kw = await connect_args(p)
    client = AsyncMQTTClient(config(p), memoryview(bytearray(p.get("buf", 128))))
    hb = Heartbeat()
    task = asyncio.create_task(hb.beat())
    await asleep_ms(20)
    t0 = ticks_ms()
    out = {}
    try:
        await client.connect(**kw)
        out["connected"] = True
        # the handshake may only fail at the first read (CONNACK)
    except Exception as e:
        out["error"] = err(e)
    out["ms"] = ticks_diff(ticks_ms(), t0)
    hb.run = False
    await task
    out["gap"] = hb.gap
    out["isconnected"] = client.isconnected()
    return out


async def session(p):
    """connect (must work), subscribe nothing, poll check_msg for p["ms"]:
    what came, what was dropped, the error that ended it."""
    kw = await connect_args(p)
    client = AsyncMQTTClient(config(p), memoryview(bytearray(p.get("buf", 128))))
    out = {"got": [], "dropped": 0}
    hb = Heartbeat()
    task = asyncio.create_task(hb.beat())
    t0 = ticks_ms()
    try:
        await client.connect(**kw)
        out["connected"] = True
        while ticks_diff(ticks_ms(), t0) < p.get("ms", 2000):
            if await client.check_msg():
                out["got"].append((bytes(client.topic), len(client.msg), bytes(client.msg[:8])))
                client.mark_read()
            await asleep_ms(1)
    except Exception as e:
        out["error"] = err(e)
    out["ms"] = ticks_diff(ticks_ms(), t0)
    out["dropped"] = client.dropped
    hb.run = False
    await task
    out["gap"] = hb.gap
    try:
        await client.disconnect()
    except Exception:
        pass
    return out


async def cancel_publish(p):
    """The link takes nothing (a busy modem: write answers None).  Publish
    A: the TLS link takes it (its record made and staged).  Publish B: it
    must wait (the staged record has not gone), and is cancelled while it
    waits (the link stays up: no byte of it went, says the client).  Then
    the link takes again, and C, of B's length, is published.  What arrives
    at our own subscription?  A and C, each once; B never, unless it was
    taken after all (then it is "done" and arrives once)."""
    kw = await connect_args(p)
    client = AsyncMQTTClient(config(p), memoryview(bytearray(256)))
    await client.connect(**kw)
    topic = p["topic"].encode()
    await client.subscribe(topic, qos=0)
    out = {"got": [], "publish_c": None}

    async def publish(msg):
        await client.publish(topic, msg)

    GATE[0] = True
    a = asyncio.create_task(publish(b"A" * 20))
    await asleep_ms(20)
    b = asyncio.create_task(publish(b"B" * 20))
    await asleep_ms(60)
    for name, t in (("a", a), ("b", b)):
        if not t.done():
            t.cancel()
        try:
            await t
            out[name] = "done"
        except asyncio.CancelledError:
            out[name] = "cancelled"
        except Exception as e:
            out[name] = err(e)
    GATE[0] = False
    try:
        await client.publish(topic, b"C" * 20)
        out["publish_c"] = "ok"
        await client.publish(topic, b"Dd" * 10)
    except Exception as e:
        out["publish_c"] = err(e)
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < 1500:
        try:
            m = await next_msg(client, 100)
        except Exception as e:
            out["read_error"] = err(e)
            break
        if m:
            out["got"].append(m[1])
    out["disconnects"] = client.disconnects
    try:
        await client.disconnect()
    except Exception:
        pass
    return out


async def misuse(p):
    """Each ssl option of p["cases"]: construct, then connect to the TLS
    broker.  For each: where it failed and how (or that it worked), ms."""
    results = []
    if p.get("ssl_cert_file") and not _MICROPYTHON:
        import os
        os.environ["SSL_CERT_FILE"] = p["ssl_cert_file"]
    for name, ssl in p["cases"]:
        r = {"name": name}
        t0 = ticks_ms()
        try:
            client = AsyncMQTTClient(config(p, ssl=ssl), memoryview(bytearray(128)))
        except Exception as e:
            r["stage"], r["error"] = "construct", err(e)
            results.append(r)
            continue
        try:
            await client.connect()
            r["stage"] = "connected"
            await client.disconnect()
        except Exception as e:
            r["stage"], r["error"] = "connect", err(e)
        r["ms"] = ticks_diff(ticks_ms(), t0)
        results.append(r)
    return results


async def reconnect_misuse(p):
    """reconnect: True with a CA that cannot be loaded (p["ssl"]): does the
    error reach the app (or last_error), and does the process survive?"""
    out = {}
    try:        # (refused at construction, where the file's fault shows then: a folder, empty)
        client = AsyncMQTTClient(config(p, reconnect=True, reconnect_min_ms=50,
                                        reconnect_max_ms=100), memoryview(bytearray(128)))
        await client.connect()
        out["connected"] = True
    except Exception as e:
        out["error"] = err(e)
    return out


async def warn_once(p):
    """verify False: the warning, once per process, however many clients."""
    for i in range(3):
        client = AsyncMQTTClient(config(p, ssl={"verify": False}, client_id=b"warn%d" % i),
                                 memoryview(bytearray(128)))
        await client.connect(**(await connect_args(p)))
        await client.disconnect()
    return "done"


async def _take_numbered(client, got, bad, errors):
    """One check_msg(): a numbered message (its number in got, the message
    in bad if its bytes are not the ones its number stands for)."""
    try:
        if await client.check_msg():
            m = bytes(client.msg)
            client.mark_read()
            k = int(m[:4])
            if m != b"%04d:" % k + bytes((k + j) % 256 for j in range(40)):
                bad.append(m)
            got.append(k)
    except Exception as e:
        errors.append(err(e))
        await asleep_ms(50)
    await asleep_ms(2)


async def modem_faults(p):
    """TLS mosquitto through the simulated modem; QoS 1 numbered messages to
    our own topic while the test fires modem faults; reconnect: True."""
    kw = await connect_args(p)
    client = AsyncMQTTClient(config(p, reconnect=True, reconnect_min_ms=100, reconnect_max_ms=400,
                                    clean_session=False, keepalive=2),
                             memoryview(bytearray(256)))
    topic = p["topic"].encode()
    await client.connect(**kw)
    await client.subscribe(topic, qos=1)
    print("READY")
    got = []
    errors = []
    bad = []
    n = p.get("count", 20)
    for i in range(n):
        payload = b"%04d:" % i + bytes((i + j) % 256 for j in range(40))
        try:
            await client.publish(topic, payload, qos=1)
        except Exception as e:
            errors.append(err(e))
        t0 = ticks_ms()
        while ticks_diff(ticks_ms(), t0) < 300 and i not in got:
            await _take_numbered(client, got, bad, errors)
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < p.get("drain_ms", 6000) and len(set(got)) < n:
        await _take_numbered(client, got, bad, errors)
    out = {"got": got, "bad": bad, "errors": errors, "reconnects": client.reconnects,
           "disconnects": client.disconnects,
           "last_error": err(client.last_error) if client.last_error else None}
    try:
        await client.disconnect()
    except Exception:
        pass
    return out


async def concurrent(p):
    """Several tasks publish QoS 0 and QoS 1 over TLS through the modem at
    once, to our own topic, while messages come back; every message must
    come intact, QoS 1 at least once (exactly once without a reconnect)."""
    kw = await connect_args(p)
    client = AsyncMQTTClient(config(p, reconnect=p.get("reconnect", False), keepalive=5,
                                    timeout_ms=p.get("timeout_ms", 8000)),
                             memoryview(bytearray(256)))
    topic = p["topic"].encode()
    await client.connect(**kw)
    await client.subscribe(topic, qos=1)
    got = []
    bad = []
    errors = []
    tasks_n, per = p.get("tasks", 3), p.get("per", 6)

    def payload(t, i, qos):
        head = b"%d.%02d.%d:" % (t, i, qos)
        return head + bytes(65 + (t * 7 + i + j) % 26 for j in range(24 + t * 3))

    async def publisher(t):
        for i in range(per):
            qos = (i + t) % 2
            try:
                await client.publish(topic, payload(t, i, qos), qos=qos)
            except Exception as e:
                errors.append(err(e))
            await asleep_ms(3 * t)

    done = [False]

    async def reader():
        while not done[0]:
            try:
                if await client.check_msg():
                    m = bytes(client.msg)
                    client.mark_read()
                    try:
                        t, i, qos = (int(x) for x in m.split(b":")[0].split(b"."))
                        if m != payload(t, i, qos):
                            bad.append(m)
                        got.append((t, i, qos))
                    except Exception:
                        bad.append(m)
            except Exception as e:
                errors.append(err(e))
                await asleep_ms(20)
            await asleep_ms(1)

    r = asyncio.create_task(reader())
    pubs = [asyncio.create_task(publisher(t)) for t in range(tasks_n)]
    for t in pubs:
        await t
    t0 = ticks_ms()
    want = tasks_n * per
    while ticks_diff(ticks_ms(), t0) < p.get("drain_ms", 6000) and len(set(got)) < want:
        await asleep_ms(20)
    done[0] = True
    await r
    out = {"got": got, "bad": bad, "errors": errors, "disconnects": client.disconnects}
    try:
        await client.disconnect()
    except Exception:
        pass
    return out


async def cancel_storm(p):
    """QoS 0 publishes of one length (numbered), each in its own task, some
    cancelled in the middle, over TLS through the modem; a reader takes our
    own messages.  A publish that returned normally on a link that never
    dropped must arrive; nothing arrives that was never published."""
    kw = await connect_args(p)
    client = AsyncMQTTClient(config(p, keepalive=0, timeout_ms=5000), memoryview(bytearray(256)))
    topic = p["topic"].encode()
    await client.connect(**kw)
    await client.subscribe(topic, qos=0)
    got, ok, cancelled, errors = [], [], [], []
    done = [False]

    async def reader():
        while not done[0]:
            try:
                if await client.check_msg():
                    got.append(int(bytes(client.msg)[:5]))
                    client.mark_read()
            except Exception as e:
                errors.append(err(e))
                await asleep_ms(20)
            await asleep_ms(1)

    async def one(i):
        await client.publish(topic, b"%05d" % i + b"-" * 27)
        ok.append(i)

    r = asyncio.create_task(reader())
    count = p.get("count", 40)
    for i in range(0, count, 3):
        # Three at once: the first is taken, the others wait for the busy
        # link (the modem sending the first); the middle one is cancelled
        # while it waits (or after it was taken, if the link was quick).
        ts = [asyncio.create_task(one(k)) for k in range(i, min(i + 3, count))]
        await asleep_ms((i * 7) % 3)
        if len(ts) > 1 and not ts[1].done():
            ts[1].cancel()
        for k, t in zip(range(i, i + 3), ts):
            try:
                await t
            except asyncio.CancelledError:
                cancelled.append(k)
            except Exception as e:
                errors.append(err(e))
        await asleep_ms(1 + (i * 7) % 5)
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < 3000 and not set(ok) <= set(got):
        await asleep_ms(20)
    done[0] = True
    await r
    out = {"got": got, "ok": ok, "cancelled": cancelled, "errors": errors,
           "disconnects": client.disconnects}
    try:
        await client.disconnect()
    except Exception:
        pass
    return out


async def big_roundtrip(p):
    """Publishes bigger than one TLS record (2 KB pieces), QoS 0 and 1, to
    our own topic, while a second task publishes small ones; all intact?"""
    kw = await connect_args(p)
    client = AsyncMQTTClient(config(p, timeout_ms=10000, keepalive=0),
                             memoryview(bytearray(p.get("buf", 8192))))
    topic = p["topic"].encode()
    await client.connect(**kw)
    await client.subscribe(topic, qos=1)
    sizes = p.get("sizes", [2047, 2048, 2049, 4500, 7000])
    want = []
    got = []

    def big(i, n):
        return b"%02d" % i + bytes(48 + (i * 13 + j) % 70 for j in range(n - 2))

    async def small():
        for k in range(8):
            m = b"s%d" % k
            want.append(m)
            await client.publish(topic, m)
            await asleep_ms(5)

    s = asyncio.create_task(small())
    for i, n in enumerate(sizes):
        m = big(i, n)
        want.append(m)
        await client.publish(topic, m, qos=i % 2)
    await s
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < p.get("drain_ms", 8000) and len(got) < len(want):
        if await client.check_msg():
            got.append(bytes(client.msg))
            client.mark_read()
        await asleep_ms(1)
    out = {"missing": [len(m) for m in want if m not in got],
           "extra": [len(m) for m in got if m not in want], "n": len(got),
           "dropped": client.dropped, "disconnects": client.disconnects}
    await client.disconnect()
    return out

# Regression scenarios for the attack on the client (issue 11, findings in
# the attacker's FINDINGS.md, numbers kept).  Run under CPython and
# MicroPython by tests/test_client_attacks.py.  Each returns what it saw (a
# dict); the test decides.  A heartbeat task runs in every scenario that
# could hang or starve the loop, and every wait is bounded.
from heartbeat import Heartbeat
import array
import asyncio
import sys

from async_mqtt_client import AsyncMQTTClient, MQTTError

_MICROPYTHON = sys.implementation.name == "micropython"

if _MICROPYTHON:
    from time import ticks_ms, ticks_diff
else:
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


def err(e):
    """An exception as (type name, errno or None, text)."""
    no = e.args[0] if isinstance(e, OSError) and e.args and isinstance(e.args[0], int) else None
    return (type(e).__name__, no, str(e))


def cfg(p, **kw):
    c = {"client_id": p.get("client_id", "attacks"), "server": "127.0.0.1",
         "port": p.get("port", 1883), "keepalive": 0}
    c.update(kw)
    return c


async def _call(f):
    return await f()


async def bounded(f, s):
    """await f() for at most s seconds: ("ok", value), ("hung",) or ("raised",
    err); f is called inside (a call may raise before it returns an awaitable,
    and MicroPython's wait_for takes coroutines only)."""
    try:
        return ("ok", await asyncio.wait_for(_call(f), s))
    except asyncio.TimeoutError:
        return ("hung",)
    except (OSError, MQTTError, ValueError, TypeError) as e:
        return ("raised",) + err(e)


async def until(cond, ms):
    t0 = ticks_ms()
    while not cond():
        if ticks_diff(ticks_ms(), t0) > ms:
            return False
        await asyncio.sleep(0.005)
    return True


# ---- transports -------------------------------------------------------------------

class LazySock:
    """The async transport contract over a real socket: readinto answers None
    when nothing is buffered, else an awaitable that reads only when awaited.
    `chunk`/`wdelay` (class attributes): each write takes at most chunk bytes
    and sleeps wdelay s first, like a modem's AT+CIPSEND."""

    chunk = 0
    wdelay = 0

    @staticmethod
    async def getaddrinfo(host, port):
        import socket
        return socket.getaddrinfo(host, port)

    def __init__(self):
        import socket
        import select
        self.s = socket.socket()
        self.poller = select.poll()
        self.poller.register(self.s, select.POLLIN)

    async def connect(self, addr):
        self.s.connect(addr)

    def setblocking(self, flag):
        self.s.setblocking(flag)

    def readinto(self, buf, n):
        if not self.poller.poll(0):
            return None
        return self._read(buf, n)

    async def _read(self, buf, n):
        try:
            r = self.s.readinto(buf, n) if _MICROPYTHON else self.s.recv_into(buf, n)
        except OSError as e:
            if e.args[0] == 11:
                return None
            raise
        return r

    async def write(self, buf, n):
        if self.wdelay:
            await asyncio.sleep(self.wdelay)
        if self.chunk:
            n = min(n, self.chunk)
        try:
            return self.s.write(memoryview(buf)[:n]) if _MICROPYTHON else \
                self.s.send(memoryview(buf)[:n])
        except OSError as e:
            if e.args[0] == 11:
                return None
            raise

    async def close(self):
        self.s.close()


class ChunkySock(LazySock):
    chunk = 16
    wdelay = 0.01


class MemBroker:
    """An in-memory broker for custom transports: CONNACK, SUBACK (QoS 1),
    PUBACK, PINGRESP; every PUBLISH to t/... echoed back as QoS 0.  `wire`
    keeps every byte the client wrote; `errors` what did not parse."""

    def __init__(self):
        self.out = bytearray()
        self.inb = bytearray()
        self.wire = bytearray()
        self.packets = []
        self.errors = []

    def feed(self, data):
        self.wire.extend(data)
        self.inb.extend(data)
        while len(self.inb) >= 2:
            i = 1
            mult = 1
            rem = 0
            while True:
                if i >= len(self.inb):
                    return
                d = self.inb[i]
                rem += (d & 127) * mult
                mult *= 128
                i += 1
                if not d & 128:
                    break
                if i > 4:
                    self.errors.append("bad remaining length")
                    self.inb = bytearray()
                    return
            if len(self.inb) < i + rem:
                return
            f = self.inb[0]
            body = bytes(self.inb[i:i + rem])
            self.inb = self.inb[i + rem:]
            k = f & 0xF0
            self.packets.append((f, body))
            if k == 0x10:
                self.out.extend(b"\x20\x02\x00\x00")
            elif k == 0x80:
                self.out.extend(bytes((0x90, 3, body[0], body[1], 1)))
            elif k == 0x30:
                tl = (body[0] << 8) | body[1]
                if 2 + tl + (2 if f & 6 else 0) > len(body):
                    self.errors.append("PUBLISH topic beyond its body")
                    continue
                if f & 6:
                    self.out.extend(bytes((0x40, 2, body[2 + tl], body[3 + tl])))
                pl = body[2 + tl + (2 if f & 6 else 0):]
                echo = body[:2 + tl] + pl
                if body[2:4] == b"t/" and len(echo) < 128:
                    self.out.extend(bytes((0x30, len(echo))) + echo)
            elif k == 0xC0:
                self.out.extend(b"\xd0\x00")
            elif k in (0xE0, 0xA0, 0x40):
                pass
            else:
                self.errors.append("unexpected packet 0x%02x" % f)

    def publishes(self):
        out = []
        for f, body in self.packets:
            if f & 0xF0 == 0x30:
                tl = (body[0] << 8) | body[1]
                out.append((body[2:2 + tl], body[2 + tl + (2 if f & 6 else 0):]))
        return out


def mem_transport(mem, flavour="sync", fault=None):
    """Transport classes over a MemBroker.  fault: [kind, nth, value] makes
    the nth readinto ("read") or write ("write") call (counted from when it
    is armed) answer value: "neg" (-3) or "more" (asked + 7)."""
    calls = {"read": 0, "write": 0}

    def odd(kind, n, real):
        if fault is None or fault[0] != kind:
            return real
        calls[kind] += 1
        if calls[kind] != fault[1]:
            return real
        return -3 if fault[2] == "neg" else n + 7

    class Sock:
        @staticmethod
        def getaddrinfo(host, port):
            return [(0, 0, 0, "", ("mem", 1))]

        def connect(self, addr):
            pass

        def setblocking(self, flag):
            pass

        def readinto(self, buf, n):
            o = mem.out
            if not o:
                return None
            k = min(n, len(o))
            buf[0:k] = o[:k]
            mem.out = o[k:]
            return odd("read", n, k)

        def write(self, buf, n):
            mem.feed(bytes(memoryview(buf)[:n]))
            return odd("write", n, n)

        def close(self):
            pass

    class ASock(Sock):
        @staticmethod
        async def getaddrinfo(host, port):
            return [(0, 0, 0, "", ("mem", 1))]

        async def connect(self, addr):
            pass

        def readinto(self, buf, n):
            if not mem.out:
                return None
            return self._lazy(buf, n)        # reads only when awaited

        async def _lazy(self, buf, n):
            return Sock.readinto(self, buf, n)

        async def write(self, buf, n):
            return Sock.write(self, buf, n)

        async def close(self):
            pass

    return ASock if flavour == "async" else Sock


async def mem_connect(client, mem, flavour="sync", fault=None):
    await client.connect(sock_cls=mem_transport(mem, flavour, fault),
                         async_sock=flavour == "async")


# ---- 1 and 11: a big message on a slow link -------------------------------------------

async def slow_big(p):
    """Subscribe, then poll check_msg() for p["seconds"]: the hostile broker
    trickles big messages (one drained, one kept) slower than 1.5 x
    keepalive.  Returns the messages, drops, errors and the heartbeat gap."""
    client = AsyncMQTTClient(cfg(p, keepalive=p["keepalive"]), memoryview(bytearray(p["buf"])))
    hb = Heartbeat()
    await client.connect()
    await client.subscribe(b"slow/#")
    got, errors = [], []
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < p["seconds"] * 1000:
        try:
            if await client.check_msg():
                got.append((bytes(client.topic), len(client.msg), sum(client.msg) & 0xFFFF))
                client.mark_read()
                if len(got) == p["expect"]:
                    break
        except (OSError, MQTTError) as e:
            errors.append(err(e))
            break
        await asyncio.sleep(0.005)
    gap = hb.stop()
    if client.isconnected():
        await client.disconnect()
    return {"got": got, "dropped": client.dropped, "errors": errors, "gap": gap,
            "disconnects": client.disconnects}


# ---- 3: a publish cancelled in the middle of its write ------------------------------------

async def cancel_midwrite(p):
    """Async transport taking 16 bytes per write; a publish bounded by
    wait_for times out half written; then more publishes (reconnect on)."""
    client = AsyncMQTTClient(cfg(p, reconnect=True, reconnect_min_ms=50, timeout_ms=3000),
                             memoryview(bytearray(512)))
    hb = Heartbeat()
    await client.connect(sock_cls=ChunkySock, async_sock=True)
    prefix = p["prefix"].encode()
    out = {}
    try:
        await asyncio.wait_for(client.publish(prefix + b"/first", b"A" * 200), 0.05)
        out["first"] = "completed"
    except asyncio.TimeoutError:
        out["first"] = "timed out"
    out["connected_after_cancel"] = client.isconnected()
    le = client.last_error
    out["last_error"] = err(le) if le is not None else None
    results = []
    for i in range(3):
        msg = b"payload-%d-" % i + b"B" * 60
        results.append(await bounded(lambda: client.publish(prefix + b"/second", msg), 5))
    results.append(await bounded(lambda: client.publish(prefix + b"/second", b"last", qos=1), 5))
    out["results"] = results
    out["disconnects"] = client.disconnects
    out["gap"] = hb.stop()
    await client.disconnect()
    return out


# ---- 4: session present for a clean session ----------------------------------------------

async def session_present_lie(p):
    """(a) connect() to a broker answering SP=1 to a clean session; (b)
    reconnect on: the reconnect's CONNACK says SP=1, the next one is honest."""
    out = {}
    client = AsyncMQTTClient(cfg(p, port=p["port1"]), memoryview(bytearray(64)))
    out["connect"] = await bounded(lambda: client.connect(), 5)
    out["sp"] = client.session_present
    if client.isconnected():
        await client.disconnect()

    hb = Heartbeat()
    client = AsyncMQTTClient(cfg(p, port=p["port2"], reconnect=True, reconnect_min_ms=50,
                                 reconnect_max_ms=100, timeout_ms=1000),
                             memoryview(bytearray(64)))
    await client.connect()
    out["subscribe"] = await bounded(lambda: client.subscribe(b"t/#", 1), 5)
    errors = []
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < p["seconds"] * 1000:
        try:
            if await client.check_msg():
                client.mark_read()
        except (OSError, MQTTError) as e:
            errors.append(err(e))
        await asyncio.sleep(0.01)
    out["errors"] = errors
    out["reconnects"] = client.reconnects
    out["connected"] = client.isconnected()
    out["gap"] = hb.stop()
    await client.disconnect()
    return out


# ---- 5: protocol lies ----------------------------------------------------------------

async def protocol_lie(p):
    """connect, [subscribe t/# QoS 1], poll check_msg() for p["seconds"]:
    what each step answered, what was delivered."""
    hb = Heartbeat()
    client = AsyncMQTTClient(cfg(p, timeout_ms=1000), memoryview(bytearray(64)))
    out = {"connect": await bounded(lambda: client.connect(), 3)}
    if p.get("subscribe") and out["connect"][0] == "ok":
        out["subscribe"] = await bounded(lambda: client.subscribe(b"t/#", 1), 3)
        if out["subscribe"][0] == "ok":
            out["subscribe"] = ("ok", bool(out["subscribe"][1]))
    got, errors = [], []
    if out["connect"][0] == "ok":
        t0 = ticks_ms()
        while ticks_diff(ticks_ms(), t0) < p["seconds"] * 1000 and not errors:
            try:
                if await client.check_msg():
                    got.append((bytes(client.topic), bytes(client.msg)))
                    client.mark_read()
            except (OSError, MQTTError) as e:
                errors.append(err(e))
            await asyncio.sleep(0.01)
    out["got"] = got
    out["errors"] = errors
    out["connected"] = client.isconnected()
    out["gap"] = hb.stop()
    if client.isconnected():
        await client.disconnect()
    return out


# ---- 6: the in-flight store is bounded ---------------------------------------------------

async def inflight_bound(p):
    """The app holds a message, backlog 0, a second message waits in the
    socket (reading stalls), the broker never PUBACKs: QoS 1 publishes
    return False at once and stay in flight.  How many?"""
    client = AsyncMQTTClient(cfg(p, backlog=0, timeout_ms=2000), memoryview(bytearray(64)))
    await client.connect()
    await client.subscribe(b"t/#")
    ok = False
    for _ in range(200):
        if await client.check_msg():
            ok = True
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    await client.check_msg()                 # holding t/1; t/2 stalls in the socket
    hb = Heartbeat()
    results = []
    worst = 0
    for i in range(p["count"]):
        t0 = ticks_ms()
        r = await bounded(lambda: client.publish(b"u/x", b"payload", qos=1), 3)
        worst = max(worst, ticks_diff(ticks_ms(), t0))
        results.append(r if r[0] != "raised" else r[:2])
        if r[0] != "ok":
            break
    out = {"held": ok, "results": results, "inflight": client.inflight, "worst_ms": worst,
           "gap": hb.stop()}
    # Let the broker read our last PUBLISHes before this process ends: its
    # socket closes with unread bytes in it (t/2), which sends a RST, and
    # the broker's side may drop what it had not read yet (the test counts
    # the PUBLISHes it got: 12 of 16 were seen under load).
    await asyncio.sleep(0.5)
    return out


# ---- 7a: transport answers outside 0..n ------------------------------------------------

async def odd_counts(p):
    """For each flavour x call x value: connect, arm the fault, one round
    (subscribe, QoS 1 publish echoed, check_msg); what was raised."""
    rows = []
    hb = Heartbeat()
    for flavour in ("sync", "async"):
        for kind in ("read", "write"):
            for what in ("neg", "more"):
                mem = MemBroker()
                fault = [None, 1, what]
                client = AsyncMQTTClient({"client_id": b"odd", "server": "mem", "timeout_ms": 300},
                                         memoryview(bytearray(64)))
                await mem_connect(client, mem, flavour, fault)
                fault[0] = kind                  # armed: the next call of that kind
                outcome = None
                try:
                    await client.subscribe(b"t/#", 1)
                    await client.publish(b"t/1", b"hello", qos=1)
                    for _ in range(20):
                        if await client.check_msg():
                            client.mark_read()
                    outcome = ("no error",)
                except (OSError, MQTTError) as e:
                    outcome = err(e)[:2]
                rows.append([flavour, kind, what, outcome, mem.errors[:2]])
    return {"rows": rows, "gap": hb.stop()}


# ---- 8: connect() while the supervisor backs off ------------------------------------------

async def connect_vs_supervisor(p):
    """reconnect on; the link drops young, so the supervisor backs off
    (reconnect_min_ms); the app calls connect() itself meanwhile; then it
    polls for p["seconds"]."""
    hb = Heartbeat()
    client = AsyncMQTTClient(cfg(p, reconnect=True, reconnect_min_ms=p["min_ms"],
                                 reconnect_max_ms=p["min_ms"], timeout_ms=2000),
                             memoryview(bytearray(64)))
    await client.connect()
    dropped = False
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < 3000:
        try:
            await client.check_msg()
        except (OSError, MQTTError):
            pass
        if not client.isconnected():
            dropped = True
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(p["wait_ms"] / 1000)        # the supervisor is asleep now
    out = {"dropped": dropped, "connect": await bounded(lambda: client.connect(), 3)}
    errors = []
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < p["seconds"] * 1000:
        try:
            await client.check_msg()
        except (OSError, MQTTError) as e:
            errors.append(err(e))
        await asyncio.sleep(0.01)
    out["errors"] = errors
    out["connected"] = client.isconnected()
    out["reconnects"] = client.reconnects
    out["disconnects"] = client.disconnects
    out["gap"] = hb.stop()
    await client.disconnect()
    return out


# ---- 9: a memoryview of wider items as payload ----------------------------------------

async def wide_payload(p):
    hb = Heartbeat()
    mem = MemBroker()
    client = AsyncMQTTClient({"client_id": b"wide", "server": "mem"}, memoryview(bytearray(64)))
    await mem_connect(client, mem)
    tx = len(client._tx)
    samples = array.array("H", [0x4142, 0x4344, 0x4546])
    out = {}
    for qos in (0, 1):
        try:
            r = await client.publish(b"adc", memoryview(samples), qos=qos)
            out["q%d" % qos] = ("ok", r)
        except (TypeError, ValueError) as e:
            out["q%d" % qos] = (type(e).__name__,)
    # a memoryview of bytes still goes out whole
    await client.publish(b"adc", memoryview(bytearray(b"ABCDEF")))
    out["wire"] = mem.publishes()
    out["tx_grew"] = len(client._tx) != tx
    out["inflight"] = client.inflight
    out["gap"] = hb.stop()
    return out


# ---- 10: a check_msg() coroutine never started ----------------------------------------------

async def unstarted_check_msg(p):
    """A lazy async transport with a message waiting; a check_msg() awaitable
    is cancelled before it runs (wait_for(..., 0)) and another one dropped;
    then every call must still work and no message may be lost."""
    hb = Heartbeat()
    mem = MemBroker()
    client = AsyncMQTTClient({"client_id": b"lazy", "server": "mem", "timeout_ms": 500},
                             memoryview(bytearray(64)))
    await mem_connect(client, mem, "async")
    await client.subscribe(b"t/#")
    await client.publish(b"t/1", b"echo me")        # its echo waits
    co = client.check_msg()                          # created, never awaited
    if hasattr(co, "close"):
        co.close()
    try:                                             # cancelled before it runs (CPython;
        await asyncio.wait_for(client.check_msg(), 0)    # MicroPython may run it)
    except asyncio.TimeoutError:
        pass
    steps = []
    for i in range(2, 5):
        r = await bounded(lambda: client.publish(b"t/%d" % i, b"m%d" % i, qos=i & 1), 1)
        steps.append(r[0] if r[0] != "raised" else r)
        if r[0] == "hung":
            break
    got = []
    if "hung" not in steps:
        for _ in range(40):
            r = await bounded(lambda: client.check_msg(), 1)
            if r[0] != "ok":
                steps.append(r)
                break
            if r[1]:
                got.append(bytes(client.topic))
                client.mark_read()
        steps.append((await bounded(lambda: client.disconnect(), 1))[0])
    return {"steps": steps, "got": got, "gap": hb.stop()}


# ---- 13: resend order after a reconnect ---------------------------------------------

async def resend_order(p):
    """4 QoS 1 publishes from 4 tasks; the broker acks the 1st only after
    the 3rd arrived, then drops the link after the 4th: the resend must
    keep the order they were first sent in."""
    client = AsyncMQTTClient(cfg(p, reconnect=True, reconnect_min_ms=50, reconnect_max_ms=100,
                                 timeout_ms=5000), memoryview(bytearray(64)))
    hb = Heartbeat()
    await client.connect()
    stop = []

    async def pub(payload, delay):
        await asyncio.sleep(delay)
        return await bounded(lambda: client.publish(b"valve", payload, qos=1), 6)

    async def reader():
        while not stop:
            try:
                await client.check_msg()
            except (OSError, MQTTError):
                pass
            await asyncio.sleep(0.01)
    rt = asyncio.create_task(reader())
    res = await asyncio.gather(pub(b"1-first", 0), pub(b"2-OPEN", 0.05), pub(b"3-CLOSE", 0.1),
                               pub(b"4-OPEN-again", 0.3))
    stop.append(1)
    await rt
    out = {"results": [r[0] if r[0] != "ok" else r[1] for r in res],
           "reconnects": client.reconnects, "inflight": client.inflight, "gap": hb.stop()}
    await client.disconnect()
    return out


# ---- 13b and 14: app calls while the reconnect waits for its CONNACK ------------------------

async def call_during_reconnect(p):
    """op "publish": QoS 1 A in flight when the link drops, B published while
    the reconnect waits for a slow CONNACK.  op "subscribe": a subscribe in
    that moment.  transport: "native" or "async" (LazySock)."""
    client = AsyncMQTTClient(cfg(p, reconnect=True, reconnect_min_ms=10, reconnect_max_ms=20,
                                 timeout_ms=p.get("timeout_ms", 5000)),
                             memoryview(bytearray(64)))
    hb = Heartbeat()
    if p["transport"] == "async":
        await client.connect(sock_cls=LazySock, async_sock=True)
    else:
        await client.connect()
    stop = []

    async def reader():
        while not stop:
            try:
                await client.check_msg()
            except (OSError, MQTTError):
                pass
            await asyncio.sleep(0.005)
    rt = asyncio.create_task(reader())
    ta = None
    if p["op"] == "publish":
        ta = asyncio.create_task(bounded(lambda: client.publish(b"valve", b"A-CLOSE", qos=1), 6))
    out = {"dropped": await until(lambda: not client.isconnected() and client.disconnects, 3000)}
    await asyncio.sleep(0.05)          # the reconnect is waiting for its CONNACK now
    if p["op"] == "publish":
        r = await bounded(lambda: client.publish(b"valve", b"B-OPEN", qos=1), 6)
        out["a"] = await ta
    else:
        r = await bounded(lambda: client.subscribe(b"cmd/#", 1), 6)
    out["r"] = r
    stop.append(1)
    await rt
    out["reconnects"] = client.reconnects
    out["last_error"] = err(client.last_error) if client.last_error else None
    out["gap"] = hb.stop()
    await client.disconnect()
    return out


# ---- 15: PINGREQ while serving the backlog ---------------------------------------------

async def backlog_keepalive(p):
    """mosquitto, keepalive p["keepalive"]: subscribe to p["n"] retained
    messages; hold the first and publish a QoS 1 status (its PUBACK wait
    reads the others into the backlog); then handle one message per
    p["handle_ms"], calling check_msg() as documented."""
    prefix = p["prefix"].encode()
    client = AsyncMQTTClient(cfg(p, keepalive=p["keepalive"], backlog=2000, timeout_ms=3000),
                             memoryview(bytearray(64)))
    hb = Heartbeat()
    await client.connect()
    await client.subscribe(prefix + b"/cfg/#", 1)
    handled = []
    errors = []
    for _ in range(300):
        if await client.check_msg():
            handled.append(bytes(client.topic))
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    acked = await bounded(lambda: client.publish(prefix + b"/status", b"got config", qos=1), 3)
    client.mark_read()
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < p["seconds"] * 1000:
        try:
            if await client.check_msg():
                handled.append(bytes(client.topic))
                client.mark_read()
                await asyncio.sleep(p["handle_ms"] / 1000)      # a flash write
            else:
                await asyncio.sleep(0.02)
        except (OSError, MQTTError) as e:
            errors.append(err(e))
            break
    out = {"acked": acked[0] == "ok" and acked[1], "handled": handled, "errors": errors,
           "connected": client.isconnected(), "disconnects": client.disconnects,
           "gap": hb.stop()}
    if client.isconnected():
        await client.disconnect()
    return out

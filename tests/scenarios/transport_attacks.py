# Attacks on the client through an async transport that answers plain
# values (the kind the SIM800L driver is): found by the attack on issue 12's
# restructured client.  An in-memory broker stands behind the transport, so
# each attack controls every answer the client gets.  CPython and MicroPython.
import sys

from mpcompat import asyncio, ticks_diff, ticks_ms

from async_mqtt_client import AsyncMQTTClient, MQTTRefused


class MemBroker:
    """Just enough of a broker: CONNACK (or a refusal), SUBACK (or 0x80),
    PUBACK, echo of PUBLISHes to subscribed topics, PINGRESP.  Any bytes
    that do not parse as packets are kept in `corrupt`."""

    def __init__(self, connack_rc=0, refuse_after=0, suback=None):
        self.inb, self.out = bytearray(), bytearray()
        self.pubs, self.subs, self.packets = [], [], []
        self.connects, self.corrupt = 0, None
        self.connack_rc, self.refuse_after, self.suback = connack_rc, refuse_after, suback

    def feed(self, data):
        self.inb.extend(data)
        while len(self.inb) >= 2:
            b, mult, rem, i = self.inb, 1, 0, 1
            while True:
                if i >= len(b):
                    return
                rem += (b[i] & 127) * mult
                mult *= 128
                i += 1
                if not b[i - 1] & 128:
                    break
            if len(b) < i + rem:
                return
            first, body = b[0], bytes(b[i:i + rem])
            self.inb = b[i + rem:]
            self.handle(first, body)

    def handle(self, first, body):
        kind = first >> 4
        self.packets.append(first)
        if kind == 1:
            self.connects += 1
            rc = self.connack_rc if self.connects > self.refuse_after else 0
            self.out.extend(bytes((0x20, 2, 0, rc)))
        elif kind == 3:
            tl = (body[0] << 8) | body[1]
            topic, qos, at = body[2:2 + tl], (first >> 1) & 3, 2 + tl
            if qos:
                self.out.extend(bytes((0x40, 2, body[at], body[at + 1])))
                at += 2
            self.pubs.append((topic, body[at:], qos))
            if topic in self.subs:
                echo = body[:2 + tl] + body[at:]
                self.out.extend(bytes((0x30, len(echo))) + echo)
        elif kind == 8:
            tl = (body[2] << 8) | body[3]
            self.subs.append(body[4:4 + tl])
            code = body[4 + tl] if self.suback is None else self.suback
            self.out.extend(bytes((0x90, 3, body[0], body[1], code)))
        elif kind == 12:
            self.out.extend(b"\xd0\x00")
        elif kind not in (4, 14):
            self.corrupt = (first, body)


class Plain:
    """async_sock=True transport over the MemBroker answering plain values;
    the class attributes steer its next answers."""
    broker = None
    write_answer = None     # f(buf, n) -> the answer, instead of taking it all
    read_answer = None      # f(n_read) -> the answer, instead of n_read
    eof = False             # readinto answers 0: the server closed the link

    @staticmethod
    async def getaddrinfo(host, port):
        return [(0, 0, 0, "", ("mem", 1))]

    async def connect(self, addr):
        Plain.broker.inb, Plain.broker.out = bytearray(), bytearray()

    def setblocking(self, flag):
        pass

    def readinto(self, buf, n):
        if Plain.eof:
            Plain.eof = False
            return 0
        out = Plain.broker.out
        if not out:
            return None
        k = min(n, len(out))
        for i in range(k):
            buf[i] = out[i]
        Plain.broker.out = out[k:]
        f = Plain.read_answer
        return f(k) if f else k

    def write(self, buf, n):
        f = Plain.write_answer
        if f:
            return f(buf, n)
        Plain.broker.feed(bytes(buf[:n]))
        return n

    def close(self):
        return None


def setup(broker, **cfg):
    Plain.broker, Plain.write_answer, Plain.read_answer, Plain.eof = broker, None, None, False
    c = {"client_id": b"atk", "server": "mem", "keepalive": 0, "timeout_ms": 1000}
    c.update(cfg)
    return AsyncMQTTClient(c, memoryview(bytearray(64)))


def name(e):
    return "OSError" if isinstance(e, OSError) else type(e).__name__


async def bounded(aw, seconds=5):
    async def run():
        return await aw
    return await asyncio.wait_for(run(), seconds)


async def cancel_mid_write(p):
    """A QoS 1 publish whose transport took 3 bytes, then none: the task is
    cancelled while it waits to write the rest.  Half a packet went, so the
    link must go; nothing may follow on it."""
    b = MemBroker()
    client = setup(b)
    await client.connect(sock_cls=Plain, async_sock=True)
    state = ["part"]

    def stall(buf, n):
        if state[0] == "part":
            state[0] = "none"
            b.feed(bytes(buf[:3]))
            return 3
        return None
    Plain.write_answer = stall
    t = asyncio.create_task(client.publish(b"a/b", b"x" * 20, qos=1))
    await asyncio.sleep(0.03)
    t.cancel()
    try:
        await t
    except BaseException as e:  # noqa: B902
        ended = name(e)
    Plain.write_answer = None
    out = {"ended": ended, "connected": client.isconnected(), "last_error": name(client.last_error)}
    try:
        await bounded(client.publish(b"c/d", b"hello"))
        out["next"] = "sent"
    except Exception as e:  # noqa: B902
        out["next"] = name(e)
    out["corrupt"], out["pubs"] = b.corrupt is not None, len(b.pubs)
    return out


async def cancel_keeps_puback(p):
    """A check_msg() task cancelled while the transport does not take the
    PUBACK of a received QoS 1 message: the PUBACK goes out later, once."""
    b = MemBroker()
    client = setup(b)
    await client.connect(sock_cls=Plain, async_sock=True)
    Plain.write_answer = lambda buf, n: None if n == 4 and buf[0] == 0x40 else (b.feed(bytes(buf[:n])) or n)
    b.out.extend(b"\x32\x08\x00\x03q/1\x00\x07hi")      # QoS 1 PUBLISH, id 7
    t = asyncio.create_task(bounded(client.check_msg()))
    await asyncio.sleep(0.02)
    t.cancel()
    try:
        await t
    except BaseException:  # noqa: B902
        pass
    Plain.write_answer = None
    got = 0
    for _ in range(50):
        if await client.check_msg():
            got += 1
            client.mark_read()
        await asyncio.sleep(0.002)
    return {"delivered": got, "pubacks": b.packets.count(0x40), "connected": client.isconnected()}


async def never_ending_io(p):
    """A write (or a read) whose awaitable never ends: timeout_ms bounds it,
    the link goes, the I/O lock is free."""
    out = {}

    async def never():
        while True:
            await asyncio.sleep(0.05)
    for what in ("write0", "write1", "read"):
        b = MemBroker()
        client = setup(b)
        await client.connect(sock_cls=Plain, async_sock=True)
        if what == "read":
            Plain.read_answer = None
            orig = Plain.readinto
            Plain.readinto = lambda self, buf, n: never()
        else:
            Plain.write_answer = lambda buf, n: never()
        t0 = ticks_ms()
        try:
            if what == "read":
                await bounded(client.check_msg())
                await bounded(client.publish(b"a/b", b"x", qos=1))
            else:
                await bounded(client.publish(b"a/b", b"x", qos=1 if what == "write1" else 0))
            res = "returned"
        except Exception as e:  # noqa: B902
            res = name(e) + " " + str(getattr(e, "errno", None))
        if what == "read":
            Plain.readinto = orig
        out[what] = [res, ticks_diff(ticks_ms(), t0), client._io_busy, client.isconnected()]
    return out


async def odd_answers(p):
    """Answers that are neither None, an int nor an awaitable (True, 2.0):
    EIO like a count out of range, the link renewed; never a TypeError, and
    a QoS 0 message never sent twice."""
    out = []
    for what, qos in (("write True", 0), ("write float", 0), ("write True", 1),
                      ("read True", 0), ("read float", 1)):
        b = MemBroker()
        client = setup(b, reconnect=True, reconnect_min_ms=20, reconnect_max_ms=40)
        await client.connect(sock_cls=Plain, async_sock=True)
        await client.subscribe(b"a/b")
        odd = True if "True" in what else 2.0
        shot = [1]

        def once_w(buf, n):
            b.feed(bytes(buf[:n]))
            if shot[0]:
                shot[0] = 0
                return odd
            return n

        def once_r(k):
            if shot[0]:
                shot[0] = 0
                return odd
            return k
        if what.startswith("write"):
            Plain.write_answer = once_w
        else:
            Plain.read_answer = once_r
        try:
            await bounded(client.publish(b"a/b", b"payload", qos=qos), 3)
            for _ in range(100):
                if await client.check_msg():
                    client.mark_read()
                await asyncio.sleep(0.005)
            res = "ok"
        except Exception as e:  # noqa: B902
            res = name(e)
        Plain.write_answer = Plain.read_answer = None
        out.append([what, qos, res, len(b.pubs), name(client.last_error),
                    getattr(client.last_error, "errno", None)])
    return out


async def refusals(p):
    """A refused CONNECT (rc 4) with reconnect: True is not retried by the
    supervisor: the app's calls raise MQTTRefused until it connects again;
    the same for a reconnect the server refuses (rc 5).  "Server
    unavailable" (rc 3) is retried."""
    out = {}
    b = MemBroker(connack_rc=4)
    client = setup(b, reconnect=True, reconnect_min_ms=50, reconnect_max_ms=60)
    try:
        await client.connect(sock_cls=Plain, async_sock=True)
        out["connect"] = "connected"
    except MQTTRefused as e:
        out["connect"] = ["MQTTRefused", e.code]
    await asyncio.sleep(0.3)
    try:
        await client.check_msg()
        out["check_msg"] = "None"
    except MQTTRefused as e:
        out["check_msg"] = ["MQTTRefused", e.code]
    await asyncio.sleep(0.3)
    out["connects"] = b.connects
    b.connack_rc = 0                     # the app connects again, and is let in
    await client.connect(sock_cls=Plain, async_sock=True)
    out["again"] = client.isconnected()

    for rc in (5, 3):
        b = MemBroker(connack_rc=rc, refuse_after=1)
        client = setup(b, reconnect=True, reconnect_min_ms=50, reconnect_max_ms=100)
        await client.connect(sock_cls=Plain, async_sock=True)
        Plain.eof = True                            # the link drops
        await client.check_msg()
        t0 = ticks_ms()
        try:
            await bounded(client.publish(b"a/b", b"x", qos=1), 1.5)
            res = "published"
        except Exception as e:  # noqa: B902
            res = name(e)
        out["reconnect rc %d" % rc] = [res, ticks_diff(ticks_ms(), t0), b.connects]
    return out

# API misuse sweep (issue 11): every public call of AsyncMQTTClient with
# wrong types, wrong ranges, empty, oversize, None, str vs bytes, float qos,
# bool where int, mutable-then-mutated arguments, calls in the wrong state.
# Runs under CPython and MicroPython; tests/test_api_misuse.py holds what
# each row must do and compares.
#
# Every row is run in isolation and reported as [name, outcome]:
#   ctor rows:  "TypeError" / "ValueError" / ... or "accepted: <what connect+publish then did>"
#   call rows:  [result, bytes_sent, inflight_delta, probe]
#               result "raise:<Type>" or "ok:<repr>"; bytes_sent counted by a
#               transport wrapper from just before the call to just after it;
#               probe "ok" when a QoS 1 publish to our own subscription then
#               comes back intact (the session survived the row).
#   state rows: whatever the row returns (see its docstring).
import asyncio
import socket
import sys

from async_mqtt_client import AsyncMQTTClient

MICRO = sys.implementation.name == "micropython"


class CountSock:
    """A native socket in the transport contract's shape that counts what it
    writes (sync flavour), so a row can tell that nothing went out."""
    written = 0

    @staticmethod
    def getaddrinfo(host, port):
        return socket.getaddrinfo(host, port)

    def __init__(self):
        self.s = socket.socket()

    def connect(self, addr):
        self.s.connect(addr)

    def setblocking(self, flag):
        self.s.setblocking(flag)

    def readinto(self, buf, n):
        if MICRO:
            return self.s.readinto(buf, n)
        try:
            return self.s.recv_into(buf, n)
        except BlockingIOError:
            return None

    def write(self, buf, n):
        if MICRO:
            w = self.s.write(buf, n)
        else:
            try:
                w = self.s.send(memoryview(buf)[:n])
            except BlockingIOError:
                w = None
        if w:
            CountSock.written += w
        return w

    def close(self):
        self.s.close()


def cfg(p, cid, **kw):
    c = {
        "client_id": cid,
        "server": "127.0.0.1",
        "port": p["port"],
        "keepalive": 0,
        "timeout_ms": 2000,
    }
    c.update(kw)
    return c


def ename(e):
    return type(e).__name__


async def _await(aw):
    return await aw


async def bounded(aw, s=4):
    """Await aw, at most s seconds (asyncio.TimeoutError: a hang)."""
    return await asyncio.wait_for(_await(aw), s)


def awaitable(r):
    return r is not None and (hasattr(r, "__await__") or hasattr(r, "send"))


async def await_maybe(r):
    """publish()/check_msg() may return a finished awaitable or a coroutine."""
    if not awaitable(r):
        return r
    return await r


async def next_msg(client, ms=2000):
    """(topic, msg) of the next message, or None after ms."""
    for _ in range(ms // 2):
        meta = await client.check_msg()
        if meta:
            m = (bytes(client.topic), bytes(client.msg))
            client.mark_read()
            return m
        await asyncio.sleep(0.002)
    return None


async def drain(client, ms=150):
    """Every message that arrives within ms."""
    got = []
    for _ in range(ms // 3):
        meta = await client.check_msg()
        if meta:
            got.append((bytes(client.topic), bytes(client.msg)))
            client.mark_read()
            continue
        await asyncio.sleep(0.003)
    return got


class Session:
    """The shared connected client for call rows, subscribed to a probe topic."""

    def __init__(self, p):
        self.p = p
        self.n = 0
        self.client = None
        self.probe_topic = ("am/probe/" + p["tag"]).encode()

    async def fresh(self):
        if self.client is not None:
            try:
                await bounded(self.client.disconnect(), 2)
            except Exception:
                pass
        self.n += 1
        self.buf = bytearray(256)
        self.client = AsyncMQTTClient(cfg(self.p, ("am-%s-%d" % (self.p["tag"], self.n)).encode()),
                                      memoryview(self.buf))
        await bounded(self.client.connect(sock_cls=CountSock))
        await bounded(self.client.subscribe(self.probe_topic, 1))
        return self.client

    async def probe(self):
        """A QoS 1 publish to our own subscription comes back intact."""
        c = self.client
        self.n += 1
        payload = b"probe-%d" % self.n
        try:
            acked = await bounded(c.publish(self.probe_topic, payload, qos=1))
            for _ in range(20):
                m = await bounded(next_msg(c))
                if m is None:
                    return "probe: nothing came back (acked %r)" % (acked,)
                if m == (self.probe_topic, payload):
                    if c.inflight:
                        return "probe: inflight %d after the probe" % c.inflight
                    return "ok"
            return "probe: not among 20 messages"
        except Exception as e:
            return "probe: %s %s" % (ename(e), e)


# ---- constructor rows ---------------------------------------------------------

def _ro_buf():
    return memoryview(b"x" * 64)


def _array_buf():
    import array
    return memoryview(array.array("H", [0] * 64))


BIG = 65536


def ctor_rows(tag):
    t = tag.encode()
    wl = {"topic": b"am/will/" + t, "msg": b"bye", "qos": 0, "retain": False}

    def will(**kw):
        d = dict(wl)
        d.update(kw)
        return d

    return [
        # name, config overrides, recv_buf (None = a good one)
        ("ctor config not a dict", None, None),
        ("ctor recv_buf bytes", {}, lambda: b"x" * 64),
        ("ctor recv_buf None", {}, lambda: None),
        ("ctor recv_buf read-only memoryview", {}, _ro_buf),
        ("ctor recv_buf memoryview of array H", {}, _array_buf),
        ("ctor recv_buf 7 bytes", {}, lambda: memoryview(bytearray(7))),
        ("ctor recv_buf bytearray", {}, lambda: bytearray(64)),
        ("ctor client_id int", {"client_id": 123}, None),
        ("ctor client_id None", {"client_id": None}, None),
        ("ctor client_id str", {"client_id": "am-str-" + tag}, None),
        ("ctor client_id 65536 bytes", {"client_id": b"c" * BIG}, None),
        ("ctor client_id not UTF-8", {"client_id": b"am-\xff\xfe"}, None),
        ("ctor client_id NUL", {"client_id": b"am-\x00x"}, None),
        ("ctor empty client_id persistent", {"client_id": b"", "clean_session": False}, None),
        ("ctor server missing", {"server": None}, None),
        ("ctor server empty", {"server": ""}, None),
        ("ctor server bytes", {"server": b"127.0.0.1"}, None),
        ("ctor port 0", {"port": 0}, None),
        ("ctor port 65536", {"port": 65536}, None),
        ("ctor port str", {"port": "1883"}, None),
        ("ctor port float", {"port": 1883.0}, None),
        ("ctor port True", {"port": True}, None),
        ("ctor keepalive -1", {"keepalive": -1}, None),
        ("ctor keepalive 65536", {"keepalive": 65536}, None),
        ("ctor keepalive float", {"keepalive": 1.5}, None),
        ("ctor keepalive True", {"keepalive": True}, None),
        ("ctor keepalive str", {"keepalive": "30"}, None),
        ("ctor user int", {"user": 5}, None),
        ("ctor user 65536 bytes", {"user": b"u" * BIG, "password": b"p"}, None),
        ("ctor user not UTF-8", {"user": b"\xff\xfe"}, None),
        ("ctor password without user", {"password": b"p"}, None),
        ("ctor password 65536 bytes", {"user": b"u", "password": b"p" * BIG}, None),
        ("ctor last_will str", {"last_will": "am/will"}, None),
        ("ctor last_will list", {"last_will": ["am/will", "bye"]}, None),
        ("ctor last_will topic wildcard", {"last_will": will(topic=b"am/#")}, None),
        ("ctor last_will topic 65536 bytes", {"last_will": will(topic=b"w" * BIG)}, None),
        ("ctor last_will topic not UTF-8", {"last_will": will(topic=b"am/\xff")}, None),
        ("ctor last_will msg 65536 bytes", {"last_will": will(msg=b"m" * BIG)}, None),
        ("ctor last_will msg int", {"last_will": will(msg=5)}, None),
        ("ctor last_will qos 3", {"last_will": will(qos=3)}, None),
        ("ctor last_will qos float", {"last_will": will(qos=1.0)}, None),
        ("ctor last_will qos True", {"last_will": will(qos=True)}, None),
        ("ctor last_will qos str", {"last_will": will(qos="1")}, None),
        ("ctor ssl str", {"ssl": "yes"}, None),
        ("ctor timeout_ms -1", {"timeout_ms": -1}, None),
        ("ctor timeout_ms 0", {"timeout_ms": 0}, None),
        ("ctor timeout_ms None", {"timeout_ms": None}, None),
        ("ctor timeout_ms str", {"timeout_ms": "abc"}, None),
        ("ctor reconnect_min_ms 0", {"reconnect_min_ms": 0}, None),
        ("ctor reconnect_min_ms -5", {"reconnect_min_ms": -5}, None),
        ("ctor reconnect_max_ms below min", {"reconnect_min_ms": 500, "reconnect_max_ms": 10},
         None),
        ("ctor backlog -1", {"backlog": -1}, None),
        ("ctor backlog str", {"backlog": "100"}, None),
        ("ctor backlog float", {"backlog": 100.0}, None),
        ("ctor backlog None", {"backlog": None}, None),
        ("ctor good config", {}, None),
    ]


async def ctor_row(p, i, overrides, make_buf):
    if overrides is None:
        conf = ["not", "a", "dict"]
    else:
        conf = cfg(p, ("am-c%d-%s" % (i, p["tag"])).encode())
        conf.update(overrides)
    buf = make_buf() if make_buf else memoryview(bytearray(64))
    try:
        client = AsyncMQTTClient(conf, buf)
    except Exception as e:
        return ename(e)
    # accepted: what does it do later?  (connect, publish, disconnect, bounded)
    later = "ok"
    try:
        await bounded(client.connect(), 3)
        await bounded(await_maybe(client.publish(b"am/later/" + p["tag"].encode(), b"x", qos=1)), 3)
        await bounded(client.disconnect(), 3)
    except Exception as e:
        later = "%s %s" % (ename(e), str(e)[:60])
        try:
            await bounded(client.disconnect(), 1)
        except Exception:
            pass
    return "accepted: " + later


# ---- call rows (on the shared connected client) ---------------------------------

class Huge:
    pass


def call_rows(tag):
    t = tag.encode()
    good = b"am/good/" + t
    rows = [
        # publish: topic
        ("publish topic None", lambda c: c.publish(None, b"x")),
        ("publish topic int", lambda c: c.publish(123, b"x")),
        ("publish topic empty", lambda c: c.publish(b"", b"x")),
        ("publish topic list", lambda c: c.publish([1, 2], b"x")),
        ("publish topic +", lambda c: c.publish(b"am/+/x", b"x")),
        ("publish topic #", lambda c: c.publish(b"am/#", b"x")),
        ("publish topic NUL", lambda c: c.publish(b"am/\x00", b"x")),
        ("publish topic str NUL", lambda c: c.publish("am/\x00", b"x")),
        ("publish topic 65536 bytes", lambda c: c.publish(b"t" * 65536, b"x")),
        ("publish topic not UTF-8", lambda c: c.publish(b"am/\xff\xfe", b"x")),
        ("publish topic overlong NUL", lambda c: c.publish(b"am/\xc0\x80", b"x")),
        ("publish topic UTF-16 surrogate", lambda c: c.publish(b"am/\xed\xa0\x80", b"x")),
        ("publish topic truncated UTF-8", lambda c: c.publish(b"am/\xc3", b"x")),
        ("publish topic QoS1 not UTF-8", lambda c: c.publish(b"am/\xff", b"x", qos=1)),
        ("publish topic str", lambda c: c.publish("am/str/" + tag, b"x")),
        ("publish topic str non-ASCII", lambda c: c.publish("am/\u00fc/" + tag, b"x")),
        ("publish topic memoryview", lambda c: c.publish(memoryview(good), b"x")),
        # publish: payload
        ("publish msg None", lambda c: c.publish(good, None)),
        ("publish msg int", lambda c: c.publish(good, 5)),
        ("publish msg float", lambda c: c.publish(good, 1.5)),
        ("publish msg list", lambda c: c.publish(good, [1, 2])),
        ("publish msg QoS1 int", lambda c: c.publish(good, 5, qos=1)),
        ("publish msg empty", lambda c: c.publish(good, b"")),
        ("publish msg str", lambda c: c.publish(good, "x\u00fc")),
        ("publish msg bytearray", lambda c: c.publish(good, bytearray(b"ba"))),
        ("publish msg QoS1 empty", lambda c: c.publish(good, b"", qos=1)),
        # publish: qos / retain
        ("publish qos 2", lambda c: c.publish(good, b"x", qos=2)),
        ("publish qos -1", lambda c: c.publish(good, b"x", qos=-1)),
        ("publish qos None", lambda c: c.publish(good, b"x", qos=None)),
        ("publish qos str", lambda c: c.publish(good, b"x", qos="1")),
        ("publish qos 1.0", lambda c: c.publish(good, b"x", qos=1.0)),
        ("publish qos 0.0", lambda c: c.publish(good, b"x", qos=0.0)),
        ("publish qos True", lambda c: c.publish(good, b"x", qos=True)),
        ("publish qos 1.5", lambda c: c.publish(good, b"x", qos=1.5)),
        ("publish retain str", lambda c: c.publish(good, b"x", retain="no")),
        # subscribe
        ("subscribe None", lambda c: c.subscribe(None)),
        ("subscribe int", lambda c: c.subscribe(5)),
        ("subscribe empty", lambda c: c.subscribe(b"")),
        ("subscribe 65536 bytes", lambda c: c.subscribe(b"s" * 65536)),
        ("subscribe a/b#", lambda c: c.subscribe(b"am/b#")),
        ("subscribe a+/b", lambda c: c.subscribe(b"am+/b")),
        ("subscribe a/#/b", lambda c: c.subscribe(b"am/#/b")),
        ("subscribe NUL", lambda c: c.subscribe(b"am/\x00")),
        ("subscribe not UTF-8", lambda c: c.subscribe(b"am/\xff")),
        ("subscribe qos 2", lambda c: c.subscribe(good, 2)),
        ("subscribe qos -1", lambda c: c.subscribe(good, -1)),
        ("subscribe qos None", lambda c: c.subscribe(good, None)),
        ("subscribe qos 1.0", lambda c: c.subscribe(good, 1.0)),
        ("subscribe qos True", lambda c: c.subscribe(good, True)),
        ("subscribe str", lambda c: c.subscribe("am/sstr/" + tag)),
        ("subscribe wildcard #", lambda c: c.subscribe(b"am/wild/" + t + b"/#")),
        # unsubscribe
        ("unsubscribe None", lambda c: c.unsubscribe(None)),
        ("unsubscribe int", lambda c: c.unsubscribe(5)),
        ("unsubscribe empty", lambda c: c.unsubscribe(b"")),
        ("unsubscribe 65536 bytes", lambda c: c.unsubscribe(b"u" * 65536)),
        ("unsubscribe bad filter", lambda c: c.unsubscribe(b"am/#/x")),
        ("unsubscribe not UTF-8", lambda c: c.unsubscribe(b"am/\xff")),
        ("unsubscribe never subscribed", lambda c: c.unsubscribe(b"am/never/" + t)),
        # the rest
        ("check_msg with nothing", lambda c: c.check_msg()),
        ("mark_read with nothing", lambda c: c.mark_read()),
        ("isconnected", lambda c: c.isconnected()),
        ("reconnect while connected", lambda c: c.reconnect()),
        ("reconnect attempts -1", lambda c: c.reconnect(attempts=-1)),
    ]
    if not MICRO:
        # 268 MB: a remaining length past MQTT's limit (too big for the 8 MB
        # MicroPython heap; CPython only)
        rows.append(("publish msg 256 MiB", lambda c: c.publish(good, bytes(268435456))))
        rows.append(("publish topic 65535 + msg 256 MiB",
                     lambda c: c.publish(b"a" * 65535, bytes(268435455 - 65537 + 1))))
    return rows


async def call_row(s, fn):
    c = s.client
    before_sent = CountSock.written
    before_inflight = c.inflight
    tx = getattr(c, "_tx", b"")
    before_tx = len(tx)
    try:
        r = fn(c)
        if awaitable(r):
            r = await bounded(r)
        if isinstance(r, memoryview):
            r = "meta"
        result = "ok:%r" % (r,)
    except Exception as e:
        result = "raise:" + ename(e)
    sent = CountSock.written - before_sent
    inflight = c.inflight - before_inflight
    out = [result, sent, inflight]
    grown = len(getattr(c, "_tx", b"")) - before_tx
    if grown > 1000000:
        out.append("transmit buffer grew by %d bytes and kept them" % grown)
    # messages our row published may come back; nothing else matters here
    try:
        await drain(c, 60)
    except Exception as e:
        out.append("probe: the link died after the row (%s %s)" % (ename(e), e))
        return out
    out.append(await s.probe())
    return out


# ---- state rows ---------------------------------------------------------------------

async def new_client(p, name, **kw):
    buf = bytearray(128)
    c = AsyncMQTTClient(cfg(p, ("am-%s-%s" % (name, p["tag"])).encode(), **kw), memoryview(buf))
    return c


async def catch(aw_fn):
    try:
        r = aw_fn()
        if awaitable(r):
            r = await bounded(r)
        return "ok:%r" % (r if not isinstance(r, memoryview) else "meta",)
    except Exception as e:
        return "raise:" + ename(e)


async def st_publish_before_connect(p):
    """[publish QoS 0, publish QoS 1, inflight, subscribe, check_msg] before connect()."""
    c = await new_client(p, "pbc")
    out = [await catch(lambda: c.publish(b"am/x", b"x")),
           await catch(lambda: c.publish(b"am/x", b"x", qos=1)), c.inflight,
           await catch(lambda: c.subscribe(b"am/x")),
           await catch(lambda: c.check_msg()),
           await catch(lambda: c.unsubscribe(b"am/x"))]
    return out


async def st_after_disconnect(p):
    """The same calls after disconnect(), reconnect off; then [isconnected]."""
    c = await new_client(p, "adc")
    await bounded(c.connect())
    await bounded(c.disconnect())
    out = [await catch(lambda: c.publish(b"am/x", b"x")),
           await catch(lambda: c.publish(b"am/x", b"x", qos=1)), c.inflight,
           await catch(lambda: c.subscribe(b"am/x")),
           await catch(lambda: c.check_msg()),
           await catch(lambda: c.disconnect()), c.isconnected()]
    return out


async def st_disconnect_sticks(p):
    """reconnect on: after disconnect(), 0.6 s of check_msg() and a publish
    must not bring the link back. [check_msg outcome, publish outcome,
    isconnected, reconnects]."""
    c = await new_client(p, "dcs", reconnect=True, reconnect_min_ms=50, reconnect_max_ms=100)
    await bounded(c.connect())
    await bounded(c.disconnect())
    first = await catch(lambda: c.check_msg())
    for _ in range(60):
        try:
            await bounded(await_maybe(c.check_msg()), 1)
        except Exception:
            pass
        await asyncio.sleep(0.01)
    pub = await catch(lambda: c.publish(b"am/x", b"x"))
    await asyncio.sleep(0.2)
    out = [first, pub, c.isconnected(), c.reconnects]
    try:
        await bounded(c.disconnect(), 2)
    except Exception:
        pass
    return out


async def st_mark_read_twice(p):
    """Two messages; mark_read() twice after the first: the second is still
    delivered, once. [payloads in order]."""
    c = await new_client(p, "mrt")
    await bounded(c.connect())
    t = b"am/mrt/" + p["tag"].encode()
    await bounded(c.subscribe(t, 1))
    c.mark_read()                  # nothing held: harmless
    await bounded(c.publish(t, b"one", qos=1))
    await bounded(c.publish(t, b"two", qos=1))
    got = []
    m = await next_msg(c)
    got.append(m and m[1])
    c.mark_read()
    c.mark_read()
    got += [m[1] for m in await drain(c, 300)]
    await bounded(c.disconnect())
    return got


async def st_reconnect_keeps_subscriptions(p):
    """reconnect() while connected, and after disconnect(): the subscription
    still delivers. [outcome, delivered, outcome, delivered]."""
    c = await new_client(p, "rks")
    await bounded(c.connect())
    t = b"am/rks/" + p["tag"].encode()
    await bounded(c.subscribe(t, 1))
    out = [await catch(lambda: c.reconnect())]
    await bounded(c.publish(t, b"a", qos=1))
    m = await next_msg(c)
    out.append(m and m[1])
    await bounded(c.disconnect())
    out.append(await catch(lambda: c.reconnect()))
    await bounded(c.publish(t, b"b", qos=1))
    m = await next_msg(c)
    out.append(m and m[1])
    await bounded(c.disconnect())
    return out


async def st_connect_twice(p):
    """connect() while connected: [outcome, isconnected, the earlier
    subscription still delivers]."""
    c = await new_client(p, "ct2")
    await bounded(c.connect())
    t = b"am/ct2/" + p["tag"].encode()
    await bounded(c.subscribe(t, 1))
    out = [await catch(lambda: c.connect()), c.isconnected()]
    try:
        await bounded(c.publish(t, b"a", qos=1))
        m = await next_msg(c, 600)
        out.append(m and m[1])
    except Exception as e:
        out.append(ename(e))
    await bounded(c.disconnect())
    return out


async def st_topic_bytearray_mutated(p):
    """A bytearray (and a memoryview) topic published, changed, published again
    with a payload of the same length: [(topic, msg) as delivered]."""
    c = await new_client(p, "tbm")
    await bounded(c.connect())
    tg = p["tag"].encode()
    await bounded(c.subscribe(b"am/tbm/" + tg + b"/+"))
    t = bytearray(b"am/tbm/" + tg + b"/a")
    await bounded(await_maybe(c.publish(t, b"1")))
    t[-1] = ord("b")
    await bounded(await_maybe(c.publish(t, b"2")))
    mv = memoryview(t)
    await bounded(await_maybe(c.publish(mv, b"3")))
    t[-1] = ord("c")
    await bounded(await_maybe(c.publish(mv, b"4")))
    t[-1] = ord("d")
    await bounded(await_maybe(c.publish(t, b"5", qos=1)))
    t[-1] = ord("e")
    await bounded(await_maybe(c.publish(t, b"6", qos=1)))
    got = await drain(c, 400)
    await bounded(c.disconnect())
    return got


async def st_topic_mutated_to_wildcard(p):
    """A bytearray topic published, then '+' written into it, published again:
    [outcome of the second publish, isconnected, a later publish delivered]."""
    c = await new_client(p, "tmw")
    await bounded(c.connect())
    tg = p["tag"].encode()
    ok_t = b"am/tmw/" + tg
    await bounded(c.subscribe(ok_t))
    t = bytearray(b"am/tmw/x/" + tg)
    await bounded(await_maybe(c.publish(t, b"1")))
    t[7] = ord("+")
    out = [await catch(lambda: c.publish(t, b"2"))]
    t[:] = b"am/tmw/\xff/" + tg
    out.append(await catch(lambda: c.publish(t, b"3")))
    try:
        await bounded(await_maybe(c.publish(ok_t, b"alive")))
        m = await next_msg(c, 600)
        out.append(m and m[1])
    except Exception as e:
        out.append(ename(e))
    out.append(c.isconnected())
    try:
        await bounded(c.disconnect())
    except Exception:
        pass
    return out


async def st_subscribe_bytearray_mutated(p):
    """Subscribe with a bytearray, change it, reconnect (clean session: the
    client re-subscribes): which topics deliver? [topics delivered]."""
    c = await new_client(p, "sbm")
    await bounded(c.connect())
    tg = p["tag"].encode()
    t = bytearray(b"am/sbm/a/" + tg)
    await bounded(c.subscribe(t, 1))
    t[7] = ord("b")
    await bounded(c.reconnect())
    await bounded(c.publish(b"am/sbm/a/" + tg, b"a", qos=1))
    await bounded(c.publish(b"am/sbm/b/" + tg, b"b", qos=1))
    got = [m[0] for m in await drain(c, 300)]
    await bounded(c.disconnect())
    return got


async def st_unsubscribe_other_type(p):
    """Subscribe with a memoryview / bytearray / str, unsubscribe with bytes,
    reconnect: nothing may come back.  [topics delivered]."""
    c = await new_client(p, "uot")
    await bounded(c.connect())
    tg = p["tag"].encode()
    a, b, s = b"am/uot/a/" + tg, b"am/uot/b/" + tg, "am/uot/s/" + p["tag"]
    await bounded(c.subscribe(memoryview(a)))
    await bounded(c.subscribe(bytearray(b)))
    await bounded(c.subscribe(s))
    await bounded(c.unsubscribe(a))
    await bounded(c.unsubscribe(b))
    await bounded(c.unsubscribe(s.encode()))
    await bounded(c.reconnect())
    for t in (a, b, s.encode()):
        await bounded(c.publish(t, b"x", qos=1))
    got = [m[0] for m in await drain(c, 300)]
    await bounded(c.disconnect())
    return got


async def st_payload_mutated_inflight(p):
    """A QoS 1 publish with a bytearray payload whose PUBACK is deferred (the
    backlog is full), the payload changed, then a reconnect resends it:
    the resend carries the original bytes.  [payloads delivered]."""
    tg = p["tag"].encode()
    t = b"am/pmi/" + tg
    buf = bytearray(len(t) + 8)                 # one 4-byte QoS 1 message
    c = AsyncMQTTClient(cfg(p, b"am-pmi-" + tg, backlog=3 + 2 + len(t) + 2 + 4, timeout_ms=1500),
                        memoryview(buf))
    await bounded(c.connect())
    await bounded(c.subscribe(t, 1))
    await bounded(c.publish(t, b"hold", qos=1))     # delivered, not read: buffer full
    await bounded(c.publish(t, b"fill", qos=1))     # backlog full
    payload = bytearray(b"orig")
    r = await bounded(c.publish(t, payload, qos=1))  # its PUBACK is behind its own copy
    payload[:] = b"XXXX"
    inflight = c.inflight
    await bounded(c.reconnect())
    got = [m[1] for m in await drain(c, 500)]
    await bounded(c.disconnect())
    return [r, inflight, got]


async def st_on_drop_raises(p):
    """An on_drop hook that raises: [check_msg outcome, isconnected after,
    the next message still delivered, inflight]."""
    buf = bytearray(32)
    tg = p["tag"].encode()
    c = AsyncMQTTClient(cfg(p, b"am-odr-" + tg), memoryview(buf))

    def hook(size):
        raise RuntimeError("app bug")
    c.on_drop = hook
    await bounded(c.connect())
    t = b"am/odr/" + tg
    await bounded(c.subscribe(t, 1))
    out = []
    try:
        await bounded(c.publish(t, b"z" * 100, qos=1))   # its copy is dropped
    except Exception as e:
        out.append("publish raise:" + ename(e))
    for _ in range(100):
        try:
            r = await bounded(await_maybe(c.check_msg()))
        except Exception as e:
            out.append("raise:" + ename(e))
            break
        if r:
            out.append("delivered")
            break
        await asyncio.sleep(0.003)
    else:
        out.append("nothing")
    c.on_drop = None
    out.append(c.isconnected())
    try:
        await bounded(c.publish(t, b"next", qos=1))
        m = await next_msg(c, 600)
        out.append(m and m[1])
    except Exception as e:
        out.append(ename(e))
    out.append(c.inflight)
    try:
        await bounded(c.disconnect())
    except Exception:
        pass
    return out


async def st_properties_fresh(p):
    """The properties of a fresh client: [inflight, dropped, reconnects,
    disconnects, last_error, isconnected, msg_flags, session_present, topic, msg]."""
    c = await new_client(p, "prf")
    return [c.inflight, c.dropped, c.reconnects, c.disconnects, c.last_error,
            c.isconnected(), c.msg_flags, c.session_present, bytes(c.topic), bytes(c.msg)]


STATE_ROWS = [
    ("state publish before connect", st_publish_before_connect),
    ("state calls after disconnect", st_after_disconnect),
    ("state disconnect sticks with reconnect on", st_disconnect_sticks),
    ("state mark_read twice", st_mark_read_twice),
    ("state reconnect keeps subscriptions", st_reconnect_keeps_subscriptions),
    ("state connect while connected", st_connect_twice),
    ("state topic bytearray mutated", st_topic_bytearray_mutated),
    ("state topic mutated to wildcard", st_topic_mutated_to_wildcard),
    ("state subscribe bytearray mutated", st_subscribe_bytearray_mutated),
    ("state unsubscribe other type", st_unsubscribe_other_type),
    ("state payload mutated in flight", st_payload_mutated_inflight),
    ("state on_drop raises", st_on_drop_raises),
    ("state properties fresh", st_properties_fresh),
]


async def sweep(p):
    only = p.get("only")
    out = []

    def wanted(name):
        return not only or name in only

    for i, (name, overrides, make_buf) in enumerate(ctor_rows(p["tag"])):
        if wanted(name):
            try:
                out.append([name, await ctor_row(p, i, overrides, make_buf)])
            except Exception as e:
                out.append([name, "row crashed: %s %s" % (ename(e), e)])
    s = Session(p)
    await s.fresh()
    for name, fn in call_rows(p["tag"]):
        if not wanted(name):
            continue
        try:
            res = await call_row(s, fn)
        except Exception as e:
            res = ["row crashed: %s %s" % (ename(e), e)]
        out.append([name, res])
        if res[-1] != "ok":
            await s.fresh()        # the next row starts from a healthy session
    try:
        await bounded(s.client.disconnect(), 2)
    except Exception:
        pass
    for name, fn in STATE_ROWS:
        if wanted(name):
            try:
                out.append([name, await fn(p)])
            except Exception as e:
                out.append([name, "row crashed: %s %s" % (ename(e), e)])
    return out

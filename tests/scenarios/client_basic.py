# Basic client scenarios, run under CPython and MicroPython.
import asyncio
from async_mqtt_client import AsyncMQTTClient, MQTTError


def config(p, **kw):
    c = {
        "client_id": p.get("client_id", "t-" + p.get("tag", "x")).encode(),
        "server": "127.0.0.1",
        "port": p["port"],
        "user": b"user",
        "password": b"password",
        "keepalive": 0,
        "last_will": {"topic": "", "msg": "", "qos": 0, "retain": False},
    }
    c.update(kw)
    return c


async def next_msg(client, timeout_ms=5000):
    """Poll like the seed's loop until a message comes; returns (topic, msg)."""
    waited = 0
    while True:
        meta = await client.check_msg()
        if meta:
            topic, msg = bytes(client.topic), bytes(client.msg)
            assert meta[0] == len(topic) and meta[1] == len(topic) + len(msg)
            client.mark_read()
            return topic, msg
        await asyncio.sleep(0.001)
        waited += 1
        if waited > timeout_ms:
            raise AssertionError("no message within %d ms" % timeout_ms)


async def seed_demo(p):
    """The seed README's demo, server and port changed, 20 rounds."""
    buf = bytearray(128)
    client = AsyncMQTTClient(config(p, client_id=b"controller"), memoryview(buf))
    await client.connect(sock_cls=None, async_sock=False)
    topic = b"%s_commands" % b"controller"
    await client.subscribe(topic)
    got = []
    rounds = 0
    while len(got) < 20:
        await client.publish(topic, b"hello world")
        meta = await client.check_msg()
        if meta:
            got.append((bytes(buf[:meta[0]]), bytes(buf[meta[0]:meta[1]])))
            client.mark_read()
        await asyncio.sleep(0)
        rounds += 1
    await client.disconnect()
    return got[0], len(got)


async def qos1_roundtrip(p):
    buf = bytearray(128)
    client = AsyncMQTTClient(config(p, client_id=b"q1-" + p["tag"].encode()), memoryview(buf))
    await client.connect()
    t = b"q1/" + p["tag"].encode()
    await client.subscribe(t, qos=1)
    acked = await client.publish(t, b"one", qos=1)
    m = await next_msg(client)
    await client.disconnect()
    return [acked, m, client.msg_flags & 6]


def tag(p):
    return p["tag"].encode()


async def retained_and_unread(p):
    """A retained message arrives right behind the SUBACK, then our own QoS1
    publishes come back while the app has not read anything: nothing is lost
    or overwritten, nothing deadlocks, order is kept."""
    buf = bytearray(64)
    client = AsyncMQTTClient(config(p, client_id=b"ret-" + tag(p), backlog=200), memoryview(buf))
    await client.connect()
    t = b"ret/" + tag(p)
    await client.subscribe(t, qos=1)           # the retained message follows the SUBACK
    acks = []
    for i in range(3):                          # each copy arrives before/around its PUBACK
        acks.append(await client.publish(t, b"own-%d" % i, qos=1))
    got = []
    for _ in range(4):
        got.append((await next_msg(client))[1])
    await client.disconnect()
    return [acks, got, client.dropped]


async def backlog_full_defers(p):
    """Tiny backlog: publishes to our own subscription while the app never
    reads.  The ack waits return False (deferred) instead of deadlocking;
    afterwards every message is delivered in order and every ack processed."""
    buf = bytearray(32)
    client = AsyncMQTTClient(config(p, client_id=b"bf-" + tag(p), backlog=20, timeout_ms=3000),
                             memoryview(buf))
    await client.connect()
    t = b"bf/" + tag(p)
    await client.subscribe(t, qos=1)
    results = []
    for i in range(5):
        results.append(await client.publish(t, b"m%d" % i, qos=1))
    got = []
    for _ in range(5):
        got.append((await next_msg(client))[1])
    # the deferred PUBACKs were read by check_msg() meanwhile
    for _ in range(50):
        if not client.inflight:
            break
        await client.check_msg()
        await asyncio.sleep(0.01)
    await client.disconnect()
    return [results, got, client.inflight]


async def big_buffer(p):
    """Receive buffers above 255 bytes: the meta holds the indices."""
    buf = bytearray(1000)
    client = AsyncMQTTClient(config(p, client_id=b"big-" + tag(p)), memoryview(buf))
    await client.connect()
    t = b"big/" + tag(p)
    await client.subscribe(t)
    payload = bytes(i & 0xFF for i in range(600))
    await client.publish(t, payload)
    topic, msg = await next_msg(client)
    await client.disconnect()
    return [topic == t, msg == payload, len(msg)]


async def oversize_dropped(p):
    """A message bigger than the buffer is read off the wire and dropped
    (counted, hook called); the next message is delivered intact."""
    buf = bytearray(48)
    client = AsyncMQTTClient(config(p, client_id=b"ovr-" + tag(p)), memoryview(buf))
    drops = []
    client.on_drop = drops.append
    await client.connect()
    t = b"ovr/" + tag(p)
    await client.subscribe(t, qos=1)
    await client.publish(t, b"x" * 300, qos=1)      # QoS1: must still be acknowledged
    await client.publish(t, b"y" * 100)
    await client.publish(t, b"small")
    got = await next_msg(client)
    await client.disconnect()
    return [got[1], client.dropped, drops, client.inflight]


async def unsubscribe_stops_delivery(p):
    buf = bytearray(64)
    client = AsyncMQTTClient(config(p, client_id=b"uns-" + tag(p)), memoryview(buf))
    await client.connect()
    t = b"uns/" + tag(p)
    await client.subscribe(t)
    await client.publish(t, b"before")
    first = await next_msg(client)
    unsub = await client.unsubscribe(t)
    await client.publish(t, b"after", qos=1)
    for _ in range(200):
        if await client.check_msg():
            raise AssertionError("delivered after unsubscribe: %r" % bytes(client.msg))
        await asyncio.sleep(0.001)
    await client.disconnect()
    return [first[1], unsub]


async def bad_input(p):
    """Rejected before anything is sent: each yields the exception's type name."""
    out = []

    def attempt(f):
        try:
            f()
            out.append("accepted")
        except (ValueError, TypeError) as e:
            out.append(type(e).__name__)

    buf = memoryview(bytearray(64))
    attempt(lambda: AsyncMQTTClient(config(p, client_id=b"", clean_session=False), buf))
    attempt(lambda: AsyncMQTTClient(config(p, port="1883"), buf))
    attempt(lambda: AsyncMQTTClient(config(p, keepalive=-1), buf))
    attempt(lambda: AsyncMQTTClient(config(p, last_will={"topic": "a/#", "msg": "x"}), buf))
    attempt(lambda: AsyncMQTTClient(config(p), b"immutable"))
    client = AsyncMQTTClient(config(p, client_id=b"bad-" + tag(p)), buf)
    await client.connect()
    attempt(lambda: client.publish(b"a/+/b", b"x"))
    attempt(lambda: client.publish(b"a/#", b"x"))
    attempt(lambda: client.publish(b"", b"x"))
    attempt(lambda: client.publish(123, b"x"))
    attempt(lambda: client.publish(b"a", 5))
    attempt(lambda: client.publish(b"a", b"x", qos=2))
    for bad in (b"a/b#", b"a+/b", b"a/#/b"):
        try:
            await client.subscribe(bad)
            out.append("accepted")
        except ValueError:
            out.append("ValueError")
    # the session is intact after all of that
    t = b"bad/" + tag(p)
    await client.subscribe(t)
    await client.publish(t, b"still fine")
    out.append((await next_msg(client))[1])
    await client.disconnect()
    return out


async def refused(p):
    """CONNACK refusals raise MQTTError naming the reason."""
    buf = memoryview(bytearray(64))
    client = AsyncMQTTClient(config(p, client_id=b"ref-" + tag(p), user=p["user"],
                                    password=p["password"]), buf)
    try:
        await client.connect()
    except MQTTError as e:
        return [str(e), e.code, client.isconnected()]
    return "connected"


async def error_kinds(p):
    """A refusal (MQTTRefused, an MQTTError) apart from a broken link: a wrong
    password at CONNACK, a subscription refused (SUBACK 0x80), and a server
    that is not there (OSError, never a refusal)."""
    from async_mqtt_client import MQTTRefused

    def kind(e):    # (CPython names the OSError: ConnectionRefusedError)
        return ["OSError" if isinstance(e, OSError) else type(e).__name__,
                isinstance(e, MQTTError), isinstance(e, MQTTRefused), getattr(e, "code", None)]
    out = {}
    client = AsyncMQTTClient(config(p, client_id=b"ek1-" + tag(p), user=b"alice",
                                    password=b"wrong"), memoryview(bytearray(64)))
    try:
        await client.connect()
        out["connack"] = "connected"
    except MQTTError as e:
        out["connack"] = kind(e)
    # mosquitto grants every subscription (its acl_file filters deliveries
    # only), so the SUBACK 0x80 comes from the scripted broker
    client = AsyncMQTTClient(config(p, client_id=b"ek2-" + tag(p), port=p["refusing_port"]),
                             memoryview(bytearray(64)))
    await client.connect()
    try:
        await client.subscribe(b"forbidden/" + tag(p))
        out["suback"] = "granted"
    except MQTTError as e:
        out["suback"] = kind(e) + [client.isconnected()]
    out["after"] = await client.subscribe(b"allowed/" + tag(p))    # the session goes on
    await client.disconnect()
    # a broken link: the server's port closes under a connect()
    client = AsyncMQTTClient(config(p, client_id=b"ek3-" + tag(p), port=p["dead_port"]),
                             memoryview(bytearray(64)))
    try:
        await client.connect()
        out["dead"] = "connected"
    except Exception as e:  # noqa: B902 -- what it is, is the point
        out["dead"] = kind(e)
    return out


async def tls_roundtrip(p):
    """TLS to mosquitto's TLS listener, server certificate verified."""
    client = AsyncMQTTClient(config(p, client_id=b"tls-" + tag(p), ssl={"cafile": p["cafile"]}),
                             memoryview(bytearray(128)))
    await client.connect()
    t = b"tls/" + tag(p)
    await client.subscribe(t, qos=1)
    await client.publish(t, b"secret", qos=1)
    got = await next_msg(client)
    await client.disconnect()
    return got[1]


async def tls_rejects_unknown_server(p):
    client = AsyncMQTTClient(config(p, client_id=b"tlsx-" + tag(p), ssl=True),
                             memoryview(bytearray(128)))
    try:
        await client.connect()
    except OSError as e:       # the ssl module's error, explained (mqtt_tls.explain)
        return str(e)
    return "connected"


async def mixed_publishes(p):
    """The QoS 0 header cache never leaks into other packets: QoS 0/1,
    retain on/off, other topics and lengths, subscribes in between."""
    client = AsyncMQTTClient(config(p, client_id=b"mix-" + tag(p)), memoryview(bytearray(128)))
    await client.connect()
    a = b"mix/a/" + tag(p)
    b = b"mix/b/" + tag(p)
    await client.subscribe(a)
    await client.subscribe(b, qos=1)
    sent = [(a, b"one", 0, False), (a, b"two", 0, False), (a, b"three", 0, False),
            (b, b"four", 1, False), (a, b"fiver", 0, False), (a, b"six", 0, True),
            (a, b"sev", 0, False), (b, b"eight", 0, False)]
    got = []
    for i, (t, m, q, r) in enumerate(sent):
        if i == 5:
            await client.subscribe(b"mix/other/" + tag(p))
        await client.publish(t, m, retain=r, qos=q)
        got.append(await next_msg(client))
    await client.publish(a, b"", retain=True)      # clear the retained message
    await next_msg(client)
    await client.disconnect()
    return [[t, m] for t, m in got]

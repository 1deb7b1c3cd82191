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

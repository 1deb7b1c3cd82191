# mqtt_async from micropython-mqtt 0.7b4 (PyPI sdist), the asyncio client
# derived from mqtt_as, as its README uses it: fill the module's `config`,
# MQTTClient(config), await connect(); messages come to config.subs_cb from
# the client's own reader task; publish(qos=1) waits for the PUBACK.
import sys
import asyncio
from time import ticks_us, ticks_diff

MODULES = ("mqtt_async",)


class S:
    count = 0


def _cb(topic, msg, retained, qos):
    S.count += 1


def topic(t):
    return t.encode()


def source():
    return sys.modules["mqtt_async"].__file__


async def connect(p):
    import mqtt_async
    import board
    mqtt_async.socket = board.lwip_socket     # getaddrinfo gives (ip, port), as on a board
    cfg = mqtt_async.config
    cfg.server = "127.0.0.1"
    cfg.port = p["port"]
    cfg.client_id = b"bench-mqtt-async"
    cfg.subs_cb = _cb
    c = mqtt_async.MQTTClient(cfg)
    await c.connect()
    return c


async def subscribe(c, t):
    await c.subscribe(t, 0)


async def close(c):
    await c.disconnect()


async def pub0(c, n, t, payload):
    for _ in range(n):
        await c.publish(t, payload)
        await asyncio.sleep_ms(0)


async def pub1(c, n, t, payload, times):
    for i in range(n):
        t0 = ticks_us()
        await c.publish(t, payload, qos=1)
        times[i] = ticks_diff(ticks_us(), t0)


async def recv(c, n, feeder):
    for _ in range(n):
        k = S.count
        feeder.send()
        while S.count == k:
            await asyncio.sleep_ms(0)


async def roundtrip(c, n, t, payload, times):
    for i in range(n):
        t0 = ticks_us()
        k = S.count
        await c.publish(t, payload)
        while S.count == k:
            await asyncio.sleep_ms(0)
        times[i] = ticks_diff(ticks_us(), t0)

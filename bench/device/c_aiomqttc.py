# aiomqttc 1.0.7 (PyPI wheel), as its README and example (main.py) use it:
# MQTTClient(...), on_message = async callback, await connect(), subscribe()
# (the SUBACK arrives through the client's receive task), publish(qos=...).
import sys
import asyncio
from time import ticks_us, ticks_diff

import timeout_error  # noqa: F401  (bench/shims: TimeoutError, as aiomqttc expects)

MODULES = ("aiomqttc",)


class S:
    count = 0


async def _on_message(client, topic, payload, retain):
    S.count += 1


def topic(t):
    return t                       # aiomqttc hands topics around as str


def source():
    return sys.modules["aiomqttc"].__file__


async def connect(p):
    import aiomqttc
    c = aiomqttc.MQTTClient(client_id="bench-aiomqttc", server="127.0.0.1", port=p["port"],
                            keepalive=60)
    c.on_message = _on_message
    if not await c.connect():
        raise OSError("aiomqttc did not connect")
    return c


async def subscribe(c, t):
    await c.subscribe(t, qos=0)
    while not c.subscriptions[t]["confirmed"]:
        await asyncio.sleep_ms(1)


async def close(c):
    await c.disconnect()


async def pub0(c, n, t, payload):
    for _ in range(n):
        await c.publish(t, payload, qos=0)
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
        await c.publish(t, payload, qos=0)
        while S.count == k:
            await asyncio.sleep_ms(0)
        times[i] = ticks_diff(ticks_us(), t0)

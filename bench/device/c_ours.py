# Our client (modules/async_mqtt_client.py), as its docstring shows it:
# publish, then poll check_msg() with sleep_ms(0) between (the seed's loop).
import sys
import asyncio

MICROPYTHON = sys.implementation.name == "micropython"
sleep0 = asyncio.sleep_ms if MICROPYTHON else asyncio.sleep
if MICROPYTHON:
    from time import ticks_us, ticks_diff
else:
    import time

    def ticks_us():
        return time.perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b

MODULES = ("async_mqtt_client", "mqtt_codec")


def topic(t):
    return t.encode()


def source():
    m = sys.modules["async_mqtt_client"]
    f = getattr(m, "__file__", "")
    return "frozen" if MICROPYTHON and "/" not in f else f


async def connect(p):
    from async_mqtt_client import AsyncMQTTClient
    cfg = {"client_id": b"bench-ours", "server": "127.0.0.1", "port": p["port"], "keepalive": 60}
    if p.get("ssl"):                    # bench/tls.py: the same loops in TLS
        cfg["ssl"] = p["ssl"]
    client = AsyncMQTTClient(cfg, memoryview(bytearray(128)))
    await client.connect()
    return client


async def subscribe(client, t):
    await client.subscribe(t)


async def close(client):
    await client.disconnect()


async def pub0(client, n, t, payload):
    for _ in range(n):
        await client.publish(t, payload)
        await sleep0(0)


async def pub1(client, n, t, payload, times):
    for i in range(n):
        t0 = ticks_us()
        await client.publish(t, payload, qos=1)
        times[i] = ticks_diff(ticks_us(), t0)


async def recv(client, n, feeder):
    for _ in range(n):
        feeder.send()
        while not await client.check_msg():
            await sleep0(0)
        client.mark_read()


async def roundtrip(client, n, t, payload, times):
    for i in range(n):
        t0 = ticks_us()
        await client.publish(t, payload)
        while not await client.check_msg():
            await sleep0(0)
        client.mark_read()
        times[i] = ticks_diff(ticks_us(), t0)

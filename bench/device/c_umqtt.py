# micropython-lib umqtt.simple 1.3.4 (PyPI sdist), as its docs use it:
# set_callback(), connect(), subscribe(), publish(), wait_msg() (blocking).
import sys
import asyncio
from time import ticks_us, ticks_diff

MODULES = ("umqtt.simple",)


class S:
    count = 0


def _cb(topic, msg):
    S.count += 1


def topic(t):
    return t.encode()


def source():
    return sys.modules["umqtt.simple"].__file__


async def connect(p):
    from umqtt.simple import MQTTClient
    c = MQTTClient(b"bench-umqtt", "127.0.0.1", p["port"], keepalive=60)
    c.set_callback(_cb)
    c.connect()
    return c


async def subscribe(c, t):
    c.subscribe(t)


async def close(c):
    c.disconnect()


async def pub0(c, n, t, payload):
    for _ in range(n):
        c.publish(t, payload)
        await asyncio.sleep_ms(0)


async def pub1(c, n, t, payload, times):
    for i in range(n):
        t0 = ticks_us()
        c.publish(t, payload, qos=1)
        times[i] = ticks_diff(ticks_us(), t0)


async def recv(c, n, feeder):
    for _ in range(n):
        k = S.count
        feeder.send()
        while S.count == k:
            c.wait_msg()


async def roundtrip(c, n, t, payload, times):
    for i in range(n):
        t0 = ticks_us()
        k = S.count
        c.publish(t, payload)
        while S.count == k:
            c.wait_msg()
        times[i] = ticks_diff(ticks_us(), t0)

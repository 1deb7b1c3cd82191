# aiomqtt (CPython reference point), as its docs use it: `async with
# Client(...)`, await publish() (QoS 1 waits for the PUBACK), `async for
# message in client.messages`.
import time

MODULES = ()


def ticks_us():
    return time.perf_counter_ns() // 1000


def topic(t):
    return t


def source():
    import aiomqtt
    return "aiomqtt " + aiomqtt.__version__


async def connect(p):
    import aiomqtt
    c = aiomqtt.Client("127.0.0.1", p["port"], identifier="bench-aiomqtt", keepalive=60)
    await c.__aenter__()
    c.bench_messages = c.messages.__aiter__()
    return c


async def subscribe(c, t):
    await c.subscribe(t)


async def close(c):
    await c.__aexit__(None, None, None)


async def pub0(c, n, t, payload):
    for _ in range(n):
        await c.publish(t, payload)


async def pub1(c, n, t, payload, times):
    for i in range(n):
        t0 = ticks_us()
        await c.publish(t, payload, qos=1)
        times[i] = ticks_us() - t0


async def recv(c, n, feeder):
    for _ in range(n):
        feeder.send()
        await c.bench_messages.__anext__()


async def roundtrip(c, n, t, payload, times):
    for i in range(n):
        t0 = ticks_us()
        await c.publish(t, payload)
        await c.bench_messages.__anext__()
        times[i] = ticks_us() - t0

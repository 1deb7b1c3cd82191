# Heap accounting of the steady-state path (MicroPython: gc.mem_alloc with
# the collector off; CPython runs the same loop for behaviour only).
import asyncio
import gc
import sys

from async_mqtt_client import AsyncMQTTClient
from client_basic import config
from client_hostile import AsyncSock

MICROPYTHON = sys.implementation.name == "micropython"
sleep0 = asyncio.sleep_ms if MICROPYTHON else asyncio.sleep


def mem():
    return gc.mem_alloc() if MICROPYTHON else 0


async def seed_loop(p):
    """Publish 64 B QoS0 to our own subscription, poll check_msg() with
    sleep_ms(0) between (the seed's loop) until it arrives; N rounds."""
    rounds = p.get("rounds", 1000)
    buf = bytearray(128)
    client = AsyncMQTTClient(config(p, client_id=b"alloc-" + p["tag"].encode()), memoryview(buf))
    await client.connect()
    topic = b"alloc/" + p["tag"].encode()
    payload = bytes(range(64))
    await client.subscribe(topic)
    polls = 0

    async def run(n):
        nonlocal polls
        i = 0
        while i < n:
            await client.publish(topic, payload)
            while not await client.check_msg():
                polls += 1
                await sleep0(0)
            if client._meta[1] - client._meta[0] != 64:
                raise AssertionError("wrong message length")
            client.mark_read()
            i += 1

    await run(50)                       # warm up: buffers, dict entries, task queue
    gc.collect()
    gc.disable()
    polls = 0
    before = mem()
    await run(rounds)
    used = mem() - before
    gc.enable()
    await client.disconnect()
    return {"rounds": rounds, "bytes": used, "per_round": used / rounds, "polls": polls}


async def idle_polls_locked(p):
    """check_msg() with nothing to deliver, QoS0 publishes to a topic nobody
    reads, and the keepalive's PINGREQ/PINGRESP, for 1.5 s with the heap
    locked: any allocation raises MemoryError."""
    import micropython
    from time import ticks_ms, ticks_diff
    buf = bytearray(128)
    client = AsyncMQTTClient(config(p, client_id=b"lock-" + p["tag"].encode(), keepalive=1),
                             memoryview(buf))
    await client.connect()
    topic = b"nobody/listens"
    payload = bytes(64)
    for _ in range(3):
        await client.publish(topic, payload)
        await client.check_msg()
    n = 0
    start = ticks_ms()
    micropython.heap_lock()
    try:
        while ticks_diff(ticks_ms(), start) < 1500:
            if n < 1000:
                await client.publish(topic, payload)
            r = await client.check_msg()
            n += 1
            await asyncio.sleep_ms(0)
    finally:
        micropython.heap_unlock()
    await client.disconnect()
    return [n > 1000, r, client.disconnects]


class PlainAsyncSocket(AsyncSock):
    """client_hostile's async transport, but readinto and write answer plain
    values (None, or an int: all of it), as the contract allows: the client
    should then need no coroutine per publish or per poll, only one per
    delivered message."""

    def readinto(self, buf, n):
        return self.s.readinto(buf, n)

    def write(self, buf, n):
        return self.s.write(buf, n)


async def seed_loop_async_plain(p):
    """seed_loop through PlainAsyncSocket (async_sock=True)."""
    rounds = p.get("rounds", 1000)
    client = AsyncMQTTClient(config(p, client_id=b"allocp-" + p["tag"].encode()),
                             memoryview(bytearray(128)))
    await client.connect(sock_cls=PlainAsyncSocket, async_sock=True)
    topic = b"allocp/" + p["tag"].encode()
    payload = bytes(range(64))
    await client.subscribe(topic)

    async def run(n):
        i = 0
        while i < n:
            await client.publish(topic, payload)
            while not await client.check_msg():
                await sleep0(0)
            if client._meta[1] - client._meta[0] != 64:
                raise AssertionError("wrong message length")
            client.mark_read()
            i += 1

    await run(50)
    gc.collect()
    gc.disable()
    before = mem()
    await run(rounds)
    used = mem() - before
    gc.enable()
    await client.disconnect()
    return {"rounds": rounds, "bytes": used, "per_round": used / rounds}


async def dict_sizes(p):
    """len(__dict__) of a client and of each class of its chain."""
    import mqtt_reader
    import mqtt_session
    import mqtt_supervisor
    import mqtt_transport
    client = AsyncMQTTClient(config(p, client_id=b"sizes"), memoryview(bytearray(64)))
    out = {"instance": len(client.__dict__)}
    for cls in (AsyncMQTTClient, mqtt_supervisor.MQTTSupervisor, mqtt_session.MQTTSession,
                mqtt_reader.MQTTReader, mqtt_transport.MQTTTransport):
        out[cls.__name__] = len(cls.__dict__)
    return out

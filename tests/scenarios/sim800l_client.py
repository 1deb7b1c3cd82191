# The MQTT client (modules/async_mqtt_client.py) over the SIM800L driver:
# client -> sim800l -> UART (TCP) -> host simulator -> mosquitto.
import asyncio
from async_mqtt_client import AsyncMQTTClient
from sim800l import SIM800L
from sim800l_uart import tcp_uart

try:
    from time import ticks_ms, ticks_diff
except ImportError:
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


async def nap(ms=1):
    if hasattr(asyncio, "sleep_ms"):
        await asyncio.sleep_ms(ms)
    else:
        await asyncio.sleep(ms / 1000)


def config(p, **kw):
    c = {"client_id": ("sim-" + p["flavour"]).encode(), "server": p["host"], "port": p["port"],
         "user": b"", "password": b"", "keepalive": p.get("keepalive", 0),
         "last_will": {"topic": "", "msg": "", "qos": 0, "retain": False},
         "timeout_ms": p.get("timeout_ms", 5000)}
    c.update(kw)
    return c


async def modem_up(p):
    from sim800l_mqtt import timeouts
    m = SIM800L(tcp_uart("127.0.0.1", p["uart_port"]), apn="internet", timeouts=timeouts(p))
    if p["flavour"] == "async":
        await m.start()
    else:
        m.start_blocking()
    return m


async def next_msg(client, timeout_ms=5000):
    t0 = ticks_ms()
    while True:
        if await client.check_msg():
            out = (bytes(client.topic), bytes(client.msg))
            client.mark_read()
            return out
        if ticks_diff(ticks_ms(), t0) > timeout_ms:
            raise AssertionError("no message within %d ms" % timeout_ms)
        await nap()


async def session(p):
    """connect, subscribe, publish QoS 0 and 1 to our own topic, receive, keepalive."""
    is_async = p["flavour"] == "async"
    modem = await modem_up(p)
    client = AsyncMQTTClient(config(p), memoryview(bytearray(256)))
    await client.connect(sock_cls=modem.socket_class(async_=is_async), async_sock=is_async)
    topic = p["topic"].encode()
    out = {}
    await client.subscribe(topic, qos=1)
    payload = b"q0." + b"x" * 61                      # 64 bytes
    s0 = modem.stats()
    await client.publish(topic, payload)
    s1 = modem.stats()
    out["q0"] = await next_msg(client)
    s2 = modem.stats()
    out["publish_cost"] = {k: s1[k] - s0[k] for k in ("at_commands", "uart_tx", "uart_rx")}
    out["receive_cost"] = {k: s2[k] - s1[k] for k in ("at_commands", "uart_tx", "uart_rx")}
    out["acked"] = await client.publish(topic, b"q1." + b"y" * 61, qos=1)
    out["q1"] = await next_msg(client)
    # Keepalive: idle (polling) for 2.5 x keepalive; the broker would drop a silent client
    # after 1.5 x keepalive, so a message after the pause proves the PINGREQs went.
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < p.get("idle_ms", 0):
        assert not await client.check_msg()
        await nap(5)
    await client.publish(topic, b"after idle")
    out["after"] = await next_msg(client)
    out["connected"] = client.isconnected()
    out["disconnects"] = client.disconnects
    await client.disconnect()
    out["stats"] = modem.stats()
    return out


async def faults(p):
    """QoS 1 messages to our own topic with reconnect on, through whatever faults are armed."""
    is_async = p["flavour"] == "async"
    modem = await modem_up(p)
    client = AsyncMQTTClient(config(p, reconnect=True, reconnect_min_ms=50, reconnect_max_ms=400,
                                    clean_session=False, client_id=p["cid"].encode()),
                             memoryview(bytearray(256)))
    await client.connect(sock_cls=modem.socket_class(async_=is_async), async_sock=is_async)
    topic = p["topic"].encode()
    await client.subscribe(topic, qos=1)
    got = []
    t0 = ticks_ms()
    for i in range(p["count"]):
        while True:
            try:
                await client.publish(topic, b"%04d" % i, qos=1)
                break
            except Exception:               # not connected yet: the supervisor reconnects
                await nap(20)
            assert ticks_diff(ticks_ms(), t0) < p.get("seconds", 20) * 1000, "stuck"
        while True:
            if await client.check_msg():
                n = int(str(bytes(client.msg), "ascii"))
                client.mark_read()
                if n not in got:
                    got.append(n)
                if n == i:
                    break
            await nap()
            assert ticks_diff(ticks_ms(), t0) < p.get("seconds", 20) * 1000, ("stuck", got)
    await client.disconnect()
    return {"got": got, "disconnects": client.disconnects, "reconnects": client.reconnects,
            "stats": modem.stats()}


async def heap(p):
    """Heap per 64-byte QoS 0 publish + receive round, client over the driver (MicroPython)."""
    import gc
    is_async = p["flavour"] == "async"
    modem = await modem_up(p)
    client = AsyncMQTTClient(config(p), memoryview(bytearray(256)))
    await client.connect(sock_cls=modem.socket_class(async_=is_async), async_sock=is_async)
    topic = p["topic"].encode()
    await client.subscribe(topic)
    payload = b"h" * 64

    async def rounds(k):
        # All rounds in one coroutine: a coroutine per round (~120 B) would
        # be the harness's own cost, not the client's or the driver's.
        for _ in range(k):
            await client.publish(topic, payload)
            while not await client.check_msg():
                pass
            client.mark_read()
    await rounds(5)
    n = p.get("rounds", 30)
    s0 = modem.stats()
    if not hasattr(gc, "mem_alloc"):
        await rounds(n)
        used = None
    else:
        co = rounds(n)                   # (the coroutine object: not part of a round)
        gc.collect()
        gc.disable()
        a0 = gc.mem_alloc()
        await co
        used = (gc.mem_alloc() - a0) // n
        gc.enable()
    s1 = modem.stats()
    await client.disconnect()
    return {"heap_per_round": used,
            "per_round": {k: (s1[k] - s0[k]) / n for k in ("at_commands", "uart_tx", "uart_rx")}}


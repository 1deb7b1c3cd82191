# The MQTT client in TLS over the SIM800L driver (or the native socket):
# client -> mqtt_tls -> sim800l -> UART (TCP) -> host simulator -> mosquitto's TLS listener.
import gc
import sys

from async_mqtt_client import AsyncMQTTClient
from heartbeat import Heartbeat
from sim800l_client import modem_up, nap, next_msg

MICROPYTHON = sys.implementation.name == "micropython"

from mpcompat import ticks_diff, ticks_ms


def config(p, **kw):
    c = {"client_id": p.get("cid", "tls-" + p["flavour"]).encode(), "server": p["host"],
         "port": p["port"], "keepalive": p.get("keepalive", 0),
         "timeout_ms": p.get("timeout_ms", 8000), "ssl": dict(p["ssl"]) if p["ssl"] else False}
    c.update(kw)
    return c


async def connect(p, client, modem=None):
    if p["flavour"] == "native":
        await client.connect()
        return None
    modem = modem or await modem_up(p)
    is_async = p["flavour"] == "async"
    await client.connect(sock_cls=modem.socket_class(async_=is_async), async_sock=is_async)
    return modem


async def session(p):
    """connect in TLS, subscribe, QoS 0 and 1 to our own topic, and back."""
    client = AsyncMQTTClient(config(p), memoryview(bytearray(4096)))
    modem = await modem_up(p) if p["flavour"] != "native" else None
    beat = Heartbeat(5)
    t0 = ticks_ms()
    await connect(p, client, modem)
    out = {"connect_ms": ticks_diff(ticks_ms(), t0), "connect_gap_ms": beat.stop()}
    topic = p["topic"].encode()
    await client.subscribe(topic, qos=1)
    await client.publish(topic, b"q0 over tls")
    out["q0"] = await next_msg(client)
    out["acked"] = await client.publish(topic, b"q1 over tls", qos=1)
    out["q1"] = await next_msg(client)
    big = bytes(range(256)) * 12                    # 3,072 B: more than one record
    await client.publish(topic, big)                # one write bigger than a record
    got = await next_msg(client, 20000)
    out["big_intact"] = got == (topic, big)
    await client.publish(topic, b"after big")
    out["after"] = await next_msg(client)
    if modem is not None:
        out["at_commands"] = modem.stats()["at_commands"]
    await client.disconnect()
    out["connected_after"] = client.isconnected()
    return out


async def failure(p):
    """connect must fail with a clear error; then the same client connects
    to a good listener (p["good"]) and works."""
    client = AsyncMQTTClient(config(p, timeout_ms=p.get("timeout_ms", 6000)),
                             memoryview(bytearray(128)))
    out = {}
    import mqtt_tls
    real_clock = mqtt_tls._clock
    if p.get("unset_clock"):
        mqtt_tls._clock = lambda: 1609459200      # 2021-01-01: the RP2040's RTC after power-up
    t0 = ticks_ms()
    try:
        await connect(p, client)
        out["error"] = None
    except Exception as e:          # noqa: BLE001 (the kind is what is checked)
        out["error"] = (type(e).__name__, e.args[0] if e.args else None, str(e))
    out["ms"] = ticks_diff(ticks_ms(), t0)
    mqtt_tls._clock = real_clock
    good = p.get("good")
    if good:
        # The same client, pointed at a good listener: reconnect() (the
        # transport of the failed connect, the modem's, is reused) works.
        client._cfg["port"] = good["port"]
        client._cfg["ssl"] = dict(good["ssl"])
        await client.reconnect(attempts=3)
        topic = p["topic"].encode()
        await client.subscribe(topic)
        await client.publish(topic, b"works after")
        out["after"] = await next_msg(client)
        await client.disconnect()
    return out


async def heap(p):
    """Heap per publish-and-receive round in TLS (MicroPython's gc counts;
    mbedTLS's buffers are allocated by libc on the unix port, by the GC heap
    on the board)."""
    client = AsyncMQTTClient(config(p), memoryview(bytearray(256)))
    await connect(p, client)
    topic = p["topic"].encode()
    await client.subscribe(topic)
    payload = b"x" * 64
    rounds = p.get("rounds", 20)
    for _ in range(3):                              # warm up
        await client.publish(topic, payload)
        await next_msg(client)
    per = []
    for _ in range(rounds):
        gc.collect()
        before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
        await client.publish(topic, payload)
        while not await client.check_msg():
            await nap()
        client.mark_read()
        per.append((gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0) - before)
    await client.disconnect()
    per.sort()
    return {"median": per[len(per) // 2], "min": per[0], "max": per[-1]}


async def config_errors(p):
    """Each bad "ssl" option, at construction: the error's type and text."""
    out = {}
    for name, ssl in p["cases"]:
        try:
            AsyncMQTTClient({"client_id": b"x", "server": "127.0.0.1", "ssl": ssl},
                            memoryview(bytearray(64)))
            out[name] = None
        except Exception as e:          # noqa: BLE001 (the kind is what is checked)
            out[name] = (type(e).__name__, str(e))
    return out

# Keepalive, dead links, reconnects, broker restarts, hostile servers.
import asyncio
import sys

from async_mqtt_client import AsyncMQTTClient, MQTTError
from client_basic import config, next_msg, tag

from mpcompat import ticks_ms, ticks_diff


async def idle_with_keepalive(p):
    """Idle for a few seconds with keepalive 1 s: PINGREQs keep the link up."""
    client = AsyncMQTTClient(config(p, client_id=b"ka-" + tag(p), keepalive=1),
                             memoryview(bytearray(64)))
    await client.connect()
    start = ticks_ms()
    while ticks_diff(ticks_ms(), start) < p["seconds"] * 1000:
        await client.check_msg()
        await asyncio.sleep(0.01)
    alive = client.isconnected()
    await client.disconnect()
    return [alive, client.disconnects]


async def dead_link(p):
    """The broker freezes (SIGSTOP): check_msg() reports the dead link."""
    ka = p["keepalive"]
    client = AsyncMQTTClient(config(p, client_id=b"dl-" + tag(p), keepalive=ka),
                             memoryview(bytearray(64)))
    await client.connect()
    print("READY")
    start = ticks_ms()
    while True:
        try:
            await client.check_msg()
        except MQTTError as e:
            return [ticks_diff(ticks_ms(), start), str(e)]
        if ticks_diff(ticks_ms(), start) > ka * 3000:
            return "not detected"
        await asyncio.sleep(0.01)


async def survives_restarts(p):
    """The seed's main loop with reconnect on: publish to our own topic and
    read it back, across broker restarts done by the test."""
    client = AsyncMQTTClient(config(p, client_id=b"rs-" + tag(p), reconnect=True,
                                    reconnect_min_ms=100, reconnect_max_ms=400, keepalive=2),
                             memoryview(bytearray(64)))
    await client.connect()
    t = b"rs/" + tag(p)
    await client.subscribe(t)
    received = 0
    phase = 0
    i = 0
    while phase < p["restarts"] + 1 or received < 5:
        await client.publish(t, b"n%d" % i)
        i += 1
        for _ in range(20):
            if await client.check_msg():
                received += 1
                client.mark_read()
                break
            await asyncio.sleep(0.005)
        if received >= 5 and phase == client.reconnects:
            print("RECEIVING", phase)      # the test restarts the broker now
            phase += 1
            received = 0
    await client.disconnect()
    return [client.reconnects, client.disconnects, received]


async def offline_queue(p):
    """Persistent session: subscribe QoS1, go away; messages published
    meanwhile (and a broker restart) arrive when we come back."""
    cfg = config(p, client_id=b"oq-" + tag(p), clean_session=False)
    client = AsyncMQTTClient(cfg, memoryview(bytearray(64)))
    await client.connect()
    await client.subscribe(b"oq/" + tag(p), qos=1)
    await client.disconnect()
    print("AWAY")
    sys.stdin.readline()                   # the test publishes and restarts the broker
    client = AsyncMQTTClient(cfg, memoryview(bytearray(64)))
    await client.connect()
    got = []
    for _ in range(p["count"]):
        got.append((await next_msg(client))[1])
    present = client.session_present
    await client.disconnect()
    return [present, got]


async def qos1_resent_after_outage(p):
    """A QoS1 publish whose PUBACK never comes (broker frozen, then killed
    and restarted) is resent with DUP after the reconnect and acknowledged."""
    client = AsyncMQTTClient(config(p, client_id=b"dup-" + tag(p), reconnect=True,
                                    reconnect_min_ms=100, reconnect_max_ms=300,
                                    timeout_ms=1500), memoryview(bytearray(64)))
    await client.connect()
    print("READY")
    sys.stdin.readline()                   # the broker is frozen now
    acked = await client.publish(b"dup/" + tag(p), b"must arrive", qos=1)
    await client.disconnect()
    return [acked, client.reconnects, client.inflight]


async def will_on_link_loss(p):
    """Connect with a last will, then vanish without DISCONNECT."""
    client = AsyncMQTTClient(config(p, client_id=b"lw-" + tag(p), keepalive=1, last_will={
        "topic": "lw/" + p["tag"], "msg": "gone", "qos": 1, "retain": False}),
        memoryview(bytearray(64)))
    await client.connect()
    print("CONNECTED")
    sys.stdin.readline()
    return "ok"


async def hostile_server(p):
    """A server that answers CONNACK then sends the given bytes."""
    client = AsyncMQTTClient(config(p, client_id=b"hs"), memoryview(bytearray(64)))
    await client.connect()
    start = ticks_ms()
    while ticks_diff(ticks_ms(), start) < 3000:
        try:
            if await client.check_msg():
                client.mark_read()
        except (MQTTError, OSError) as e:
            connected = client.isconnected()
            await client.reconnect(attempts=3)
            return [type(e).__name__, str(e), connected, client.isconnected()]
        await asyncio.sleep(0.005)
    return "no error"


async def write_stalls(p):
    """The broker stops reading: publishes fill the socket, then the write
    gives up after timeout_ms with an OSError instead of hanging."""
    client = AsyncMQTTClient(config(p, client_id=b"ws-" + tag(p), timeout_ms=1000),
                             memoryview(bytearray(64)))
    await client.connect()
    print("READY")
    sys.stdin.readline()
    payload = bytes(1000)
    sent = 0
    start = ticks_ms()
    try:
        while ticks_diff(ticks_ms(), start) < 20000:
            await client.publish(b"ws/sink", payload)
            sent += 1
    except OSError as e:
        return ["OSError", e.args[0], sent > 10, ticks_diff(ticks_ms(), start) < 8000,
                client.isconnected()]
    return "no error"

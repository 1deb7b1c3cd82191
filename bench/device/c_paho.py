# paho-mqtt (CPython reference point), as its docs use it: Client(VERSION2),
# on_message callback, connect(), loop_start() (its network thread),
# publish(); QoS 1 waits with wait_for_publish().
import threading
import time

MODULES = ()


def ticks_us():
    return time.perf_counter_ns() // 1000


class S:
    got = threading.Event()
    subscribed = threading.Event()


def _on_message(client, userdata, msg):
    S.got.set()


def _on_subscribe(client, userdata, mid, reason_codes, properties):
    S.subscribed.set()


def topic(t):
    return t


def source():
    import paho.mqtt
    return "paho-mqtt " + paho.mqtt.__version__


async def connect(p):
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-paho")
    c.on_message = _on_message
    c.on_subscribe = _on_subscribe
    c.connect("127.0.0.1", p["port"], keepalive=60)
    c.loop_start()
    return c


async def subscribe(c, t):
    S.subscribed.clear()
    c.subscribe(t)
    assert S.subscribed.wait(5)


async def close(c):
    c.disconnect()
    c.loop_stop()


async def pub0(c, n, t, payload):
    for _ in range(n):
        c.publish(t, payload)


async def pub1(c, n, t, payload, times):
    for i in range(n):
        t0 = ticks_us()
        c.publish(t, payload, qos=1).wait_for_publish(5)
        times[i] = ticks_us() - t0


async def recv(c, n, feeder):
    for _ in range(n):
        S.got.clear()
        feeder.send()
        assert S.got.wait(5)


async def roundtrip(c, n, t, payload, times):
    for i in range(n):
        t0 = ticks_us()
        S.got.clear()
        c.publish(t, payload)
        assert S.got.wait(5)
        times[i] = ticks_us() - t0

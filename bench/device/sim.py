# MQTT over the SIM800L driver and simulator: AT round trips and UART bytes
# per publish, from the driver's own counters (modules/sim800l.py stats()).
#
#   micropython bench/device/sim.py CLIENT JSON_PARAMS     CLIENT: ours | wire
#
# client -> modules/sim800l.py -> UART (TCP) -> host/sim800l_sim.py -> mosquitto.
# "wire" writes hand-built packets through the modem socket, one write each:
# the least any client can cost over AT commands.  Prints `RESULT <json>`.
import sys
import json

NAME, P = sys.argv[1], json.loads(sys.argv[2])
MICROPYTHON = sys.implementation.name == "micropython"
if MICROPYTHON:
    sys.path[:] = [sys.argv[0].rsplit("/", 1)[0], ".frozen"]
else:
    sys.path[:0] = [P["modules_dir"]]

import gc  # noqa: E402
import asyncio  # noqa: E402
from sim800l import SIM800L  # noqa: E402
from sim800l_uart import tcp_uart  # noqa: E402

if MICROPYTHON:
    from time import ticks_us, ticks_diff  # noqa: E402
else:
    import time

    def ticks_us():
        return time.perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b
sleep_ms = getattr(asyncio, "sleep_ms", None) or (lambda ms: asyncio.sleep(ms / 1000))
KEYS = ("at_commands", "uart_tx", "uart_rx")
ASYNC = P.get("flavour", "async") == "async"


def mem():
    return gc.mem_alloc() if MICROPYTHON else 0


class Cost:
    """Counter and heap deltas over n operations."""

    def __init__(self, modem):
        self.m = modem

    def start(self):
        gc.collect()
        gc.disable()
        self.s0 = self.m.stats()
        self.h0 = mem()
        self.t0 = ticks_us()

    def stop(self, n):
        t = ticks_diff(ticks_us(), self.t0)
        h = mem() - self.h0
        gc.enable()
        s1 = self.m.stats()
        out = {k: (s1[k] - self.s0[k]) / n for k in KEYS}
        out["uart_bytes"] = out["uart_tx"] + out["uart_rx"]
        out["heap"] = h / n
        out["us"] = t / n
        out["n"] = n
        return out


async def call(r):
    # async readinto answers a plain None (no awaitable) when nothing waits
    # (or a plain int when the bytes were at hand)
    return (await r) if ASYNC and r is not None and type(r) is not int else r


class Ours:
    async def open(self, modem, p):
        from async_mqtt_client import AsyncMQTTClient
        cfg = {"client_id": b"bench-sim-ours", "server": p["host"], "port": p["port"], "keepalive": 60,
               "timeout_ms": 5000}
        if p.get("ssl"):                # bench/tls.py: the same loops in TLS
            cfg["ssl"] = p["ssl"]
        self.c = AsyncMQTTClient(cfg, memoryview(bytearray(128)))
        await self.c.connect(sock_cls=modem.socket_class(async_=ASYNC), async_sock=ASYNC)

    async def subscribe(self, t):
        await self.c.subscribe(t)

    async def pub(self, t, payload, qos):
        await self.c.publish(t, payload, qos=qos)

    async def recv(self):
        c = self.c
        while not await c.check_msg():
            await sleep_ms(1)
        c.mark_read()

    async def close(self):
        await self.c.disconnect()


class Wire:
    async def open(self, modem, p):
        S = modem.socket_class(async_=ASYNC)
        info = await call(S.getaddrinfo(p["host"], p["port"]))
        self.s = S()
        await call(self.s.connect(info[0][-1]))
        self.s.setblocking(False)
        self.buf = bytearray(256)
        self.h = bytearray(1)
        self.pid = 0
        self.pkts = {}
        cid = b"bench-sim-wire"
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + bytes((0, len(cid))) + cid
        await self.write(bytes((0x10, len(body))) + body)
        assert await self.packet() == 0x20

    async def write(self, pkt):
        # a non-blocking modem socket may take nothing now (None): try again shortly
        while await call(self.s.write(pkt, len(pkt))) is None:
            await sleep_ms(1)

    async def read1(self, buf, n):
        while True:
            r = await call(self.s.readinto(buf, n))
            if r:
                return r
            await sleep_ms(1)

    async def packet(self):
        await self.read1(self.h, 1)
        first = self.h[0]
        rem, shift = 0, 0
        while True:
            await self.read1(self.h, 1)
            rem |= (self.h[0] & 127) << shift
            if not self.h[0] & 128:
                break
            shift += 7
        got = 0
        mv = memoryview(self.buf)
        while got < rem:
            got += await self.read1(mv[got:], rem - got)
        return first

    async def subscribe(self, t):
        body = b"\x00\x01" + bytes((0, len(t))) + t + b"\x00"
        await self.write(bytes((0x82, len(body))) + body)
        assert await self.packet() == 0x90

    async def pub(self, t, payload, qos):
        k = (t, qos)
        if k not in self.pkts:
            body = bytes((0, len(t))) + t + (b"\x00\x01" if qos else b"") + payload
            self.pkts[k] = bytearray((0x30 | qos << 1, len(body))) + body
        pkt = self.pkts[k]
        if qos:
            self.pid = self.pid % 65535 + 1
            pkt[4 + len(t)] = self.pid >> 8
            pkt[5 + len(t)] = self.pid & 255
        await self.write(pkt)
        if qos:
            while await self.packet() != 0x40:
                pass

    async def recv(self):
        while await self.packet() & 0xF0 != 0x30:
            pass

    async def close(self):
        await self.write(b"\xe0\x00")
        await call(self.s.close())


async def main():
    p = P
    n = p.get("n", 20)
    modem = SIM800L(tcp_uart("127.0.0.1", p["uart_port"]), apn="internet")
    if ASYNC:
        await modem.start()
    else:
        modem.start_blocking()
    c = Ours() if NAME == "ours" else Wire()
    s0, t0 = modem.stats(), ticks_us()
    await c.open(modem, p)
    s1 = modem.stats()
    connect = {k: s1[k] - s0[k] for k in KEYS}
    connect["us"] = ticks_diff(ticks_us(), t0)
    own, sink = p["topic"].encode(), (p["topic"] + "/sink").encode()
    payload = bytes(range(64))
    await c.subscribe(own)
    cost = Cost(modem)
    out = {"client": NAME, "flavour": p.get("flavour", "async"), "connect": connect}
    for q in (0, 1):
        await c.pub(sink, payload, q)                     # warm up
        cost.start()
        for _ in range(n):
            await c.pub(sink, payload, q)
        out["pub%d" % q] = cost.stop(n)
    # Publish to our own subscription and receive it; the receive side is
    # that minus a QoS 0 publish (the URC may land in either half).
    await c.pub(own, payload, 0)
    await c.recv()
    cost.start()
    for _ in range(n):
        await c.pub(own, payload, 0)
        await c.recv()
    rt = out["roundtrip"] = cost.stop(n)
    out["recv"] = {k: rt[k] - out["pub0"][k] for k in rt}
    out["recv"]["n"] = n
    await c.close()
    out["stats"] = modem.stats()
    return out


try:
    print("RESULT " + json.dumps(asyncio.run(main())))
except BaseException as e:  # noqa: B902
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    else:
        import traceback
        traceback.print_exc()
    sys.exit(1)

# Runs ON the emulated Pico (the shipped RP2040 image, modules frozen in),
# sent through the raw REPL by bench/pico/pico.py with a preamble `P = {...}`.
# Prints `RESULT <json>`.
#
# P["mode"] == "modem": CLIENT (ours | wire | umqtt) -> frozen sim800l driver
#   (P["flavour"]: async | sync) -> machine.UART(0) -> host/sim800l_sim.py ->
#   mosquitto.  Per operation: heap (gc.mem_alloc() deltas, collector off
#   inside each window), board time (time.ticks_us), CPU cycles (the
#   emulator's executed-instruction count, bench/pico/cycles.js), AT round
#   trips and UART bytes (the driver's counters).
# P["mode"] == "loop": CLIENT (ours | wire) over an in-RAM loopback broker
#   (no modem, no UART, never waits): what the chip sustains, CPU-bound.
#
# Windows run in chunks of P["chunk"] operations (the heap is ~230 KB and an
# async round over the modem allocates ~1 KB), the collector run between
# chunks, outside every window; each chunk's cost minus an empty window's.
import gc
import sys
import json
import machine
import asyncio
from time import ticks_us, ticks_diff, sleep_ms

CLIENT = P["client"]
ASYNC = P.get("flavour", "async") == "async"
_M32 = machine.mem32
_CYC = 0x40068000
HAVE_CYC = _M32[_CYC + 8] == 0x43594331


def cyc():
    return _M32[_CYC] if HAVE_CYC else 0


async def call(r):
    # the async driver's readinto answers a plain None/int when nothing must be awaited
    return (await r) if ASYNC and r is not None and type(r) is not int else r


# ---- the clients -----------------------------------------------------------

class Ours:
    """Our client, as its docstring shows it (the seed's loop); each loop calls
    the client directly, no wrapper in between."""

    async def open(self, sock_cls, async_sock, p):
        from async_mqtt_client import AsyncMQTTClient
        cfg = {"client_id": b"bench-pico-ours", "server": p["host"], "port": p["port"], "keepalive": 60,
               "timeout_ms": 10000}
        if p.get("ssl"):                # bench/tls.py: the same loops in TLS
            cfg["ssl"] = p["ssl"]
            cfg["timeout_ms"] = 60000   # a handshake on the emulated chip takes seconds
        self.c = AsyncMQTTClient(cfg, memoryview(bytearray(128)))
        await self.c.connect(sock_cls=sock_cls, async_sock=async_sock)

    async def subscribe(self, t):
        await self.c.subscribe(t)

    async def pub0(self, k, t, payload):
        c = self.c
        for _ in range(k):
            await c.publish(t, payload)
            await asyncio.sleep_ms(0)

    async def pub1(self, k, t, payload):
        c = self.c
        for _ in range(k):
            await c.publish(t, payload, qos=1)

    async def roundtrip(self, k, t, payload):
        c = self.c
        for _ in range(k):
            await c.publish(t, payload)
            while not await c.check_msg():
                await asyncio.sleep_ms(POLL_MS)
            c.mark_read()

    async def recv(self, k, t, payload):
        c = self.c
        for _ in range(k):
            while not await c.check_msg():
                await asyncio.sleep_ms(POLL_MS)
            c.mark_read()

    async def close(self):
        await self.c.disconnect()


class Wire:
    """The least a client can do: hand-built packets in prebuilt buffers, one
    write each; replies read into a fixed buffer through views made at open
    (every packet in the bench is shorter than 128 B: a 2-byte fixed header).
    It allocates nothing itself: over the modem what it allocates is the
    driver's (and the harness loop's, the same for every client)."""

    async def open(self, sock_cls, async_sock, p):
        self.aw = async_sock
        self.s = sock_cls()
        info = sock_cls.getaddrinfo(p["host"], p["port"])
        if async_sock:
            info = await info
        r = self.s.connect(info[0][-1])
        if async_sock:
            await r
        self.s.setblocking(False)
        self.buf = bytearray(130)
        mv = memoryview(self.buf)
        self.views = [mv[i:] for i in range(130)]
        self.pid = 0
        cid = b"bench-pico-wire"
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + bytes((0, len(cid))) + cid
        await self.write(bytes((0x10, len(body))) + body)
        assert await self.packet() == 0x20

    async def write(self, pkt):
        s, aw, n = self.s, self.aw, len(pkt)
        while True:
            r = s.write(pkt, n)
            if aw and r is not None and type(r) is not int:
                r = await r
            if r is not None:
                break
            await asyncio.sleep_ms(POLL_MS)

    async def packet(self):
        """One whole packet into self.buf; its first byte (setup only)."""
        s, aw, V, buf = self.s, self.aw, self.views, self.buf
        got, need = 0, 2
        while got < need:
            r = s.readinto(V[got], need - got)
            if aw and r is not None and type(r) is not int:
                r = await r
            if r:
                got += r
                if got >= 2:
                    need = 2 + buf[1]
            else:
                await asyncio.sleep_ms(POLL_MS)
        return buf[0]

    @staticmethod
    def pkt(t, payload, qos):
        body = bytes((0, len(t))) + t + (b"\x00\x01" if qos else b"") + payload
        return bytearray((0x30 | qos << 1, len(body))) + body

    async def subscribe(self, t):
        body = b"\x00\x01" + bytes((0, len(t))) + t + b"\x00"
        await self.write(bytes((0x82, len(body))) + body)
        assert await self.packet() == 0x90
        self.pkts = {}

    async def pub0(self, k, t, payload):
        pkt = self.pkts.get((t, 0)) or self.pkts.setdefault((t, 0), self.pkt(t, payload, 0))
        s, aw, n = self.s, self.aw, len(pkt)
        for _ in range(k):
            while True:                       # a non-blocking write may take nothing now (None)
                r = s.write(pkt, n)
                if aw and r is not None and type(r) is not int:
                    r = await r
                if r is not None:
                    break
                await asyncio.sleep_ms(POLL_MS)
            await asyncio.sleep_ms(0)

    async def pub1(self, k, t, payload):
        pkt = self.pkts.get((t, 1)) or self.pkts.setdefault((t, 1), self.pkt(t, payload, 1))
        s, aw, n, V, buf = self.s, self.aw, len(pkt), self.views, self.buf
        i = 4 + len(t)
        for _ in range(k):
            self.pid = pid = self.pid % 65535 + 1
            pkt[i] = pid >> 8
            pkt[i + 1] = pid & 255
            while True:                       # a non-blocking write may take nothing now (None)
                r = s.write(pkt, n)
                if aw and r is not None and type(r) is not int:
                    r = await r
                if r is not None:
                    break
                await asyncio.sleep_ms(POLL_MS)
            while True:                       # until the PUBACK
                got, need = 0, 2
                while got < need:
                    r = s.readinto(V[got], need - got)
                    if aw and r is not None and type(r) is not int:
                        r = await r
                    if r:
                        got += r
                        if got >= 2:
                            need = 2 + buf[1]
                    else:
                        await asyncio.sleep_ms(POLL_MS)
                if buf[0] == 0x40:
                    break

    async def roundtrip(self, k, t, payload):
        pkt = self.pkts.get((t, 0)) or self.pkts.setdefault((t, 0), self.pkt(t, payload, 0))
        s, aw, n, V, buf = self.s, self.aw, len(pkt), self.views, self.buf
        for _ in range(k):
            while True:                       # a non-blocking write may take nothing now (None)
                r = s.write(pkt, n)
                if aw and r is not None and type(r) is not int:
                    r = await r
                if r is not None:
                    break
                await asyncio.sleep_ms(POLL_MS)
            while True:                       # until the PUBLISH comes back
                got, need = 0, 2
                while got < need:
                    r = s.readinto(V[got], need - got)
                    if aw and r is not None and type(r) is not int:
                        r = await r
                    if r:
                        got += r
                        if got >= 2:
                            need = 2 + buf[1]
                    else:
                        await asyncio.sleep_ms(POLL_MS)
                if buf[0] & 0xF0 == 0x30:
                    break

    async def recv(self, k, t, payload):
        s, aw, V, buf = self.s, self.aw, self.views, self.buf
        for _ in range(k):
            while True:                       # until a PUBLISH comes
                got, need = 0, 2
                while got < need:
                    r = s.readinto(V[got], need - got)
                    if aw and r is not None and type(r) is not int:
                        r = await r
                    if r:
                        got += r
                        if got >= 2:
                            need = 2 + buf[1]
                    else:
                        await asyncio.sleep_ms(POLL_MS)
                if buf[0] & 0xF0 == 0x30:
                    break

    async def close(self):
        await self.write(b"\xe0\x00")
        r = self.s.close()
        if self.aw:
            await r


class SocketAdapter:
    """A blocking socket with MicroPython's read/write names (what umqtt.simple
    calls) around the sync modem socket: read(n) blocks until n bytes came and
    returns them in a new bytearray (as socket.read returns new bytes);
    write(buf, n) is the modem socket's write."""

    reads = writes = 0          # calls, counted for the adapter's cost per operation

    def __init__(self, s):
        self.s = s
        self.blocking = True

    def connect(self, addr):
        self.s.connect(addr)

    def setblocking(self, flag):
        self.blocking = flag

    def settimeout(self, t):
        self.blocking = t is None or t > 0

    def write(self, buf, n=None):
        SocketAdapter.writes += 1
        return self.s.write(buf, len(buf) if n is None else n)

    def read(self, n):
        SocketAdapter.reads += 1
        b = bytearray(n)
        mv = None
        got = 0
        while got < n:
            r = self.s.readinto(b if mv is None else mv[got:], n - got)
            if r:
                got += r
                if got < n and mv is None:
                    mv = memoryview(b)
            elif r is None:
                if not self.blocking and not got:
                    return None
                sleep_ms(POLL_MS)
            else:
                return b[:got]
        return b

    def close(self):
        self.s.close()


class AdapterModule:
    """Stands in for `usocket` (the rp2 image has no network stack)."""
    sock_cls = None

    @staticmethod
    def getaddrinfo(host, port, *a):
        return AdapterModule.sock_cls.getaddrinfo(host, port)

    @staticmethod
    def socket(*a):
        return SocketAdapter(AdapterModule.sock_cls())


class Umqtt:
    """micropython-lib umqtt.simple 1.3.4 as its docs use it: set_callback,
    connect, subscribe, publish, wait_msg() (blocking)."""

    async def open(self, sock_cls, async_sock, p):
        AdapterModule.sock_cls = sock_cls
        sys.modules["usocket"] = AdapterModule
        from umqtt_simple import MQTTClient
        self.count = 0
        self.c = MQTTClient(b"bench-pico-umqtt", p["host"], p["port"], keepalive=60)
        self.c.set_callback(self.cb)
        self.c.connect()

    def cb(self, topic, msg):
        self.count += 1

    async def subscribe(self, t):
        self.c.subscribe(t)

    async def pub0(self, k, t, payload):
        c = self.c
        for _ in range(k):
            c.publish(t, payload)
            await asyncio.sleep_ms(0)

    async def pub1(self, k, t, payload):
        c = self.c
        for _ in range(k):
            c.publish(t, payload, qos=1)

    async def roundtrip(self, k, t, payload):
        c = self.c
        for _ in range(k):
            n = self.count
            c.publish(t, payload)
            while self.count == n:
                c.wait_msg()

    async def recv(self, k, t, payload):
        c = self.c
        for _ in range(k):
            n = self.count
            while self.count == n:
                c.wait_msg()

    async def close(self):
        self.c.disconnect()


# ---- an in-RAM broker for one client (mode "loop") -------------------------

class LoopBroker:
    """Answers CONNECT, SUBSCRIBE, PINGREQ; PUBLISH QoS 1 gets its PUBACK; a
    QoS 0 PUBLISH to the subscribed topic comes straight back.  Each write()
    must be whole packets (ours and the wire write one packet per write)."""
    q = bytearray(2048)
    qv = memoryview(q)
    r = w = 0
    topic = None

    @classmethod
    def reset(cls):
        cls.r = cls.w = 0
        cls.topic = None

    @classmethod
    def put(cls, data, n):
        w = cls.w
        cls.q[w:w + n] = data if len(data) == n else memoryview(data)[:n]
        cls.w = w + n

    @classmethod
    def take(cls, buf, n):
        avail = cls.w - cls.r
        if not avail:
            return None
        k = n if n < avail else avail
        r = cls.r
        buf[0:k] = cls.qv[r:r + k]
        r += k
        if r == cls.w:
            cls.r = cls.w = 0
        else:
            cls.r = r
        return k

    @classmethod
    def got(cls, buf, n):
        t = buf[0] & 0xF0
        if t == 0x30:
            if buf[0] & 6:
                tl = buf[2] << 8 | buf[3]
                cls.put(b"\x40\x02", 2)
                cls.put(memoryview(buf)[4 + tl:6 + tl], 2)
            elif cls.topic is not None and buf[2] == 0 and buf[3] == len(cls.topic):
                cls.put(buf, n)     # the bench's two topics differ in length
        elif t == 0x10:
            cls.put(b"\x20\x02\x00\x00", 4)
        elif t == 0x80:
            tl = buf[4] << 8 | buf[5]
            cls.topic = bytes(memoryview(buf)[6:6 + tl])
            cls.put(b"\x90\x03", 2)
            cls.put(memoryview(buf)[2:4], 2)
            cls.put(b"\x00", 1)
        elif t == 0xC0:
            cls.put(b"\xd0\x00", 2)


class LoopSock:
    """The client's transport contract (sync flavour) over LoopBroker."""

    @staticmethod
    def getaddrinfo(host, port, *a):
        return [(2, 1, 6, "", (host, port))]

    def connect(self, addr):
        LoopBroker.reset()

    def setblocking(self, flag):
        pass

    def readinto(self, buf, n):
        return LoopBroker.take(buf, n)

    def write(self, buf, n):
        LoopBroker.got(buf, n)
        return n

    def close(self):
        pass


# ---- measuring ---------------------------------------------------------------

POLL_MS = P.get("poll_ms", 1)
RAW = [] if P.get("raw") else None


class Modem:
    at_commands = uart_tx = uart_rx = 0


class InstantSock:
    """A sync socket whose bytes are always there: readinto says n bytes came
    (copies nothing), write takes everything.  For the adapter's own cost."""

    def readinto(self, buf, n):
        return n

    def write(self, buf, n):
        return n


async def adapter_cost(p):
    """cycles and heap of SocketAdapter.read(n)/write() over the inner socket's
    readinto()/write() called directly, per call (a sync loop, k calls)."""
    inner = InstantSock()
    a = SocketAdapter(inner)
    buf = bytearray(64)
    pkt = bytes(88)
    m = Modem()
    k = p.get("n", 100)

    async def raw_read(k, t, payload):
        for _ in range(k):
            inner.readinto(buf, 2)

    async def ad_read(k, t, payload):
        for _ in range(k):
            a.read(2)

    async def raw_write(k, t, payload):
        for _ in range(k):
            inner.write(pkt, 88)

    async def ad_write(k, t, payload):
        for _ in range(k):
            a.write(pkt, 88)
    out = {}
    for name, fn in (("raw_read", raw_read), ("adapter_read", ad_read),
                     ("raw_write", raw_write), ("adapter_write", ad_write)):
        out[name] = await measure(fn, k, k, m, None, None)
    out["read"] = {x: out["adapter_read"][x] - out["raw_read"][x] for x in ("heap", "cycles", "us")}
    out["write"] = {x: out["adapter_write"][x] - out["raw_write"][x] for x in ("heap", "cycles", "us")}
    return out


async def _empty(k, t, payload):
    pass


async def window(fn, k, m, topic, payload):
    gc.collect()
    gc.disable()
    a0, tx0, rx0 = m.at_commands, m.uart_tx, m.uart_rx
    h0 = gc.mem_alloc()
    c0 = cyc()
    t0 = ticks_us()
    await fn(k, topic, payload)
    t = ticks_diff(ticks_us(), t0)
    c = (cyc() - c0) & 0xFFFFFFFF
    h = gc.mem_alloc() - h0
    gc.enable()
    return h, t, c, m.at_commands - a0, m.uart_tx - tx0, m.uart_rx - rx0


async def measure(fn, n, chunk, m, t, payload):
    """Totals over n operations, in windows of `chunk`, minus empty windows."""
    tot = [0] * 6
    base = [0] * 6
    done = 0
    ad = [-SocketAdapter.reads, -SocketAdapter.writes]
    while done < n:
        k = min(chunk, n - done)
        b = await window(_empty, k, m, t, payload)
        w = await window(fn, k, m, t, payload)
        for i in range(6):
            tot[i] += w[i]
            base[i] += b[i]
        if RAW is not None:
            RAW.append((b, w))
        done += k
    h, t, c, at, tx, rx = [tot[i] - base[i] for i in range(6)]
    ad[0] += SocketAdapter.reads
    ad[1] += SocketAdapter.writes
    return {"n": n, "heap": h / n, "us": t / n, "cycles": c / n, "at_commands": at / n,
            "uart_tx": tx / n, "uart_rx": rx / n, "uart_bytes": (tx + rx) / n,
            "adapter_reads": ad[0] / n, "adapter_writes": ad[1] / n}


async def main():
    p = P
    n = p.get("n", 20)
    chunk = p.get("chunk", 20)
    out = {"client": CLIENT, "mode": p["mode"], "flavour": p.get("flavour"), "cycles_counter": HAVE_CYC}
    if p["mode"] == "adapter":
        out.update(await adapter_cost(p))
        return out
    if p["mode"] == "modem":
        from sim800l import SIM800L
        import board
        m = SIM800L(board.modem_uart(), apn="internet")
        if ASYNC:
            await m.start()
        else:
            m.start_blocking()
        sock_cls = m.socket_class(async_=ASYNC)
        async_sock = ASYNC
        if p.get("rtc"):                # bench/tls.py: certificates are checked against the clock
            machine.RTC().datetime(tuple(p["rtc"]))
    else:
        m = Modem()
        sock_cls, async_sock = LoopSock, False
        if CLIENT == "umqtt":
            raise ValueError("umqtt: modem mode only")
    c = {"ours": Ours, "wire": Wire, "umqtt": Umqtt}[CLIENT]()
    gc.collect()
    h0 = gc.mem_alloc()
    await c.open(sock_cls, async_sock, p)
    own, sink = p["topic"].encode(), (p["topic"] + "/sink").encode()
    payload = bytes(range(64))
    await c.subscribe(own)
    gc.collect()
    out["heap_in_use_after_connect"] = gc.mem_alloc() - h0
    warm = p.get("warm", 3)

    for name, fn, t in (("pub0", c.pub0, sink), ("pub1", c.pub1, sink), ("roundtrip", c.roundtrip, own)):
        if name in p.get("skip", ()):
            continue
        await fn(warm, t, payload)
        out[name] = await measure(fn, n if name != "pub1" else p.get("n1", n), chunk, m, t, payload)
    if "roundtrip" in out and "pub0" in out:
        rt, p0 = out["roundtrip"], out["pub0"]
        out["recv_derived"] = {k: rt[k] - p0[k] for k in rt}
        out["recv_derived"]["n"] = rt["n"]
    if p.get("feed") and "recv" not in p.get("skip", ()):
        # Messages from another client (bench/pico/pico.py publishes 64 B QoS 0
        # to this topic at a steady pace, slower than the board takes them):
        # each one received the client's documented way.  Heap, AT round trips
        # and UART bytes are per message; time and cycles include the wait
        # for the next one (the idle polls), so they are not the receive's.
        await c.subscribe(p["feed"].encode())
        await c.recv(1, None, None)
        out["recv"] = await measure(c.recv, p.get("nr", n), chunk, m, None, None)
    elif "recv_derived" in out:
        out["recv"] = dict(out["recv_derived"], derived=True)
    await c.close()
    if RAW is not None:
        out["raw_windows"] = RAW
    return out


print("RESULT " + json.dumps(asyncio.run(main())))

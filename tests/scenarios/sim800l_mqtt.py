# MQTT over the SIM800L driver, with hand-built packets (no client needed):
# scenario -> modules/sim800l.py -> UART (TCP) -> host simulator -> mosquitto.
# Runs under CPython and build/micropython; the test arms the simulator's faults.
import sys
import errno
import asyncio
from sim800l import SIM800L
from sim800l_uart import tcp_uart
from mpcompat import asleep_ms

try:
    from time import ticks_ms, ticks_diff, sleep_ms
except ImportError:
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        time.sleep(ms / 1000)


async def nap():
    if hasattr(asyncio, "sleep_ms"):
        await asyncio.sleep_ms(1)
    else:
        await asyncio.sleep(0.001)


def b2(n):
    return bytes([n >> 8, n & 255])


def connect_pkt(cid, keepalive=60):
    body = b"\x00\x04MQTT\x04\x02" + b2(keepalive) + b2(len(cid)) + cid
    return bytes([0x10, len(body)]) + body


def subscribe_pkt(pid, topic, qos=0):
    body = b2(pid) + b2(len(topic)) + topic + bytes([qos])
    return bytes([0x82, len(body)]) + body


def publish_pkt(topic, payload, qos=0, pid=0):
    body = b2(len(topic)) + topic + (b2(pid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1), len(body)]) + body


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def payload_for(i):
    return (b"%04d" % i) + b"." * 60          # 64 bytes, numbered


class Conn:
    """One MQTT connection over a modem socket, sync or async flavour."""

    def __init__(self, sock, is_async, deadline_ms):
        self.s, self.a, self.deadline_ms = sock, is_async, deadline_ms

    async def call(self, name, *args):
        r = getattr(self.s, name)(*args)
        if self.a and r is not None and type(r) is not int:   # readinto, write: a plain None
            # when nothing waits, a plain int when the bytes were at hand
            r = await r
        return r

    async def send(self, data):
        off = 0
        while off < len(data):
            n = await self.call("write", memoryview(data)[off:], len(data) - off)
            if n:
                off += n
            else:
                await nap()

    async def read_exact(self, n):
        buf = bytearray(n)
        got, t0 = 0, ticks_ms()
        while got < n:
            r = await self.call("readinto", memoryview(buf)[got:], n - got)
            if r == 0:
                raise OSError(errno.ECONNABORTED)      # broker closed the stream
            if r:
                got += r
                continue
            if ticks_diff(ticks_ms(), t0) > self.deadline_ms:
                raise OSError(errno.ETIMEDOUT)
            if self.a:
                await nap()
            else:
                sleep_ms(1)
        return bytes(buf)

    async def packet(self):
        head = await self.read_exact(1)
        mult, length = 1, 0
        while True:
            b = (await self.read_exact(1))[0]
            length += (b & 127) * mult
            mult *= 128
            if not b & 128:
                break
        return head[0], (await self.read_exact(length)) if length else b""


async def sent(modem):
    """Until the modem confirmed what the socket took (DATA ACCEPT): a
    non-blocking async write returns once its AT+CIPSEND is under way."""
    while modem._op:
        await nap()


async def open_mqtt(modem, p, is_async, cid):
    S = modem.socket_class(async_=is_async)
    info = S.getaddrinfo(p["host"], p["port"])
    if is_async:
        info = await info
    s = S()
    c = Conn(s, is_async, p.get("read_ms", 5000))
    await c.call("connect", info[0][-1])
    s.setblocking(False)
    await c.send(connect_pkt(cid))
    kind, body = await c.packet()
    assert kind == 0x20 and body == b"\x00\x00", (kind, body)
    return c


# Deadline profiles, by name: build/micropython dies on an argv string of 256
# bytes or more, so the tests keep their JSON params short.
FAST = {"at": 600, "sync": 3000, "send": 1500, "rx": 1500, "cipstart": 3000, "reg": 3000}
PROFILES = {
    "fast": FAST,
    "fast_sync": dict(FAST, sync=1000),
    "soak": {"at": 300, "send": 400, "rx": 400, "sync": 1500, "cipstart": 1500, "reg": 1500,
             "ciicr": 1500, "cipshut": 1500, "sim": 1500},
}


def timeouts(p):
    t = p.get("timeouts")
    return PROFILES[t] if isinstance(t, str) else t


async def make_modem(p):
    uart = tcp_uart("127.0.0.1", p["uart_port"])
    return SIM800L(uart, apn=p.get("apn", "internet"), timeouts=timeouts(p),
                   rx_poll_ms=p.get("rx_poll_ms", 1000), max_send=p.get("max_send", 1460))


async def started_modem(p):
    """make_modem(), brought up the way p["flavour"] says."""
    modem = await make_modem(p)
    if p["flavour"] == "async":
        await modem.start()
    else:
        modem.start_blocking()
    return modem


async def session(p):
    """The happy path: CONNECT, SUBSCRIBE, PUBLISH QoS0/1 to our own topic, PING."""
    is_async = p["flavour"] == "async"
    modem = await started_modem(p)
    topic = p["topic"].encode()
    c = await open_mqtt(modem, p, is_async, b"sim-" + p["flavour"].encode())
    out = {"ip": modem.ip, "rssi": modem.rssi}
    await c.send(subscribe_pkt(1, topic, 1))
    out["suback"] = await c.packet()

    # One 64-byte QoS0 publish: what it costs on the UART, both ways.
    pkt = publish_pkt(topic, payload_for(0))
    s0 = modem.stats()
    await c.send(pkt)
    await sent(modem)
    s1 = modem.stats()
    out["echo0"] = await c.packet()
    s2 = modem.stats()
    out["publish_cost"] = {k: s1[k] - s0[k] for k in ("at_commands", "uart_tx", "uart_rx")}
    out["receive_cost"] = {k: s2[k] - s1[k] for k in ("at_commands", "uart_tx", "uart_rx")}
    out["publish_len"] = len(pkt)

    await c.send(publish_pkt(topic, payload_for(1), qos=1, pid=7))
    got = [await c.packet(), await c.packet()]          # PUBACK and our message, either order
    out["qos1"] = sorted(got)
    await c.send(PINGREQ)
    out["ping"] = await c.packet()
    await c.send(DISCONNECT)
    await c.call("close")
    out["stats"] = modem.stats()
    return out


def exists(path):
    import os
    try:
        os.stat(path)
        return True
    except OSError:
        return False


async def resilient(p):
    """Publish `count` numbered messages to our own subscription through faults.

    Any OSError ends the connection; we reconnect (the driver brings the modem
    back up as needed) and publish the same number again.  Returns what was
    received, in order, and which errnos surfaced.  A payload that differs
    from what was sent would be a corrupted stream and fails the scenario."""
    is_async = p["flavour"] == "async"
    modem = await make_modem(p)
    t_start = ticks_ms()
    errors, received, c, i, log = [], [], None, 0, []
    topic = p["topic"].encode()
    limit = p.get("seconds", 20) * 1000
    starts = 0
    poison = p.get("poison_at", -1)
    stop_file = p.get("stop_file")
    while i < p["count"]:
        if ticks_diff(ticks_ms(), t_start) > limit:
            break
        if stop_file and c is not None and i % 4 == 0 and exists(stop_file):
            break
        try:
            if c is None:
                if modem._needs_start:
                    starts += 1
                    if is_async:
                        await modem.start()
                    else:
                        modem.start_blocking()
                # A client id of its own (the topic is unique): the soak runs both
                # interpreters side by side, and a shared id makes the broker
                # drop one session whenever the other connects.
                c = await open_mqtt(modem, p, is_async, b"res-" + topic[-10:])
                await c.send(subscribe_pkt(1, topic, 0))
                while (await c.packet())[0] != 0x90:
                    pass
            if i == poison:              # a second CONNECT: the broker hangs up on us
                poison = -1
                await c.send(connect_pkt(b"again"))
                while True:
                    await c.packet()
            want = publish_pkt(topic, payload_for(i))
            await c.send(want)
            while True:
                kind, body = await c.packet()
                if kind & 0xF0 != 0x30:
                    continue
                n = int(str(body[2 + len(topic):2 + len(topic) + 4], "ascii"))
                if n == i:
                    assert bytes([kind, len(body)]) + body == want, "corrupted: %r" % body
                    received.append(i)
                    i += 1
                    break
                assert n < i, "from the future: %d" % n    # a late copy of an earlier one
        except OSError as e:
            errors.append(e.args[0])
            if p.get("log"):
                log.append((ticks_diff(ticks_ms(), t_start), i, repr(e)))
            if c is not None:
                try:
                    await c.call("close")
                except OSError:
                    pass
            c = None
    if c is not None:
        try:                             # a last fault may still hit the goodbye
            await c.send(DISCONNECT)
            await c.call("close")
        except OSError as e:
            errors.append(e.args[0])
    return {"received": received, "errors": errors, "starts": starts, "log": log,
            "ms": ticks_diff(ticks_ms(), t_start), "stats": modem.stats()}


async def parser_heap(p):
    """The parser on a receive burst allocates nothing (MicroPython: heap locked)."""
    class FakeUart:
        def __init__(self, data):
            self.data, self.pos = data, 0

        def readinto(self, buf, n):
            k = min(n, len(self.data) - self.pos)
            if not k:
                return None
            for j in range(k):
                buf[j] = self.data[self.pos + j]
            self.pos += k
            return k
    block = b"x" * 200
    stream = (b"\r\n+CIPRXGET: 1\r\n\r\nRING\r\n\r\n+CIPRXGET: 2,200,0\r\n" + block +
              b"\r\nOK\r\n\r\nDATA ACCEPT:64\r\n\r\nUNDER-VOLTAGE WARNNING\r\n\r\n> ")
    m = SIM800L(FakeUart(stream))
    m._rxhead = m._rxtail = 0
    out = bytearray(256)
    m._linked = True
    m._fetching = True                  # as AT+CIPRXGET=2 does: the parser takes one header
    m._pump()                           # warm up: first calls may intern things
    m._uart.pos = 0
    m.warnings = m.rings = 0
    m._rxhead = m._rxtail = 0
    m._seen = 0
    m._fetching = True
    locked = False
    if sys.implementation.name == "micropython":
        import micropython
        micropython.heap_lock()
        locked = True
    try:
        m._pump()
        n = m._take(out, 256)
        r = m._rx_ready(out, 256)
    finally:
        if locked:
            micropython.heap_unlock()
    return {"n": n, "ok": bytes(out[:n]) == block, "seen": m._seen, "r": r,
            "warnings": m.warnings, "rings": m.rings, "locked": locked}


async def subscribed_link(p, cid):
    """A modem brought up, an MQTT session on it subscribed to p["topic"]:
    (modem, link, topic)."""
    is_async = p["flavour"] == "async"
    modem = await started_modem(p)
    topic = p["topic"].encode()
    c = await open_mqtt(modem, p, is_async, cid + p["flavour"].encode())
    await c.send(subscribe_pkt(1, topic, 0))
    while (await c.packet())[0] != 0x90:
        pass
    return modem, c, topic


async def socket_heap(p):
    """Heap per 64-byte QoS 0 publish + receive round through the modem
    socket alone (a hand-built packet, preallocated buffers), and rounds
    run with the heap locked (MicroPython: the driver allocates nothing)."""
    import gc
    is_async = p["flavour"] == "async"
    modem, c, topic = await subscribed_link(p, b"sh-")
    s = c.s
    pkt = publish_pkt(topic, payload_for(0))
    n = len(pkt)
    buf = bytearray(n)
    mp = sys.implementation.name == "micropython"
    if mp:
        import micropython
    got = [0, None]                      # rounds done, a MemoryError's traceback

    async def rounds(k, lock):
        # Plain loops (no coroutine per round): with the heap locked, only
        # the driver (and asyncio.sleep_ms(0)) run here.
        i = 0
        while i < k:
            if lock:
                micropython.heap_lock()
            try:
                while True:              # the packet is taken whole (< max_send) or not yet
                    w = s.write(pkt, n)
                    if w is not None:
                        break
                    await asleep_ms(0)
                while True:              # and comes back whole: one AT+CIPRXGET=2
                    r = s.readinto(buf, n)
                    if r is not None:
                        break
                    await asleep_ms(0)
            except MemoryError as e:
                if lock:
                    micropython.heap_unlock()
                got[1] = e
                return
            if lock:
                micropython.heap_unlock()
            if w != n or r != n:
                raise AssertionError((w, r))
            i += 1
            got[0] = i
    await rounds(5, False)
    out = {"heap_per_round": None, "locked_rounds": 0, "error": None}
    if mp:
        count = p.get("rounds", 30)
        co = rounds(count, False)        # (the coroutine object: not part of a round)
        gc.collect()
        gc.disable()
        a0 = gc.mem_alloc()
        await co
        out["heap_total"] = gc.mem_alloc() - a0
        out["heap_per_round"] = out["heap_total"] // count
        gc.enable()
        await rounds(p.get("locked", 10), True)
        out["locked_rounds"] = got[0]
        if is_async:                     # the pump task lived through it (a MemoryError
            out["pump_alive"] = not modem._task.done()   # there would end it quietly)
        if got[1] is not None:
            import io
            f = io.StringIO()
            sys.print_exception(got[1], f)
            out["error"] = f.getvalue()
    await c.send(DISCONNECT)
    await c.call("close")
    return out


async def big_write(p):
    """One write bigger than max_send: taken whole (all or nothing), sent as
    several AT+CIPSENDs, echoed intact."""
    modem, c, topic = await subscribed_link(p, b"bw-")
    pkt = publish_pkt(topic, payload_for(3))
    s0 = modem.stats()
    while True:
        w = await c.call("write", pkt, len(pkt))
        if w is not None:
            break
        await nap()
    await sent(modem)
    s1 = modem.stats()
    echo = await c.packet()
    await c.send(DISCONNECT)
    await c.call("close")
    return {"taken": w, "len": len(pkt), "sends": s1["at_commands"] - s0["at_commands"],
            "intact": bytes([echo[0], len(echo[1])]) + echo[1] == pkt}

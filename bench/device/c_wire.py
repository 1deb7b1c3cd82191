# The wire's limit: hand-built MQTT packets, each written with one write()
# from one prebuilt buffer, replies read with readinto() into a fixed buffer
# on a non-blocking socket, polled in a tight loop (a blocking read would add
# the kernel's wake-up latency, which varies from run to run).  No client
# library, no event loop: what the socket, the VM and the broker cost.
import sys

MICROPYTHON = sys.implementation.name == "micropython"
if MICROPYTHON:
    from time import ticks_us, ticks_diff
else:
    import time

    def ticks_us():
        return time.perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b

MODULES = ()


def topic(t):
    return t.encode()


def source():
    return "hand-built packets"


def _pub(t, payload, qos):
    body = bytes((len(t) >> 8, len(t) & 255)) + t + (b"\x00\x01" if qos else b"") + payload
    assert len(body) < 128
    return bytearray((0x30 | (qos << 1), len(body))) + body


class Wire:
    def __init__(self, port):
        import socket
        s = socket.socket()
        s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        self.s = s
        s.setblocking(False)
        self.write = s.write if MICROPYTHON else self._cp_write
        self.readinto = s.readinto if MICROPYTHON else self._cp_readinto
        self.buf = bytearray(256)          # one packet body
        self.mv = memoryview(self.buf)
        self.hdr = bytearray(1)
        self.pkts = {}                     # (topic, qos) -> prebuilt PUBLISH
        self.pid = 0

    def _cp_readinto(self, buf, n):
        try:
            return self.s.recv_into(buf, n)
        except BlockingIOError:
            return None

    def _cp_write(self, buf):
        while True:
            try:
                return self.s.send(buf)
            except BlockingIOError:
                pass

    def read_packet(self):
        """The next packet: its first byte; the body in self.buf[0:self.rem]."""
        s, h = self, self.hdr
        while not s.readinto(h, 1):
            pass
        first = h[0]
        rem, shift = 0, 0
        while True:
            while not s.readinto(h, 1):
                pass
            rem |= (h[0] & 127) << shift
            if not h[0] & 128:
                break
            shift += 7
        got = 0
        while got < rem:
            r = s.readinto(self.mv[got:] if got else self.buf, rem - got)
            if r:
                got += r
        self.rem = rem
        return first

    def finish(self, pkt, done):
        """The rest of a packet the socket took only part of (its buffer was full)."""
        mv = memoryview(pkt)
        done = done or 0
        while done < len(pkt):
            done += self.write(mv[done:]) or 0

    def pkt(self, t, payload, qos=0):
        k = (t, qos)
        if k not in self.pkts:
            self.pkts[k] = _pub(t, payload, qos)
        return self.pkts[k]


async def connect(p):
    w = Wire(p["port"])
    cid = b"bench-wire"
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + bytes((0, len(cid))) + cid
    w.write(bytes((0x10, len(body))) + body)
    assert w.read_packet() == 0x20 and w.buf[1] == 0
    return w


async def subscribe(w, t):
    body = b"\x00\x01" + bytes((len(t) >> 8, len(t) & 255)) + t + b"\x00"
    w.write(bytes((0x82, len(body))) + body)
    assert w.read_packet() == 0x90


async def close(w):
    w.write(b"\xe0\x00")
    w.s.close()


async def pub0(w, n, t, payload):
    pkt = w.pkt(t, payload)
    write, L = w.write, len(pkt)
    for _ in range(n):
        k = write(pkt)
        if k != L:
            w.finish(pkt, k)


async def pub1(w, n, t, payload, times):
    pkt = w.pkt(t, payload, 1)
    at = 4 + len(t)                        # packet id bytes
    write, L = w.write, len(pkt)
    for i in range(n):
        t0 = ticks_us()
        w.pid = w.pid % 65535 + 1
        pkt[at] = w.pid >> 8
        pkt[at + 1] = w.pid & 255
        k = write(pkt)
        if k != L:
            w.finish(pkt, k)
        while w.read_packet() != 0x40:
            pass
        times[i] = ticks_diff(ticks_us(), t0)


async def recv(w, n, feeder):
    for _ in range(n):
        feeder.send()
        while w.read_packet() & 0xF0 != 0x30:
            pass


async def roundtrip(w, n, t, payload, times):
    pkt = w.pkt(t, payload)
    write, L = w.write, len(pkt)
    for i in range(n):
        t0 = ticks_us()
        k = write(pkt)
        if k != L:
            w.finish(pkt, k)
        while w.read_packet() & 0xF0 != 0x30:
            pass
        times[i] = ticks_diff(ticks_us(), t0)

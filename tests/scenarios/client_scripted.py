# Scenarios over a scripted in-process transport (no broker): the bytes the
# "server" sends are released by the scenario itself, one piece at a time, so
# interleavings a real broker makes only by chance happen every run.
from async_mqtt_client import AsyncMQTTClient
from mpcompat import asyncio

CONNACK = b"\x20\x02\x00\x00"


def publish_packet(topic, payload, qos=0, pid=1):
    body = bytes((len(topic) >> 8, len(topic) & 0xFF)) + topic
    if qos:
        body += bytes((pid >> 8, pid & 0xFF))
    body += payload
    n = len(body)
    rl = b""
    while True:                                # remaining length, 7 bits a byte
        b = n & 0x7F
        n >>= 7
        rl += bytes((b | 0x80 if n else b,))
        if not n:
            break
    return bytes((0x30 | (qos << 1),)) + rl + body


class ScriptedServer:
    """What the client reads: pieces queued by the scenario; what it wrote: kept."""

    def __init__(self):
        self.pieces = []
        self.written = []

    def give(self, data):
        self.pieces.append(bytes(data))

    def socket_class(self):
        server = self

        class Sock:
            @staticmethod
            def getaddrinfo(host, port):
                return [(0, 0, 0, "", (host, port))]

            def connect(self, addr):
                pass

            def setblocking(self, flag):
                pass

            def readinto(self, buf, n):
                if not server.pieces:
                    return None
                piece = server.pieces[0]
                k = min(n, len(piece))
                buf[:k] = piece[:k]
                if k == len(piece):
                    server.pieces.pop(0)
                else:
                    server.pieces[0] = piece[k:]
                return k

            def write(self, buf, n):
                data = bytes(buf[:n])
                server.written.append(data)
                if data[0] == 0x10:            # CONNECT: accept
                    server.give(CONNACK)
                return n

            def close(self):
                pass
        return Sock


async def _until(cond, ms=2000):
    for _ in range(ms):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met within %d ms" % ms)


async def backlog_split_while_delivering(p):
    """A message split across reads lands in the backlog while another task
    takes the backlog's oldest message: the split one arrives intact.

    Task P waits for a PUBACK; the server sends B (whole), then the first
    half of C, while the app holds A.  The app then reads B out of the
    backlog, and only after that the rest of C arrives, then the PUBACK.
    """
    server = ScriptedServer()
    buf = bytearray(p.get("buf", 64))
    client = AsyncMQTTClient({"server": "scripted", "client_id": b"race", "timeout_ms": 3000,
                              "backlog": 256},
                             memoryview(buf))
    await client.connect(sock_cls=server.socket_class())
    a = publish_packet(b"t/a", b"A" * 10)
    b = publish_packet(b"t/b", b"B" * 10)
    c = publish_packet(b"t/c", bytes(range(40)))
    server.give(a)
    got = []
    while not await client.check_msg():
        await asyncio.sleep(0)
    got.append((bytes(client.topic), bytes(client.msg)))        # A held, not marked read

    server.give(b)
    server.give(c[:len(c) // 2])
    publisher = asyncio.create_task(client.publish(b"t/x", b"y", qos=1))
    await _until(lambda: any(w[0] & 0xF0 == 0x30 for w in server.written))
    await asyncio.sleep(0.05)                    # B in the backlog, C half read
    client.mark_read()
    assert await client.check_msg()              # B, out of the backlog
    got.append((bytes(client.topic), bytes(client.msg)))
    client.mark_read()
    server.give(c[len(c) // 2:])
    server.give(b"\x40\x02\x00\x01")             # PUBACK for pid 1
    acked = await publisher
    while not await client.check_msg():
        await asyncio.sleep(0)
    got.append((bytes(client.topic), bytes(client.msg)))
    client.mark_read()
    for _ in range(20):                          # nothing else may come out
        if await client.check_msg():
            got.append((bytes(client.topic), bytes(client.msg)))
            client.mark_read()
        await asyncio.sleep(0)
    return [acked, got]

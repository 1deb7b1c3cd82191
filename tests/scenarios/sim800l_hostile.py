# A hostile modem: the SIM800L driver against junk replies, unknown URC
# streams, CLOSED mid-send and floods of line noise (tests/test_sim800l_hostile.py
# arms the simulator).  Runs under CPython and build/micropython.
#
# What is checked everywhere here: only OSError with an errno leaves the
# driver; no AT command runs past its deadline (measured from the moment the
# command was sent, by `Watched`); other tasks keep running (`Heartbeat`).
from heartbeat import Heartbeat
import errno

from mpcompat import asleep_ms, ticks_diff, ticks_ms
from sim800l import SIM800L
from sim800l_uart import tcp_uart
from sim800l_mqtt import (PINGREQ, DISCONNECT, connect_pkt, open_mqtt, payload_for, publish_pkt,
                          subscribe_pkt, timeouts)


class Watched(SIM800L):
    """The driver, watched from outside its logic: for every AT command, how
    long after it was sent its wait was still going, against its deadline;
    and the most bytes one pump of the parser took."""

    def __init__(self, *a, **kw):
        SIM800L.__init__(self, *a, **kw)
        self.sent_at = ticks_ms()
        self.cmd = b""
        self.worst = -1000000            # ms past a deadline (negative: within)
        self.worst_cmd = ""
        self.pump_max = 0

    def _send(self, cmd, n, want=None, timeout=None):
        self.sent_at = ticks_ms()
        self.cmd = bytes(cmd[:n])
        SIM800L._send(self, cmd, n, want, timeout)

    def _waited(self, mask, t0, timeout):
        try:
            return SIM800L._waited(self, mask, t0, timeout)
        finally:
            over = ticks_diff(ticks_ms(), self.sent_at) - timeout
            if over > self.worst:
                self.worst = over
                self.worst_cmd = str(self.cmd.strip(), "ascii")

    def _pump(self):
        before = self.uart_rx
        SIM800L._pump(self)
        if self.uart_rx - before > self.pump_max:
            self.pump_max = self.uart_rx - before


def errno_of(e):
    """The errno an OSError carries, else None (a broken transport contract)."""
    if isinstance(e, OSError) and e.args and isinstance(e.args[0], int):
        return e.args[0]
    return None


def kind(e):
    """'OSError' for any OSError (CPython raises subclasses like TimeoutError
    for OSError(ETIMEDOUT, text)), else the exception's type name."""
    return "OSError" if isinstance(e, OSError) else type(e).__name__


def watched_modem(p):
    return Watched(tcp_uart("127.0.0.1", p["uart_port"]), apn="internet", timeouts=timeouts(p),
                   rx_poll_ms=p.get("rx_poll_ms", 1000))


def watch_report(modem, beat, out):
    out.update(overrun=modem.worst, overrun_cmd=modem.worst_cmd, pump_max=modem.pump_max,
               gap=beat.gap, beats=beat.beats, stats=modem.stats(), ip=modem.ip, rssi=modem.rssi)
    return out


async def bring_up(p):
    """start() (async) until it succeeds, at most `tries` times, then an MQTT
    CONNECT and a PINGREQ through the link.  Each attempt: [exception type
    or "ok", errno, ms]."""
    modem = watched_modem(p)
    beat = Heartbeat(10)
    attempts, out = [], {}
    for _ in range(p.get("tries", 3)):
        t0 = ticks_ms()
        try:
            await modem.start()
            attempts.append(["ok", 0, ticks_diff(ticks_ms(), t0)])
            break
        except Exception as e:  # noqa: B902 -- anything but OSError is the bug we look for
            attempts.append([kind(e), errno_of(e), ticks_diff(ticks_ms(), t0)])
    out["attempts"] = attempts
    if attempts[-1][0] == "ok" and p.get("connect"):
        try:
            c = await open_mqtt(modem, p, True, b"hostile")
            await c.send(PINGREQ)
            out["ping"] = await c.packet()
            await c.send(DISCONNECT)
            await c.call("close")
        except Exception as e:  # noqa: B902
            out["connect_error"] = [kind(e), errno_of(e)]
    beat.stop()
    return watch_report(modem, beat, out)


class Firehose:
    """A UART whose modem never stops talking: lines of non-UTF-8 noise, as
    fast as they are read, for `ms` milliseconds; it takes what is written."""
    NOISE = b"\xff\xfe\x80" + b"~" * 59 + b"\r\n"        # 64 bytes, one junk line

    def __init__(self, ms):
        self.t0, self.ms, self.sent = ticks_ms(), ms, 0

    def readinto(self, buf, n):
        if ticks_diff(ticks_ms(), self.t0) >= self.ms:
            return None
        n = min(n, 64)
        buf[:n] = self.NOISE[:n]
        self.sent += n
        return n

    def write(self, buf, off=0, n=None):
        return len(buf) - off if n is None else n


async def firehose(p):
    """Bring-up against a UART flooded with noise faster than it is parsed: the
    sync phase must end at its deadline (ETIMEDOUT), not when the noise stops,
    and a heartbeat task in the same loop must keep running (async flavour)."""
    uart = Firehose(p["flood_ms"])
    modem = Watched(uart, timeouts=timeouts(p))
    beat = Heartbeat(10)
    t0 = ticks_ms()
    try:
        if p["flavour"] == "async":
            await modem.start()
        else:
            modem.start_blocking()
        exc = ["ok", 0]
    except Exception as e:  # noqa: B902
        exc = [kind(e), errno_of(e)]
    ms = ticks_diff(ticks_ms(), t0)
    beat.stop()
    return watch_report(modem, beat, {"exc": exc, "ms": ms, "noise": uart.sent})


# ---- the soak --------------------------------------------------------------
class Escaped(Exception):
    """The driver raised something other than OSError with an errno."""


class Stall(Exception):
    """No packet within read_ms (the scenario's own limit, not the driver's)."""


class Corrupted(Exception):
    """A packet that is not what was sent."""


class Link:
    """One MQTT connection over the async modem socket; every driver call is
    guarded (what escapes is recorded) and timed (longest call per name)."""

    def __init__(self, soak, sock):
        self.soak, self.s = soak, sock

    async def call(self, name, *args):
        soak, t0 = self.soak, ticks_ms()
        try:
            r = getattr(self.s, name)(*args)
            if r is not None and type(r) is not int:   # connect, close: awaitables;
                r = await r                  # readinto and write: an int or None
            return r
        except OSError as e:
            if errno_of(e) is None:
                soak.escape("OSError without errno from %s: %r" % (name, e))
            raise
        except Exception as e:  # noqa: B902
            soak.escape("%s from %s: %r" % (type(e).__name__, name, e))
        finally:
            ms = ticks_diff(ticks_ms(), t0)
            if ms > soak.longest.get(name, 0):
                soak.longest[name] = ms

    async def send(self, data):
        off = 0
        while off < len(data):
            n = await self.call("write", memoryview(data)[off:], len(data) - off)
            off += n or 0
            if not n:
                await asleep_ms(1)

    async def read_exact(self, n):
        buf, got, t0 = bytearray(n), 0, ticks_ms()
        while got < n:
            r = await self.call("readinto", memoryview(buf)[got:], n - got)
            if r == 0:
                raise OSError(errno.ECONNABORTED)      # end of stream
            if r:
                got += r
            elif ticks_diff(ticks_ms(), t0) > self.soak.read_ms:
                raise Stall()
            else:
                await asleep_ms(1)
        return bytes(buf)

    async def packet(self):
        head = (await self.read_exact(2))
        if head[0] not in (0x20, 0x30, 0x90) or head[1] & 128 or head[1] > 120:
            raise Corrupted("packet head %r" % head)   # our packets are small and few kinds
        return head[0], (await self.read_exact(head[1])) if head[1] else b""


class Soak:
    def __init__(self, p):
        self.p, self.read_ms = p, p.get("read_ms", 3000)
        self.escaped, self.corrupted, self.errors, self.received = [], [], [], []
        self.longest, self.stalls, self.starts = {}, 0, 0
        self.log = []                    # (ms, message number, error): the first 400

    def escape(self, what):
        self.escaped.append(what)
        raise Escaped(what)

    async def open(self, modem):
        S = modem.socket_class(async_=True)
        info = await S.getaddrinfo(self.p["host"], self.p["port"])
        link = Link(self, S())
        await link.call("connect", info[0][-1])
        link.s.setblocking(False)        # as the client does: write answers an int or None
        await link.send(connect_pkt(b"hs-" + self.topic[-10:]))    # unique: soaks run side by side
        kind, body = await link.packet()
        if (kind, body) != (0x20, b"\x00\x00"):
            raise Corrupted("CONNACK %r" % ((kind, body),))
        await link.send(subscribe_pkt(1, self.topic, 0))
        while (await link.packet())[0] != 0x90:
            pass
        return link

    async def round(self, link, i):
        """Publish message i to our own subscription; wait for its copy."""
        want = publish_pkt(self.topic, payload_for(i))
        await link.send(want)
        while True:
            kind, body = await link.packet()
            if kind != 0x30:
                continue
            got = bytes([kind, len(body)]) + body
            num = body[2 + len(self.topic):6 + len(self.topic)]
            if body[2:2 + len(self.topic)] != self.topic or not digits(num):
                raise Corrupted(repr(got))
            n = int(num)
            if n == i:
                if got != want:
                    raise Corrupted(repr(got))
                return
            if n > i:
                raise Corrupted("from the future: %d" % n)    # a late copy is < i

    async def run(self, modem):
        p, i, link = self.p, 0, None
        self.topic = p["topic"].encode()
        t_start = ticks_ms()
        while i < p["count"] and ticks_diff(ticks_ms(), t_start) < p["seconds"] * 1000:
            if link is not None and i % 4 == 0 and exists(p.get("stop_file")):
                break
            try:
                if link is None:
                    if modem._needs_start:
                        self.starts += 1
                        await self.guard(modem.start())
                    link = await self.open(modem)
                await self.round(link, i)
                self.received.append(i)
                i += 1
                continue
            except OSError as e:
                self.errors.append(errno_of(e))
                if len(self.log) < 400:
                    self.log.append((ticks_diff(ticks_ms(), t_start), i, repr(e)))
            except Stall:
                self.stalls += 1
            except Corrupted as e:
                self.corrupted.append(str(e))
            except Escaped:
                pass
            if link is not None:
                try:
                    await link.call("close")
                except Exception:  # noqa: B902 -- already recorded by call()
                    pass
                link = None
        return ticks_diff(ticks_ms(), t_start)

    async def guard(self, aw):
        try:
            return await aw
        except OSError as e:
            if errno_of(e) is None:
                self.escape("OSError without errno from start: %r" % (e,))
            raise
        except Exception as e:  # noqa: B902
            self.escape("%s from start: %r" % (type(e).__name__, e))


def digits(b):
    return len(b) == 4 and all(48 <= x <= 57 for x in b)


def exists(path):
    if not path:
        return False
    import os
    try:
        os.stat(path)
        return True
    except OSError:
        return False


async def soak(p):
    """Numbered messages round trip through the modem while the simulator fires
    random faults, junk among them.  Returns what was received, the errnos,
    what escaped, what was corrupted, the worst overrun and heartbeat gap."""
    modem = watched_modem(p)
    beat = Heartbeat(10)
    s = Soak(p)
    ms = await s.run(modem)
    beat.stop()
    return watch_report(modem, beat, {
        "received": s.received, "errors": s.errors, "escaped": s.escaped,
        "corrupted": s.corrupted, "stalls": s.stalls, "starts": s.starts, "ms": ms,
        "longest": s.longest, "log": s.log})

# The SIM800L driver and the app runner against the second attack
# (tests/test_attacks_modem_runner.py asserts on what these return).
#
# Two ways in, as tests/scenarios/runner_hardening.py:
# - As a scenario (tests/scenarios/runner.py runs one `async def f(p)`):
#   the driver against `FakeModem`, a byte-exact scripted SIM800L on a fake
#   UART (no simulator, no broker): a UART that stalls or dribbles, a modem
#   that reboots in the middle of bring-up, a short +CIPRXGET: 2 block,
#   "+CPIN: NOT READY", +PDP: DEACT while DATA ACCEPT is awaited, a write
#   cancelled while its prompt is late.  CPython and build/micropython.
# - As the main script of a device process (`<interpreter>
#   tests/scenarios/attacks_modem_runner.py`, params in SCENARIO_PARAMS, cwd =
#   the device's filesystem): app_runner.run(), the whole main.py of a board;
#   with p["enospc"] (CPython) every file written raises ENOSPC (a full flash).
from heartbeat import Heartbeat
import sys

if sys.implementation.name == "micropython" and __name__ == "__main__":
    sys.path[:] = [sys.argv[0].rsplit("/", 1)[0], ".frozen"]

import errno
import json
import os

from mpcompat import asyncio, asleep_ms, ticks_diff, ticks_ms


# ---- a byte-exact modem on a fake UART ---------------------------------------

ESC = 0x1B


class FakeModem:
    """A scripted SIM800L behind a fake UART (readinto/write, as the driver
    wants them).  It answers the bring-up, AT+CIPSTART, AT+CIPSEND (the
    modem takes the <n> data bytes that follow the command's CR, whenever its
    "> " prompt comes; ESC among them cancels the send, per the manual, and
    nothing reaches the server) and AT+CIPRXGET=2 (data the server pushed).

    What a test looks at: `sent`, the server's byte stream (completed sends
    only); `data`, every byte the modem took as packet data (a command byte
    there is the corruption we look for); `commands`, every command line."""

    def __init__(self):
        self.inq = bytearray()           # modem -> driver
        self.cmd = bytearray()
        self.echo = False
        self.owed = 0                    # data bytes the current AT+CIPSEND still takes
        self.want = 0
        self.part = bytearray()          # this send's data so far
        self.sent = bytearray()          # what the server received
        self.data = bytearray()          # every byte taken as data
        self.escapes = 0                 # sends cancelled with ESC
        self.server_out = bytearray()    # what the server sends us
        self.commands = []
        self.on_cmd = None               # on_cmd(cmd) -> reply bytes, or None: the default
        self.rx_header = None            # rx_header(got, left) -> the +CIPRXGET: 2 header line
        self.accept = None               # accept(n) -> the reply after the data
        self.write_limit = None          # write_limit(n) -> bytes the UART takes now (None/0: none)

    def push(self, data):
        """The server sends data: the modem holds it and says so (URC)."""
        self.server_out += data
        self.inq += b"\r\n+CIPRXGET: 1\r\n"

    def readinto(self, buf, n=None):
        n = len(buf) if n is None else n
        k = min(n, len(self.inq))
        if not k:
            return None
        buf[:k] = self.inq[:k]
        self.inq = self.inq[k:]
        return k

    def write(self, buf, off=0, n=None):
        n = len(buf) - off if n is None else n
        if self.write_limit is not None:
            n = self.write_limit(n)
            if not n:
                return None
        for ch in bytes(buf[off:off + n]):
            self._byte(ch)
        return n

    def _byte(self, ch):
        if self.owed:
            if ch == ESC:                # cancel the send: nothing goes out
                self.owed = 0
                self.part = bytearray()
                self.escapes += 1
                self.inq += b"\r\nOK\r\n"
                return
            self.data.append(ch)
            self.part.append(ch)
            self.owed -= 1
            if not self.owed:
                self.sent += self.part
                self.part = bytearray()
                self.inq += self.accept(self.want) if self.accept else b"\r\nDATA ACCEPT:%d\r\n" % self.want
            return
        if ch == ESC:
            return                       # no send under way: ignored
        if self.echo:
            self.inq.append(ch)
        if ch == 10 and not self.cmd:
            return
        self.cmd.append(ch)
        if ch == 13:
            c = bytes(self.cmd).strip()
            self.cmd = bytearray()
            if not c:
                return
            self.commands.append(c)
            if c.startswith(b"AT+CIPSEND="):
                self.want = self.owed = int(c[11:])    # the data follows the CR
            r = self.on_cmd(c) if self.on_cmd else None
            if r is None:
                r = self.default(c)
            self.inq += r

    def default(self, c):
        if c == b"ATE0":
            self.echo = False
            return b"\r\nOK\r\n"
        if c.startswith(b"AT+CIPSEND="):
            return b"> "
        if c.startswith(b"AT+CIPRXGET=2,"):
            n = int(c[14:])
            got = bytes(self.server_out[:n])
            self.server_out = self.server_out[n:]
            left = len(self.server_out)
            h = self.rx_header(len(got), left) if self.rx_header else b"+CIPRXGET: 2,%d,%d" % (len(got), left)
            return b"\r\n" + h + b"\r\n" + got + b"\r\nOK\r\n"
        if c.startswith(b"AT+CIPSTART") or c in (b"AT+CIPSHUT", b"AT+CIPCLOSE=1"):
            self.server_out = bytearray()    # a new connection: nothing of the old one
        if c.startswith(b"AT+CIPSTART"):
            return b"\r\nOK\r\n\r\nCONNECT OK\r\n"
        table = {
            b"AT+CPIN?": b"\r\n+CPIN: READY\r\n\r\nOK\r\n",
            b"AT+CREG?": b"\r\n+CREG: 0,1\r\n\r\nOK\r\n",
            b"AT+CGREG?": b"\r\n+CGREG: 0,1\r\n\r\nOK\r\n",
            b"AT+CSQ": b"\r\n+CSQ: 20,0\r\n\r\nOK\r\n",
            b"AT+CIPSHUT": b"\r\nSHUT OK\r\n",
            b"AT+CGATT?": b"\r\n+CGATT: 1\r\n\r\nOK\r\n",
            b"AT+CIFSR": b"\r\n10.0.0.2\r\n",
            b"AT+CIPCLOSE=1": b"\r\nCLOSE OK\r\n",
        }
        return table.get(c, b"\r\nOK\r\n")


def outcome(e):
    """What an exception says: ["OSError", errno, text] (any OSError, CPython's
    TimeoutError too), else [type name, None, text]."""
    if isinstance(e, OSError):
        return ["OSError", e.args[0] if e.args and isinstance(e.args[0], int) else None, str(e)]
    return [type(e).__name__, None, str(e)]


def modem(fm, **kw):
    from sim800l import SIM800L
    return SIM800L(fm, apn="internet", **kw)


async def connected(fm, **kw):
    """A modem brought up on fm and a connected async socket."""
    m = modem(fm, **kw)
    await m.start()
    s = m.socket_class(async_=True)()
    await s.connect(("broker", 1883))
    return m, s


async def read_some(s, ms):
    """readinto until bytes come, an error, or ms: [bytes, outcome or None]."""
    buf = bytearray(64)
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < ms:
        try:
            r = s.readinto(buf, 64)
            if r is not None and not isinstance(r, int):
                r = await r
        except Exception as e:  # noqa: B902 -- reported
            return [b"", outcome(e)]
        if r:
            return [bytes(buf[:r]), None]
        await asleep_ms(10)
    return [b"", None]


async def attempt(coro_fn, tries):
    """Up to `tries` calls of coro_fn() until one does not raise: the outcomes."""
    out = []
    for _ in range(tries):
        try:
            await coro_fn()
            out.append(["ok", 0, ""])
            break
        except Exception as e:  # noqa: B902
            out.append(outcome(e))
    return out


async def reconnect_and_talk(m, fm, out, tries=2, payload=b"q" * 20):
    """After the fault: connect again, send `payload`, get b"hello" back."""
    s = m.socket_class(async_=True)()
    out["reconnect"] = await attempt(lambda: s.connect(("broker", 1883)), tries)
    if out["reconnect"][-1][0] != "ok":
        return
    try:
        out["write2"] = await s.write(payload, len(payload))
    except Exception as e:  # noqa: B902
        out["write2"] = outcome(e)
    fm.push(b"hello")
    out["read2"] = await read_some(s, 1500)


def report(fm, out):
    out.update(sent=bytes(fm.sent), data=bytes(fm.data), escapes=fm.escapes,
               commands=[c.decode() for c in fm.commands])
    return out


# ---- [1] a UART that takes nothing, or a byte now and then --------------------

class Stalled:
    """write_limit: the UART takes nothing (every=0) or one byte every `every`
    ms; only data bytes if data_only.  After guard_ms it raises (so that a
    driver spinning on it ends the scenario)."""

    def __init__(self, fm, every, data_only, guard_ms):
        self.fm, self.every, self.data_only, self.guard = fm, every, data_only, guard_ms
        self.t0 = self.last = ticks_ms()

    def __call__(self, n):
        now = ticks_ms()
        if ticks_diff(now, self.t0) > self.guard:
            raise RuntimeError("guard: the driver was still writing after %d ms" % self.guard)
        if self.data_only and not self.fm.owed:
            return n
        if self.every and ticks_diff(now, self.last) >= self.every:
            self.last = now
            return 1
        return None


async def uart_write_stall(p):
    """p["case"]: "dead" (start() on a UART that takes nothing), "dribble"
    (start(), one byte every 700 ms), "dribble_data" (a CIPSEND whose data
    the UART takes one byte every 150 ms).  [outcome, ms, heartbeat gap]."""
    fm = FakeModem()
    case = p["case"]
    if case == "dribble_data":
        m, s = await connected(fm, timeouts={"send": 1000, "at": 3000})
    else:
        m = modem(fm, timeouts={"sync": 1000, "at": 3000, "sim": 1000, "reg": 1000})
    beat = Heartbeat(10)
    await asleep_ms(30)
    every = {"dead": 0, "dribble": 700, "dribble_data": 150}[case]
    fm.write_limit = Stalled(fm, every, case == "dribble_data", p.get("guard_ms", 4000))
    t0 = ticks_ms()
    try:
        if case == "dribble_data":
            await s.write(b"p" * 40, 40)
        else:
            await m.start()
        res = ["ok", 0, ""]
    except Exception as e:  # noqa: B902
        res = outcome(e)
    took = ticks_diff(ticks_ms(), t0)
    beat.stop()
    return {"result": res, "ms": took, "gap": beat.gap}


# ---- [8] the modem reboots in the middle of bring-up ---------------------------

class RebootingModem(FakeModem):
    """Reboots (a brown-out in GPRS attach) right after answering
    AT+CIPQSEND=1, once: RDY ... SMS Ready, and the settings are gone (echo
    on, AT+CIPRXGET=0: received data comes out raw, AT+CIPRXGET=2 is ERROR)."""

    def __init__(self):
        FakeModem.__init__(self)
        self.rx_mode = 0
        self.rebooted_at = -1            # index in commands of the last one before the reboot

    def push(self, data):
        if self.rx_mode == 1:
            FakeModem.push(self, data)
        else:
            self.inq += data

    def default(self, c):
        if c == b"AT+CIPRXGET=1":
            self.rx_mode = 1
        if c.startswith(b"AT+CIPRXGET=2") and self.rx_mode != 1:
            return b"\r\nERROR\r\n"
        r = FakeModem.default(self, c)
        if c == b"AT+CIPQSEND=1" and self.rebooted_at < 0:
            self.rebooted_at = len(self.commands) - 1
            self.rx_mode = 0
            self.echo = True
            r += b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nCall Ready\r\n\r\nSMS Ready\r\n"
        return r


async def reboot_mid_bringup(p):
    fm = RebootingModem()
    m = modem(fm, timeouts={"at": 500, "rx": 500, "sync": 1500}, rx_poll_ms=200)
    out = {"starts": await attempt(m.start, 2)}
    out["after_reboot"] = [c.decode() for c in fm.commands[fm.rebooted_at + 1:]]
    s = m.socket_class(async_=True)()
    out["connect"] = await attempt(lambda: s.connect(("broker", 1883)), 2)
    if out["connect"][-1][0] == "ok":
        fm.push(b"CONNACK-bytes")
        out["read"] = await read_some(s, 1500)
    out["reboots"] = m.reboots
    return report(fm, out)


# ---- [13] the UART stalls in the middle of CIPSEND data ---------------------------

async def write_stall_mid_data(p):
    """After the prompt the UART takes 10 of 28 data bytes, then nothing for
    900 ms (longer than the send deadline, 600 ms), then works again."""
    fm = FakeModem()
    m, s = await connected(fm, timeouts={"at": 300, "rx": 300, "send": 600, "sync": 1500})
    beat = Heartbeat(10)
    st = {"taken": 0, "until": None}

    def limit(n):
        if not fm.owed:
            return n                     # commands go through
        if st["until"] is None and st["taken"] >= 10:
            st["until"] = ticks_ms() + 900
        if st["until"] is not None and ticks_diff(st["until"], ticks_ms()) > 0:
            return None
        st["taken"] += 1
        return 1
    fm.write_limit = limit
    out = {}
    t0 = ticks_ms()
    try:
        out["write"] = await s.write(b"p" * 28, 28)
    except Exception as e:  # noqa: B902
        out["write"] = outcome(e)
    out["write_ms"] = ticks_diff(ticks_ms(), t0)
    out["owed_after"] = fm.owed
    while st["until"] is None or ticks_diff(st["until"], ticks_ms()) > -50:
        await asleep_ms(10)              # the UART works again
    fm.push(b"x")                        # the app's next call: a fetch
    out["read"] = await read_some(s, 1000)
    mark = len(fm.commands)
    await reconnect_and_talk(m, fm, out)
    out["commands_after"] = [c.decode() for c in fm.commands[mark:]]
    beat.stop()
    out["gap"] = beat.gap
    return report(fm, out)


# ---- [14] a write cancelled while its CIPSEND prompt is late -------------------------

async def cancel_mid_send(p):
    """max_send 100: a 150-byte write is two CIPSENDs; the second prompt comes
    200 ms late and the writing task is cancelled at 100 ms.  Then the
    prompt, the socket's close (what the client's _abandon does) and a
    reconnect."""
    fm = FakeModem()
    m, s = await connected(fm, max_send=100, timeouts={"at": 300, "send": 2000, "sync": 1500})
    count = [0]

    def on_cmd(c):
        if c.startswith(b"AT+CIPSEND="):
            count[0] += 1
            if count[0] == 2:
                return b""               # the prompt is late
        return None
    fm.on_cmd = on_cmd
    out = {}

    async def writer():
        await s.write(b"P" * 150, 150)
    t = asyncio.create_task(writer())
    await asleep_ms(100)
    t.cancel()
    try:
        await t
        out["writer"] = "returned"
    except asyncio.CancelledError:
        out["writer"] = "cancelled"
    except Exception as e:  # noqa: B902
        out["writer"] = outcome(e)
    await asleep_ms(100)
    fm.inq += b"> "                      # the late prompt
    fm.on_cmd = None
    try:
        await s.close()
        out["close"] = "ok"
    except Exception as e:  # noqa: B902
        out["close"] = outcome(e)
    await reconnect_and_talk(m, fm, out, payload=b"Q" * 30)
    return report(fm, out)


# ---- [10] fewer data bytes than the +CIPRXGET: 2 header says ------------------------

async def short_rxget_block(p):
    fm = FakeModem()
    m, s = await connected(fm, rxbuf=1460, timeouts={"rx": 500, "sync": 1500})
    once = [True]

    def hdr(got, left):
        if once[0]:
            once[0] = False
            return b"+CIPRXGET: 2,%d,%d" % (got + 1000, left)     # 1000 bytes never come
        return b"+CIPRXGET: 2,%d,%d" % (got, left)
    fm.rx_header = hdr
    fm.push(b"x" * 20)
    out = {"read": await read_some(s, 1500)}
    ats = fm.commands.count(b"AT")
    await reconnect_and_talk(m, fm, out, tries=1)
    out["ats_answered"] = fm.commands.count(b"AT") - ats
    return report(fm, out)


# ---- [11] +CPIN: NOT READY ----------------------------------------------------------

async def cpin_not_ready(p):
    """p["ready_after"]: the SIM says NOT READY to that many queries, then
    READY (None: never)."""
    fm = FakeModem()
    asked = [0]

    def on_cmd(c):
        if c == b"AT+CPIN?":
            asked[0] += 1
            if p["ready_after"] is None or asked[0] <= p["ready_after"]:
                return b"\r\n+CPIN: NOT READY\r\n\r\nOK\r\n"
        if c == b"AT+CREG?" and p["ready_after"] is None:
            return b"\r\n+CREG: 0,0\r\n\r\nOK\r\n"
        return None
    fm.on_cmd = on_cmd
    m = modem(fm, timeouts={"sim": 1000, "reg": 1000})
    t0 = ticks_ms()
    res = (await attempt(m.start, 1))[0]
    return report(fm, {"result": res, "ms": ticks_diff(ticks_ms(), t0), "cpin": asked[0]})


# ---- [12] +PDP: DEACT while the send waits for DATA ACCEPT ----------------------------

async def pdp_deact_mid_send(p):
    fm = FakeModem()
    m, s = await connected(fm, timeouts={"send": 1500, "at": 500})
    fm.accept = lambda n: b"\r\n+PDP: DEACT\r\n"     # the data taken, then the context goes
    beat = Heartbeat(10)
    out = {}
    t0 = ticks_ms()
    try:
        out["write"] = await s.write(b"hello", 5)
    except Exception as e:  # noqa: B902
        out["write"] = outcome(e)
    out["ms"] = ticks_diff(ticks_ms(), t0)
    fm.accept = None
    await reconnect_and_talk(m, fm, out, tries=1)
    beat.stop()
    out["gap"] = beat.gap
    return report(fm, out)


# ---- the device process: app_runner.run() ------------------------------------------

def _full_flash():
    """Every file opened for writing takes nothing: write() raises ENOSPC, as
    on a full flash (the file itself is created, as littlefs would)."""
    import builtins
    real = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def full_open(name, mode="r", *a, **kw):
        f = real(name, mode, *a, **kw)
        return Full(f) if ("w" in mode or "a" in mode or "+" in mode) else f
    builtins.open = full_open


def main():
    p = json.loads(os.getenv("SCENARIO_PARAMS") or "{}")
    print("BOOT", sys.implementation.name)
    import app_runner
    if sys.implementation.name == "micropython":
        for m in ("app_runner", "ota", "sim800l"):
            if m in sys.modules:
                assert "/" not in getattr(sys.modules[m], "__file__", "/"), m + " is not frozen"
    if p.get("enospc"):
        _full_flash()
        print("FLASH FULL")
    app_runner.run()
    print("RUN RETURNED")
    sys.exit(3)


if __name__ == "__main__":
    main()

"""SIM800L 2G modem as a socket, over AT commands on a UART.

    modem = SIM800L(uart, apn="internet")
    await modem.start()                       # bring-up: AT sync, SIM, network, GPRS
    sock_cls = modem.socket_class(async_=True)
    await client.connect(sock_cls=sock_cls, async_sock=True)

One TCP link at a time (AT+CIPMUX=0).  Data is received in manual mode
(AT+CIPRXGET=1): the modem announces data with the URC "+CIPRXGET: 1" and we
fetch it with AT+CIPRXGET=2,<len>, so network bytes never land in the middle
of another command's reply.  Sends use AT+CIPQSEND=1: "DATA ACCEPT:<n>"
confirms once the modem has the bytes, without waiting for the server's ACK.

Three files: sim800l_at (the parser, URCs, sending a command, deadlines),
sim800l_bringup (bring-up, GPRS context, connect, close: generators, run
seldom), and this one: the public class, the data path and the sockets.

The data path (a write: AT+CIPSEND; a read: AT+CIPRXGET=2) allocates
nothing.  Each is an explicit state machine, its state in preallocated
attributes (_op, _t0, _opto, the send buffer _tx); _step() advances the
one in flight by what the modem said and never waits.  The sync flavour
steps it in a plain loop (_finish).  The async flavour steps it from the
socket's own calls (readinto and write step first) and from one pump task
per link (made at connect), so a publish goes out while the app sleeps.
Why: a generator per AT round trip (~270 B on the 64-bit unix port) plus
the coroutines of the awaits cost 2560 B per publish+receive round through
the client (async; 608 B sync); driven this way the driver allocates none.

Async socket contract (what AsyncMQTTClient expects of a transport):
  readinto(buf, n) -> int > 0: bytes copied now; 0: end of stream (CLOSED,
      the modem's buffer drained); None: nothing now (a fetch from the modem
      may have started: call again).  Never an awaitable.
  write(buf, n), non-blocking (after setblocking(False), which the client
      calls once connected) -> n: all of buf[0:n] taken now (copied; sent
      in the background, an AT+CIPSEND per max_send bytes), or None: none
      now (a command is in flight: call again).  All or nothing, never a
      part.  Bytes taken that cannot go out make the next readinto/write
      raise OSError (ECONNRESET, ETIMEDOUT, ENOTCONN, EIO): the link is
      then lost.
  write(buf, n), blocking (the default) -> an awaitable that sends all of
      buf[0:n] and evaluates to n once the modem confirmed it, or raises
      (for callers that `await s.write(...)`).
  connect(addr), close() -> awaitables; getaddrinfo too.
Errors: only OSError with an errno leaves the driver.
"""
import errno

from mpcompat import asleep_ms, asyncio, sleep_ms, ticks_diff, ticks_ms
from sim800l_at import TIMEOUTS  # noqa: F401  (sim800l.TIMEOUTS: the defaults)
from sim800l_at import (R_ACCEPT as _ACCEPT, R_ERROR as _ERROR, R_FINAL as _FINAL,
                        R_PROMPT as _PROMPT, R_SEND_FAIL as _SEND_FAIL, R_SEND_OK as _SEND_OK)
from sim800l_bringup import _Bringup

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# The data operation in flight (SIM800L._op).
_OP_PROMPT = const(1)      # AT+CIPSEND=<n> sent: waiting for "> " (or ERROR)
_OP_ACCEPT = const(2)      # the data written: waiting for DATA ACCEPT (SEND OK, SEND FAIL, ERROR)
_OP_FETCH = const(3)       # AT+CIPRXGET=2,<len> sent: the header, the data, then OK
_IDLE_MS = const(10)       # the pump task's nap while nothing is in flight


class SIM800L(_Bringup):
    """The modem.  Counters for benchmarks: at_commands, uart_tx, uart_rx, urcs."""

    def __init__(self, uart, apn="", user="", password="", pin=None, rxbuf=512,
                 max_send=1460, timeouts=None, poll_ms=1, rx_poll_ms=1000,
                 pwrkey=None, reset_pin=None):
        _Bringup.__init__(self, uart, rxbuf, timeouts)
        self._apn, self._user, self._password, self._pin = apn, user, password, pin
        self._poll_ms = poll_ms
        self._rx_poll_ms = rx_poll_ms    # fetch without a URC this often (modules miss URCs)
        self._max_send = max_send
        self._pwrkey, self._reset_pin = pwrkey, reset_pin
        self._rxget_cmd = b"AT+CIPRXGET=2," + str(len(self._rx)).encode() + b"\r"
        self._cmd = bytearray(b"AT+CIPSEND=\x00\x00\x00\x00\x00")
        self._busy = False               # a bring-up/connect/close dialogue runs (_arun)
        # The data operation in flight (see the module docstring).
        self._op = 0
        self._t0 = self._opto = 0        # when its command went out; its deadline (ms)
        self._txb = None                 # what a send sends: _txb[_txo:_txo+_txn] now,
        self._txo = self._txn = self._txend = 0     # up to _txend in all
        self._tx = None                  # the async write's copy (socket_class; grows to
        #                                  the biggest write, once)
        self._fetch_closed = False       # CLOSED had come when this fetch began
        self._seq = 0                    # operations begun
        self._err_seq = 0                # ... the last that failed, and its OSError:
        self._op_exc = None
        self._pump_gen = 0               # the current pump task (one per link)
        self._task = None
        # Modem and link state.
        self._needs_start = True
        self._ctx_up = False
        self._linked = False
        self._stale = False
        self._gen = 0                    # bumps at each connect: stale sockets see ENOTCONN
        self._reset_link()
        self.ip = None
        self.rssi = 99

    # ---- public --------------------------------------------------------
    async def start(self, hard_reset=False):
        """Bring the modem up (see _g_start); raises OSError with a reason."""
        await self._arun(self._g_start(hard_reset))

    def start_blocking(self, hard_reset=False):
        self._run(self._g_start(hard_reset))

    async def read_clock(self):
        """AT+CCLK? now (the modem must be up): the network's time as UTC
        seconds since 1970, or None if the modem's clock is not set (or it
        answers ERROR); sets network_time and the board's clock like the
        bring-up does.  Its deadline is the "at" one."""
        await self._arun(self._g_read_clock())
        return self._clock_read

    def read_clock_blocking(self):
        self._run(self._g_read_clock())
        return self._clock_read

    def socket_class(self, async_=False):
        """A class the MQTT client can instantiate with no arguments."""
        modem = self
        base = AsyncModemSocket if async_ else ModemSocket
        if async_ and self._tx is None:
            self._tx = bytearray(self._max_send)

        class Socket(base):
            def __init__(self):
                base.__init__(self, modem)
        return Socket

    def stats(self):
        return {"at_commands": self.at_commands, "uart_tx": self.uart_tx,
                "uart_rx": self.uart_rx, "urcs": self.urcs, "warnings": self.warnings,
                "rings": self.rings, "reboots": self.reboots, "junk": self.junk}

    # ---- the data path: state machines (see the module docstring) --------------
    def _begin(self, op, timeout):
        self._op = op
        self._opto = timeout
        self._t0 = ticks_ms()

    def _start_send(self, buf, off, n):
        """Send buf[off:off+n]: one AT+CIPSEND per max_send bytes, one after
        the other.  buf must stay as it is until the operation ends (the
        async flavour passes its own copy)."""
        self._seq += 1
        self._txb, self._txend = buf, off + n
        self._send_chunk(off)

    def _send_chunk(self, off):
        if self._peer_closed:
            raise OSError(errno.ECONNRESET)  # CLOSED came: nothing can be sent any more
        n = self._txend - off
        if n > self._max_send:
            n = self._max_send
        # "AT+CIPSEND=<n>\r": the digits go into the preallocated command by index.
        c, i, d = self._cmd, 11, 10000
        while d > 1 and n < d:
            d //= 10
        while d:
            c[i] = 48 + (n // d) % 10
            i += 1
            d //= 10
        c[i] = 13
        timeout = self.t["send"]
        self._send(c, i + 1, None, timeout)
        self._sending = True             # until the data is out (see _desync)
        self._owed = n
        self._txo, self._txn = off, n
        self._begin(_OP_PROMPT, timeout)

    def _start_fetch(self):
        """AT+CIPRXGET=2,<rxbuf>: what the modem holds, into the (empty) local buffer."""
        self._rxhead = self._rxtail = 0
        self._rx_pending = False
        self._last_poll = ticks_ms()
        self._fetch_closed = self._peer_closed
        self._seq += 1
        self._send(self._rxget_cmd, len(self._rxget_cmd))
        self._fetching = True            # the parser takes one header, for this fetch
        self._begin(_OP_FETCH, self.t["rx"])

    def _step(self):
        """Advance the operation in flight by what the modem said; never waits.
        An error ends it and is kept (_op_failed): the socket's next call raises."""
        try:
            op = self._op
            if op == _OP_PROMPT:
                # One deadline for the whole command: the prompt, the data, the
                # confirmation.  A CLOSED before the prompt does not end the
                # wait: the modem answers ERROR, or prompts and then takes n
                # bytes whatever we send next.
                if not self._waited(_PROMPT | _ERROR, self._t0, self._opto):
                    return
                if self._seen & _ERROR:
                    self._sending = False
                    self._owed = 0       # refused: the modem waits for no data
                    self._lost(errno.ENOTCONN)
                    raise OSError(errno.ENOTCONN)
                # (ETIMEDOUT: _desync pays what is still owed)
                self._write(self._txb, self._txo, self._txn, self._opto)
                self._sending = False
                self._owed = 0
                self._op = op = _OP_ACCEPT
            if op == _OP_ACCEPT:
                if self._waited(_ACCEPT | _SEND_OK | _SEND_FAIL | _ERROR, self._t0, self._opto):
                    if self._seen & (_SEND_FAIL | _ERROR):
                        self._lost(errno.ECONNRESET)
                        raise OSError(errno.ECONNRESET)
                    off = self._txo + self._txn
                    if off < self._txend:
                        self._send_chunk(off)        # the next max_send bytes
                    else:
                        self._op = 0
                        self._txb = None
                elif self._peer_closed or not self._linked:     # CLOSED or +PDP: DEACT
                    raise OSError(self._link_err or errno.ECONNRESET)   # instead: say so now
            elif op == _OP_FETCH:
                if self._waited(_FINAL, self._t0, self._opto):
                    self._op = 0
                    self._fetch_end()
                    if self._seen & _ERROR:
                        self._modem_avail = 0
                        if not self._fetch_closed:
                            self._lost(errno.ENOTCONN)
                    if self._fetch_closed and self._modem_avail == 0:
                        self._drained = True     # CLOSED came before this read: nothing more
        except OSError as e:
            self._op_failed(e)

    def _fetch_end(self):
        self._fetching = False
        if self._data_left:              # fewer bytes came than the header said: the
            self._data_left = 0          # count must not eat the modem's next replies
            self._lost(errno.EIO)

    def _op_failed(self, e):
        """The operation in flight ended in error e.  A send cut before its
        data pays it (_cut).  The link is done for: bytes a write reported
        taken did not go out, and the socket's next call says so."""
        op, self._op, self._txb = self._op, 0, None
        if op == _OP_FETCH:
            self._fetch_end()
        self._cut(e)
        err = e.args[0] if e.args and type(e.args[0]) is int else errno.EIO
        self._op_exc, self._err_seq = e, self._seq
        if not self._link_err:
            self._link_err = err

    def _finish(self):
        """Sync flavour: step the operation just begun to its end; its error raised."""
        seq = self._seq
        while True:
            self._step()
            if not self._op:
                break
            sleep_ms(self._poll_ms)
        if self._err_seq == seq:
            raise self._op_exc

    def _settle(self):
        """Before a bring-up/connect/close in the sync flavour: end what is in flight."""
        while self._op:
            self._step()
            if self._op:
                sleep_ms(self._poll_ms)

    def _spawn(self):
        """The pump task of a new link (an older one ends at its next wake)."""
        self._pump_gen += 1
        self._task = asyncio.create_task(self._pump_task(self._pump_gen))

    async def _pump_task(self, gen):
        """Steps the operation in flight when the app makes no call; ends
        once the link is closed or lost and nothing is in flight."""
        while gen == self._pump_gen and (self._linked or self._op):
            if self._op:
                self._step()
                await asleep_ms(self._poll_ms)
            else:
                await asleep_ms(_IDLE_MS)

    # ---- receive, shared by both socket flavours (plain functions: no allocation) --
    def _take(self, buf, nbytes):
        h, t = self._rxhead, self._rxtail
        if nbytes is None:
            nbytes = len(buf)
        k = t - h
        if k > nbytes:
            k = nbytes
        rx = self._rx
        for i in range(k):
            buf[i] = rx[h + i]
        self._rxhead = h + k
        return k

    def _rx_ready(self, buf, nbytes):
        """-> n > 0 bytes copied, 0 at end of stream, -1 nothing now, -2 a fetch is due."""
        if self._rxhead < self._rxtail:
            return self._take(buf, nbytes)
        self._pump()
        if self._link_err:
            raise OSError(self._link_err)
        if self._drained:
            return 0
        if self._rx_pending or self._modem_avail or self._peer_closed:
            return -2
        if self._rx_poll_ms and ticks_diff(ticks_ms(), self._last_poll) >= self._rx_poll_ms:
            return -2
        return -1


def _getaddrinfo(host, port, *args):
    # DNS happens in the modem, at AT+CIPSTART with the name.
    return [(2, 1, 6, "", (host, port))]


async def _agetaddrinfo(host, port, *args):
    return _getaddrinfo(host, port)


class _Base:
    def __init__(self, modem):
        self._m = modem
        self._gen = -1
        self._nb = False                 # async write: non-blocking (see the module docstring)

    def _check(self):
        m = self._m
        if self._gen != m._gen:
            raise OSError(errno.ENOTCONN)      # never connected, closed, or replaced
        if m._link_err:
            raise OSError(m._link_err)

    def setblocking(self, flag):
        # Reads never block.  Sync writes wait for the modem either way; an
        # async write returns at once (an int or None) when non-blocking.
        self._nb = not flag

    def settimeout(self, t):
        pass


class ModemSocket(_Base):
    """Sync flavour: connect/write block for the AT round trip; readinto never waits for the network."""
    getaddrinfo = staticmethod(_getaddrinfo)

    def connect(self, addr):
        m = self._m
        m._run(m._g_connect(addr[0], addr[1]))
        self._gen = m._gen

    def readinto(self, buf, nbytes=None):
        self._check()
        m = self._m
        r = m._rx_ready(buf, nbytes)
        if r == -2:
            m._start_fetch()
            m._finish()
            r = m._rx_ready(buf, nbytes)
        return r if r >= 0 else None

    def write(self, buf, nbytes=None):
        self._check()
        m = self._m
        n = len(buf) if nbytes is None else nbytes
        if n:
            m._start_send(buf, 0, n)
            m._finish()
        return n

    def close(self):
        m = self._m
        if self._gen == m._gen and m._linked:
            try:
                m._run(m._g_close())
            except OSError:
                pass
        self._gen = -1


class AsyncModemSocket(_Base):
    """Async flavour: readinto and (non-blocking) write are plain methods
    that return an int or None at once and allocate nothing; see the module
    docstring for the contract."""
    getaddrinfo = staticmethod(_agetaddrinfo)

    async def connect(self, addr):
        m = self._m
        await m._arun(m._g_connect(addr[0], addr[1]))
        self._gen = m._gen
        m._spawn()

    def readinto(self, buf, nbytes=None):
        m = self._m
        if m._op:
            m._step()
        self._check()
        if m._op == _OP_FETCH:
            return None                  # its bytes are handed out once its OK came
        r = m._rx_ready(buf, nbytes)
        if r == -2:
            if not m._op and not m._busy:
                m._start_fetch()
            return None
        return r if r >= 0 else None

    def write(self, buf, nbytes=None):
        m = self._m
        if m._op:
            m._step()
        self._check()
        n = len(buf) if nbytes is None else nbytes
        if not self._nb:
            return self._write_all(buf, n)
        if m._peer_closed:
            raise OSError(errno.ECONNRESET)  # CLOSED came: nothing can be sent any more
        if m._op or m._busy:
            return None
        return self._put(buf, n)

    def _put(self, buf, n):
        """Copy buf[0:n] and begin sending it: all of it is taken."""
        m = self._m
        if n:
            tx = m._tx
            if n > len(tx):
                tx = m._tx = bytearray(n)    # a write bigger than any before: once
            for i in range(n):
                tx[i] = buf[i]
            m._start_send(tx, 0, n)
        return n

    async def _write_all(self, buf, n):
        """Blocking write: every byte sent and confirmed, or OSError."""
        m = self._m
        if not n:
            return 0
        while m._op or m._busy:          # another task's command first
            if m._op:
                m._step()
            await asleep_ms(m._poll_ms)
        self._check()
        self._put(buf, n)
        seq = m._seq
        while m._op and m._seq == seq:
            m._step()
            if m._op:
                await asleep_ms(m._poll_ms)
        if m._err_seq == seq:
            raise m._op_exc
        return n

    async def close(self):
        m = self._m
        if self._gen == m._gen and m._linked:
            try:
                await m._arun(m._g_close())
            except OSError:
                pass
        self._gen = -1

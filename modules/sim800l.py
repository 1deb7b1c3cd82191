# SIM800L 2G modem as a socket, over AT commands on a UART.
#
#   modem = SIM800L(uart, apn="internet")
#   await modem.start()                       # bring-up: AT sync, SIM, network, GPRS
#   sock_cls = modem.socket_class(async_=True)
#   await client.connect(sock_cls=sock_cls, async_sock=True)
#
# One TCP link at a time (AT+CIPMUX=0).  Data is received in manual mode
# (AT+CIPRXGET=1): the modem announces data with the URC "+CIPRXGET: 1" and we
# fetch it with AT+CIPRXGET=2,<len>, so network bytes never land in the middle
# of another command's reply.  Sends use AT+CIPQSEND=1: "DATA ACCEPT:<n>"
# confirms once the modem has the bytes, without waiting for the server's ACK.
#
# Everything runs through one parser (_pump/_feed/_line) that reads whatever
# the UART holds and turns lines into result bits (self._seen) and state
# (URCs: CLOSED, +PDP: DEACT, RDY...).  Operations are generators that send a
# command, then yield until a result bit appears or a deadline passes; the
# sync flavour drives them with sleep_ms, the async one with asyncio.  The
# data path reuses preallocated buffers: bytes are copied by index, numbers
# parsed and written by index, so nothing is allocated per byte or per line.
import errno

from mpcompat import sleep_ms, ticks_diff, ticks_ms, asleep_ms as _asleep_ms

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Result bits set by the parser while a command is pending.
_OK = const(1)
_ERROR = const(2)
_SHUT_OK = const(4)
_CLOSE_OK = const(8)
_CONNECT_OK = const(16)
_CONNECT_FAIL = const(32)
_ALREADY = const(64)
_SEND_OK = const(128)
_SEND_FAIL = const(256)
_ACCEPT = const(512)
_INFO = const(1024)        # a line starting with the pending command's `want` prefix
_PROMPT = const(2048)      # the "> " of AT+CIPSEND
_FINAL = const(3)          # _OK | _ERROR

_LINE_MAX = const(128)
# Bytes parsed per pump: a modem (or line noise) that never stops talking must
# not keep a command past its deadline, nor the other tasks from running.
# At 115200 baud a 1 ms poll sees ~12 bytes; this only bites on a flood.
_PUMP_MAX = const(1024)

# Deadlines (ms).  The long ones are the manual's "max response time".
TIMEOUTS = {
    "at": 3000,          # ordinary commands
    "sync": 10000,       # AT until OK after power-up (autobaud)
    "sim": 10000,        # AT+CPIN? until READY (manual: 5 s)
    "reg": 60000,        # AT+CREG?/AT+CGREG? until registered
    "cipshut": 65000,    # manual: 65 s
    "ciicr": 85000,      # manual: 85 s
    "cipstart": 75000,   # manual: 75 s (160 s from IP INITIAL; we start from IP STATUS)
    "send": 10000,       # '>' prompt, then DATA ACCEPT
    "rx": 5000,          # AT+CIPRXGET=2 reply
}


class SIM800L:
    """The modem.  Counters for benchmarks: at_commands, uart_tx, uart_rx, urcs."""

    def __init__(self, uart, apn="", user="", password="", pin=None, rxbuf=512,
                 max_send=1460, timeouts=None, poll_ms=1, rx_poll_ms=1000,
                 pwrkey=None, reset_pin=None):
        self._uart = uart
        self._apn, self._user, self._password, self._pin = apn, user, password, pin
        self.t = dict(TIMEOUTS)
        if timeouts:
            self.t.update(timeouts)
        self._poll_ms = poll_ms
        self._rx_poll_ms = rx_poll_ms    # fetch without a URC this often (modules miss URCs)
        self._max_send = max_send
        self._pwrkey, self._reset_pin = pwrkey, reset_pin
        # Preallocated buffers: UART chunk, line, last wanted info line, data, command.
        self._chunk = bytearray(64)
        self._line = bytearray(_LINE_MAX)
        self._ln = 0
        self._info = bytearray(_LINE_MAX)
        self._info_n = 0
        self._want = None
        self._rx = bytearray(min(rxbuf, 1460))
        self._rxhead = self._rxtail = 0
        self._data_left = 0              # raw bytes still due in a +CIPRXGET: 2 block
        self._rxget_cmd = b"AT+CIPRXGET=2," + str(len(self._rx)).encode() + b"\r"
        self._cmd = bytearray(b"AT+CIPSEND=\x00\x00\x00\x00\x00")
        self._busy = False
        self._fetching = False           # an AT+CIPRXGET=2 awaits its one header
        self._sending = False            # an AT+CIPSEND waits for its data (see _desync)
        self._owed = 0                   # data bytes an AT+CIPSEND still waits for (see _desync)
        self._seen = 0
        self._abort = 0
        self._expect_cpin = False
        # Modem and link state.
        self._needs_start = True
        self._ctx_up = False
        self._linked = False
        self._stale = False
        self._gen = 0                    # bumps at each connect: stale sockets see ENOTCONN
        self._reset_link()
        self.ip = None
        self.rssi = 99
        self.at_commands = self.uart_tx = self.uart_rx = self.urcs = 0
        self.warnings = self.rings = self.reboots = self.junk = 0

    # ---- public --------------------------------------------------------
    async def start(self, hard_reset=False):
        """Bring the modem up (see _g_start); raises OSError with a reason."""
        await self._arun(self._g_start(hard_reset))

    def start_blocking(self, hard_reset=False):
        self._run(self._g_start(hard_reset))

    def socket_class(self, async_=False):
        """A class the MQTT client can instantiate with no arguments."""
        modem = self
        base = AsyncModemSocket if async_ else ModemSocket

        class Socket(base):
            def __init__(self):
                base.__init__(self, modem)
        return Socket

    def stats(self):
        return {"at_commands": self.at_commands, "uart_tx": self.uart_tx,
                "uart_rx": self.uart_rx, "urcs": self.urcs, "warnings": self.warnings,
                "rings": self.rings, "reboots": self.reboots, "junk": self.junk}

    # ---- drivers for the generators ----------------------------------------
    def _run(self, g):
        try:
            for _ in g:
                sleep_ms(self._poll_ms)
        except OSError as e:
            self._cut(e)
            raise

    async def _arun(self, g):
        while self._busy:                # one AT dialogue at a time across tasks
            await _asleep_ms(self._poll_ms)
        self._busy = True
        try:
            for _ in g:
                await _asleep_ms(self._poll_ms)
        except OSError as e:
            self._cut(e)
            raise
        except BaseException:
            self._desync(errno.ECONNABORTED)    # cancelled in the middle of a command
            raise
        finally:
            self._sending = False
            self._busy = False

    # ---- the parser ----------------------------------------------------------
    def _pump(self):
        """Parse what the UART holds, at most _PUMP_MAX bytes: the caller then
        checks its deadline and yields, whatever keeps arriving."""
        u, c, left = self._uart, self._chunk, _PUMP_MAX
        while left > 0:
            n = u.readinto(c, 64)
            if not n:
                return
            self.uart_rx += n
            self._feed(n)
            left -= n

    def _feed(self, n):
        c, line, i = self._chunk, self._line, 0
        while i < n:
            if self._data_left:          # raw bytes of an AT+CIPRXGET=2 reply
                k = self._data_left
                if k > n - i:
                    k = n - i
                rx, t = self._rx, self._rxtail
                for j in range(i, i + k):
                    rx[t] = c[j]
                    t += 1
                self._rxtail = t
                self._data_left -= k
                i += k
                continue
            b = c[i]
            i += 1
            if b == 10:                  # LF ends a line; CR is dropped
                if self._ln:
                    self._do_line()
                self._ln = 0
            elif b != 13:
                if self._ln < _LINE_MAX:
                    line[self._ln] = b
                    self._ln += 1
                if self._ln == 2 and b == 32 and line[0] == 62:   # "> " has no line end
                    self._seen |= _PROMPT
                    self._ln = 0

    def _is(self, s):
        n = len(s)
        if self._ln != n:
            return False
        return self._pre(s)

    def _pre(self, s):
        line = self._line
        if self._ln < len(s):
            return False
        for i in range(len(s)):
            if line[i] != s[i]:
                return False
        return True

    def _num(self, i):
        """The decimal number at line[i:], and where it ends in self._end."""
        line, n, v = self._line, self._ln, 0
        while i < n and 48 <= line[i] <= 57:
            v = v * 10 + line[i] - 48
            i += 1
        self._end = i
        return v

    def _rx_header(self):
        """'+CIPRXGET: 2,<got>[,<left>]': arm the raw copy of <got> bytes.

        Only one header per AT+CIPRXGET=2, and only a well-formed one: an
        unasked or mangled header would turn line noise into data, or data
        into lines.  A mangled one while we fetch loses the stream: EIO."""
        if not self._fetching:
            self.junk += 1               # nobody asked: not data of ours
            return
        self._fetching = False
        got, left = self._num(13), 0
        ok = self._end > 13                                     # <got> has digits
        if ok and self._end < self._ln:                         # ',<left>' and nothing else
            start = self._end + 1
            ok = self._line[self._end] == 44
            left = self._num(start)
            ok = ok and start < self._end == self._ln
        if ok and got <= len(self._rx) - self._rxtail:
            self._modem_avail = left
            self._data_left = got
        else:
            self._modem_avail = 0
            self._lost(errno.EIO)        # the stream is not ours any more

    def _do_line(self):
        line = self._line
        if line[0] == 65 and self._ln > 1 and line[1] == 84:   # "AT...": our echo
            return
        if self._is(b"OK"):
            self._seen |= _OK
        elif self._is(b"ERROR") or self._pre(b"+CME ERROR"):
            self._seen |= _ERROR
        elif self._pre(b"+CIPRXGET: ") and self._ln > 11:
            mode = line[11]
            if mode == 49 and (self._ln == 12 or line[12] == 44):   # '1': data waits (URC)
                self._rx_pending = True
                self.urcs += 1
            elif mode == 50 and self._ln > 12 and line[12] == 44:  # '2,<got>,<left>' + raw bytes
                self._rx_header()
            elif self._fetching:         # a mangled header where ours was due
                self._fetching = False
                self._lost(errno.EIO)
            else:
                self.junk += 1
        elif self._pre(b"DATA ACCEPT:"):
            self._seen |= _ACCEPT
        elif self._is(b"SEND OK"):
            self._seen |= _SEND_OK
        elif self._is(b"SEND FAIL"):
            self._seen |= _SEND_FAIL
        elif self._is(b"CLOSED"):
            self._peer_closed = True
            self.urcs += 1
        elif self._is(b"+PDP: DEACT"):
            self.urcs += 1
            self._ctx_up = False
            self._lost(errno.ECONNRESET)
        elif self._is(b"CONNECT OK"):
            self._seen |= _CONNECT_OK
        elif self._is(b"CONNECT FAIL"):
            self._seen |= _CONNECT_FAIL
        elif self._is(b"ALREADY CONNECT"):
            self._seen |= _ALREADY
        elif self._is(b"SHUT OK"):
            self._seen |= _SHUT_OK
        elif self._is(b"CLOSE OK"):
            self._seen |= _CLOSE_OK
        elif self._want is not None and self._pre(self._want):
            self._info[:self._ln] = line[:self._ln]      # bring-up only: may allocate
            self._info_n = self._ln
            self._seen |= _INFO
        elif (self._is(b"RDY") or self._is(b"Call Ready") or self._is(b"SMS Ready")
              or self._is(b"+CFUN: 1") or (self._is(b"+CPIN: READY") and not self._expect_cpin)):
            self._rebooted()
        elif self._pre(b"UNDER-VOLTAGE POWER DOWN") or self._pre(b"NORMAL POWER DOWN") \
                or self._pre(b"OVER-VOLTAGE POWER DOWN"):
            self.urcs += 1
            self._rebooted()             # it is off: the next connect must bring it up
        elif self._pre(b"UNDER-VOLTAGE WARN") or self._pre(b"OVER-VOLTAGE WARN"):
            self.urcs += 1
            self.warnings += 1
        elif self._is(b"RING") or self._is(b"NO CARRIER"):
            self.urcs += 1
            self.rings += 1
        else:
            self.junk += 1               # line noise, or a URC we do not act on

    def _rebooted(self):
        self.urcs += 1
        self.reboots += 1
        self._needs_start = True
        self._ctx_up = False
        self._abort = errno.ECONNRESET   # a pending command will never be answered
        self._lost(errno.ECONNRESET)

    def _lost(self, err):
        if self._linked:
            self._linked = False
            self._stale = True           # the modem may still hold the link: close it first
            if not self._link_err:
                self._link_err = err

    def _reset_link(self):
        self._rxhead = self._rxtail = 0
        self._data_left = 0
        self._rx_pending = False
        self._modem_avail = 0
        self._peer_closed = False
        self._drained = False
        self._link_err = 0
        self._last_poll = ticks_ms()

    # ---- commands ------------------------------------------------------------
    def _send(self, cmd, n, want=None, timeout=None):
        if self._owed:
            self._pay()                  # else the modem takes this command as data
        self._seen = 0
        self._abort = 0
        self._want = want
        self._info_n = 0
        self._write(cmd, 0, n, timeout)
        self.at_commands += 1

    def _write(self, buf, off, n, timeout=None):
        """All of buf[off:off+n] to the UART within the command's deadline
        (timeout, else "at"), counted from the start (a UART that takes
        nothing or a byte at a time: the modem holds CTS, a dead line;
        MicroPython's write answers None on its own timeout).  Past it:
        ETIMEDOUT, and the modem, which may still be owed bytes (the rest of
        a CIPSEND's data would swallow our next command), gets a full
        bring-up before anything else.  It does not yield: a generator per
        write would cost heap on every AT round trip (a UART that stalls
        holds the loop up to the deadline)."""
        t0 = ticks_ms()
        limit = timeout or self.t["at"]
        while n:
            w = self._uart.write(buf, off, n)
            if w:
                self.uart_tx += w
                off += w
                n -= w
            if n and ticks_diff(ticks_ms(), t0) > limit:
                if self._sending:
                    self._owed = n       # the data still due (a command's own bytes: none)
                self._desync(errno.ETIMEDOUT)
                raise OSError(errno.ETIMEDOUT, "UART takes no bytes")

    def _cut(self, e):
        """A command ended in an error while an AT+CIPSEND still waited for
        its data (no prompt in time): a late prompt would take our next
        command as data."""
        if self._sending:
            self._desync(e.args[0] if e.args else errno.ETIMEDOUT)

    def _pay(self):
        """Write the data bytes still owed to a cut AT+CIPSEND (0xFF)."""
        pad = b"\xff\xff\xff\xff\xff\xff\xff\xff"
        while self._owed > 0:
            k = 8 if self._owed > 8 else self._owed
            w = self._uart.write(pad, 0, k)
            if not w:
                return                   # paid before the next command
            self._owed -= w

    def _desync(self, err):
        """The dialogue with the modem was cut in the middle (a write that did
        not finish, a task cancelled mid-command): what the modem expects next
        is unknown.  The link is gone and the next use brings the modem up
        from scratch (AT sync first)."""
        if self._sending:
            # An AT+CIPSEND=<n> takes the next n bytes as data, prompt seen
            # or not (the modem reads them from its UART buffer after its
            # "> "), so our next commands would go to the server.  ESC cancels
            # only the Ctrl-Z form of AT+CIPSEND (manual), not this one: pay
            # the bytes, as 0xFF, which as the start of a packet is MQTT's
            # reserved type 15 (a broker drops the link rather than deliver
            # it).  What the UART will not take now is paid before the next
            # command.  The link is dropped either way.
            self._sending = False
            self._pay()
        self._needs_start = True
        self._ctx_up = False
        self._data_left = 0
        self._lost(err)

    def _waited(self, mask, t0, timeout):
        """Pump; True once a result in `mask` came.  Raises on reboot or deadline."""
        self._pump()
        if self._seen & mask:
            return True
        if self._abort:
            raise OSError(self._abort)
        if ticks_diff(ticks_ms(), t0) >= timeout:
            # The modem fell silent or lost sync: bring it up again next time.
            self._needs_start = True
            self._ctx_up = False
            self._lost(errno.ETIMEDOUT)
            raise OSError(errno.ETIMEDOUT)
        return False

    def _g_wait(self, mask, timeout, t0=None):
        if t0 is None:
            t0 = ticks_ms()
        while not self._waited(mask, t0, timeout):
            yield
        return self._seen

    def _g_cmd(self, cmd, mask=_FINAL, timeout=None, want=None):
        self._send(cmd, len(cmd), want, timeout)
        return (yield from self._g_wait(mask, timeout or self.t["at"]))

    def _g_ok(self, cmd, timeout=None, what=None):
        if (yield from self._g_cmd(cmd, _FINAL, timeout)) & _ERROR:
            raise OSError(errno.EIO, (what or cmd.decode().strip()) + ": ERROR")

    def _g_sleep(self, ms):
        t0 = ticks_ms()
        while ticks_diff(ticks_ms(), t0) < ms:
            self._pump()
            yield

    def _g_pulse(self, pin, ms):
        pin.value(0)
        yield from self._g_sleep(ms)
        pin.value(1)

    def _info_text(self):
        """The last info line as text (bring-up only: it allocates).  Bytes that
        are not printable ASCII (line noise, a mangled reply) read as '?', so
        a junk reply never raises UnicodeError: it just matches nothing."""
        b = bytearray(self._info[:self._info_n])
        for i in range(len(b)):
            if not 32 <= b[i] < 127:
                b[i] = 63
        return bytes(b).decode()

    def _info_number(self, i):
        """The number at info[i:] (spaces skipped) up to ',' or the end; -1 if
        there is none (a mangled reply like '+CSQ: ab,0')."""
        info, n = self._info, self._info_n
        while i < n and info[i] == 32:
            i += 1
        v, start = 0, i
        while i < n and 48 <= info[i] <= 57 and v < 1000:
            v = v * 10 + info[i] - 48
            i += 1
        if i == start or (i < n and info[i] != 44):
            return -1
        return v

    def _info_is_address(self):
        """The info line is a dotted IPv4 address (the AT+CIFSR answer)."""
        info, n = self._info, self._info_n
        parts = digits = v = 0
        for i in range(n):
            b = info[i]
            if 48 <= b <= 57 and digits < 3:
                v = v * 10 + b - 48
                digits += 1
            elif b == 46 and digits and parts < 3:
                if v > 255:
                    return False
                parts += 1
                digits = v = 0
            else:
                return False
        return parts == 3 and digits > 0 and v <= 255

    def _g_poll(self, cmd, want, good, timeout, what):
        """Repeat a query until its reply holds one of `good`; returns the reply."""
        t0 = ticks_ms()
        while True:
            if (yield from self._g_cmd(cmd, _FINAL, None, want)) & _INFO:
                text = self._info_text()
                for g in good:
                    if g in text:
                        return text
                if "+CREG: 0,3" in text or "+CGREG: 0,3" in text:
                    raise OSError(errno.EACCES, what + ": registration denied")
            if ticks_diff(ticks_ms(), t0) >= timeout:
                raise OSError(errno.ETIMEDOUT, what + ": " + (self._info_text() or "no answer"))
            yield from self._g_sleep(500)

    # ---- bring-up --------------------------------------------------------------
    def _g_start(self, hard_reset=False):
        """Bring the modem up; again (3 tries) if it rebooted after the AT sync
        (a brown-out in the middle: the settings made so far are gone)."""
        tries = 3
        while tries:
            boots = yield from self._g_bringup(hard_reset)
            if self.reboots == boots:
                self._needs_start = False
                return
            tries -= 1
            hard_reset = False
        raise OSError(errno.ECONNRESET, "modem rebooted during bring-up, 3 times")

    def _g_bringup(self, hard_reset):
        """One bring-up; returns the reboot count seen right after the AT sync."""
        self._needs_start = True
        self._ctx_up = False
        self._data_left = 0
        self._lost(errno.ECONNRESET)
        if hard_reset and self._reset_pin is not None:
            yield from self._g_pulse(self._reset_pin, 150)     # RESET low >= 105 ms
        # Autobaud: the modem locks onto our rate from "AT"; repeat until OK.
        t0 = ticks_ms()
        pulsed = False
        while True:
            try:
                yield from self._g_cmd(b"AT\r", _OK, 500)
                break
            except OSError:
                if ticks_diff(ticks_ms(), t0) >= self.t["sync"]:
                    raise OSError(errno.ETIMEDOUT, "modem does not answer AT")
                if self._pwrkey is not None and not pulsed and ticks_diff(ticks_ms(), t0) > 2000:
                    pulsed = True                               # probably off: PWRKEY low ~1 s
                    yield from self._g_pulse(self._pwrkey, 1100)
        yield from self._g_sleep(100)    # let a late duplicate OK or boot URC pass
        boots = self.reboots
        yield from self._g_ok(b"ATE0\r")
        self._expect_cpin = True
        try:
            t0 = ticks_ms()
            while True:
                text = yield from self._g_poll(b"AT+CPIN?\r", b"+CPIN:", ("READY", "SIM PIN", "SIM PUK"),
                                               self.t["sim"], "SIM")
                if "NOT READY" in text:      # the SIM is not up yet: ask again
                    if ticks_diff(ticks_ms(), t0) >= self.t["sim"]:
                        raise OSError(errno.ETIMEDOUT, "SIM: " + text)
                    yield from self._g_sleep(500)
                    continue
                if "READY" in text:
                    break
                if "SIM PIN" in text and "PH_SIM" not in text and self._pin:   # (PH_SIM PIN: the phone's lock, not ours)
                    yield from self._g_ok(b'AT+CPIN="' + str(self._pin).encode() + b'"\r', what="AT+CPIN")
                    continue
                raise OSError(errno.EACCES, "SIM locked: " + text)
        finally:
            self._expect_cpin = False
        yield from self._g_poll(b"AT+CREG?\r", b"+CREG:", (",1", ",5"), self.t["reg"], "AT+CREG?")
        yield from self._g_poll(b"AT+CGREG?\r", b"+CGREG:", (",1", ",5"), self.t["reg"], "AT+CGREG?")
        self.rssi = 99                   # the manual's "not known or not detectable"
        if (yield from self._g_cmd(b"AT+CSQ\r", _FINAL, None, b"+CSQ:")) & _INFO:
            rssi = self._info_number(5)
            if 0 <= rssi <= 99:
                self.rssi = rssi
            else:
                self.junk += 1           # a mangled reply: the level is not known
        yield from self._g_context()
        return boots

    def _g_context(self):
        """GPRS: from any state to IP STATUS with a local address."""
        self._ctx_up = False
        self._lost(errno.ECONNRESET)
        self._stale = False              # AT+CIPSHUT drops any link
        yield from self._g_cmd(b"AT+CIPSHUT\r", _SHUT_OK | _ERROR, self.t["cipshut"])
        yield from self._g_ok(b"AT+CIPMUX=0\r")
        yield from self._g_ok(b"AT+CIPRXGET=1\r")
        yield from self._g_ok(b"AT+CIPQSEND=1\r")
        yield from self._g_poll(b"AT+CGATT?\r", b"+CGATT:", (": 1",), self.t["reg"], "AT+CGATT?")
        q = lambda s: b'"' + s.encode() + b'"'
        yield from self._g_ok(b"AT+CSTT=" + q(self._apn) + b"," + q(self._user) + b"," +
                              q(self._password) + b"\r", what="AT+CSTT (APN)")
        yield from self._g_ok(b"AT+CIICR\r", self.t["ciicr"], "AT+CIICR (GPRS up)")
        # AT+CIFSR answers with the bare address and no OK: every unknown line
        # is a candidate.  One deadline for the command: unknown URCs or junk
        # lines that keep coming are skipped, they do not restart the wait.
        self._send(b"AT+CIFSR\r", 9, b"")
        t0 = ticks_ms()
        while True:
            yield from self._g_wait(_INFO | _ERROR, self.t["at"], t0)
            if self._seen & _ERROR:
                raise OSError(errno.EIO, "AT+CIFSR: ERROR")
            if self._info_is_address():
                break
            self.junk += 1
            self._seen = 0
        self.ip = self._info_text()
        self._ctx_up = True

    # ---- TCP -------------------------------------------------------------------
    def _g_connect(self, host, port):
        if isinstance(host, str):
            host = host.encode()
        if self._needs_start:
            yield from self._g_start()
        elif not self._ctx_up:
            yield from self._g_context()
        if self._linked or self._stale:
            yield from self._g_close()
        cmd = b'AT+CIPSTART="TCP","' + host + b'",' + str(port).encode() + b"\r"
        for _ in range(2):
            self._reset_link()
            seen = yield from self._g_cmd(cmd, _CONNECT_OK | _CONNECT_FAIL | _ALREADY | _ERROR,
                                          self.t["cipstart"])
            if seen & _CONNECT_OK:
                self._linked = True
                self._gen += 1
                return
            if seen & _CONNECT_FAIL:
                raise OSError(errno.ECONNREFUSED)
            # ERROR (ALREADY CONNECT may follow): ask the state, then repair it.
            yield from self._g_cmd(b"AT+CIPSTATUS\r", _INFO, None, b"STATE: ")
            state = self._info_text()
            if "CONNECT OK" in state or "CONNECTING" in state:
                self._linked = True
                yield from self._g_close()
            else:
                yield from self._g_context()
        raise OSError(errno.ENOTCONN)

    def _g_close(self):
        self._linked = self._stale = False
        yield from self._g_cmd(b"AT+CIPCLOSE=1\r", _CLOSE_OK | _ERROR)

    def _g_fill(self):
        """Fetch what the modem holds into the (empty) local buffer."""
        self._rxhead = self._rxtail = 0
        self._rx_pending = False
        self._last_poll = ticks_ms()
        closed = self._peer_closed
        # The data path waits inline: one generator object per operation, not three.
        self._send(self._rxget_cmd, len(self._rxget_cmd))
        self._fetching = True            # the parser takes one header, for this fetch
        t0, timeout = ticks_ms(), self.t["rx"]
        try:
            while not self._waited(_FINAL, t0, timeout):
                yield
        finally:
            self._fetching = False
            if self._data_left:          # fewer bytes came than the header said: the
                self._data_left = 0      # count must not eat the modem's next replies
                self._lost(errno.EIO)
        if self._seen & _ERROR:
            self._modem_avail = 0
            if not closed:
                self._lost(errno.ENOTCONN)
        if closed and self._modem_avail == 0:
            self._drained = True          # CLOSED came before this read: nothing more

    def _g_send(self, buf, off, n):
        if self._peer_closed:
            raise OSError(errno.ECONNRESET)  # CLOSED came: nothing can be sent any more
        # "AT+CIPSEND=<n>\r": the digits go into the preallocated command by index.
        c, i, d = self._cmd, 11, 10000
        while d > 1 and n < d:
            d //= 10
        while d:
            c[i] = 48 + (n // d) % 10
            i += 1
            d //= 10
        c[i] = 13
        self._send(c, i + 1, None, self.t["send"])
        self._sending = True             # until the data is out (see _desync)
        self._owed = n
        # One deadline for the whole command: the prompt, the data, the confirmation.
        # A CLOSED before the prompt does not end the wait: the modem answers
        # ERROR, or prompts and then takes n bytes whatever we send next.
        # (No try block here: it would grow every send's generator object;
        # a wait that raises with _sending still up is handled by _run/_arun.)
        t0, timeout = ticks_ms(), self.t["send"]
        while not self._waited(_PROMPT | _ERROR, t0, timeout):
            yield
        if self._seen & _ERROR:
            self._sending = False
            self._owed = 0               # refused: the modem waits for no data
            self._lost(errno.ENOTCONN)
            raise OSError(errno.ENOTCONN)
        self._write(buf, off, n, timeout)    # (ETIMEDOUT: _desync pays what is still owed)
        self._sending = False
        self._owed = 0
        while not self._waited(_ACCEPT | _SEND_OK | _SEND_FAIL | _ERROR, t0, timeout):
            if self._peer_closed or not self._linked:   # CLOSED or +PDP: DEACT instead of
                raise OSError(self._link_err or errno.ECONNRESET)  # DATA ACCEPT: say so now
            yield
        if self._seen & (_SEND_FAIL | _ERROR):
            self._lost(errno.ECONNRESET)
            raise OSError(errno.ECONNRESET)

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


class _Done:
    """An awaitable that completes at once with None, without allocating."""

    def __init__(self):
        self._it = iter(())

    def __await__(self):
        return self._it

    __iter__ = __await__


_NONE = _Done()


class _Base:
    def __init__(self, modem):
        self._m = modem
        self._gen = -1

    def _check(self):
        m = self._m
        if self._gen != m._gen:
            raise OSError(errno.ENOTCONN)      # never connected, closed, or replaced
        if m._link_err:
            raise OSError(m._link_err)

    def setblocking(self, flag):
        pass                                   # reads never block; writes wait for the modem

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
            m._run(m._g_fill())
            r = m._rx_ready(buf, nbytes)
        return r if r >= 0 else None

    def write(self, buf, nbytes=None):
        self._check()
        m = self._m
        n = len(buf) if nbytes is None else nbytes
        if n > m._max_send:
            n = m._max_send
        if n:
            m._run(m._g_send(buf, 0, n))
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
    """Async flavour: same names, awaited; but readinto answers a plain None
    (nothing to await) when nothing waits, so a poll costs no object."""
    getaddrinfo = staticmethod(_agetaddrinfo)

    async def connect(self, addr):
        m = self._m
        await m._arun(m._g_connect(addr[0], addr[1]))
        self._gen = m._gen

    def readinto(self, buf, nbytes=None):
        # A plain def: "nothing yet" (None) and bytes already at hand (an int,
        # copied now) cost no coroutine object; only a fetch from the modem is
        # an awaitable, and it reads only when awaited (the client may drop
        # one it never started, losing nothing).
        self._check()
        r = self._m._rx_ready(buf, nbytes)
        if r == -1:
            return None
        if r >= 0:
            return r
        return self._afetch(buf, nbytes)

    async def _afetch(self, buf, nbytes):
        m = self._m
        await m._arun(m._g_fill())
        self._check()
        r = m._rx_ready(buf, nbytes)
        return r if r >= 0 else None

    async def write(self, buf, nbytes=None):
        self._check()
        m = self._m
        n = len(buf) if nbytes is None else nbytes
        off = 0
        while off < n:
            k = n - off
            if k > m._max_send:
                k = m._max_send
            await m._arun(m._g_send(buf, off, k))
            off += k
        return n

    async def close(self):
        m = self._m
        if self._gen == m._gen and m._linked:
            try:
                await m._arun(m._g_close())
            except OSError:
                pass
        self._gen = -1

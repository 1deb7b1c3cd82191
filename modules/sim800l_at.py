"""The SIM800L's AT dialogue: the line parser, URCs, result bits, commands.

Owns: reading the UART (_pump/_feed), turning each line into either an
unsolicited result code (_urc: link and modem state) or a result of the
pending command (_result: bits in self._seen), sending a command (_send,
_write), waiting for a result with its deadline (_waited), and what a cut
dialogue leaves behind (_desync, _pay, _lost).  Nothing here waits or
yields: the bring-up (sim800l_bringup) and the data path (sim800l) call
these and decide how to wait.  Nothing here allocates per byte or per line
(tests: test_parser_allocates_nothing).

To add a URC: one branch in `_urc`, under the line's first byte.

Network time (see docs/sim800l.md "Network time"): the *PSUTTZ URC is
parsed here and handed to _set_time (sim800l_bringup), which keeps it
as UTC (network_time) and sets the board's clock.
"""
import errno

from mpcompat import ticks_diff, ticks_ms

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Result bits set by the parser while a command is pending.
R_OK = const(1)
R_ERROR = const(2)
R_SHUT_OK = const(4)
R_CLOSE_OK = const(8)
R_CONNECT_OK = const(16)
R_CONNECT_FAIL = const(32)
R_ALREADY = const(64)
R_SEND_OK = const(128)
R_SEND_FAIL = const(256)
R_ACCEPT = const(512)
R_INFO = const(1024)        # a line starting with the pending command's `want` prefix
R_PROMPT = const(2048)      # the "> " of AT+CIPSEND
R_FINAL = const(3)          # R_OK | R_ERROR

_LINE_MAX = const(128)
# A modem clock before this year was never set by the network (the SIM800's
# own RTC starts at 2004/01/01 at power-up): not a time to trust.
MIN_YEAR = const(2024)

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


class _AT:
    """Parser and command layer (SIM800L's base); link and modem state flags
    (_linked, _needs_start, ...) are made in SIM800L.__init__."""

    def __init__(self, uart, rxbuf, timeouts):
        self._uart = uart
        self.t = dict(TIMEOUTS)
        if timeouts:
            self.t.update(timeouts)
        # Preallocated buffers: UART chunk, line, last wanted info line, data.
        self._chunk = bytearray(64)
        self._line = bytearray(_LINE_MAX)
        self._ln = 0
        self._info = bytearray(_LINE_MAX)
        self._info_n = 0
        self._clk = [0, 0, 0, 0, 0, 0]   # a *PSUTTZ's fields, parsed in place
        self._want = None
        self._rx = bytearray(min(rxbuf, 1460))
        self._data_left = 0              # raw bytes still due in a +CIPRXGET: 2 block
        self._fetching = False           # an AT+CIPRXGET=2 awaits its one header
        self._sending = False            # an AT+CIPSEND waits for its data (see _desync)
        self._owed = 0                   # data bytes an AT+CIPSEND still waits for (see _desync)
        self._seen = 0                   # result bits of the pending command
        self._abort = 0                  # errno: the pending command will never be answered
        self._expect_cpin = False        # "+CPIN: READY" is an answer, not a reboot
        self.at_commands = self.uart_tx = self.uart_rx = self.urcs = 0
        self.warnings = self.rings = self.reboots = self.junk = 0
        # Network time: UTC seconds since 1970 and the ticks_ms() it was taken
        # at, where it came from ("+CCLK", "*PSUTTZ"), whether machine.RTC
        # was set, and why the last attempt gave no time (None: it did).
        self.network_time = None
        self.network_time_ms = 0
        self.clock_source = None
        self.clock_set = False
        self.clock_note = None
        self.clock_errors = 0            # ERROR answers to AT+CLTS?/AT+CLTS=1/AT+CCLK?
        self._clock_read = None          # what the last AT+CCLK? gave (read_clock)

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
                    self._seen |= R_PROMPT
                    self._ln = 0

    def _do_line(self):
        """One complete line.  The order of the checks:
        1. our own echo ("AT..."; echo is on at power-up and after a reboot);
        2. URCs (_urc), before anything else: they land anywhere, in the
           middle of another command's reply too, and the pending command's
           `want` prefix may be b"" (AT+CIFSR takes any line), so a URC
           checked later could be taken as its answer;
        3. the pending command's result lines (_result), which end with
           junk: what is neither is counted and ignored."""
        line = self._line
        if line[0] == 65 and self._ln > 1 and line[1] == 84:   # "AT...": our echo
            return
        if not self._urc():
            self._result()

    def _urc(self):
        """Unsolicited result codes: link and modem state, whatever command is
        pending.  True if the line was one.  Sorted by first byte, so the
        reply lines of the data path (OK, DATA ACCEPT, +CIPRXGET: 2) cost a
        comparison or two here."""
        line, c = self._line, self._line[0]
        if c == 43:                                              # '+'
            if self._pre(b"+CIPRXGET: 1") and (self._ln == 12 or line[12] == 44):
                self._rx_pending = True                          # data waits in the modem
                self.urcs += 1
            elif self._is(b"+PDP: DEACT"):                       # GPRS context gone
                self.urcs += 1
                self._ctx_up = False
                self._lost(errno.ECONNRESET)
            elif self._is(b"+CFUN: 1") or (self._is(b"+CPIN: READY") and not self._expect_cpin):
                self._rebooted()
            else:
                return False
        elif c == 42:                                            # '*'
            if self._pre(b"*PSUTTZ: ") and self._psuttz():
                self.urcs += 1                                   # network time (CLTS=1)
            else:
                return False                                     # malformed: junk
        elif c == 67:                                            # 'C'
            if self._is(b"CLOSED"):                              # the peer closed the link
                self._peer_closed = True
                self.urcs += 1
            elif self._is(b"Call Ready"):
                self._rebooted()
            else:
                return False
        elif c == 82:                                            # 'R'
            if self._is(b"RDY"):
                self._rebooted()
            elif self._is(b"RING"):
                self.urcs += 1
                self.rings += 1
            else:
                return False
        elif c == 83:                                            # 'S'
            if self._is(b"SMS Ready"):
                self._rebooted()
            else:
                return False
        elif c == 78:                                            # 'N'
            if self._pre(b"NORMAL POWER DOWN"):
                self._powered_down()
            elif self._is(b"NO CARRIER"):
                self.urcs += 1
                self.rings += 1
            else:
                return False
        elif c == 85 or c == 79:                                 # 'U', 'O': supply voltage
            if self._pre(b"UNDER-VOLTAGE POWER DOWN") or self._pre(b"OVER-VOLTAGE POWER DOWN"):
                self._powered_down()
            elif self._pre(b"UNDER-VOLTAGE WARN") or self._pre(b"OVER-VOLTAGE WARN"):
                self.urcs += 1
                self.warnings += 1
            else:
                return False
        else:
            return False
        return True

    def _result(self):
        """A line of the pending command's reply: sets its bit in self._seen
        (the waiting command looks only at those); else junk."""
        line = self._line
        if self._is(b"OK"):
            self._seen |= R_OK
        elif self._is(b"ERROR") or self._pre(b"+CME ERROR"):
            self._seen |= R_ERROR
        elif self._pre(b"+CIPRXGET: ") and self._ln > 11:
            if line[11] == 50 and self._ln > 12 and line[12] == 44:   # '2,<got>,<left>' + raw bytes
                self._rx_header()
            elif self._fetching:         # a mangled header where ours was due
                self._fetching = False
                self._lost(errno.EIO)
            else:
                self.junk += 1
        elif self._pre(b"DATA ACCEPT:"):
            self._seen |= R_ACCEPT
        elif self._is(b"SEND OK"):
            self._seen |= R_SEND_OK
        elif self._is(b"SEND FAIL"):
            self._seen |= R_SEND_FAIL
        elif self._is(b"CONNECT OK"):
            self._seen |= R_CONNECT_OK
        elif self._is(b"CONNECT FAIL"):
            self._seen |= R_CONNECT_FAIL
        elif self._is(b"ALREADY CONNECT"):
            self._seen |= R_ALREADY
        elif self._is(b"SHUT OK"):
            self._seen |= R_SHUT_OK
        elif self._is(b"CLOSE OK"):
            self._seen |= R_CLOSE_OK
        elif self._want is not None and self._pre(self._want):
            self._info[:self._ln] = line[:self._ln]      # bring-up only: may allocate
            self._info_n = self._ln
            self._seen |= R_INFO
        else:
            self.junk += 1               # line noise, or a URC we do not act on

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

    def _psuttz(self):
        """'*PSUTTZ: <year>,<month>,<day>,<hour>,<min>,<sec>,"<zone>",<dst>'
        (manual: "Refresh time and time zone by network", sent after
        registration with AT+CLTS=1).  The manual does not say whether the
        fields are local time or UTC.  They come from NITZ, whose "time zone
        and time" (3GPP TS 24.008) is universal time plus the zone, so they
        are taken as UTC (not checked on a real module here) and the zone
        is not subtracted.  Exactly 8 fields, the zone a signed number in
        quotes; anything else (or an implausible date) is junk: False.
        Rare (once per registration): applying it allocates a little."""
        line, n, i = self._line, self._ln, 9
        f = self._clk
        for k in range(6):
            v = self._num(i)
            if self._end == i or self._end - i > 4 or self._end >= n or line[self._end] != 44:
                return False
            f[k] = v
            i = self._end + 1
        if n - i < 6 or line[i] != 34 or (line[i + 1] != 43 and line[i + 1] != 45):  # '"+', '"-'
            return False
        z = self._num(i + 2)
        if self._end == i + 2 or self._end - i > 4 or self._end + 2 >= n or \
                line[self._end] != 34 or line[self._end + 1] != 44:
            return False
        self._num(self._end + 2)                                 # <dst>: 0, 1, 2
        if self._end != n:
            return False
        if line[i + 1] == 45:
            z = -z
        # The zone is checked, not used: the fields are UTC already.
        return -96 <= z <= 96 and self._set_time(f[0], f[1], f[2], f[3], f[4], f[5], 0,
                                                  "*PSUTTZ") == 0

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

    # ---- modem and link state --------------------------------------------------
    def _powered_down(self):
        self.urcs += 1
        self._rebooted()                 # it is off: the next connect must bring it up

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

"""The SIM800L's rare paths, as generators: bring-up, GPRS context, connect, close.

Owns: the scripts that run once per power-up or per connection (AT sync,
SIM, registration, network time, GPRS context, AT+CIPSTART, AT+CIPCLOSE), each a
generator that sends a command and yields until its result or deadline,
and the two drivers that run them: _run (sync: sleep_ms between steps) and
_arun (async: asyncio between steps; one dialogue at a time).  A generator
object per command is fine here: these run seldom.  The data path (a
publish, a receive) is not here: see sim800l.py, it allocates nothing.

Network time (docs/sim800l.md "Network time"): _g_clock at bring-up
(AT+CLTS?, AT+CCLK?), and _set_time, which the parser also calls for a
*PSUTTZ URC: the time as UTC seconds (network_time) and the board's clock
(_set_rtc, machine.RTC where there is one).
"""
import errno

from mpcompat import asleep_ms, sleep_ms, ticks_diff, ticks_ms
from sim800l_at import _AT, MIN_YEAR
from sim800l_at import (R_ALREADY as _ALREADY, R_CLOSE_OK as _CLOSE_OK, R_CONNECT_FAIL as _CONNECT_FAIL,
                        R_CONNECT_OK as _CONNECT_OK, R_ERROR as _ERROR, R_FINAL as _FINAL,
                        R_INFO as _INFO, R_OK as _OK, R_SHUT_OK as _SHUT_OK)


try:
    from machine import RTC as _RTC     # rp2, esp32: the board's clock (TLS checks dates)
except ImportError:                     # CPython, the unix port: the system clock is not ours
    _RTC = None


def _days(y, m, d):
    """Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's
    days_from_civil): no time.mktime, whose epoch is 2000 on some ports."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _civil(z):
    """(year, month, day) of day z since 1970-01-01 (civil_from_days)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, doy - (153 * mp + 2) // 5 + 1


def _set_rtc(t):
    """Set machine.RTC to UTC second t; False where there is none (or it
    refuses).  rp2 and esp32 take (year, month, day, weekday, hours,
    minutes, seconds, subseconds); weekday 0 is Monday (rp2 recomputes it)."""
    if _RTC is None:
        return False
    days = t // 86400
    s = t - days * 86400
    y, m, d = _civil(days)
    try:
        _RTC().datetime((y, m, d, (days + 3) % 7, s // 3600, s // 60 % 60, s % 60, 0))
    except Exception:  # noqa: B902 -- a board clock that refuses is no reason to fail
        return False
    return True


class _Bringup(_AT):
    """SIM800L's base (after _AT): its data path's _op, _step and _settle
    are used here only to let an operation in flight end first."""

    # ---- drivers for the generators ----------------------------------------
    def _run(self, g):
        self._settle()                   # a data operation in flight ends first
        for _ in g:
            sleep_ms(self._poll_ms)

    async def _arun(self, g):
        # One AT dialogue at a time across tasks: wait for another task's
        # dialogue, and let a data operation in flight end (stepping it).
        while self._busy or self._op:
            if self._op:
                self._step()
            await asleep_ms(self._poll_ms)
        self._busy = True
        try:
            for _ in g:
                await asleep_ms(self._poll_ms)
        except OSError:
            raise
        except BaseException:
            self._desync(errno.ECONNABORTED)    # cancelled in the middle of a command
            raise
        finally:
            self._busy = False

    # ---- waiting, as generators --------------------------------------------------
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
        yield from self._g_clock()
        yield from self._g_context()
        return boots

    # ---- network time (docs/sim800l.md "Network time") -------------------------
    def _g_clock(self):
        """AT+CLTS? ("get local timestamp"): if off, AT+CLTS=1 and AT&W (the
        setting is saved and takes effect from the next registration on: a
        module switched on for the first time gets the network's time only
        after a restart); then AT+CCLK?.  Two round trips (four the first
        time).  A modem that answers ERROR (a clone) does not fail the
        bring-up: the clock stays unset (clock_errors, clock_note)."""
        seen = yield from self._g_cmd(b"AT+CLTS?\r", _FINAL, None, b"+CLTS:")
        if seen & _INFO:
            clts = self._info_number(6)
            if clts == 0:
                if (yield from self._g_cmd(b"AT+CLTS=1\r")) & _ERROR:
                    self.clock_errors += 1
                else:
                    yield from self._g_cmd(b"AT&W\r")   # saved (an ERROR here changes nothing now)
            elif clts != 1:
                self.junk += 1           # a mangled reply: leave the setting alone
        else:
            self.clock_errors += 1       # no network time from this modem, probably
        yield from self._g_read_clock()

    def _g_read_clock(self):
        """AT+CCLK?: the modem's clock, into network_time and the board's clock
        if the network has set it.  self._clock_read: the UTC seconds, or None."""
        self._clock_read = None
        seen = yield from self._g_cmd(b"AT+CCLK?\r", _FINAL, None, b"+CCLK:")
        if not seen & _INFO:
            self.clock_errors += 1
            self.clock_note = "AT+CCLK?: ERROR"
            return
        r = self._cclk()
        if r == 0:
            self._clock_read = self.network_time
            return
        if r == 1:                       # its power-on default: the network never set it
            self.clock_note = "modem clock not set: " + self._info_text()[7:]
        else:
            self.junk += 1
            self.clock_note = "+CCLK: unreadable"

    def _set_time(self, y, mo, d, h, mi, s, zq, source):
        """A local date and time and its zone (quarter hours east of UTC): keep
        it as UTC (network_time) and set the board's clock.  -> 0 done,
        1 a clock the network never set (year before MIN_YEAR), 2 no date."""
        if not (1 <= mo <= 12 and 1 <= d <= 31 and 0 <= h < 24 and 0 <= mi < 60 and
                0 <= s < 60 and -96 <= zq <= 96 and y < 2100):
            return 2
        if y < MIN_YEAR:
            return 1
        days = _days(y, mo, d)
        if _civil(days) != (y, mo, d):   # 30 February
            return 2
        t = days * 86400 + h * 3600 + mi * 60 + s - zq * 900
        self.network_time = t
        self.network_time_ms = ticks_ms()
        self.clock_source = source
        self.clock_note = None
        self.clock_set = _set_rtc(t) or self.clock_set
        return 0

    def _cclk(self):
        """'+CCLK: "yy/MM/dd,hh:mm:ss±zz"' (3GPP 27.007: zz, the time zone in
        quarter hours, -96..+96; a module without zones leaves it out) ->
        _set_time's answer: 0 set, 1 the modem's clock was never set, 2 junk."""
        t = self._info_text()
        i, j = t.find('"'), t.rfind('"')
        if i < 0 or j - i < 18 or t[:i].strip() != "+CCLK:" or t[j + 1:].strip():
            return 2
        v = t[i + 1:j]
        if v[2] + v[5] + v[8] + v[11] + v[14] != "//,::":
            return 2
        f = [0, 0, 0, 0, 0, 0]
        for k in range(6):               # yy MM dd hh mm ss
            a = v[3 * k:3 * k + 2]
            if not a.isdigit():
                return 2
            f[k] = int(a)
        z = v[17:]
        if z:
            if z[0] not in "+-" or not 2 <= len(z) <= 3 or not z[1:].isdigit():
                return 2
            z = int(z[1:]) * (-1 if z[0] == "-" else 1)
        else:
            z = 0
        return self._set_time(2000 + f[0], f[1], f[2], f[3], f[4], f[5], z, "+CCLK")

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


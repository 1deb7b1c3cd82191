#!/usr/bin/env python3
"""A SIM800L modem simulator that speaks the AT dialogue and bridges to real TCP.

The driver (modules/sim800l.py) talks to it exactly as it would talk to a
modem on /dev/ttyUSB0: through a pty (`--pty`) or through a TCP socket that
stands in for the UART (`--tcp PORT`; the MicroPython unix port has no UART).
What the simulator answers follows the SIM800 Series AT Command Manual
(V1.09, chapters 2-3 and 8 "TCPIP Application Toolkit"):

  * command lines end with <CR>; with ATE1 (the power-on default) every byte
    typed is echoed, including the data typed after the '>' prompt;
  * results are framed "\\r\\nOK\\r\\n" / "\\r\\nERROR\\r\\n", intermediate
    lines "\\r\\n+CSQ: 20,0\\r\\n";
  * single-connection TCP/IP (AT+CIPMUX=0) with the states AT+CIPSTATUS
    reports (IP INITIAL, IP START, IP CONFIG, IP GPRSACT, IP STATUS,
    TCP CONNECTING, CONNECT OK, TCP CLOSED, IP CLOSE, PDP DEACT);
  * AT+CIPSTART answers OK, then CONNECT OK / "STATE: ..." + CONNECT FAIL /
    ALREADY CONNECT; it is refused (ERROR) outside IP INITIAL, IP STATUS and
    after a closed connection;
  * AT+CIPSEND=<n> prompts "\\r\\n> ", takes exactly n bytes and confirms with
    SEND OK (AT+CIPQSEND=0) or DATA ACCEPT:<n> (AT+CIPQSEND=1), or SEND FAIL;
  * manual receive (AT+CIPRXGET=1): URC "+CIPRXGET: 1" once when data waits
    (again only after a read), AT+CIPRXGET=2,<len> answers
    "+CIPRXGET: 2,<got>,<still waiting>" + raw bytes + OK (the third number
    is what TinyGSM observed on real modules), AT+CIPRXGET=4 the count waiting;
  * AT+CIFSR answers the bare IP address without OK; AT+CIPSTATUS answers OK
    *then* the STATE line; AT+CIPSHUT answers SHUT OK, AT+CIPCLOSE CLOSE OK;
  * URCs between lines: CLOSED, +PDP: DEACT, RING, UNDER-VOLTAGE WARNNING
    (sic), UNDER-VOLTAGE POWER DOWN, and after a reset RDY, +CFUN: 1,
    +CPIN: READY, Call Ready, SMS Ready;
  * network time: AT+CLTS? / AT+CLTS=<0|1> ("get local timestamp"; the
    setting in effect at power-up is the one AT&W saved, so AT+CLTS=1 acts
    from the next boot on, as on a module), AT+CCLK? answering
    +CCLK: "yy/MM/dd,hh:mm:ss±zz" (local time, zz the zone in quarter
    hours), AT+CCLK="..." setting it; with CLTS on at power-up, the URCs
    *PSUTTZ: <year>,<month>,<day>,<hour>,<min>,<sec>,"<zone>",<dst> (UTC
    fields) and DST: <dst> once, right after the first AT+CREG?/AT+CGREG?
    reply that reports registration.

Fault injection (each one is used by tests/test_sim800l*.py):
  global knobs  delay_ms (every response late), split (responses written in
                chunks of that many bytes, split_gap_ms apart), miss_rx_urc;
  arm(kind, on=b"AT+CIPSEND", nth=1, **arg)  fires when the nth matching
                command line arrives (counted from arming);
  fire(kind, **arg)  fires now, from any thread.
  kinds: delay, split, urc_mid, garbage, send_fail, connect_fail, closed,
         pdp_deact, silence, reset, power_down, drop_rx_urc, urc, nitz (the
         network's time URCs now: *PSUTTZ and DST; the modem's clock is set);
  junk (a hostile modem): mangle (the reply's info line gets non-UTF-8
         bytes, how="bytes", or letters for digits, how="letters"),
         urc_stream (unknown URCs every every_ms for seconds; swallow=True:
         the command itself is not answered), closed_mid_send (CLOSED
         instead of DATA ACCEPT/SEND FAIL; at="prompt": right after the
         prompt), flood (line noise as fast as the UART link takes, or
         rate bytes/s, for seconds; never inside a reply), error (the
         command is answered ERROR and does nothing).
  chaos(rate, total, kinds)  fires random ones; kinds CHAOS_KINDS (the
         classic faults), JUNK_KINDS, or HOSTILE_KINDS (both).

CLI:  python3 host/sim800l_sim.py --pty            prints  PTY /dev/pts/N
      python3 host/sim800l_sim.py --tcp 5000       prints  TCP 127.0.0.1:5000
      --dns name=1.2.3.4 maps names for AT+CIPSTART/AT+CDNSGIP; -v logs the dialogue;
      --arm "mangle on=AT+CSQ nth=1 how=letters" arms a fault (repeatable);
      --clts 1 (CLTS saved on), --cclk unset|host|SECONDS (the modem's clock),
      --cclk-zone 32 (quarter hours), --no-nitz (no *PSUTTZ after registration);
      --chaos 0.1,200 --kinds hostile --seed 3 fires random ones.
"""
import argparse
import os
import random
import select
import socket
import sys
import threading
import time

# The SIM800's own clock at power-up, before the network has set it.
RTC_POWER_ON = (2004, 1, 1, 0, 0, 0)
BOOT_URCS = (b"RDY", b"+CFUN: 1", b"+CPIN: READY", b"Call Ready", b"SMS Ready")
RX_MAX = 1460          # manual: <reqlength> of AT+CIPRXGET=2 is 1..1460
SEND_MAX = 1460        # what AT+CIPSEND? reports for a TCP link
LOCAL_IP = b"10.64.23.7"
# States in which AT+CIFSR answers (PDP context active).
CTX_STATES = ("IP GPRSACT", "IP STATUS", "TCP CONNECTING", "CONNECT OK",
              "TCP CLOSED", "IP CLOSE")


# What the soak test draws from: (kind, arguments).
CHAOS_KINDS = (
    ("delay", {"ms": 80}), ("split", {"size": 2}), ("urc_mid", {"text": b"RING"}),
    ("urc_mid", {"text": b"UNDER-VOLTAGE WARNNING"}), ("garbage", {"n": 16}),
    ("drop_rx_urc", {}), ("send_fail", {}), ("connect_fail", {}), ("closed", {}),
    ("pdp_deact", {}), ("silence", {"seconds": 0.2}), ("reset", {}),
    ("power_down", {"seconds": 0.2}), ("urc", {"text": b"RING"}),
)
# A hostile modem: junk in replies, unknown URC streams, CLOSED mid-send, floods.
JUNK_KINDS = (
    ("mangle", {"how": "bytes"}), ("mangle", {"how": "letters"}),
    ("urc_stream", {"seconds": 0.4, "every_ms": 20}),
    ("urc_stream", {"seconds": 0.4, "every_ms": 20, "swallow": True}),
    ("closed_mid_send", {}), ("closed_mid_send", {"at": "prompt"}),
    ("flood", {"seconds": 0.3, "rate": 40000}), ("error", {}),
)
HOSTILE_KINDS = CHAOS_KINDS + JUNK_KINDS
KIND_SETS = {"classic": CHAOS_KINDS, "junk": JUNK_KINDS, "hostile": HOSTILE_KINDS}

# URCs a SIM800 may send that the driver does not act on (time zone, SMS,
# USSD, indicators): what an urc_stream sends.  The driver acts on a
# well-formed *PSUTTZ (network time): the one here is malformed (month 13),
# so it stays junk to the driver, counted and ignored, and sets no clock.
UNKNOWN_URCS = (b"+CTZV: 32,0", b'*PSUTTZ: 2026,13,1,1,14,45,"+32",0', b"DST: 0",
                b'+CIEV: 10,"26201","",""', b'+CMTI: "SM",1', b"+CUSD: 0",
                b"+CSMINS: 0,1")
DIGITS_TO_LETTERS = bytes.maketrans(b"0123456789", b"abcdefghij")
NOT_UTF8 = b"\xff\xfe\x80"


def crlf(line):
    return b"\r\n" + line + b"\r\n"


def accepts(*forms):
    """An AT_COMMANDS handler for a setting the simulator takes and ignores:
    OK when the rest of the command is one of `forms` (b"=": any value)."""
    def handler(sim, rest, arg):
        if rest in forms or (b"=" in forms and rest.startswith(b"=")):
            return sim._ok()
        return sim._error()
    return handler


class Fault:
    def __init__(self, kind, on, nth, arg):
        self.kind, self.on, self.left, self.arg = kind, on, nth, arg


class Sim800L:
    """One simulated modem. Thread-safe API: arm(), fire(), close(), counters."""

    def __init__(self, dns=None, delay_ms=0, split=0, split_gap_ms=1,
                 registration=1, reg_delay_ms=0, sim="READY", csq=(18, 0),
                 expect_apn=None, rx_buffer=8192, miss_rx_urc=False,
                 boot_ms=30, verbose=False, seed=None, clts=0, cclk="host",
                 cclk_zone=0, nitz=True):
        self.dns = dict(dns or {})
        self.delay_ms, self.split, self.split_gap_ms = delay_ms, split, split_gap_ms
        self.registration, self.reg_delay_ms = registration, reg_delay_ms
        self.sim, self.csq, self.expect_apn = sim, csq, expect_apn
        self.rx_buffer, self.miss_rx_urc = rx_buffer, miss_rx_urc
        self.boot_ms, self.verbose = boot_ms, verbose
        # Network time.  clts: AT+CLTS as saved (AT&W; 0 is the factory
        # setting), in effect from each power-up.  cclk: the modem's clock at
        # power-up, "host" (the host's UTC time: the network has set it),
        # "unset" (its own RTC from 2004/01/01,00:00:00 on, until the network
        # sends its time) or a number (the host's time plus that many seconds:
        # a wrong clock).  cclk_zone: quarter hours east of UTC (AT+CCLK? shows
        # local time).  nitz: send *PSUTTZ and DST after registration if CLTS
        # was on at power-up.
        self.clts_saved, self.cclk, self.cclk_zone, self.nitz = clts, cclk, cclk_zone, nitz
        self.rand = random.Random(seed)
        self.lock = threading.RLock()
        self.faults = []
        self.counts = {}          # command name -> how many received
        self.fired = {}           # fault kind -> how many fired
        self.uart_in = self.uart_out = 0
        self.tcp_up = self.tcp_down = 0
        self.dialogue = []        # (direction, bytes), kept short
        self.chaos_rate, self.chaos_left, self.chaos_kinds = 0.0, 0, ()
        self.power_on_at = None
        self.mangle = None        # the next info line is mangled: "bytes" / "letters"
        self.stream = None        # [until, every_s, next_due, index]: unknown URCs
        self.flood = None         # [until, rate or None, started, sent]: line noise
        self.flood_bytes = 0
        self._noise = self._make_noise()
        self._noise_at = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._listen = self._uart = self._pty = None
        self._thread = None
        self._running = False
        self._power_on_defaults()

    # ---- modem state -------------------------------------------------
    def _power_on_defaults(self):
        self.echo = True
        self.clts = self.clts_saved
        self.clts_at_boot = self.clts_saved
        self.nitz_sent = False
        # The modem's clock: seconds to add to the host's UTC time, or None:
        # unset (it counts from RTC_POWER_ON since boot).
        self.rtc = None if self.cclk == "unset" else (0 if self.cclk == "host" else float(self.cclk))
        self.rtc_zone = self.cclk_zone   # the zone it shows (AT+CCLK= may change it)
        self.mux = 0
        self.rxget = 0
        self.qsend = 0
        self.state = "IP INITIAL"
        self.apn = None
        self.powered = True
        self.booting_until = 0.0
        self.silent_until = 0.0       # inf = hung until reset
        self.boot_time = time.monotonic()
        self.cmd = bytearray()
        self.data_left = 0           # bytes still expected after '>'
        self.data_ctrlz = False      # AT+CIPSEND without length: ends at ^Z
        self.data = bytearray()
        self.send_fault = None
        self.post_fault = None
        self.remote = None
        self.connecting = None       # (socket, deadline) while TCP CONNECTING
        self.rxbuf = bytearray()
        self.rx_reported = False
        self.acked = 0
        self.out = []                # [(due, bytes)]
        self.last_due = 0.0
        self.urc_mid = None
        self.cur_delay = None
        self.cur_split = None

    # ---- transports ----------------------------------------------------
    def listen_tcp(self, port=0, host="127.0.0.1"):
        """Serve the UART on a TCP port (one client at a time); returns the port."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(1)
        s.setblocking(False)
        self._listen = s
        self.port = s.getsockname()[1]
        return self.port

    def open_pty(self):
        """Serve the UART on a pty in raw mode; returns the slave's path."""
        import tty
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty, self._pty_slave = master, slave
        self.pty_path = os.ttyname(slave)
        return self.pty_path

    def start(self):
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="sim800l", daemon=True)
        self._thread.start()
        return self

    def close(self):
        self._running = False
        self._wake()
        if self._thread:
            self._thread.join(5)
        for s in (self._listen, self._uart, self.remote, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        if self._pty is not None:
            os.close(self._pty)
            os.close(self._pty_slave)

    __enter__ = start

    def __exit__(self, *exc):
        self.close()

    # ---- fault API -----------------------------------------------------
    def arm(self, kind, on=b"AT", nth=1, **arg):
        """Fire `kind` when the nth command line starting with `on` arrives."""
        if isinstance(on, str):
            on = on.encode()
        with self.lock:
            self.faults.append(Fault(kind, on.upper(), nth, arg))

    def fire(self, kind, **arg):
        """Fire `kind` now (from the test's thread)."""
        with self.lock:
            self._count(self.fired, kind)
            self._apply(kind, arg)
        self._wake()

    def chaos(self, rate, total, kinds=None):
        """Fire a random fault on a fraction `rate` of command lines, `total` times.

        Faults that concern another command (send_fail, connect_fail) wait
        for it.  Timed faults are short: silence 0.2 s, power down 0.2 s."""
        with self.lock:
            self.chaos_rate, self.chaos_left = rate, total
            self.chaos_kinds = tuple(kinds or CHAOS_KINDS)

    def armed(self):
        with self.lock:
            return [f.kind for f in self.faults]

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _count(self, d, k):
        d[k] = d.get(k, 0) + 1

    def _apply(self, kind, arg):
        """Faults that act on their own, not on a command's reply."""
        if kind == "closed":
            if self.state in ("CONNECT OK", "TCP CONNECTING"):
                self._drop_remote("TCP CLOSED")
                self._urc(b"CLOSED")
        elif kind == "pdp_deact":
            self._drop_remote("PDP DEACT")
            self.state = "PDP DEACT"
            self._urc(b"+PDP: DEACT")
        elif kind == "garbage":
            n = arg.get("n", 12)
            junk = bytes(self.rand.choice(b"\x00\xff\xfe\x80#%&*~?=Zz9") for _ in range(n))
            self._emit(junk + b"\r\n" + bytes(self.rand.choice(b"xyzQW@!") for _ in range(5)) + b"\r\n")
        elif kind == "silence":
            secs = arg.get("seconds")
            self.silent_until = float("inf") if secs is None else time.monotonic() + secs
            self.out = []
        elif kind == "reset":
            self._reset()
        elif kind == "power_down":
            self._urc(b"UNDER-VOLTAGE POWER DOWN")
            self._flush(float("inf"))
            self._drop_remote("IP INITIAL")
            self.powered = False
            if arg.get("seconds") is not None:   # someone presses the power key later
                self.power_on_at = time.monotonic() + arg["seconds"]
        elif kind == "power_on":
            self._reset()
        elif kind == "urc":
            self._urc(arg["text"])
        elif kind == "nitz":
            self._nitz()
        elif kind == "drop_rx_urc":
            self.rx_reported = True     # as if reported: the URC never comes
        elif kind == "mangle":
            self.mangle = arg.get("how", "bytes")
        elif kind == "urc_stream":
            now = time.monotonic()
            self.stream = [now + arg.get("seconds", 1.0), arg.get("every_ms", 50) / 1000, now, 0]
        elif kind == "flood":
            self.flood = [time.monotonic() + arg.get("seconds", 1.0), arg.get("rate"),
                          time.monotonic(), 0]
        elif kind == "closed_mid_send":
            self.send_fault = "closed_at_prompt" if arg.get("at") == "prompt" else kind
        elif kind == "error":
            pass                        # only meaningful armed on a command
        else:
            raise ValueError("unknown fault " + kind)

    def _make_noise(self):
        """64 KB of line noise: lines of random bytes (non-UTF-8 among them,
        no CR/LF, no '>', no 'A'), so a flood cut anywhere still parses as
        junk lines and never as a result, a prompt or our echo."""
        alphabet = b"\x00\x01\xff\xfe\x80\x9f\xc3#%&*~?=Zz9@!$"
        out = bytearray()
        while len(out) < 65536:
            out += bytes(self.rand.choice(alphabet) for _ in range(self.rand.randint(8, 60)))
            out += b"\r\n"
        return bytes(out + out[:16384])

    def _info(self, line):
        """An info line the driver parses (+XXX: ..., STATE: ..., the AT+CIFSR
        address), mangled once if a mangle fault is pending."""
        how, self.mangle = self.mangle, None
        if how is None:
            return line
        if how == "letters":
            return line.translate(DIGITS_TO_LETTERS)
        i = line.find(b": ")
        i = i + 2 if i >= 0 else len(line) // 2
        return line[:i] + NOT_UTF8 + line[i:]

    def _reset(self):
        """Power cycle / RST pin: the link drops, defaults return, boot URCs follow."""
        self._drop_remote("IP INITIAL")
        self._power_on_defaults()
        self.booting_until = time.monotonic() + self.boot_ms / 1000
        due = self.booting_until
        for u in BOOT_URCS:
            self.out.append((due, crlf(u)))
        self.last_due = due

    # ---- output ----------------------------------------------------------
    def _emit(self, data, delay_ms=None):
        """Queue bytes for the UART, in order, honouring the delay/split knobs."""
        if not self.powered or self.silent_until > time.monotonic():
            return
        delay = self.delay_ms if delay_ms is None else delay_ms
        if self.cur_delay is not None:
            delay += self.cur_delay
        due = max(time.monotonic() + delay / 1000, self.last_due)
        split = self.cur_split or self.split
        if split:
            for i in range(0, len(data), split):
                self.out.append((due, data[i:i + split]))
                due += self.split_gap_ms / 1000
        else:
            self.out.append((due, data))
        self.last_due = due

    def _urc(self, line):
        self._emit(crlf(line))

    def _reply(self, *lines):
        """A multi-line reply; an armed urc_mid lands after its first line."""
        if self.mangle is not None:
            lines = tuple(self._info(x) if x.startswith((b"+", b"STATE:")) else x for x in lines)
        if self.urc_mid is not None and len(lines) > 1:
            lines = (lines[0], self.urc_mid) + lines[1:]
            self.urc_mid = None
        self._emit(b"".join(crlf(x) for x in lines))

    def _log(self, d, b):
        if self.verbose:
            print("%s %r" % (d, bytes(b)), file=sys.stderr, flush=True)
        if len(self.dialogue) < 5000:
            self.dialogue.append((d, bytes(b)))

    # ---- the loop ----------------------------------------------------------
    def _loop(self):
        while self._running:
            now = time.monotonic()
            with self.lock:
                self._flush(now)
                self._tick(now)
                rl, wl = [self._wake_r], []
                uart = self._uart_fd()
                if self._listen is not None:
                    rl.append(self._listen)
                if uart is not None:
                    rl.append(uart)
                if self.remote is not None and len(self.rxbuf) < self.rx_buffer:
                    rl.append(self.remote)
                if self.connecting is not None:
                    wl.append(self.connecting[0])
                timeout = 0.05
                if self.flood is not None:
                    timeout = 0.001 if self.flood[1] is None else 0.005
                if self.stream is not None:
                    timeout = max(0.0, min(timeout, self.stream[2] - now))
                if self.out:
                    timeout = max(0.0, min(timeout, self.out[0][0] - now))
            r, w, _ = select.select(rl, wl, [], timeout)
            with self.lock:
                if self._wake_r in r:
                    self._wake_r.recv(4096)
                if self._listen is not None and self._listen in r:
                    conn, _ = self._listen.accept()
                    if self._uart is not None:
                        self._uart.close()
                    self._uart = conn
                    conn.setblocking(False)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    continue
                if uart is not None and uart in r:
                    self._read_uart()
                if self.connecting is not None and self.connecting[0] in w:
                    self._connected()
                if self.remote is not None and self.remote in r:
                    self._read_remote()

    def _uart_fd(self):
        return self._pty if self._pty is not None else self._uart

    def _flush(self, now):
        while self.out and self.out[0][0] <= now:
            _, data = self.out.pop(0)
            self._write_uart(data)

    def _write_uart(self, data):
        self._log("<", data)
        self.uart_out += len(data)
        try:
            if self._pty is not None:
                os.write(self._pty, data)
            elif self._uart is not None:
                self._uart.setblocking(True)
                self._uart.sendall(data)
                self._uart.setblocking(False)
        except OSError:
            pass

    def _tick(self, now):
        if self.power_on_at is not None and now >= self.power_on_at:
            self.power_on_at = None
            self._reset()
        if self.stream is not None:
            self._stream_tick(now)
        if self.flood is not None:
            self._flood_tick(now)
        if self.connecting is not None and now > self.connecting[1]:
            self.connecting[0].close()
            self.connecting = None
            self.state = "TCP CLOSED"
            self._reply(b"STATE: TCP CLOSED", b"CONNECT FAIL")

    def _stream_tick(self, now):
        until, every, due, i = self.stream
        if now >= until:
            self.stream = None
        elif now >= due:
            self._urc(UNKNOWN_URCS[i % len(UNKNOWN_URCS)])
            self.stream[2:] = [max(due + every, now), i + 1]

    def _flood_tick(self, now):
        """Line noise, straight to the UART without blocking; only between
        replies (never inside one, as a UART has one sender)."""
        until, rate, started, sent = self.flood
        if now >= until:
            self.flood = None
            return
        if self.out or not self.powered:
            return
        allowed = 16384 if rate is None else min(16384, int(rate * (now - started)) - sent)
        if allowed < 64:
            return
        a = self._noise_at
        chunk = self._noise[a:a + allowed]       # wraps: _noise ends with its own start
        try:
            if self._pty is not None:
                n = os.write(self._pty, chunk)
            elif self._uart is not None:
                n = self._uart.send(chunk)
            else:
                n = 0
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            n = 0
        self._noise_at = (a + n) % (len(self._noise) - 16384)
        self.flood[3] += n
        self.flood_bytes += n
        self.uart_out += n

    def _read_uart(self):
        try:
            if self._pty is not None:
                data = os.read(self._pty, 4096)
            else:
                data = self._uart.recv(4096)
                if not data:
                    self._uart.close()
                    self._uart = None
                    return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        self.uart_in += len(data)
        self._log(">", data)
        now = time.monotonic()
        if not self.powered or now < self.booting_until or self.silent_until > now:
            return                    # off, booting or hung: the bytes are lost
        for i in range(len(data)):
            self._byte(data[i:i + 1])

    def _byte(self, b):
        if self.data_left or self.data_ctrlz:
            if self.echo:
                self._emit(b, 0)
            if self.data_ctrlz:
                if b == b"\x1a":
                    self.data_ctrlz = False
                    self._send_done()
                elif b == b"\x1b":
                    self.data_ctrlz = False
                    self.data = bytearray()
                    self._reply(b"OK")
                else:
                    self.data += b
                return
            self.data += b
            self.data_left -= 1
            if not self.data_left:
                self._send_done()
            return
        if b == b"\n" and not self.cmd:
            return
        if self.echo:
            self._emit(b, 0)
        if b == b"\r":
            line, self.cmd = bytes(self.cmd).strip(), bytearray()
            if line:
                self._command(line)
        else:
            self.cmd += b

    # ---- commands ------------------------------------------------------------
    def _command(self, line):
        up = line.upper()
        if not up.startswith(b"AT"):
            return self._reply(b"ERROR")
        name = up.split(b"=")[0].split(b"?")[0]
        self._count(self.counts, name.decode(errors="replace"))
        fault = None
        if self.chaos_left and self.rand.random() < self.chaos_rate:
            self.chaos_left -= 1
            kind, arg = self.rand.choice(self.chaos_kinds)
            self.faults.insert(0, Fault(kind, b"AT", 1, dict(arg)))
        for f in self.faults:
            if up.startswith(f.on):
                f.left -= 1
                if f.left <= 0:
                    fault = f
                    break
        if fault is not None:
            self.faults.remove(fault)
            self._count(self.fired, fault.kind)
            k, a = fault.kind, fault.arg
            if k == "reset":
                return self._reset()
            if k == "silence":
                return self._apply("silence", a)
            if k == "power_down":
                return self._apply("power_down", a)
            if k == "delay":
                self.cur_delay = a.get("ms", 200)
            elif k == "split":
                self.cur_split = a.get("size", 1)
            elif k == "urc_mid":
                self.urc_mid = a.get("text", b"RING")
            elif k == "garbage":
                self._apply("garbage", a)
            elif k == "drop_rx_urc":
                self.rx_reported = True
            elif k in ("send_fail", "connect_fail"):
                self.send_fault = k
            elif k == "error":
                return self._reply(b"ERROR")
            elif k in ("mangle", "closed_mid_send", "flood"):
                self._apply(k, a)
            elif k == "urc_stream":
                self._apply(k, a)
                if a.get("swallow"):
                    return               # the command itself is never answered
        try:
            self._dispatch(up, line)
        finally:
            self.cur_delay = self.cur_split = None
            self.urc_mid = None
            if fault is not None and fault.kind == "mangle":
                self.mangle = None      # this command's reply had no info line
        if fault is not None and fault.kind in ("closed", "pdp_deact", "urc", "nitz"):
            if self.data_left or self.data_ctrlz:
                self.post_fault = fault     # after the data and its confirmation
            else:
                self._apply(fault.kind, fault.arg)

    # ---- the AT commands: one handler each, found through AT_COMMANDS ----------
    # A handler is called as handler(self, rest, arg): `rest` is what follows
    # the command's name in the upper-cased line (b"" for AT+CSQ, b"?", b"=?",
    # b"=<args>", or a basic command's value: b"0" of ATE0), `arg` what
    # follows the first "=" as typed (b"" when there is none).  A handler
    # answers ERROR itself for the forms it does not support.
    def _ok(self, *info):
        return self._reply(*info, b"OK")

    def _error(self):
        return self._reply(b"ERROR")

    def _at(self, rest, arg):
        return self._error() if rest else self._ok()

    def _at_e(self, rest, arg):
        if rest not in (b"0", b"1"):
            return self._error()
        self.echo = rest == b"1"
        return self._ok()

    def _at_i(self, rest, arg):
        return self._error() if rest else self._ok(b"SIM800 R14.18")

    def _at_cpin(self, rest, arg):
        if rest != b"?":
            return self._error()
        if self.sim == "NOT INSERTED":
            return self._reply(b"+CME ERROR: 10")
        return self._ok(b"+CPIN: " + self.sim.encode())

    def _at_csq(self, rest, arg):
        return self._error() if rest else self._ok(b"+CSQ: %d,%d" % self.csq)

    def _at_creg(self, rest, arg, name=b"+CREG"):
        if rest != b"?":
            return self._error()
        stat = self.registration
        if (time.monotonic() - self.boot_time) * 1000 < self.reg_delay_ms:
            stat = 2                      # not registered, searching
        self._ok(name + b": 0,%d" % stat)
        return self._registered(stat)

    def _at_cgreg(self, rest, arg):
        return self._at_creg(rest, arg, b"+CGREG")

    # ---- network time --------------------------------------------------------
    def _nitz(self):
        """The network's time: *PSUTTZ (fields in UTC, the zone in quarter
        hours, not padded, as modules print it) and DST; the modem's clock is
        now right."""
        self.nitz_sent = True
        self.rtc, self.rtc_zone = 0, self.cclk_zone
        t = time.gmtime(time.time())
        self._urc(b'*PSUTTZ: %d,%d,%d,%d,%d,%d,"%+d",0' % (t.tm_year, t.tm_mon, t.tm_mday,
                                                           t.tm_hour, t.tm_min, t.tm_sec, self.cclk_zone))
        self._urc(b"DST: 0")

    def _registered(self, stat):
        """After a reply that reports registration: the network's time, once
        per power-up, if CLTS was on when the modem booted."""
        if stat in (1, 5) and self.nitz and self.clts_at_boot and not self.nitz_sent:
            self._nitz()

    def _clock_now(self):
        """The modem's clock: (local time as a struct_time, its zone)."""
        if self.rtc is None:             # its own, from power-up: no zone
            import calendar
            return time.gmtime(calendar.timegm(RTC_POWER_ON + (0, 0, 0)) +
                               time.monotonic() - self.boot_time), 0
        return time.gmtime(time.time() + self.rtc + self.rtc_zone * 900), self.rtc_zone

    def _at_clts(self, rest, arg):
        if rest == b"?":
            return self._ok(b"+CLTS: %d" % self.clts)
        if rest == b"=?":
            return self._ok(b"+CLTS: (0,1)")
        if rest in (b"=0", b"=1"):
            self.clts = int(rest[1:])
            return self._ok()
        return self._error()

    def _at_w(self, rest, arg):          # AT&W: save the settings (here: AT+CLTS)
        if rest:
            return self._error()
        self.clts_saved = self.clts
        return self._ok()

    def _at_cclk(self, rest, arg):
        if rest == b"?":
            t, zone = self._clock_now()
            return self._ok(b'+CCLK: "%02d/%02d/%02d,%02d:%02d:%02d%+03d"' % (
                t.tm_year % 100, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, zone))
        if rest == b"=?":
            return self._ok()
        v = arg.strip()
        try:                             # ="yy/MM/dd,hh:mm:ss±zz" (local time and its zone)
            assert len(v) == 22 and v[0] == v[-1] == 34 and v[18] in b"+-"
            import calendar
            local = calendar.timegm(time.strptime(v[1:18].decode(), "%y/%m/%d,%H:%M:%S"))
            zone = int(v[18:21])
            assert -96 <= zone <= 96
        except (AssertionError, ValueError, UnicodeError):
            return self._error()
        self.rtc_zone = zone
        self.rtc = local - zone * 900 - time.time()
        return self._ok()

    def _at_cgatt(self, rest, arg):
        if rest == b"?":
            return self._ok(b"+CGATT: %d" % (1 if self.registration in (1, 5) else 0))
        return self._ok() if rest.startswith(b"=") else self._error()

    def _at_cipshut(self, rest, arg):
        if rest:
            return self._error()
        self._drop_remote("IP INITIAL")
        self.state = "IP INITIAL"
        return self._reply(b"SHUT OK")

    def _at_cipmux(self, rest, arg):
        # Manual: only in IP INITIAL.  Only single-connection mode is simulated.
        if not rest.startswith(b"=") or self.state != "IP INITIAL" or arg.strip() != b"0":
            return self._error()
        return self._ok()

    def _at_cipqsend(self, rest, arg):
        if not rest.startswith(b"="):
            return self._error()
        self.qsend = int(arg)
        return self._ok()

    def _at_cstt(self, rest, arg):       # any form sets the APN (AT+CSTT alone: CMNET)
        if self.state != "IP INITIAL":
            return self._error()
        parts = [p.strip().strip(b'"') for p in arg.split(b",")] if arg else [b"CMNET"]
        self.apn = parts[0]
        self.state = "IP START"
        return self._ok()

    def _at_ciicr(self, rest, arg):
        if rest or self.state != "IP START" or (self.expect_apn is not None and
                                                self.apn != self.expect_apn.encode()):
            return self._error()
        self.state = "IP GPRSACT"
        return self._ok()

    def _at_cifsr(self, rest, arg):
        if rest or self.state not in CTX_STATES:
            return self._error()
        if self.state == "IP GPRSACT":
            self.state = "IP STATUS"
        return self._emit(crlf(self._info(LOCAL_IP)))   # manual: no OK after the address

    def _at_cipstatus(self, rest, arg):
        if rest:
            return self._error()
        return self._reply(b"OK", b"STATE: " + self.state.encode())

    def _at_cipstart(self, rest, arg):
        return self._cipstart(arg) if rest.startswith(b"=") else self._error()

    def _at_cipsend(self, rest, arg):    # any form but "?" opens the prompt
        if rest == b"?":
            return self._ok(b"+CIPSEND: %d" % SEND_MAX)
        return self._cipsend(arg)

    def _at_cipclose(self, rest, arg):   # any form
        if self.state not in ("CONNECT OK", "TCP CONNECTING"):
            return self._error()
        self._drop_remote("IP CLOSE")
        return self._reply(b"CLOSE OK")

    def _at_cipack(self, rest, arg):
        return self._error() if rest else self._ok(b"+CIPACK: %d,%d,0" % (self.tcp_up, self.tcp_up))

    def _at_cdnsgip(self, rest, arg):
        if not rest.startswith(b"=") or self.state not in CTX_STATES:
            return self._error()
        host = arg.strip().strip(b'"')
        self._ok()
        ip = self._resolve(host.decode())
        if ip is None:
            return self._urc(b"+CDNSGIP: 0,8")
        return self._urc(b'+CDNSGIP: 1,"%s","%s"' % (host, ip.encode()))

    def _ciprxget(self, rest, arg):
        if rest == b"?":
            return self._reply(b"+CIPRXGET: %d" % self.rxget, b"OK")
        nums = [int(x) for x in arg.split(b",") if x.strip()]
        mode = nums[0] if nums else -1
        if mode in (0, 1):
            self.rxget = mode
            return self._reply(b"OK")
        if self.rxget != 1 or self.state not in ("CONNECT OK", "TCP CLOSED"):
            return self._reply(b"ERROR")
        if mode == 4:
            return self._reply(b"+CIPRXGET: 4,%d" % len(self.rxbuf), b"OK")
        if mode == 2 and len(nums) == 2 and 1 <= nums[1] <= RX_MAX:
            n = min(nums[1], len(self.rxbuf))
            data = bytes(self.rxbuf[:n])
            del self.rxbuf[:n]
            self.rx_reported = False   # the next arrival is reported again
            head = crlf(self._info(b"+CIPRXGET: 2,%d,%d" % (n, len(self.rxbuf))))
            if self.urc_mid is not None:        # a URC may come before the block
                head = crlf(self.urc_mid) + head
                self.urc_mid = None
            self._emit(head + data + crlf(b"OK"))
            self._window()
            return
        return self._reply(b"ERROR")

    # Name after "AT" -> handler.  How to add a command, and the lookup order
    # (longest name first): _dispatch's docstring, just below.
    AT_COMMANDS = {
        b"": _at,                        # AT, and every unknown command: ERROR
        b"E": _at_e,                     # ATE0 / ATE1
        b"I": _at_i,
        b"&W": _at_w,
        b"+IPR": accepts(b"="),
        b"+IFC": accepts(b"=0,0"),
        b"+CMEE": accepts(b"="),
        b"+CFUN": accepts(b"="),
        b"+CIURC": accepts(b"=0"),
        b"+CBATCHK": accepts(b"=1"),
        b"+CLTS": _at_clts,
        b"+CCLK": _at_cclk,
        b"+CPIN": _at_cpin,
        b"+CSQ": _at_csq,
        b"+CREG": _at_creg,
        b"+CGREG": _at_cgreg,
        b"+CGATT": _at_cgatt,
        b"+CIPSHUT": _at_cipshut,
        b"+CIPMUX": _at_cipmux,
        b"+CIPQSEND": _at_cipqsend,
        b"+CIPRXGET": _ciprxget,
        b"+CSTT": _at_cstt,
        b"+CIICR": _at_ciicr,
        b"+CIFSR": _at_cifsr,
        b"+CIPSTATUS": _at_cipstatus,
        b"+CIPSTART": _at_cipstart,
        b"+CIPSEND": _at_cipsend,
        b"+CIPCLOSE": _at_cipclose,
        b"+CIPACK": _at_cipack,
        b"+CDNSGIP": _at_cdnsgip,
    }

    def _dispatch(self, up, line):
        """Answer the command line `line` (`up`: upper-cased) from AT_COMMANDS.

        To add a command, write a handler above and give it a row: the name
        as it follows "AT" (b"+CSQ", b"E", b"&W"), upper case, without "=" or
        "?"; accepts(forms) makes one for a setting that is only acknowledged.
        Lookup: the LONGEST name the line begins with (after "AT") wins, so a
        name that extends another (a future b"+CIPSENDHEX" next to
        b"+CIPSEND") gets its own handler, and basic commands carry their
        value (ATE0: name b"E", rest b"0").  The empty name matches every
        line: it answers plain AT, and ERROR to whatever nothing else claims.
        """
        body = up[2:]
        name = next(body[:n] for n in range(len(body), -1, -1) if body[:n] in self.AT_COMMANDS)
        arg = line[line.index(b"=") + 1:] if b"=" in line else b""
        return self.AT_COMMANDS[name](self, body[len(name):], arg)

    def _resolve(self, host):
        if host in self.dns:
            return self.dns[host]
        try:
            socket.inet_aton(host)
            return host
        except OSError:
            pass
        try:
            return socket.gethostbyname(host)
        except OSError:
            return None

    def _cipstart(self, args):
        parts = [p.strip().strip(b'"') for p in args.split(b",")]
        if self.state == "CONNECT OK":
            return self._reply(b"ERROR", b"ALREADY CONNECT")
        if len(parts) != 3 or parts[0].upper() != b"TCP" or self.state not in (
                "IP INITIAL", "IP STATUS", "IP CLOSE", "TCP CLOSED"):
            return self._reply(b"ERROR")
        self._reply(b"OK")
        self.state = "TCP CONNECTING"
        self.rxbuf = bytearray()
        self.rx_reported = False
        ip = self._resolve(parts[1].decode())
        if self.send_fault == "connect_fail" or ip is None:
            self.send_fault = None
            self.state = "TCP CLOSED"
            return self._reply(b"STATE: TCP CLOSED", b"CONNECT FAIL")
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((ip, int(parts[2])))
        self.connecting = (s, time.monotonic() + 10)

    def _connected(self):
        s, _ = self.connecting
        self.connecting = None
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            s.close()
            self.state = "TCP CLOSED"
            return self._reply(b"STATE: TCP CLOSED", b"CONNECT FAIL")
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.remote = s
        self.state = "CONNECT OK"
        self._urc(b"CONNECT OK")

    def _cipsend(self, arg):
        if self.state != "CONNECT OK":
            self.send_fault = None
            return self._reply(b"ERROR")
        if arg:
            n = int(arg)
            if not 1 <= n <= SEND_MAX:
                return self._reply(b"ERROR")
            self.data_left = n
        else:
            self.data_ctrlz = True
        self.data = bytearray()
        self._emit(b"\r\n> ")
        if self.send_fault == "closed_at_prompt":    # the link drops as the prompt goes out
            self.send_fault = "swallow"
            self._drop_remote("TCP CLOSED")
            self._urc(b"CLOSED")

    def _send_done(self):
        self._send_data()
        if self.post_fault is not None:
            f, self.post_fault = self.post_fault, None
            self._apply(f.kind, f.arg)

    def _send_data(self):
        data, self.data = bytes(self.data), bytearray()
        if self.send_fault in ("closed_mid_send", "swallow"):
            # The link dropped under the send: the data is lost, and the modem
            # says only CLOSED (no DATA ACCEPT, no SEND FAIL).
            if self.send_fault == "closed_mid_send":
                self._drop_remote("TCP CLOSED")
                self._urc(b"CLOSED")
            self.send_fault = None
            return
        if self.send_fault == "send_fail" or self.remote is None:
            self.send_fault = None
            return self._reply(b"SEND FAIL")
        try:
            self.remote.sendall(data)
        except OSError:
            return self._reply(b"SEND FAIL")
        self.tcp_up += len(data)
        self._reply(b"DATA ACCEPT:%d" % len(data) if self.qsend else b"SEND OK")

    def _read_remote(self):
        try:
            data = self.remote.recv(self.rx_buffer - len(self.rxbuf))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_remote("TCP CLOSED")
            self._urc(b"CLOSED")
            return
        self.tcp_down += len(data)
        if self.rxget == 1:
            self.rxbuf += data
            if not self.rx_reported:
                self.rx_reported = True
                if not self.miss_rx_urc:
                    self._urc(b"+CIPRXGET: 1")
        else:
            self._emit(data)       # automatic receive: raw bytes, no header

    def _window(self):
        pass   # reading resumes on its own: the loop polls the remote while there is room

    def _drop_remote(self, state):
        for s in (self.remote, self.connecting and self.connecting[0]):
            if s:
                try:
                    s.close()
                except OSError:
                    pass
        self.remote = self.connecting = None
        if state != "TCP CLOSED":
            self.rxbuf = bytearray()
        self.state = state


def parse_fault(spec):
    """'mangle on=AT+CSQ nth=2 how=letters' -> ("mangle", {...}); numbers are
    numbers, text= is bytes, true/false are booleans."""
    words = spec.split()
    kw = {}
    for w in words[1:]:
        k, v = w.split("=", 1)
        if k == "text":
            kw[k] = v.encode()
        elif v.lower() in ("true", "false"):
            kw[k] = v.lower() == "true"
        else:
            try:
                kw[k] = int(v)
            except ValueError:
                try:
                    kw[k] = float(v)
                except ValueError:
                    kw[k] = v
    return words[0], kw


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--pty", action="store_true", help="serve the UART on a pty")
    g.add_argument("--tcp", type=int, metavar="PORT", help="serve the UART on 127.0.0.1:PORT (0: any)")
    ap.add_argument("--dns", action="append", default=[], metavar="NAME=IP")
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--split", type=int, default=0)
    ap.add_argument("--arm", action="append", default=[], metavar="'KIND on=AT+X nth=N key=value'",
                    help="arm a fault (repeatable), e.g. 'mangle on=AT+CSQ how=letters'")
    ap.add_argument("--chaos", metavar="RATE,TOTAL", help="random faults on a fraction of commands")
    ap.add_argument("--kinds", choices=sorted(KIND_SETS), default="classic",
                    help="what --chaos draws from")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--clts", type=int, choices=(0, 1), default=0,
                    help="AT+CLTS as saved at power-up (network time URCs when 1)")
    ap.add_argument("--cclk", default="host", metavar="host|unset|SECONDS",
                    help="the modem's clock: the host's UTC time, unset (2004/01/01), or off by SECONDS")
    ap.add_argument("--cclk-zone", type=int, default=0, metavar="QUARTERS",
                    help="time zone in quarter hours (+32: UTC+8)")
    ap.add_argument("--no-nitz", action="store_true", help="no *PSUTTZ/DST after registration")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    sim = Sim800L(dns=dict(x.split("=", 1) for x in a.dns), delay_ms=a.delay_ms,
                  split=a.split, verbose=a.verbose, seed=a.seed, clts=a.clts,
                  cclk=a.cclk if a.cclk in ("host", "unset") else float(a.cclk),
                  cclk_zone=a.cclk_zone, nitz=not a.no_nitz)
    for spec in a.arm:
        kind, kw = parse_fault(spec)
        sim.arm(kind, **kw)
    if a.chaos:
        rate, total = a.chaos.split(",")
        sim.chaos(float(rate), int(total), KIND_SETS[a.kinds])
    if a.pty:
        print("PTY", sim.open_pty(), flush=True)
    else:
        print("TCP 127.0.0.1:%d" % sim.listen_tcp(a.tcp), flush=True)
    sim.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.close()


if __name__ == "__main__":
    main()

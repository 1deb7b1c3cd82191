"""The simulator speaks the manual's dialogue, byte for byte; the driver's
bring-up fails with clear errors; the pty and CLI transports work.
CPython only: these check the host tools and the driver's logic in-process
(the driver itself runs under both interpreters in test_sim800l*.py)."""
import asyncio
import errno
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_sim800l import Sim800L, sim  # noqa: F401  (sim is a fixture)

sys.path.insert(0, os.path.join(ROOT, "modules"))
from sim800l import SIM800L  # noqa: E402
from sim800l_uart import serial_uart, tcp_uart  # noqa: E402


class Terminal:
    """A raw AT terminal on the simulator's UART socket."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(2)

    def ask(self, line, until=b"OK\r\n", data=None):
        self.s.sendall(line + b"\r")
        got = b""
        if data is not None:
            while not got.endswith(b"> "):
                got += self.s.recv(4096)
            self.s.sendall(data)
        while not got.endswith(until):
            got += self.s.recv(4096)
        return got


def test_echo_then_echo_off(sim):  # noqa: F811
    t = Terminal(sim.port)
    assert t.ask(b"AT") == b"AT\r\r\nOK\r\n"             # ATE1 is the power-on default
    assert t.ask(b"ATE0") == b"ATE0\r\r\nOK\r\n"
    assert t.ask(b"AT") == b"\r\nOK\r\n"
    assert t.ask(b"AT+BOGUS", b"ERROR\r\n") == b"\r\nERROR\r\n"


def test_gprs_states_and_quirks(sim):  # noqa: F811
    t = Terminal(sim.port)
    t.ask(b"ATE0")
    assert t.ask(b"AT+CPIN?") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert t.ask(b"AT+CREG?") == b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"
    assert t.ask(b"AT+CSQ") == b"\r\n+CSQ: 18,0\r\n\r\nOK\r\n"
    # AT+CIPSTATUS: OK first, then the state line
    assert t.ask(b"AT+CIPSTATUS", b"INITIAL\r\n") == b"\r\nOK\r\n\r\nSTATE: IP INITIAL\r\n"
    assert t.ask(b"AT+CIICR", b"ERROR\r\n") == b"\r\nERROR\r\n"          # needs IP START
    assert t.ask(b"AT+CIPMUX=0") == b"\r\nOK\r\n"
    t.ask(b'AT+CSTT="internet","",""')
    assert t.ask(b"AT+CIPMUX=0", b"ERROR\r\n") == b"\r\nERROR\r\n"       # only in IP INITIAL
    assert t.ask(b"AT+CIPSTATUS", b"START\r\n").endswith(b"STATE: IP START\r\n")
    t.ask(b"AT+CIICR")
    assert t.ask(b"AT+CIPSTATUS", b"GPRSACT\r\n").endswith(b"STATE: IP GPRSACT\r\n")
    assert t.ask(b"AT+CIFSR", b"7\r\n") == b"\r\n10.64.23.7\r\n"        # no OK after the address
    assert t.ask(b"AT+CIPSTATUS", b"STATUS\r\n").endswith(b"STATE: IP STATUS\r\n")
    assert t.ask(b"AT+CIPSHUT", b"SHUT OK\r\n") == b"\r\nSHUT OK\r\n"
    assert t.ask(b"AT+CIPSTATUS", b"INITIAL\r\n").endswith(b"STATE: IP INITIAL\r\n")


def test_network_time_dialogue(sim):  # noqa: F811
    """AT+CLTS / AT&W / AT+CCLK? as the manual shows them, and the network's
    time URCs after registration once CLTS is saved and the modem restarted."""
    import re
    t = Terminal(sim.port)
    t.ask(b"ATE0")
    assert t.ask(b"AT+CLTS?") == b"\r\n+CLTS: 0\r\n\r\nOK\r\n"            # factory setting
    assert t.ask(b"AT+CLTS=1") == b"\r\nOK\r\n"
    assert t.ask(b"AT&W") == b"\r\nOK\r\n"
    assert re.fullmatch(rb'\r\n\+CCLK: "\d\d/\d\d/\d\d,\d\d:\d\d:\d\d\+00"\r\n\r\nOK\r\n',
                        t.ask(b"AT+CCLK?"))
    assert t.ask(b'AT+CCLK="26/12/01,19:14:45+32"') == b"\r\nOK\r\n"
    assert t.ask(b"AT+CCLK?") == b'\r\n+CCLK: "26/12/01,19:14:45+32"\r\n\r\nOK\r\n'
    sim.fire("reset")
    got = b""
    while not got.endswith(b"SMS Ready\r\n"):
        got += t.s.recv(100)
    t.ask(b"ATE0")
    got = t.ask(b"AT+CREG?", b"DST: 0\r\n")
    assert re.fullmatch(rb'\r\n\+CREG: 0,1\r\n\r\nOK\r\n\r\n\*PSUTTZ: \d{4},\d{1,2},\d{1,2},'
                        rb'\d{1,2},\d{1,2},\d{1,2},"\+0",0\r\n\r\nDST: 0\r\n', got), got
    assert t.ask(b"AT+CLTS?") == b"\r\n+CLTS: 1\r\n\r\nOK\r\n"


def up(t):
    for c in (b"ATE0", b"AT+CIPRXGET=1", b'AT+CSTT="internet"', b"AT+CIICR"):
        t.ask(c)
    t.ask(b"AT+CIFSR", b"7\r\n")


def test_tcp_dialogue_against_a_real_peer(sim):  # noqa: F811
    peer = socket.socket()
    peer.bind(("127.0.0.1", 0))
    peer.listen(1)
    t = Terminal(sim.port)
    up(t)
    start = b'AT+CIPSTART="TCP","127.0.0.1",%d' % peer.getsockname()[1]
    assert t.ask(start, b"CONNECT OK\r\n") == b"\r\nOK\r\n\r\nCONNECT OK\r\n"
    conn, _ = peer.accept()
    assert t.ask(start, b"ALREADY CONNECT\r\n") == b"\r\nERROR\r\n\r\nALREADY CONNECT\r\n"
    # AT+CIPQSEND=0 (default): SEND OK; =1: DATA ACCEPT:<n>
    assert t.ask(b"AT+CIPSEND=5", b"SEND OK\r\n", data=b"hello") == b"\r\n> \r\nSEND OK\r\n"
    t.ask(b"AT+CIPQSEND=1")
    assert t.ask(b"AT+CIPSEND=3", b"\r\n", data=b"abc") == b"\r\n> \r\nDATA ACCEPT:3\r\n"
    # without a length: data up to Ctrl-Z
    assert t.ask(b"AT+CIPSEND", b"\r\n", data=b"xyz\x1a") == b"\r\n> \r\nDATA ACCEPT:3\r\n"
    assert conn.recv(100) == b"helloabcxyz"
    conn.sendall(b"0123456789")
    assert t.s.recv(100) == b"\r\n+CIPRXGET: 1\r\n"                     # the URC, once
    conn.sendall(b"ABC")
    time.sleep(0.05)
    assert t.ask(b"AT+CIPRXGET=4") == b"\r\n+CIPRXGET: 4,13\r\n\r\nOK\r\n"
    assert t.ask(b"AT+CIPRXGET=2,4") == b"\r\n+CIPRXGET: 2,4,9\r\n0123\r\nOK\r\n"
    assert t.ask(b"AT+CIPRXGET=2,100") == b"\r\n+CIPRXGET: 2,9,0\r\n456789ABC\r\nOK\r\n"
    conn.close()                                                          # the peer hangs up
    assert t.s.recv(100) == b"\r\nCLOSED\r\n"
    assert t.ask(b"AT+CIPSTATUS", b"CLOSED\r\n").endswith(b"STATE: TCP CLOSED\r\n")
    assert t.ask(b"AT+CIPSEND=1", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert t.ask(b"AT+CIPCLOSE", b"ERROR\r\n") == b"\r\nERROR\r\n"        # only when connected
    # reconnect from TCP CLOSED, then close it ourselves
    assert t.ask(start, b"CONNECT OK\r\n") == b"\r\nOK\r\n\r\nCONNECT OK\r\n"
    peer.accept()[0].close()
    time.sleep(0.05)
    peer.close()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()                                                        # nobody listens there
    t2 = Terminal(sim.port)                                               # (the UART may reconnect)
    got = t2.ask(b'AT+CIPSTART="TCP","127.0.0.1",%d' % port, b"CONNECT FAIL\r\n")
    assert got.endswith(b"\r\nSTATE: TCP CLOSED\r\n\r\nCONNECT FAIL\r\n")


def test_dns_by_name(sim):  # noqa: F811
    sim.dns["broker.example"] = "127.0.0.1"
    t = Terminal(sim.port)
    up(t)
    assert t.ask(b'AT+CDNSGIP="broker.example"', b'"\r\n') == (
        b'\r\nOK\r\n\r\n+CDNSGIP: 1,"broker.example","127.0.0.1"\r\n')


def test_fault_urcs_and_reset(sim):  # noqa: F811
    t = Terminal(sim.port)
    t.ask(b"ATE0")
    sim.arm("urc_mid", on="AT+CSQ", text=b"RING")
    assert t.ask(b"AT+CSQ") == b"\r\n+CSQ: 18,0\r\n\r\nRING\r\n\r\nOK\r\n"
    sim.fire("pdp_deact")
    assert t.s.recv(100) == b"\r\n+PDP: DEACT\r\n"
    sim.fire("reset")
    got = b""
    while not got.endswith(b"SMS Ready\r\n"):
        got += t.s.recv(100)
    assert got == b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nCall Ready\r\n\r\nSMS Ready\r\n"
    assert t.ask(b"AT") == b"AT\r\r\nOK\r\n"                              # echo is back on


def bring_up(sim, **kw):  # noqa: F811
    kw.setdefault("timeouts", {"at": 300, "sync": 1000, "reg": 1200, "sim": 1200})
    m = SIM800L(tcp_uart("127.0.0.1", sim.port), **kw)
    t0 = time.monotonic()
    try:
        m.start_blocking()
        return m, None, time.monotonic() - t0
    except OSError as e:
        return m, e, time.monotonic() - t0


@pytest.mark.parametrize("knob, err, text", [
    ({"sim": "NOT INSERTED"}, errno.ETIMEDOUT, "SIM"),
    ({"sim": "SIM PIN"}, errno.EACCES, "SIM locked"),
    ({"registration": 3}, errno.EACCES, "registration denied"),
    ({"registration": 2}, errno.ETIMEDOUT, "AT+CREG?: +CREG: 0,2"),
    ({"expect_apn": "other"}, errno.EIO, "AT+CIICR (GPRS up): ERROR"),
])
def test_bring_up_fails_clearly(sim, knob, err, text):  # noqa: F811
    for k, v in knob.items():
        setattr(sim, k, v)
    m, e, secs = bring_up(sim, apn="internet")
    assert e is not None and e.args[0] == err and text in str(e), e
    assert secs < 2.5


def test_bring_up_waits_for_registration_and_enters_the_pin(sim):  # noqa: F811
    sim.reg_delay_ms = 700
    sim.sim = "SIM PIN"
    orig = sim._dispatch

    def pin_dispatch(up, line):                  # the SIM unlocks on the right PIN
        if up == b'AT+CPIN="1234"':
            sim.sim = "READY"
            return sim._reply(b"OK")
        return orig(up, line)
    sim._dispatch = pin_dispatch
    m, e, secs = bring_up(sim, apn="internet", pin=1234)
    assert e is None and m.ip == "10.64.23.7" and 0.7 < secs < 2.5


def test_silent_modem_and_power_key(sim):  # noqa: F811
    sim.fire("power_down")                       # off: nothing answers AT

    class PowerKey:
        def __init__(self):
            self.levels = []

        def value(self, v):
            self.levels.append((v, time.monotonic()))
            if v == 1:                           # released: the modem boots
                sim.fire("power_on")
    key = PowerKey()
    m, e, secs = bring_up(sim, pwrkey=key, timeouts={"sync": 6000})
    assert e is None and [v for v, _ in key.levels] == [0, 1]
    assert key.levels[1][1] - key.levels[0][1] >= 1.0          # held low ~1 s
    sim.fire("power_down")
    m, e, secs = bring_up(sim, timeouts={"sync": 800})
    assert e.args[0] == errno.ETIMEDOUT and "does not answer AT" in str(e) and secs < 1.5


def test_reset_pin_pulse(sim):  # noqa: F811
    class Reset:
        levels = []

        def value(self, v):
            self.levels.append(v)
            if v == 1:
                sim.fire("reset")
    m = SIM800L(tcp_uart("127.0.0.1", sim.port), reset_pin=Reset())
    asyncio.run(m.start(hard_reset=True))
    assert Reset.levels == [0, 1] and sim.counts["ATE0"] == 1 and m.reboots >= 1


def test_driver_over_a_pty(broker):
    """A serial device path, as a USB-serial SIM800L would be (/dev/ttyUSB0)."""
    s = Sim800L()
    path = s.open_pty()
    s.start()
    try:
        m = SIM800L(serial_uart(path), apn="internet")
        m.start_blocking()
        S = m.socket_class()
        sock = S()
        sock.connect(S.getaddrinfo("127.0.0.1", broker.port)[0][-1])
        sock.write(b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x00\x00\x03pty")
        buf = bytearray(4)
        t0 = time.monotonic()
        while not sock.readinto(buf, 4) and time.monotonic() - t0 < 3:
            time.sleep(0.005)
        assert buf == b"\x20\x02\x00\x00"
        sock.close()
    finally:
        s.close()


def test_cli(tmp_path):
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "host", "sim800l_sim.py"), "--tcp", "0"],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert line[0] == "TCP"
        t = Terminal(int(line[1].rsplit(":", 1)[1]))
        assert t.ask(b"ATI") == b"ATI\r\r\nSIM800 R14.18\r\n\r\nOK\r\n"
    finally:
        p.terminate()
        p.wait(5)
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "host", "sim800l_sim.py"), "--pty"],
                         stdout=subprocess.PIPE, text=True)
    try:
        kind, path = p.stdout.readline().split()
        assert kind == "PTY" and os.path.exists(path)
        u = serial_uart(path)
        u.write(b"AT\r", 3)
        buf, got, t0 = bytearray(32), b"", time.monotonic()
        while not got.endswith(b"OK\r\n") and time.monotonic() - t0 < 2:
            n = u.readinto(buf, 32)
            got += bytes(buf[:n or 0])
        assert got == b"AT\r\r\nOK\r\n"
        u.close()
    finally:
        p.terminate()
        p.wait(5)

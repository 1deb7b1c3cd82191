"""Network time through the SIM800L: the driver reads the modem's clock at
bring-up (AT+CLTS?, AT+CLTS=1 and AT&W if it was off, AT+CCLK?) and from a
*PSUTTZ URC, keeps it as UTC (modem.network_time) and sets the board's
clock where there is a machine.RTC; the simulator speaks the commands.

Driver tests run under CPython and build/micropython (tests/scenarios/
sim800l_clock.py), sync and async flavours; the unix port and CPython have
no machine.RTC, so a stand-in records what the driver would set on rp2/esp32
(fake_rtc).  The date arithmetic and the parsers are checked in-process too.
"""
import calendar
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "host"))
sys.path.insert(0, os.path.join(ROOT, "modules"))
from sim800l_sim import Sim800L, UNKNOWN_URCS  # noqa: E402
import sim800l_bringup  # noqa: E402
from sim800l import SIM800L  # noqa: E402

FLAVOURS = ("async", "sync")
SLACK = 5                                # s: network_time against the host's clock


@pytest.fixture
def make_sim():
    made = []

    def make(**kw):
        s = Sim800L(**kw)
        s.listen_tcp()
        s.start()
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def params(sim, flavour, **kw):
    p = dict(uart_port=sim.port, flavour=flavour, timeouts="fast")
    p.update(kw)
    return p


def near_now(t):
    return t is not None and abs(t - time.time()) < SLACK


def rtc_tuple(t):
    """What machine.RTC().datetime() must get for UTC second t (weekday 0: Monday)."""
    g = time.gmtime(t)
    return [g.tm_year, g.tm_mon, g.tm_mday, g.tm_wday, g.tm_hour, g.tm_min, g.tm_sec, 0]


# ---- the driver, both interpreters --------------------------------------------

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_bring_up_reads_the_network_time(interp, flavour, run_scenario, make_sim):
    """A module with CLTS off (the factory setting): AT+CLTS?, AT+CLTS=1,
    AT&W, AT+CCLK?: 4 round trips; the clock is the host's UTC time."""
    sim = make_sim()
    out = run_scenario(interp, "sim800l_clock", "bringup", **params(sim, flavour, reads=1))
    assert near_now(out["network_time"]), out
    assert out["source"] == "+CCLK" and out["note"] is None and out["clock_errors"] == 0
    assert out["clock_set"] is False and out["rtc"] == []     # no machine.RTC here: untouched
    assert abs(out["reads"][0] - out["network_time"]) < SLACK
    assert sim.counts["AT+CLTS"] == 2 and sim.counts["AT&W"] == 1 and sim.counts["AT+CCLK"] == 2
    assert sim.clts_saved == 1                                # saved: NITZ from the next boot on
    assert out["ip"] == "10.64.23.7"


@pytest.mark.parametrize("flavour, zone", [("async", 32), ("sync", 32), ("async", -20), ("sync", 0)])
def test_zone_is_taken_off_and_the_rtc_set(interp, flavour, zone, run_scenario, make_sim):
    """+CCLK: shows local time (UTC+8 h for +32): network_time is UTC, and
    machine.RTC gets the UTC date.  CLTS already on: 2 round trips, no AT&W."""
    sim = make_sim(clts=1, cclk_zone=zone, nitz=False)
    out = run_scenario(interp, "sim800l_clock", "bringup",
                       **params(sim, flavour, fake_rtc=True))
    assert near_now(out["network_time"]), (zone, out, time.time())
    assert out["clock_set"] is True and out["rtc"] == [rtc_tuple(out["network_time"])]
    assert sim.counts["AT+CLTS"] == 1 and "AT&W" not in sim.counts and sim.counts["AT+CCLK"] == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_psuttz_at_registration(interp, flavour, run_scenario, make_sim):
    """CLTS on at power-up: *PSUTTZ and DST come right after the first
    registered AT+CREG? reply; the modem's clock is then set too."""
    sim = make_sim(clts=1, cclk="unset", cclk_zone=32)
    out = run_scenario(interp, "sim800l_clock", "bringup", **params(sim, flavour, fake_rtc=True))
    assert near_now(out["network_time"]) and out["clock_set"] is True, out
    assert len(out["rtc"]) == 2                               # the URC, then AT+CCLK?
    assert sim.nitz_sent


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_unset_modem_clock_is_not_used(interp, flavour, run_scenario, make_sim):
    """Before the network gave time, AT+CCLK? answers 04/01/01,...: no time."""
    sim = make_sim(clts=1, cclk="unset", nitz=False)
    out = run_scenario(interp, "sim800l_clock", "bringup",
                       **params(sim, flavour, fake_rtc=True, reads=1))
    assert out["network_time"] is None and out["clock_set"] is False and out["rtc"] == []
    assert out["note"].startswith('modem clock not set: "04/01/01,00:00:'), out
    assert out["reads"] == [None] and out["ip"] == "10.64.23.7"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_clone_answering_error_still_comes_up(interp, flavour, run_scenario, make_sim):
    sim = make_sim()
    sim.arm("error", on="AT+CLTS")
    sim.arm("error", on="AT+CCLK")
    out = run_scenario(interp, "sim800l_clock", "bringup", **params(sim, flavour, fake_rtc=True))
    assert out["ip"] == "10.64.23.7" and out["network_time"] is None and out["rtc"] == []
    assert out["clock_errors"] == 2 and out["note"] == "AT+CCLK?: ERROR"
    assert "AT&W" not in sim.counts and sim.fired == {"error": 2}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_late_psuttz_sets_the_clock(interp, flavour, start_scenario, make_sim, broker):
    """The URC after bring-up, on an idle link: parsed as the app reads."""
    sim = make_sim(clts=1, cclk="unset", nitz=False, cclk_zone=-16)
    s = start_scenario(interp, "sim800l_clock", "late",
                       **params(sim, flavour, fake_rtc=True, wait=True, host="127.0.0.1",
                                port=broker.port))
    s.expect("READY", timeout=20)
    sim.fire("nitz")
    out = s.result(20)
    assert out["after_start"] is None and out["after_connect"] is None
    assert near_now(out["network_time"]) and out["source"] == "*PSUTTZ", out
    assert out["rtc"] == [rtc_tuple(out["network_time"])] and out["clock_set"] is True


# +CCLK: replies and *PSUTTZ URCs that must set no time (and crash nothing).
BAD_CCLK = [
    b'+CCLK: "26/13/01,10:00:00+00"',             # month 13
    b'+CCLK: "26/12/01,10:00+00"',                # a field short
    b'+CCLK: "26/02/30,10:00:00+00"',             # 30 February
    b'+CCLK: "26/12/01,24:00:00+00"',             # hour 24
    b'+CCLK: "26/12/01,10:00:00+99"',             # zone out of -96..+96
    b"+CCLK: 26/12/01,10:00:00+00",               # no quotes
    b'+CCLK: "' + b"9" * 200 + b'"',              # overlong
    b'+CCLK: "\xff\xfe/12/01,10:00:00+00"',        # not ASCII
    b'+CCLK: "cg/bc/ab,ba:aa:aa+dc"',             # letters for digits
    b'+CCLK: "26/12/01,10:00:00+32" x',           # trailing junk
]
BAD_PSUTTZ = [
    b'*PSUTTZ: 2026,13,1,1,14,45,"+32",0',       # month 13
    b'*PSUTTZ: 2026,12,1,1,14,45,"+32"',         # 7 fields
    b'*PSUTTZ: 2026,12,1,1,14,"+32",0',          # a field short
    b"*PSUTTZ: " + b"1," * 80,                    # overlong
    b'*PSUTTZ: 2026,12,1,25,14,45,"+32",0',      # hour 25
    b'*PSUTTZ: 2026,12,1,1,14,45,"+99",0',       # zone out of range
    b"*PSUTTZ: \xff\xfe\x80",                     # not ASCII
    b'*PSUTTZ: 2026,2,30,1,14,45,"+0",0',        # 30 February
    b'*PSUTTZ: 2003,12,1,1,14,45,"+0",0',        # before MIN_YEAR
    b'*PSUTTZ: 12026,12,1,1,14,45,"+0",0',       # a 5-digit year
]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_malformed_time_lines_set_nothing(interp, flavour, run_scenario, make_sim):
    sim = make_sim(clts=1, nitz=False)
    bad = list(zip(BAD_PSUTTZ, BAD_CCLK))
    orig = sim._dispatch

    def dispatch(up, line):              # each AT+CCLK?: a bad URC, then a bad reply
        if up == b"AT+CCLK?" and bad:
            urc, reply = bad.pop(0)
            sim._urc(urc)
            return sim._ok(reply)
        return orig(up, line)
    sim._dispatch = dispatch
    n = len(BAD_CCLK)
    out = run_scenario(interp, "sim800l_clock", "bringup",
                       **params(sim, flavour, fake_rtc=True, reads=n - 1))
    assert out["network_time"] is None and out["rtc"] == [] and out["clock_set"] is False, out
    assert out["reads"] == [None] * (n - 1) and out["ip"] == "10.64.23.7"
    assert out["junk"] >= 2 * n and out["note"] == "+CCLK: unreadable"


def test_junk_urc_stream_still_counted(make_sim):
    """UNKNOWN_URCS (what urc_stream sends) hold a *PSUTTZ the driver must
    not act on: it is malformed on purpose, so it stays junk."""
    psuttz = [u for u in UNKNOWN_URCS if u.startswith(b"*PSUTTZ")]
    assert psuttz
    m = feeder()
    for u in UNKNOWN_URCS:
        feed(m, u)
    assert m.junk == len(UNKNOWN_URCS) and m.network_time is None


# ---- in-process: date arithmetic and the parsers --------------------------------

class NoUart:
    def readinto(self, buf, n):
        return None

    def write(self, buf, off, n):
        return n


def feeder():
    return SIM800L(NoUart())


def feed(m, line):
    line = line[:128]
    m._line[:len(line)] = line
    m._ln = len(line)
    m._do_line()


def test_days_and_civil_match_the_calendar():
    for t in list(range(0, 4102444800, 86400 * 37 + 3601)) + [951782400, 4107542399]:
        g = time.gmtime(t)
        d = t // 86400
        assert sim800l_bringup._days(g.tm_year, g.tm_mon, g.tm_mday) == d
        assert sim800l_bringup._civil(d) == (g.tm_year, g.tm_mon, g.tm_mday)


def test_set_rtc_tuple(monkeypatch):
    got = []

    class RTC:
        def datetime(self, t):
            got.append(t)
    monkeypatch.setattr(sim800l_bringup, "_RTC", RTC)
    t = calendar.timegm((2026, 12, 1, 11, 14, 45))          # a Tuesday
    assert sim800l_bringup._set_rtc(t) is True
    assert got == [(2026, 12, 1, 1, 11, 14, 45, 0)]
    monkeypatch.setattr(sim800l_bringup, "_RTC", None)
    assert sim800l_bringup._set_rtc(t) is False


@pytest.mark.parametrize("line, utc", [
    (b'*PSUTTZ: 2026,12,1,11,14,45,"+32",0', (2026, 12, 1, 11, 14, 45)),    # fields are UTC
    (b'*PSUTTZ: 2026,3,29,1,0,0,"-4",1', (2026, 3, 29, 1, 0, 0)),
    (b'*PSUTTZ: 2028,2,29,23,59,59,"+0",0', (2028, 2, 29, 23, 59, 59)),      # a leap day
])
def test_psuttz_parses(line, utc):
    m = feeder()
    feed(m, line)
    assert m.network_time == calendar.timegm(utc) and m.clock_source == "*PSUTTZ"
    assert m.junk == 0 and m.urcs == 1


@pytest.mark.parametrize("line", BAD_PSUTTZ + [b"*PSUTTZ:", b"*PSUTTZ: ", b'*PSUTTZ: ,,,,,,"+0",0',
                                               b'*PSUTTZ: 2026,12,1,1,14,45,"+32",'])
def test_bad_psuttz_is_junk(line):
    m = feeder()
    feed(m, line)
    assert m.network_time is None and m.junk == 1 and m.urcs == 0


@pytest.mark.parametrize("reply, want", [
    (b'+CCLK: "26/12/01,19:14:45+32"', (0, (2026, 12, 1, 11, 14, 45))),    # UTC+8
    (b'+CCLK: "26/12/01,03:00:00-20"', (0, (2026, 12, 1, 8, 0, 0))),       # UTC-5
    (b'+CCLK: "27/01/01,01:00:00+08"', (0, (2026, 12, 31, 23, 0, 0))),     # back a year
    (b'+CCLK: "26/12/01,19:14:45"', (0, (2026, 12, 1, 19, 14, 45))),       # no zone: UTC
    (b'+CCLK: "04/01/01,00:00:07+00"', (1, None)),                          # never set
    (b'+CCLK: "23/12/31,23:59:59+00"', (1, None)),
] + [(b, (2, None)) for b in BAD_CCLK])
def test_cclk_parses(reply, want):
    m = feeder()
    line = reply[:128]
    m._info[:len(line)] = line
    m._info_n = len(line)
    assert m._cclk() == want[0]
    assert m.network_time == (calendar.timegm(want[1]) if want[1] else None)


# ---- the simulator: the manual's bytes ----------------------------------------

def answer(sim, line):
    sim._command(line)
    out, sim.out = b"".join(d for _, d in sim.out), []
    return out


OK, ERROR = b"\r\nOK\r\n", b"\r\nERROR\r\n"


def test_simulator_clock_commands():
    sim = Sim800L(seed=0, cclk_zone=32)
    try:
        assert answer(sim, b"AT+CLTS?") == b"\r\n+CLTS: 0\r\n" + OK          # factory setting
        assert answer(sim, b"AT+CLTS=?") == b"\r\n+CLTS: (0,1)\r\n" + OK
        assert answer(sim, b"AT+CLTS=1") == OK and answer(sim, b"AT+CLTS=2") == ERROR
        assert answer(sim, b"AT+CLTS?") == b"\r\n+CLTS: 1\r\n" + OK
        assert answer(sim, b"AT&W") == OK and sim.clts_saved == 1
        got = answer(sim, b"AT+CCLK?")
        m = re.fullmatch(rb'\r\n\+CCLK: "(\d\d/\d\d/\d\d,\d\d:\d\d:\d\d)\+32"\r\n\r\nOK\r\n', got)
        assert m, got
        local = calendar.timegm(time.strptime(m.group(1).decode(), "%y/%m/%d,%H:%M:%S"))
        assert abs(local - 8 * 3600 - time.time()) < SLACK
        assert answer(sim, b'AT+CCLK="26/12/01,19:14:45-08"') == OK
        assert answer(sim, b"AT+CCLK?") == b'\r\n+CCLK: "26/12/01,19:14:45-08"\r\n' + OK
        for bad in (b'AT+CCLK="26/13/01,19:14:45+00"', b"AT+CCLK=26/12/01,19:14:45+00",
                    b'AT+CCLK="26/12/01,19:14:45+99"', b"AT+CCLK"):
            assert answer(sim, bad) == ERROR, bad
        assert answer(sim, b"AT&W0") == ERROR
    finally:
        sim.close()


def test_simulator_clts_acts_from_the_next_boot():
    sim = Sim800L(seed=0)
    try:
        answer(sim, b"AT+CLTS=1")
        assert answer(sim, b"AT+CREG?") == b"\r\n+CREG: 0,1\r\n" + OK    # not in effect yet
        answer(sim, b"AT&W")
        sim._reset()
        sim.out, sim.booting_until = [], 0
        got = answer(sim, b"AT+CREG?")
        m = re.fullmatch(rb'\r\n\+CREG: 0,1\r\n\r\nOK\r\n\r\n\*PSUTTZ: (\d{4}),(\d{1,2}),(\d{1,2}),'
                         rb'(\d{1,2}),(\d{1,2}),(\d{1,2}),"\+0",0\r\n\r\nDST: 0\r\n', got)
        assert m, got
        assert abs(calendar.timegm(tuple(int(x) for x in m.groups())) - time.time()) < SLACK
        assert answer(sim, b"AT+CGREG?") == b"\r\n+CGREG: 0,1\r\n" + OK  # once per boot
        sim.nitz = False
        sim._reset()
        sim.out, sim.booting_until = [], 0
        assert answer(sim, b"AT+CREG?") == b"\r\n+CREG: 0,1\r\n" + OK    # switched off
    finally:
        sim.close()


def test_simulator_unset_and_wrong_clock():
    sim = Sim800L(seed=0, cclk="unset")
    try:
        assert re.fullmatch(rb'\r\n\+CCLK: "04/01/01,00:00:0\d\+00"\r\n\r\nOK\r\n',
                            answer(sim, b"AT+CCLK?"))
        sim.fire("nitz")                         # the network's time: now it is right
        sim.out = []
        got = answer(sim, b"AT+CCLK?")
        assert not got.startswith(b'\r\n+CCLK: "04/'), got
    finally:
        sim.close()
    sim = Sim800L(seed=0, cclk=-86400)
    try:
        got = answer(sim, b"AT+CCLK?")
        yday = time.gmtime(time.time() - 86400)
        assert got.startswith(b'\r\n+CCLK: "%02d/%02d/%02d,' % (yday.tm_year % 100, yday.tm_mon,
                                                               yday.tm_mday)), got
    finally:
        sim.close()


def test_cli_clock_options():
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "host", "sim800l_sim.py"), "--tcp", "0",
                          "--clts", "1", "--cclk", "unset", "--cclk-zone", "32", "--no-nitz"],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        s = socket.create_connection(("127.0.0.1", int(line[1].rsplit(":", 1)[1])))
        s.settimeout(2)
        got = b""
        s.sendall(b"ATE0\rAT+CLTS?\rAT+CCLK?\r")
        while got.count(b"OK\r\n") < 3:
            got += s.recv(4096)
        assert b"\r\n+CLTS: 1\r\n" in got and b'\r\n+CCLK: "04/01/01,00:00:' in got, got
        assert b'+00"\r\n' in got                               # an unset clock has no zone
        s.close()
    finally:
        p.terminate()
        p.wait(5)

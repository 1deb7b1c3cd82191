"""A hostile modem: the simulator's junk modes against the SIM800L driver.

Junk in every reply the driver parses, unknown URC streams, CLOSED in the
middle of AT+CIPSEND, floods of line noise, and a randomized soak mixing them
with the classic faults.  Everywhere: only OSError with an errno leaves the
driver, no AT command outlives its deadline (measured from the moment it was
sent, tests/scenarios/sim800l_hostile.py:Watched), and a heartbeat task in the
same event loop keeps running.  Both interpreters unless said otherwise.
"""
import errno
import os
import subprocess
import sys
import time

import pytest

from conftest import INTERPRETERS, ROOT
from test_sim800l import FLAVOURS, Sim800L, params, resilient, sim, soak_side_by_side  # noqa: F401,E501
from test_sim800l_dialogue import Terminal

from sim800l_sim import HOSTILE_KINDS, UNKNOWN_URCS  # noqa: E402  (host/ is on sys.path)

# How far past its deadline an AT command may still be seen running: the
# event loop's latency on 2 busy CI cores, not a speed requirement.
SLACK_MS = 250
# The longest a 10 ms heartbeat task may go without running.
GAP_MS = 200
# Random faults per interpreter in the hostile soak.
SOAK_FAULTS = int(os.environ.get("SIM800L_HOSTILE_FAULTS", 120))


def bring_up(run_scenario, interp, sim, broker, **kw):
    out = run_scenario(interp, "sim800l_hostile", "bring_up",
                       **params(sim, broker, "async", connect=1, **kw))
    print("\n%s: %s overrun %d ms (%s), gap %d ms, junk %d" % (
        interp, out["attempts"], out["overrun"], out["overrun_cmd"], out["gap"], out["stats"]["junk"]))
    return out


def test_unknown_urc_stream_does_not_stretch_the_cifsr_deadline(interp, run_scenario, sim, broker):  # noqa: F811
    """Defect 7: AT+CIFSR goes unanswered while unknown URCs arrive every 100 ms
    for 3 s.  Each used to restart the wait: the command ran until the stream
    ended.  Now it ends at its own deadline (600 ms here) and the retry works."""
    sim.arm("urc_stream", on="AT+CIFSR", seconds=3.0, every_ms=100, swallow=True)
    out = bring_up(run_scenario, interp, sim, broker)
    first, last = out["attempts"][0], out["attempts"][-1]
    assert first[:2] == ["OSError", errno.ETIMEDOUT], out["attempts"]
    assert out["overrun"] < SLACK_MS, out
    assert last[0] == "ok" and out["ping"] == (0xD0, b"") and out["ip"] == "10.64.23.7"
    assert out["stats"]["junk"] >= 3                     # the URCs were seen, and ignored
    assert out["gap"] < GAP_MS


def test_junk_in_every_reply_the_driver_parses(interp, run_scenario, sim, broker):  # noqa: F811
    """Defect 8: non-UTF-8 bytes or letters for digits in +CPIN:, +CREG:,
    +CGREG:, +CGATT:, +CSQ:, the AT+CIFSR address and the STATE: line used to
    raise UnicodeError / ValueError out of start() and connect().  A junk
    reply is no answer: a query asks again, a junk +CSQ leaves rssi unknown
    (99), a junk address ends AT+CIFSR at its deadline (ETIMEDOUT, start()
    again works), a junk STATE: line makes connect() rebuild the context."""
    for cmd, how in (("AT+CPIN?", "bytes"), ("AT+CREG?", "bytes"), ("AT+CGREG?", "letters"),
                     ("AT+CGATT?", "bytes"), ("AT+CIFSR", "bytes"), ("AT+CIPSTATUS", "bytes")):
        sim.arm("mangle", on=cmd, how=how)
    sim.arm("mangle", on="AT+CSQ", nth=2, how="letters")     # the start that succeeds: +CSQ: bi,a
    sim.arm("error", on="AT+CIPSTART")                       # connect() asks AT+CIPSTATUS
    out = bring_up(run_scenario, interp, sim, broker)
    assert [a[:2] for a in out["attempts"]] == [["OSError", errno.ETIMEDOUT], ["ok", 0]], out
    assert out.get("connect_error") is None and out["ping"] == (0xD0, b""), out
    assert out["rssi"] == 99 and out["ip"] == "10.64.23.7"
    assert sim.armed() == [] and sim.fired == {"mangle": 7, "error": 1}
    assert sim.counts["AT+CIPSHUT"] == 3          # two bring-ups, then the repair after STATE: junk
    assert out["overrun"] < SLACK_MS and out["gap"] < GAP_MS


@pytest.mark.parametrize("flavour, at", [("async", "data"), ("sync", "prompt")])
def test_closed_mid_send_is_reported_at_once(interp, flavour, at, run_scenario, sim, broker):  # noqa: F811
    """Defect 13: CLOSED instead of DATA ACCEPT (after the data, or right after
    the prompt) used to wait out the send deadline, then force a full modem
    bring-up.  Now write() raises ECONNRESET at once and the next connect()
    only opens a new link."""
    sim.arm("closed_mid_send", on="AT+CIPSEND", nth=4, at=at)   # CONNECT, SUBSCRIBE, msg 0, msg 1
    out = resilient(run_scenario, interp, sim, broker, flavour, log=1)
    assert out["errors"] == [errno.ECONNRESET], out
    assert out["starts"] == 1 and sim.counts["ATE0"] == 1 and sim.counts["AT+CIPSTART"] == 2
    assert out["log"][0][0] < 1500, out["log"]          # well before the send deadline (1500 ms)
    assert sim.fired == {"closed_mid_send": 1}


@pytest.mark.parametrize("fault, arg, errors", [
    ("mangle", {"on": "AT+CIPRXGET=2", "nth": 2, "how": "bytes"}, [errno.EIO]),
    ("urc", {"on": "AT+CIPSEND", "nth": 3, "text": b"+CIPRXGET: 2,5,0"}, []),
], ids=["mangled-header", "unasked-header"])
def test_a_junk_data_header_never_corrupts_the_stream(interp, fault, arg, errors, run_scenario, sim,  # noqa: F811
                                                      broker):
    """Found by the soak's junk modes: the '+CIPRXGET: 2,<n>,<left>' header
    frames the raw bytes that follow.  A mangled one used to be skipped, and
    the n bytes of data it framed were parsed as lines: the TCP stream lost
    them without an error.  One that nobody asked for (line noise that looks
    like it) made the parser copy the next n bytes of the UART into the
    data.  Now a mangled header while fetching is EIO (the client
    reconnects), and one outside a fetch is junk."""
    sim.arm(fault, **arg)
    out = resilient(run_scenario, interp, sim, broker)      # every message intact, in order
    assert out["errors"] == errors, out
    assert sim.fired == {fault: 1}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_flood_of_noise_cannot_hold_a_command_past_its_deadline(interp, flavour, run_scenario):
    """Defect 13: the input pump read for as long as bytes came.  A UART that
    delivers noise faster than it is parsed (for 4 s) held start() for all
    of it and, in the async flavour, starved every other task.  Now a pump
    parses a bounded number of bytes; the sync phase ends at its deadline
    (1 s; AT tries of 500 ms) and a heartbeat keeps beating."""
    out = run_scenario(interp, "sim800l_hostile", "firehose", flavour=flavour, flood_ms=4000,
                       timeouts={"sync": 1000, "at": 300})
    print("\n%s/%s: %s in %d ms, %d bytes of noise, <= %d per pump, gap %d ms" % (
        interp, flavour, out["exc"], out["ms"], out["noise"], out["pump_max"], out["gap"]))
    assert out["exc"] == ["OSError", errno.ETIMEDOUT], out
    assert out["ms"] < 1000 + 500 + SLACK_MS, out
    assert out["overrun"] < SLACK_MS, out
    assert 0 < out["pump_max"] <= 4096 and out["stats"]["junk"] > 10
    if flavour == "async":
        assert out["gap"] < GAP_MS, out


def test_flood_through_the_simulator(interp, run_scenario, sim, broker):  # noqa: F811
    """The simulator's flood mode (line noise as fast as the link takes, far
    faster than the driver parses it, never inside a reply) in the middle of an MQTT session: commands end by their
    deadlines, the heartbeat keeps beating, every message that arrives is
    intact, and the session carries on after the flood."""
    sim.arm("flood", on="AT+CIPSEND", nth=4, seconds=0.1)
    out = run_scenario(interp, "sim800l_hostile", "soak",
                       **params(sim, broker, "async", count=12, seconds=25, timeouts="soak",
                                rx_poll_ms=200))
    report(interp, sim, out)
    assert sim.flood_bytes > 200000
    assert out["received"] == list(range(12)), out
    assert out["escaped"] == [] and out["corrupted"] == []
    assert out["overrun"] < SLACK_MS and out["gap"] < GAP_MS, out


def report(interp, sim, out):
    errs = {e: out["errors"].count(e) for e in sorted(set(out["errors"]), key=str)}
    print("\nhostile %s: %d faults %s\n  %d messages intact, errors by errno %s, %d stalls, "
          "%d bring-ups, %d ms; worst overrun %d ms (%s), heartbeat gap %d ms, longest calls %s, "
          "junk lines %d, flood %d B" % (
              interp, sum(sim.fired.values()), dict(sorted(sim.fired.items())),
              len(out["received"]), errs, out["stalls"], out["starts"], out["ms"], out["overrun"],
              out["overrun_cmd"], out["gap"], out["longest"], out["stats"]["junk"], sim.flood_bytes))


def test_hostile_soak(start_scenario, broker, tmp_path):
    """Random faults, the junk modes mixed with the classic ones (fixed seeds,
    SOAK_FAULTS per interpreter, side by side, a simulator each) while
    numbered messages go round through mosquitto: nothing but OSError with an
    errno leaves the driver, no AT command outlives its deadline, the
    heartbeat keeps beating, no packet is corrupted."""
    for interp, sim, out in soak_side_by_side(start_scenario, broker, tmp_path,
                                              ("sim800l_hostile", "soak"), SOAK_FAULTS,
                                              seconds=45, seed=101, kinds=HOSTILE_KINDS):
        report(interp, sim, out)
        if os.environ.get("SIM800L_HOSTILE_LOG"):
            print("\n".join(map(repr, out["log"])))
        assert sim.chaos_left == 0 and sum(sim.fired.values()) == SOAK_FAULTS
        assert out["escaped"] == [] and out["corrupted"] == [], out
        assert all(isinstance(e, int) for e in out["errors"])
        assert out["received"] == list(range(len(out["received"])))
        assert len(out["received"]) > SOAK_FAULTS // 3
        assert out["overrun"] < SLACK_MS, (out["overrun"], out["overrun_cmd"])
        assert out["gap"] < GAP_MS


# ---- the simulator's junk modes, byte for byte (CPython: host tools) ---------
def test_junk_modes_on_the_wire(sim):  # noqa: F811
    t = Terminal(sim.port)
    t.ask(b"ATE0")
    sim.arm("mangle", on="AT+CPIN?")
    assert t.ask(b"AT+CPIN?") == b"\r\n+CPIN: \xff\xfe\x80READY\r\n\r\nOK\r\n"
    sim.arm("mangle", on="AT+CSQ", how="letters")
    assert t.ask(b"AT+CSQ") == b"\r\n+CSQ: bi,a\r\n\r\nOK\r\n"
    assert t.ask(b"AT+CSQ") == b"\r\n+CSQ: 18,0\r\n\r\nOK\r\n"          # once only
    sim.arm("mangle", on="AT+CIPSTATUS")
    assert t.ask(b"AT+CIPSTATUS", b"INITIAL\r\n").endswith(b"STATE: \xff\xfe\x80IP INITIAL\r\n")
    sim.arm("error", on="AT+CSQ")
    assert t.ask(b"AT+CSQ", b"ERROR\r\n") == b"\r\nERROR\r\n"
    sim.arm("urc_stream", on="AT+CSQ", seconds=0.25, every_ms=50, swallow=True)
    t.s.sendall(b"AT+CSQ\r")
    time.sleep(0.4)
    got = t.s.recv(4096)
    lines = [x for x in got.split(b"\r\n") if x]
    assert 2 <= len(lines) <= 6 and set(lines) <= set(UNKNOWN_URCS), got   # and no reply
    sim.fire("flood", seconds=0.2)
    time.sleep(0.3)
    noise = b""
    t.s.settimeout(0.2)
    try:
        while True:
            noise += t.s.recv(1 << 20)
    except OSError:
        pass
    assert len(noise) == sim.flood_bytes > 10000
    assert b"OK" not in noise and b">" not in noise and b"\r\n" in noise
    t.s.settimeout(2)
    assert t.ask(b"AT") == b"\r\nOK\r\n"


def test_closed_mid_send_on_the_wire(sim):  # noqa: F811
    import socket
    peer = socket.socket()
    peer.bind(("127.0.0.1", 0))
    peer.listen(1)
    t = Terminal(sim.port)
    for c in (b"ATE0", b"AT+CIPQSEND=1", b'AT+CSTT="internet"', b"AT+CIICR"):
        t.ask(c)
    t.ask(b"AT+CIFSR", b"7\r\n")
    start = b'AT+CIPSTART="TCP","127.0.0.1",%d' % peer.getsockname()[1]
    t.ask(start, b"CONNECT OK\r\n")
    conn = peer.accept()[0]                              # kept open: the peer stays up
    sim.arm("closed_mid_send", on="AT+CIPSEND")
    assert t.ask(b"AT+CIPSEND=3", b"CLOSED\r\n", data=b"abc") == b"\r\n> \r\nCLOSED\r\n"
    assert t.ask(b"AT+CIPSTATUS", b"CLOSED\r\n").endswith(b"STATE: TCP CLOSED\r\n")
    t.ask(start, b"CONNECT OK\r\n")
    conn2 = peer.accept()[0]
    sim.arm("closed_mid_send", on="AT+CIPSEND", at="prompt")
    assert t.ask(b"AT+CIPSEND=3", b"CLOSED\r\n") == b"\r\n> \r\nCLOSED\r\n"
    t.s.sendall(b"xyz")                                  # taken as the data: no answer at all
    assert t.ask(b"AT") == b"\r\nOK\r\n"
    conn.settimeout(0.2)
    assert conn.recv(10) == b""                          # closed, and "abc" never arrived
    for s in (conn, conn2, peer):
        s.close()


def test_cli_arms_junk(tmp_path):
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "host", "sim800l_sim.py"), "--tcp", "0",
                          "--arm", "mangle on=AT+CSQ how=letters", "--arm", "error on=ATI",
                          "--chaos", "0,0", "--kinds", "hostile", "--seed", "3"],
                         stdout=subprocess.PIPE, text=True)
    try:
        t = Terminal(int(p.stdout.readline().split()[1].rsplit(":", 1)[1]))
        assert t.ask(b"AT+CSQ") == b"AT+CSQ\r\r\n+CSQ: bi,a\r\n\r\nOK\r\n"
        assert t.ask(b"ATI", b"ERROR\r\n") == b"ATI\r\r\nERROR\r\n"
    finally:
        p.terminate()
        p.wait(5)


def test_a_uart_that_takes_no_bytes_ends_in_etimedout():
    """A modem holding CTS (or a dead line): MicroPython's UART.write answers
    None on its own timeout.  The driver gives up after its "at" deadline
    instead of spinning for ever (it did, before)."""
    import errno
    import sys
    import time
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "modules"))
    from sim800l import SIM800L

    class DeafUart:
        def write(self, buf, off=None, n=None):
            return None

        def readinto(self, buf, n=None):
            return None

    modem = SIM800L(DeafUart(), timeouts={"at": 300, "sync": 300})
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        modem.start_blocking()
    assert e.value.errno == errno.ETIMEDOUT
    assert time.monotonic() - t0 < 5

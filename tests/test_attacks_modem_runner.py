"""The second attack on the SIM800L driver and the app runner (findings of
/tmp/attack-modem/FINDINGS.md, by number): regressions.

Driver ([1] [8] [10] [11] [12] [13] [14]): the real driver against a
byte-exact scripted modem on a fake UART (tests/scenarios/attacks_modem_runner.py:
FakeModem), under CPython and build/micropython.  The modem takes the <n>
data bytes that follow an AT+CIPSEND=<n>, whenever its prompt comes, and an
ESC among them cancels the send (the manual's way out of a send); `data` is
every byte it took as packet data, `sent` what reached the server.  A
command byte in there is a corrupted TCP stream.

Runner ([2] [3] [6]): app_runner.run() as a board's main.py (the same
scenario file as the main script), a real mosquitto, statuses watched on
ota/s/#; the reset stand-in ends the process and the Supervisor starts it
again, as tests/test_runner_hardening.py does.
"""
import errno
import os

import pytest

from conftest import ROOT
from test_ota_rig import RunDevice as SharedRunDevice, app_source, keys, rig  # noqa: F401 (fixtures)

import sys
sys.path.insert(0, os.path.join(ROOT, "modules"))
import ota  # noqa: E402 -- to write a device's state as the product does

# How far past its deadline an operation may end (the event loop's latency
# on 2 busy CI cores), and the longest a 10 ms heartbeat may go without
# running: as tests/test_sim800l_hostile.py.
SLACK_MS = 250
GAP_MS = 200


def scenario(run_scenario, interp, function, **p):
    return run_scenario(interp, "attacks_modem_runner", function, timeout=40, **p)


def only(data, alphabet):
    """data holds nothing but bytes of alphabet (the app's payload)."""
    return not set(data) - set(alphabet)


# ---- [1] a UART write that stalls or dribbles ---------------------------------------

@pytest.mark.parametrize("case, deadline", [("dead", 1000), ("dribble", 1000), ("dribble_data", 1000)])
def test_stalled_uart_write_ends_at_the_commands_deadline(interp, run_scenario, case, deadline):
    """[1] The UART takes nothing (dead) or one byte now and then (CTS held):
    start() (sync deadline 1 s; its AT has 500 ms) and a CIPSEND's data
    (send deadline 1 s) must end with ETIMEDOUT at their own deadline,
    counted from when they started, not at the "at" deadline (3 s) nor
    restarted by every byte.  (Before: 3 s on a dead UART, 40 s and more on
    a dribbling one.)  The driver's UART write does not yield (a generator
    per write would cost heap on every AT round trip), so a stalled UART
    holds the event loop, but never past the command's deadline: parking
    the write on the UART is issue 15's ("no busy waiting")."""
    r = scenario(run_scenario, interp, "uart_write_stall", case=case)
    assert r["result"][:2] == ["OSError", errno.ETIMEDOUT], r
    # start(): the sync deadline, plus the one AT (500 ms) that may run past it
    bound = deadline + (500 if case != "dribble_data" else 0) + SLACK_MS
    assert r["ms"] <= bound, r
    assert r["gap"] <= bound, r


# ---- [8] a modem reboot during bring-up -------------------------------------------

def test_reboot_during_bring_up_is_not_a_finished_bring_up(interp, run_scenario):
    """[8] The modem reboots (RDY ... SMS Ready) right after AT+CIPQSEND=1:
    its settings are gone (AT+CIPRXGET=0: received data comes raw).  start()
    must bring it up again or fail (the app's retry then does); it must
    never return with the modem as the reboot left it.  Then a connection
    carries data.  (Before: start() returned; AT+CIPRXGET=1 was never sent
    again; every connection lost all it received, ENOTCONN forever.)"""
    r = scenario(run_scenario, interp, "reboot_mid_bringup")
    assert r["reboots"] >= 1, r
    assert all(s[0] in ("ok", "OSError") for s in r["starts"]), r["starts"]
    assert r["starts"][-1][0] == "ok", r["starts"]
    after = r["after_reboot"]
    assert "AT+CIPRXGET=1" in after and "AT+CIPQSEND=1" in after, \
        "start() ended without redoing the settings the reboot lost: %r, sent after the reboot: %r" % (
            r["starts"], after)
    assert r["connect"][-1][0] == "ok", r
    assert r["read"] == [b"CONNACK-bytes", None], r


# ---- [10] a +CIPRXGET: 2 block shorter than its header ------------------------------

def test_short_rxget_block_does_not_leave_the_driver_deaf(interp, run_scenario):
    """[10] A fetch's header says 1020 bytes, 20 come (then OK).  The read
    fails (an OSError, no reply bytes as data); the next connect() works at
    once: the modem's replies to the bring-up are replies, not the rest of
    that block.  (Before: "modem does not answer AT" for a minute, though the
    modem answered every AT.)"""
    r = scenario(run_scenario, interp, "short_rxget_block")
    got, err = r["read"]
    assert (err is not None and err[0] == "OSError") or (got and only(got, b"x")), r["read"]
    assert only(got, b"x"), r["read"]
    assert r["reconnect"] == [["ok", 0, ""]], (r["reconnect"], r["ats_answered"])
    assert r["write2"] == 20 and r["read2"] == [b"hello", None], r
    assert r["sent"] == b"q" * 20, r["sent"]


# ---- [11] +CPIN: NOT READY -----------------------------------------------------------

def test_cpin_not_ready_is_not_ready(interp, run_scenario):
    """[11] A SIM that stays "NOT READY": start() keeps asking AT+CPIN?
    until the sim deadline and fails there with ETIMEDOUT, without going on
    to registration.  (Before: "READY" in "NOT READY": on to AT+CREG?, and a
    failure at the registration deadline that blamed the network.)"""
    r = scenario(run_scenario, interp, "cpin_not_ready", ready_after=None)
    assert r["result"][:2] == ["OSError", errno.ETIMEDOUT], r["result"]
    assert "AT+CREG?" not in r["commands"], r["commands"]
    assert r["cpin"] >= 2, r
    assert r["ms"] <= 1000 + 500 + 500 + SLACK_MS, r   # the sim deadline, a poll's pause, one query


def test_cpin_not_ready_then_ready_waits_for_the_sim(interp, run_scenario):
    """[11] NOT READY twice, then READY: the bring-up waits for the SIM and succeeds."""
    r = scenario(run_scenario, interp, "cpin_not_ready", ready_after=2)
    assert r["result"] == ["ok", 0, ""], r
    assert r["cpin"] == 3, r
    assert r["commands"].index("AT+CREG?") > max(i for i, c in enumerate(r["commands"]) if c == "AT+CPIN?")


# ---- [12] +PDP: DEACT while DATA ACCEPT is awaited --------------------------------

def test_pdp_deact_during_a_send_is_reported_at_once(interp, run_scenario):
    """[12] The modem takes the data, then says +PDP: DEACT instead of DATA
    ACCEPT: write() raises ECONNRESET (or ENOTCONN) at once, not ETIMEDOUT at
    the send deadline (1.5 s here, 10 s by default); then a connection works."""
    r = scenario(run_scenario, interp, "pdp_deact_mid_send")
    assert r["write"][:1] == ["OSError"] and r["write"][1] in (errno.ECONNRESET, errno.ENOTCONN), r["write"]
    assert r["ms"] < 300, r
    assert r["reconnect"][-1][0] == "ok" and r["write2"] == 20 and r["read2"] == [b"hello", None], r
    assert r["gap"] < GAP_MS, r


# ---- [13] the UART stalls in the middle of CIPSEND data ------------------------------

def test_uart_stall_mid_data_never_puts_commands_into_the_tcp_stream(interp, run_scenario):
    """[13] After the prompt the UART takes 10 of 28 data bytes, then nothing
    for longer than the send deadline, then works again.  write() fails; the
    link is lost (the next read fails) and the modem, still owed 18 bytes,
    must not get the next command as packet data: the server sees the app's
    bytes only, and a new connection (after a full bring-up) carries a new
    packet intact.  (Before: the next AT+CIPRXGET=2,512 completed the packet:
    the server got b"pppppppppp" + b"AT+CIPRXGET=2,512\\r".)"""
    r = scenario(run_scenario, interp, "write_stall_mid_data")
    assert r["write"][0] == "OSError", r["write"]
    assert r["write_ms"] <= 600 + SLACK_MS, r
    assert r["read"][1] is not None and r["read"][1][0] == "OSError", \
        "the link was not marked lost: %r" % (r["read"],)
    # the 18 bytes still owed are paid as 0xFF (ESC cancels only the Ctrl-Z
    # form of AT+CIPSEND, not AT+CIPSEND=<n>): never as our next command
    assert only(r["data"], b"pq\xff"), "bytes the app never wrote went into the TCP stream: %r" % r["data"]
    assert r["sent"] in (b"q" * 20, b"p" * 10 + b"\xff" * 18 + b"q" * 20), r["sent"]
    after = r["commands_after"]
    assert "AT" in after and after.index("AT") < after.index(next(c for c in after if c.startswith("AT+CIPSTART"))), \
        "no full bring-up before the new connection: %r" % after
    assert r["reconnect"][-1][0] == "ok" and r["write2"] == 20 and r["read2"] == [b"hello", None], r
    # the stalled write holds the loop up to the send deadline (see [1])
    assert r["gap"] <= 600 + SLACK_MS, r


# ---- [14] a send cancelled while its prompt is late -------------------------------------

def test_cancelled_send_leaves_no_data_owed_to_the_modem(interp, run_scenario):
    """[14] max_send 100: a 150-byte write is two CIPSENDs; the task is
    cancelled while the second prompt is late; the prompt then comes, the
    socket is closed and a new connection made.  The modem is owed 50 bytes:
    no command may be what pays them: the driver pays them as 0xFF (a packet
    starting with it is MQTT's reserved type 15: a broker drops the link
    rather than deliver it; ESC cancels only the Ctrl-Z form of
    AT+CIPSEND).  (Before: AT+CIPCLOSE=1 and the bring-up's ATs became the
    end of the packet at the server, and the reconnect failed.)"""
    r = scenario(run_scenario, interp, "cancel_mid_send")
    assert r["writer"] == "cancelled", r["writer"]
    assert only(r["data"], b"PQ\xff"), "bytes the app never wrote went into the TCP stream: %r" % r["data"][100:]
    assert r["sent"] in (b"P" * 100 + b"\xff" * 50 + b"Q" * 30, b"P" * 150 + b"Q" * 30), r["sent"]
    assert r["reconnect"][-1][0] == "ok" and len(r["reconnect"]) <= 2, r["reconnect"]
    assert r["write2"] == 30 and r["read2"] == [b"hello", None], r


# ---- the runner: app_runner.run() as main.py --------------------------------------

FAST_RUN = {"backoff_ms": 100, "backoff_max_ms": 400, "reset_after": 1000}
INTERPS = ["micropython", "cpython"]


class RunDevice(SharedRunDevice):
    """app_runner.run() with this file's scenario as main.py."""
    script = "attacks_modem_runner.py"


def device(rig, interp, apps, state, **conf):
    """A device on its first app, with apps {version: source} and state written
    by ota.save_state (both checked copies); not started."""
    c = dict(FAST_RUN)
    c.update(conf)
    d = RunDevice(str(rig.tmp), "atk-%s-%d" % (rig.tag, len(rig.devices)), rig.broker.port,
                  rig.keys, interp, app=apps[min(apps)], version=min(apps), **c)
    rig.devices.append(d)
    for v, src in apps.items():
        with open(os.path.join(d.dir, "app-%d.py" % v), "wb") as f:
            f.write(src)
    ota.save_state(d.dir, state)
    return d


def events(rig, d):
    """The device's statuses, short: (st, v, why[:40]), the first 8."""
    return [(e["st"], e.get("v"), (e.get("why") or "")[:40]) for e in rig.watch.of(d.id)][:8]


CRASH_FIRE = (b"import asyncio\nVERSION = 2\n"
              b"async def main(dev):\n"
              b"    raise RuntimeError(chr(0x1F525) * 200)\n")


@pytest.mark.parametrize("interp", INTERPS)
def test_trial_app_crashing_with_a_long_non_ascii_message_is_rolled_back(rig, interp):
    """[2] v2 on trial (v1 behind it, floor 7: v3..v7 thrown out before)
    raises RuntimeError("\\U0001F525" * 200).  The next boot rolls back to v1
    ("rolledback", rb 2) and the floor stays 7.  (Before, CPython: the reason
    made the state file 1389 bytes, over what load_state reads: both copies
    read as damage, the state was rebuilt from the files with tries 0 and
    floor 2: v2 on trial again, every boot, forever.  MicroPython's json
    writes raw UTF-8, under the limit: it passed there.)"""
    d = device(rig, interp, {1: app_source(1), 2: CRASH_FIRE},
               {"cur": 2, "prev": 1, "floor": 7, "trial": 1, "tries": 0, "p": 4294967295})
    rig.boot(d)
    e = rig.watch.wait(lambda e: e.get("id") == d.id and e["st"] == "rolledback", timeout=12)
    assert e, "no rollback: %r\n%s" % (events(rig, d), d.log()[-1500:])
    assert (e["v"], e["rb"], e.get("floor")) == (1, 2, 7), e
    assert rig.running(d, 1, timeout=10), events(rig, d)
    crashed = [x for x in rig.watch.of(d.id) if x["st"] == "crashed"]
    assert crashed and crashed[0]["why"].startswith("RuntimeError"), events(rig, d)
    st = d.state()
    assert (st["cur"], st["floor"], st["trial"]) == (1, 7, 0), st
    assert not [x for x in rig.watch.of(d.id) if x["st"] == "trial" and x.get("floor", 7) < 7], events(rig, d)


def test_full_flash_during_a_trial_boot_still_connects_and_reports(rig):
    """[3] v2 just installed (on trial, v1 behind it) and the flash is full:
    every write raises ENOSPC (builtins.open patched in the device process:
    CPython only).  The boot cannot save its try count; it must still
    connect and report a status (the device stays reachable, so a fix can be
    pushed).  (Before: boot_state() raised before the connect, every boot:
    no status ever, a reset loop.)"""
    good = app_source(2)
    d = device(rig, "cpython", {1: app_source(1), 2: good},
               {"cur": 2, "prev": 1, "floor": 2, "trial": 1, "tries": 0}, params={"enospc": True})
    rig.boot(d)
    e = rig.watch.wait(lambda e: e.get("id") == d.id, timeout=10)
    assert e, "the device never reached the broker:\n" + d.log()[-1500:]
    assert "FLASH FULL" in d.log()
    assert e["st"] in ("trial", "rolledback", "up", "crashed", "run"), e


CANCEL_ITSELF = (b"import asyncio\nVERSION = 1\n"
                 b"async def main(dev):\n"
                 b"    dev.healthy()\n"
                 b"    await asyncio.sleep(0.2)\n"
                 b"    print('APP: raising CancelledError')\n"
                 b"    raise asyncio.CancelledError()\n")


@pytest.mark.parametrize("interp", INTERPS)
def test_app_raising_cancelled_error_itself_is_a_crash(rig, interp):
    """[6] A confirmed app whose main() raises asyncio.CancelledError (the
    runner did not cancel it): the boot ends "crashed" and the app runs again
    after the backoff, as for any other exception.  (Before: taken for the
    runner's own cancellation: the app died silently, never restarted.)"""
    d = device(rig, interp, {1: CANCEL_ITSELF}, {"cur": 1, "prev": 0, "floor": 1, "trial": 0})
    rig.boot(d)
    e = rig.watch.wait(lambda e: e.get("id") == d.id and e["st"] == "crashed", timeout=8)
    assert e, "no crash reported: %r\n%s" % (events(rig, d), d.log()[-1500:])
    assert e["why"].startswith("CancelledError"), e
    assert d.wait_log("app_runner: boot 1 in a row failed: crashed", timeout=5), d.log()[-1500:]
    again = rig.watch.wait(lambda x: x.get("id") == d.id and x["st"] == "run",
                           timeout=8, after=rig.watch.events.index(e) + 1)
    assert again, "the app was not started again: %r" % events(rig, d)

"""SIM800L driver + simulator: MQTT end to end under both interpreters, and faults.

Topology: scenario (CPython or build/micropython) -> modules/sim800l.py ->
UART over TCP -> host/sim800l_sim.py (this process) -> real mosquitto.
"""
import errno
import os
import sys
import uuid

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "host"))
from sim800l_sim import Sim800L  # noqa: E402

FLAVOURS = ("async", "sync")
# Short deadlines (profiles in tests/scenarios/sim800l_mqtt.py) so a silent modem
# fails fast in tests; the driver's defaults follow the manual.
FAST = "fast"


@pytest.fixture
def sim():
    s = Sim800L()
    s.listen_tcp()
    s.start()
    yield s
    s.close()


def topic():
    return "sim800l/" + uuid.uuid4().hex[:10]


def params(sim, broker, flavour, **kw):
    p = dict(uart_port=sim.port, host="127.0.0.1", port=broker.port, topic=topic(),
             flavour=flavour, timeouts=FAST)
    p.update(kw)
    return p


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_mqtt_session_over_the_modem(interp, flavour, run_scenario, sim, broker):
    out = run_scenario(interp, "sim800l_mqtt", "session", **params(sim, broker, flavour))
    assert out["ip"] == "10.64.23.7" and out["rssi"] == 18
    assert out["suback"] == (0x90, b"\x00\x01\x01")
    kind, body = out["echo0"]
    assert kind == 0x30 and body.endswith(b"0000" + b"." * 60)
    # PUBACK for id 7 and our QoS1 message back (granted QoS1: it carries an id)
    assert out["qos1"][0] == (0x32, out["qos1"][0][1]) and out["qos1"][0][1].endswith(b"0001" + b"." * 60)
    assert out["qos1"][1] == (0x40, b"\x00\x07")
    assert out["ping"] == (0xD0, b"")
    # One AT round trip per publish: AT+CIPSEND=n, '>', data, DATA ACCEPT:n.
    cost = out["publish_cost"]
    assert cost["at_commands"] == 1
    assert cost["uart_tx"] == len(b"AT+CIPSEND=%d\r" % out["publish_len"]) + out["publish_len"]
    n, rx = out["publish_len"], out["receive_cost"]
    # Receiving it: the URC (it may come while DATA ACCEPT is awaited), then one
    # AT+CIPRXGET=2 round trip.  Both windows together are exact:
    assert rx["at_commands"] == 1 and rx["uart_tx"] == len(b"AT+CIPRXGET=2,512\r")
    assert cost["uart_rx"] + rx["uart_rx"] == len(
        b"\r\n> " + b"\r\nDATA ACCEPT:%d\r\n" % n + b"\r\n+CIPRXGET: 1\r\n" +
        b"\r\n+CIPRXGET: 2,%d,0\r\n" % n + b"x" * n + b"\r\nOK\r\n")
    print("\n%s/%s publish %s receive %s" % (interp, flavour, cost, out["receive_cost"]))
    assert sim.counts["AT+CIPSTART"] == 1 and sim.counts["AT+CIPCLOSE"] == 1


def soak_side_by_side(start_scenario, broker, tmp_path, scenario, faults, seconds, seed,
                      kinds=None, **kw):
    """A chaos soak per interpreter, run side by side, a simulator each with
    reproducible draws (seed + the interpreter's index): `faults` random
    faults, then the scenario is told to stop (a stop file) after the last
    recovery.  Returns [(interp, sim, out)] with each scenario's result; the
    simulators are closed."""
    import time
    from conftest import INTERPRETERS
    runs, done = [], []
    try:
        for interp in INTERPRETERS:
            sim = Sim800L(seed=seed + INTERPRETERS.index(interp))
            sim.listen_tcp()
            sim.start()
            runs.append((interp, sim))
            sim.chaos(rate=0.15, total=faults, kinds=kinds)
            (tmp_path / interp).mkdir()
            runs[-1] += (start_scenario(interp, scenario[0], scenario[1],
                                        **params(sim, broker, "async", count=100000,
                                                 seconds=seconds, timeouts="soak", rx_poll_ms=200,
                                                 stop_file="%s/stop" % interp, **kw)),)
        deadline = time.monotonic() + seconds
        for interp, sim, s in runs:
            while sim.chaos_left and time.monotonic() < deadline and s.proc.poll() is None:
                time.sleep(0.05)
            time.sleep(0.3)                  # the last recovery, then a few clean messages
            (tmp_path / interp / "stop").write_text("")
        for interp, sim, s in runs:
            done.append((interp, sim, s.result(30)))
        return done
    finally:
        for run in runs:
            run[1].close()


def resilient(run_scenario, interp, sim, broker, flavour="async", count=6, **kw):
    out = run_scenario(interp, "sim800l_mqtt", "resilient",
                       **params(sim, broker, flavour, count=count, **kw))
    assert out["received"] == list(range(count)), out
    return out


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_slow_and_split_responses(interp, flavour, run_scenario, sim, broker):
    sim.delay_ms, sim.split, sim.split_gap_ms = 15, 3, 1   # every reply late and in 3-byte pieces
    sim.arm("delay", on="AT+CIPSEND", nth=2, ms=300)       # one much later (within the deadline)
    out = resilient(run_scenario, interp, sim, broker, flavour)
    assert out["errors"] == [] and sim.fired == {"delay": 1}


def test_urcs_in_the_middle_of_replies(interp, run_scenario, sim, broker):
    sim.arm("urc_mid", on="AT+CPIN?", text=b"+CIPRXGET: 1")
    sim.arm("urc_mid", on="AT+CIPRXGET=2", nth=2, text=b"UNDER-VOLTAGE WARNNING")
    sim.arm("urc_mid", on="AT+CIPRXGET=2", nth=3, text=b"RING")
    out = resilient(run_scenario, interp, sim, broker)
    assert out["stats"]["warnings"] == 1 and out["stats"]["rings"] >= 1
    assert sim.fired.get("urc_mid") == 3


def test_garbage_bytes_between_replies(interp, run_scenario, sim, broker):
    for nth in (2, 4, 6):
        sim.arm("garbage", on="AT+CIPRXGET", nth=nth, n=20)
    sim.arm("garbage", on="AT+CIPSEND", nth=3, n=40)
    out = resilient(run_scenario, interp, sim, broker)
    assert out["errors"] == [] and out["stats"]["junk"] >= 4
    assert sim.fired["garbage"] == 4


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_send_fail_surfaces_as_econnreset_and_recovers(interp, flavour, run_scenario, sim, broker):
    sim.arm("send_fail", on="AT+CIPSEND", nth=5)
    out = resilient(run_scenario, interp, sim, broker, flavour)
    assert out["errors"] == [errno.ECONNRESET] and sim.counts["AT+CIPSTART"] == 2


def test_broker_hanging_up_reads_as_end_of_stream(interp, run_scenario, sim, broker):
    # A protocol violation makes mosquitto close; the modem says CLOSED; readinto() -> 0.
    out = resilient(run_scenario, interp, sim, broker, poison_at=2)
    assert out["errors"] == [errno.ECONNABORTED], out     # the scenario's name for "read 0"
    assert sim.counts["AT+CIPSTART"] == 2


def test_injected_closed_urc(interp, run_scenario, sim, broker):
    sim.arm("closed", on="AT+CIPSEND", nth=4)            # after DATA ACCEPT, before the echo
    out = resilient(run_scenario, interp, sim, broker)
    assert out["errors"] == [errno.ECONNABORTED], out
    assert sim.counts["AT+CIPSTART"] == 2 and sim.fired == {"closed": 1}


def test_pdp_deact_needs_a_new_context(interp, run_scenario, sim, broker):
    sim.arm("pdp_deact", on="AT+CIPSEND", nth=4)
    out = resilient(run_scenario, interp, sim, broker)
    assert out["errors"] == [errno.ECONNRESET]
    assert sim.counts["AT+CIICR"] == 2 and sim.counts["AT+CIPSHUT"] == 2


def test_connect_fail_is_econnrefused(interp, run_scenario, sim, broker):
    sim.arm("connect_fail", on="AT+CIPSTART")
    out = resilient(run_scenario, interp, sim, broker, count=2)
    assert out["errors"] == [errno.ECONNREFUSED] and sim.counts["AT+CIPSTART"] == 2


def test_total_silence_times_out_then_recovers(interp, run_scenario, sim, broker):
    sim.arm("silence", on="AT+CIPSEND", nth=3, seconds=1.0)
    out = resilient(run_scenario, interp, sim, broker)
    assert out["errors"][0] == errno.ETIMEDOUT
    assert out["starts"] >= 2                       # a full bring-up after the hang
    assert out["ms"] < 15000


def test_silence_forever_is_a_clear_error(interp, run_scenario, sim, broker):
    sim.arm("silence", on="AT+CIPSEND", nth=4)     # CONNECT, SUBSCRIBE, message 0, then 1
    out = run_scenario(interp, "sim800l_mqtt", "resilient",
                       **params(sim, broker, "async", count=3, seconds=1,
                                timeouts="fast_sync"))
    assert out["received"] == [0]
    assert set(out["errors"]) == {errno.ETIMEDOUT}
    assert out["ms"] < 4000                         # never a hang past the deadline


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_modem_reset_mid_session(interp, flavour, run_scenario, sim, broker):
    sim.arm("reset", on="AT+CIPSEND", nth=4)        # RDY, +CFUN: 1, Call Ready... instead of '>'
    out = resilient(run_scenario, interp, sim, broker, flavour)
    assert out["errors"] == [errno.ECONNRESET], out
    assert out["stats"]["reboots"] >= 1 and sim.counts["ATE0"] == 2


def test_missed_data_urc_is_polled(interp, run_scenario, sim, broker):
    sim.miss_rx_urc = True
    out = resilient(run_scenario, interp, sim, broker, count=3, rx_poll_ms=100)
    assert out["errors"] == [] and not any(b"+CIPRXGET: 1" in b for _, b in sim.dialogue)


def test_power_down_and_warning(interp, run_scenario, sim, broker):
    sim.arm("urc", on="AT+CIPSEND", nth=2, text=b"UNDER-VOLTAGE WARNNING")
    sim.arm("power_down", on="AT+CIPSEND", nth=4, seconds=1.0)   # power key pressed 1 s later
    out = resilient(run_scenario, interp, sim, broker)
    assert out["stats"]["warnings"] == 1
    assert out["errors"][0] == errno.ECONNRESET


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_write_bigger_than_max_send_is_taken_whole(interp, flavour, run_scenario, sim, broker):
    """max_send 40, an 86-byte PUBLISH: write() answers 86 (all or nothing:
    the client needs a whole packet taken), sent as AT+CIPSEND=40, 40, 6."""
    out = run_scenario(interp, "sim800l_mqtt", "big_write", **params(sim, broker, flavour, max_send=40))
    assert out["taken"] == out["len"] and out["sends"] == 3 and out["intact"], out


def test_parser_allocates_nothing(interp, run_scenario):
    out = run_scenario(interp, "sim800l_mqtt", "parser_heap")
    assert out["n"] == 200 and out["ok"] and out["warnings"] == 1 and out["rings"] == 1
    assert out["r"] == -2          # the +CIPRXGET: 1 URC asks for a fetch
    assert out["locked"] == (interp == "micropython")

"""The MQTT client over the SIM800L driver and simulator, under both interpreters;
and the 500-fault soak (hand-built packets, so corruption is checked byte for byte)."""
import time
import uuid

import pytest

from test_sim800l import FAST, FLAVOURS, params, sim  # noqa: F401  (sim is a fixture)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_client_session_over_the_modem(interp, flavour, run_scenario, sim, broker):  # noqa: F811
    out = run_scenario(interp, "sim800l_client", "session",
                       **params(sim, broker, flavour, keepalive=1, idle_ms=2500))
    topic = out["q0"][0]
    assert out["q0"] == (topic, b"q0." + b"x" * 61)
    assert out["acked"] is True and out["q1"] == (topic, b"q1." + b"y" * 61)
    assert out["after"] == (topic, b"after idle")
    assert out["connected"] and out["disconnects"] == 0
    # The client writes each packet with one write: one AT round trip per publish.
    assert out["publish_cost"]["at_commands"] == 1
    assert out["receive_cost"]["at_commands"] == 1
    pings = b"".join(b for d, b in sim.dialogue if d == ">").count(b"AT+CIPSEND=2\r") - 1
    assert pings >= 2, pings                    # PINGREQs; the -1 is DISCONNECT
    print("\nclient %s/%s publish %s receive %s" % (interp, flavour, out["publish_cost"],
                                                    out["receive_cost"]))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_client_rides_out_faults(interp, flavour, run_scenario, sim, broker):  # noqa: F811
    sim.arm("send_fail", on="AT+CIPSEND", nth=6)
    sim.arm("reset", on="AT+CIPSEND", nth=14)
    sim.arm("pdp_deact", on="AT+CIPRXGET=2", nth=20)
    sim.arm("garbage", on="AT+CIPRXGET=2", nth=3)
    out = run_scenario(interp, "sim800l_client", "faults",
                       **params(sim, broker, flavour, count=12, cid="f-" + uuid.uuid4().hex[:8]))
    assert sorted(out["got"]) == list(range(12)), out
    assert out["disconnects"] >= 2 and out["reconnects"] >= 2
    assert sim.armed() == [] or sim.armed() == ["pdp_deact"]


def test_soak_500_random_faults(interp, start_scenario, sim, broker, tmp_path):  # noqa: F811
    """250 random faults under each interpreter (500 in all); every one ends in a
    recovered session, never a corrupted stream (the scenario compares every
    echoed packet byte for byte) and never a hang past the deadlines."""
    sim.chaos(rate=0.15, total=250)
    fast = dict(FAST, at=300, send=400, rx=400, sync=1500)
    s = start_scenario(interp, "sim800l_mqtt", "resilient",
                       **params(sim, broker, "async", count=100000, seconds=80, timeouts=fast,
                                stop_file="stop", rx_poll_ms=200))
    deadline = time.monotonic() + 80
    while sim.chaos_left and time.monotonic() < deadline and s.proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)                       # the last fault's recovery, a few clean messages
    (tmp_path / "stop").write_text("")
    out = s.result(30)
    interp_ = interp
    fired = dict(sim.fired)
    print("\nsoak %s: %d faults %s; %d messages, errors %s, %d bring-ups, %d ms" % (
        interp_, sum(fired.values()), fired, len(out["received"]),
        {e: out["errors"].count(e) for e in set(out["errors"])}, out["starts"], out["ms"]))
    assert sim.chaos_left == 0 and sum(fired.values()) == 250
    assert out["received"] == list(range(len(out["received"])))

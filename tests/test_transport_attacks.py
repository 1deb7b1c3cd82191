"""What the attack on issue 12's restructured client found, kept as tests.

Each attack steers an async transport that answers plain values (as the
SIM800L driver does) in front of an in-memory broker
(tests/scenarios/transport_attacks.py), under CPython and build/micropython.
Every one of these failed before its fix.
"""
import pytest  # noqa: F401  (fixtures from conftest)


def test_a_task_cancelled_with_half_a_packet_written_drops_the_link(interp, run_scenario):
    r = run_scenario(interp, "transport_attacks", "cancel_mid_write")
    assert r["ended"] == "CancelledError" and r["connected"] is False, r
    assert r["last_error"] == "OSError", r
    # nothing went after the half packet: the next call says "not connected"
    assert r["next"] == "MQTTError" and not r["corrupt"] and r["pubs"] == 0, r


def test_a_cancelled_poll_does_not_lose_the_puback(interp, run_scenario):
    r = run_scenario(interp, "transport_attacks", "cancel_keeps_puback")
    assert r == {"delivered": 1, "pubacks": 1, "connected": True}, r


def test_an_awaitable_that_never_ends_is_bounded_by_timeout_ms(interp, run_scenario):
    r = run_scenario(interp, "transport_attacks", "never_ending_io", timeout=30)
    for what in ("write0", "write1", "read"):
        res, ms, io_busy, up = r[what]
        # timeout_ms is 1000: ETIMEDOUT (110) then, the lock free, the link gone
        assert res.startswith("OSError"), (what, r)
        assert 900 <= ms <= 3500 and io_busy is False and up is False, (what, r)
    assert r["write0"][0] == r["write1"][0] == "OSError 110", r


def test_an_answer_that_is_no_count_is_eio_and_sends_nothing_twice(interp, run_scenario):
    r = run_scenario(interp, "transport_attacks", "odd_answers", timeout=30)
    for what, qos, res, copies, err, errno in r:
        assert res == "ok" and err == "OSError" and errno == 5, r
        # Before, a junk answer on the QoS 0 fast path was taken for an
        # unstarted awaitable and the packet written again on the same link.
        # Now the link is renewed first; a write whose fate is unknown is
        # retried on the new link (QoS 0 as the sync flavour always did,
        # QoS 1 as a resend): one more copy at most.
        assert 1 <= copies <= 2, r


def test_a_refused_connect_is_not_retried_by_the_supervisor(interp, run_scenario):
    r = run_scenario(interp, "transport_attacks", "refusals", timeout=30)
    assert r["connect"] == ["MQTTRefused", 4] and r["check_msg"] == ["MQTTRefused", 4], r
    assert r["connects"] == 1 and r["again"] is True, r
    res, ms, connects = r["reconnect rc 5"]
    assert res == "MQTTRefused" and ms < 1000 and connects == 2, r
    res, ms, connects = r["reconnect rc 3"]          # "server unavailable": retried
    assert res == "OSError" or res == "TimeoutError" or connects > 3, r

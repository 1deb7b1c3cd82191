"""Client round trips against mosquitto, under CPython and MicroPython."""


def test_seed_demo_runs_unchanged(interp, run_scenario, broker):
    first, count = run_scenario(interp, "client_basic", "seed_demo", port=broker.port)
    assert first == (b"controller_commands", b"hello world")
    assert count == 20


def test_qos1_publish_is_acknowledged_and_delivered(interp, run_scenario, broker):
    acked, msg, qos_bits = run_scenario(interp, "client_basic", "qos1_roundtrip",
                                        port=broker.port, tag=interp)
    assert acked is True
    assert msg == (b"q1/" + interp.encode(), b"one")
    assert qos_bits == 2

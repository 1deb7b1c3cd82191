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


def test_retained_behind_suback_and_own_qos1_copies_while_unread(interp, run_scenario, broker):
    import paho.mqtt.publish as publish
    tag = "ret-" + interp
    publish.single("ret/" + tag, b"retained!", qos=1, retain=True, hostname="127.0.0.1",
                   port=broker.port)
    acks, got, dropped = run_scenario(interp, "client_basic", "retained_and_unread",
                                      port=broker.port, tag=tag)
    assert acks == [True, True, True]
    assert got == [b"retained!", b"own-0", b"own-1", b"own-2"]
    assert dropped == 0


def test_full_backlog_defers_acks_instead_of_deadlocking(interp, run_scenario, broker):
    results, got, inflight = run_scenario(interp, "client_basic", "backlog_full_defers",
                                          port=broker.port, tag=interp)
    assert got == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert False in results          # the buffers did fill up
    assert inflight == 0             # every PUBACK was processed in the end


def test_receive_buffer_bigger_than_255_bytes(interp, run_scenario, broker):
    assert run_scenario(interp, "client_basic", "big_buffer", port=broker.port,
                        tag=interp) == [True, True, 600]


def test_oversize_message_is_drained_and_next_one_delivered(interp, run_scenario, broker):
    msg, dropped, hook, inflight = run_scenario(interp, "client_basic", "oversize_dropped",
                                                port=broker.port, tag=interp)
    assert msg == b"small"
    assert dropped == 2
    tl = len("ovr/" + interp)
    assert hook == [2 + tl + 2 + 300, 2 + tl + 100]   # remaining lengths of the dropped PUBLISHes
    assert inflight == 0


def test_unsubscribe(interp, run_scenario, broker):
    assert run_scenario(interp, "client_basic", "unsubscribe_stops_delivery",
                        port=broker.port, tag=interp) == [b"before", True]


def test_bad_input_is_rejected_before_sending(interp, run_scenario, broker):
    out = run_scenario(interp, "client_basic", "bad_input", port=broker.port, tag=interp)
    # port="1883": a wrong type is a TypeError (was ValueError before config
    # values were checked by type and range separately)
    assert out == ["ValueError", "TypeError", "ValueError", "ValueError", "TypeError",
                   "ValueError", "ValueError", "ValueError", "TypeError", "TypeError",
                   "ValueError", "ValueError", "ValueError", "ValueError", b"still fine"]


def test_connack_refusals_name_the_reason(interp, run_scenario, tmp_path):
    from broker import Broker
    b = Broker(str(tmp_path / "auth"), users={"alice": "secret"}).start()
    try:
        wrong = run_scenario(interp, "client_basic", "refused", port=b.port, tag=interp,
                             user="alice", password="wrong")
        ok = run_scenario(interp, "client_basic", "refused", port=b.port, tag=interp + "2",
                          user="alice", password="secret")
    finally:
        b.stop()
    # mosquitto answers a failed login with code 5 on MQTT 3.1.1
    assert wrong == ["connection refused: not authorised", 5, False]
    assert ok == "connected"


def test_a_refusal_is_told_apart_from_a_broken_link(interp, run_scenario, tmp_path, hostile):
    """MQTTRefused (a subclass of MQTTError: `except MQTTError` still catches
    it) for what the server refuses; OSError for a link that cannot be had."""
    from broker import Broker, free_port
    from hostile_broker import CONNECT, SUBSCRIBE, connack, expect, send, serve, suback
    b = Broker(str(tmp_path / "auth"), users={"alice": "secret"}).start()
    refusing = hostile([[expect(CONNECT), send(connack()),
                         expect(SUBSCRIBE), send(lambda c: suback(c.last.pid, 0x80)),
                         expect(SUBSCRIBE), send(lambda c: suback(c.last.pid, 0)), serve()]])
    try:
        out = run_scenario(interp, "client_basic", "error_kinds", port=b.port, tag=interp,
                           refusing_port=refusing.port, dead_port=free_port())
    finally:
        b.stop()
        refusing.stop()
    assert out["connack"] == ["MQTTRefused", True, True, 5], out
    assert out["suback"] == ["MQTTRefused", True, True, 0x80, True], out
    assert out["after"] is True, out
    assert out["dead"][0] == "OSError" and out["dead"][2] is False, out


def _tls_broker(tmp_path):
    import subprocess
    from broker import Broker, free_port
    d = tmp_path / "tls"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    port = free_port()
    b = Broker(str(d), extra_config="listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\n" % (
        port, d / "cert.pem", d / "key.pem"))
    b.tls_port = port
    b.cafile = str(d / "cert.pem")
    return b.start()


def test_tls_on_cpython(run_scenario, tmp_path):
    # build/micropython is built without ssl (MICROPY_PY_SSL=0, see tools/build-micropython.sh):
    # TLS is tested where the platform has it.
    b = _tls_broker(tmp_path)
    try:
        assert run_scenario("cpython", "client_basic", "tls_roundtrip", port=b.tls_port,
                            tag="cp", cafile=b.cafile) == b"secret"
        assert "not signed by a CA we trust" in run_scenario(
            "cpython", "client_basic", "tls_rejects_unknown_server", port=b.tls_port, tag="cp")
    finally:
        b.stop()


def test_mixed_publishes_each_arrive_as_sent(interp, run_scenario, broker):
    got = run_scenario(interp, "client_basic", "mixed_publishes", port=broker.port, tag=interp)
    a, b = b"mix/a/" + interp.encode(), b"mix/b/" + interp.encode()
    assert got == [[a, b"one"], [a, b"two"], [a, b"three"], [b, b"four"], [a, b"fiver"],
                   [a, b"six"], [a, b"sev"], [b, b"eight"]]

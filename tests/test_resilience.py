"""Keepalive, dead links, broker restarts, QoS1 redelivery, LWT, hostile servers."""
import os
import re
import signal
import socket
import threading
import time

import paho.mqtt.client as paho
import pytest


def test_pingreq_keeps_an_idle_link_alive(interp, run_scenario, own_broker):
    alive, disconnects = run_scenario(interp, "client_resilience", "idle_with_keepalive",
                                      port=own_broker.port, tag=interp, seconds=3)
    assert (alive, disconnects) == (True, 0)
    pings = re.findall(r"Received PINGREQ from ka-" + interp, own_broker.log())
    assert len(pings) >= 4, own_broker.log()    # one per keepalive/2 of silence


def test_dead_link_is_reported_within_one_and_a_half_keepalives(interp, start_scenario, own_broker):
    s = start_scenario(interp, "client_resilience", "dead_link", port=own_broker.port,
                       tag=interp, keepalive=2)
    s.expect("READY")
    os.kill(own_broker.proc.pid, signal.SIGSTOP)
    try:
        elapsed, message = s.result()
    finally:
        os.kill(own_broker.proc.pid, signal.SIGCONT)
    assert "keepalive" in message
    assert 2000 <= elapsed <= 3000 + 250, elapsed     # 1.5 x keepalive, plus polling slack


def test_seed_loop_survives_broker_restarts(interp, start_scenario, own_broker):
    s = start_scenario(interp, "client_resilience", "survives_restarts",
                       port=own_broker.port, tag=interp, restarts=2)
    for phase in range(2):
        assert s.expect("RECEIVING", timeout=20) == str(phase)
        own_broker.restart(down_seconds=0.5)
    reconnects, disconnects, received = s.result()
    assert reconnects == 2 and disconnects == 2
    assert received >= 5


def _paho(port, client_id, clean=True):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.reconnect_delay_set(0.1, 0.5)       # back quickly after a broker restart
    c.connect("127.0.0.1", port)
    return c


def test_persistent_session_gets_qos1_messages_sent_while_away(interp, start_scenario, own_broker):
    s = start_scenario(interp, "client_resilience", "offline_queue", port=own_broker.port,
                       tag=interp, count=3)
    s.expect("AWAY")
    pub = _paho(own_broker.port, "oq-pub")
    pub.loop_start()
    for i in range(3):
        pub.publish("oq/" + interp, b"while away %d" % i, qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()
    time.sleep(1.2)                       # autosave_interval 1: the queue is on disk
    own_broker.restart()
    s.send_line("go")
    present, got = s.result()
    assert present is True
    assert got == [b"while away 0", b"while away 1", b"while away 2"]


def test_unacknowledged_qos1_publish_is_resent_with_dup(interp, start_scenario, own_broker):
    received = []
    sub = _paho(own_broker.port, "dup-sub-" + interp)
    sub.on_message = lambda c, u, m: received.append(m.payload)
    sub.subscribe("dup/" + interp, qos=1)
    sub.loop_start()
    try:
        s = start_scenario(interp, "client_resilience", "qos1_resent_after_outage",
                           port=own_broker.port, tag=interp)
        s.expect("READY")
        time.sleep(0.3)
        os.kill(own_broker.proc.pid, signal.SIGSTOP)
        s.send_line("go")
        time.sleep(2.5)        # the PUBACK wait (1.5 s) expires; reconnects hang on CONNACK
        os.kill(own_broker.proc.pid, signal.SIGCONT)
        acked, reconnects, inflight = s.result()
        deadline = time.time() + 10
        while not received and time.time() < deadline:
            time.sleep(0.05)
    finally:
        sub.loop_stop()
    assert (acked, inflight) == (True, 0)
    assert reconnects >= 1
    assert b"must arrive" in received          # at least once (QoS 1 allows a duplicate)
    # the broker saw our resend, DUP set, and acknowledged it
    assert re.search(r"Received PUBLISH from dup-%s \(d1, q1" % interp, own_broker.log())


def test_last_will_is_delivered_when_the_link_dies(interp, start_scenario, broker):
    wills = []
    sub = _paho(broker.port, "lw-sub-" + interp)
    sub.on_message = lambda c, u, m: wills.append(m.payload)
    sub.subscribe("lw/" + interp, qos=1)
    sub.loop_start()
    try:
        s = start_scenario(interp, "client_resilience", "will_on_link_loss", port=broker.port,
                           tag=interp)
        s.expect("CONNECTED")
        s.kill()                          # the device dies: no DISCONNECT
        deadline = time.time() + 5
        while not wills and time.time() < deadline:
            time.sleep(0.05)
    finally:
        sub.loop_stop()
    assert wills == [b"gone"]


class HostileServer:
    """The one fake server in the suite: answers CONNACK, then sends garbage."""

    def __init__(self, payload):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.payload = payload
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        # first connection: the garbage; later ones: a plain CONNACK, so the
        # client's reconnect has something sane to reach
        payload = self.payload
        while True:
            conn, _ = self.sock.accept()
            conn.recv(1000)
            conn.sendall(b"\x20\x02\x00\x00" + payload)
            payload = b""
            self.keep = conn


@pytest.mark.parametrize("payload,expect", [
    (b"\xff\xff\xff\xff\xff", "malformed"),             # reserved type, endless length
    (b"\x30\x05\x00\x09abc", "malformed PUBLISH"),      # topic length beyond the packet
    (b"\x40\x03\x00\x01\x00", "remaining length"),      # PUBACK of the wrong size
    (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
    (b"\x10\x02\x00\x00", "not sent by servers"),      # a CONNECT from the server
    (b"\x90\x03\x00\x01\x07", "SUBACK return code"),
])
def test_garbage_from_the_server_raises_mqtterror(interp, run_scenario, payload, expect):
    server = HostileServer(payload)
    kind, message, connected, reconnected = run_scenario(interp, "client_resilience",
                                                         "hostile_server", port=server.port)
    assert kind == "MQTTError" and expect in message, message
    assert connected is False
    assert reconnected is True


def test_a_stalled_write_times_out_instead_of_hanging(interp, start_scenario, own_broker):
    s = start_scenario(interp, "client_resilience", "write_stalls", port=own_broker.port,
                       tag=interp)
    s.expect("READY")
    os.kill(own_broker.proc.pid, signal.SIGSTOP)
    try:
        s.send_line("go")
        result = s.result(timeout=30)
    finally:
        os.kill(own_broker.proc.pid, signal.SIGCONT)
    assert result == ["OSError", 110, True, True, False]     # ETIMEDOUT, link closed

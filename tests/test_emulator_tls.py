"""TLS end to end on the emulated Pico: the shipped image, the example app
deployed with its broker's CA (`make deploy` carries ca.der), the board's
clock set from the simulated modem's network time at bring-up, and
mosquitto's TLS listener reached through the simulated SIM800L with
certificate verification on.

    paho (test) <-> mosquitto (TLS listener) <-> host/sim800l_sim.py <-> UART0 <-> emulated Pico
                                                 (ciphertext only)          (mbedTLS on the board)
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "emulator"))
sys.path.insert(0, os.path.join(ROOT, "host"))
from emulated_board import EmulatedBoard, make_app  # noqa: E402
from sim800l_sim import Sim800L  # noqa: E402

from test_emulator import image  # noqa: E402,F401  (the `make firmware` fixture)
from test_emulator_e2e import Watcher, host_tools  # noqa: E402,F401
from test_tls import pki, tls_broker  # noqa: E402,F401


def board_with_tls_app(image, tls_broker, pki, tmp_path, topic, sim):  # noqa: F811
    """The simulator `sim` started, the board booted with its UART wired to
    it, and the example app deployed to reach the broker's P-256 TLS
    listener with its CA (ca.der): (sim, board)."""
    sim_port = sim.listen_tcp(0)
    sim.start()
    app = make_app(str(tmp_path / "app"), tls_broker.tls_ports["ec"], topic, "pico-%d" % os.getpid(),
                   ssl={"cafile": "ca.der", "server_hostname": "localhost"}, files=[pki.ec.der])
    board = EmulatedBoard(image=image, flash=tmp_path / "flash.bin", uart0="connect:127.0.0.1:%d" % sim_port,
                          deadline=600)
    try:
        board.start()
        deploy_tls_app(board, app)
    except BaseException:
        board.stop()
        sim.close()
        raise
    return sim, board


def deploy_tls_app(board, app):
    board.repl_prompt()
    board.usb.close()                                   # the bridge serves one client: mpremote's turn
    board.usb = None
    p = subprocess.run(["make", "-s", "-C", ROOT, "deploy", "PORT=socket://127.0.0.1:%d" % board.ports["usb"],
                        "APP=" + app], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert p.returncode == 0, p.stdout
    assert "1 certificate/key file(s)" in p.stdout, p.stdout
    board.reconnect_usb()


def test_pico_reaches_the_tls_broker_through_the_modem(image, host_tools, tls_broker, pki, tmp_path):  # noqa: F811
    topic = "e2e-tls/%d" % os.getpid()
    watcher = Watcher(tls_broker.port, [topic + "/telemetry"])      # the plaintext listener, on loopback
    sim, board = board_with_tls_app(image, tls_broker, pki, tmp_path, topic, Sim800L())
    try:
        t0 = time.monotonic()
        board.read_until(b"connected to 127.0.0.1 from RPI_PICO_MQTT", 120)
        connect_s = time.monotonic() - t0
        payload, _ = watcher.get(topic + "/telemetry", 60)
        assert json.loads(payload)["board"] == "RPI_PICO_MQTT"
        t = time.monotonic()
        watcher.publish(topic + "/commands", b"over-tls")
        board.read_until(b"command: b'over-tls'", 60)
        command_s = time.monotonic() - t
        # The board read the network time (its RTC starts at 2021: without it
        # the certificate check would have refused), and the modem carried
        # only ciphertext: no topic, no JSON in clear.
        commands = b"".join(b for d, b in sim.dialogue if d == ">")
        assert b"AT+CCLK?" in commands
        carried = b"".join(b for d, b in sim.dialogue)
        assert topic.encode() not in carried and b'"board"' not in carried
        assert "on port %d" % tls_broker.tls_ports["ec"] in tls_broker.log()
        print("\nPico over TLS: deploy-to-connected %.1f s, command round trip %.1f s"
              % (connect_s, command_s))
    finally:
        watcher.close()
        board.stop()
        sim.close()


def test_pico_with_no_clock_says_so_then_connects_when_network_time_comes(
        image, host_tools, tls_broker, pki, tmp_path):  # noqa: F811
    """The modem's clock is unset and no *PSUTTZ came: the app's connect
    fails in words ("the clock is not set"); the network time that comes
    later (*PSUTTZ) sets the board's clock, and the app's next try connects."""
    topic = "e2e-tls-clock/%d" % os.getpid()
    sim, board = board_with_tls_app(image, tls_broker, pki, tmp_path, topic,
                                    Sim800L(cclk="unset", nitz=False))
    try:
        board.read_until(b"TLS: the clock is not set (it reads 2021-01-01", 120)
        sim.fire("nitz")                                # the network's time, while the app waits to retry
        board.read_until(b"connected to 127.0.0.1 from RPI_PICO_MQTT", 120)
    finally:
        board.stop()
        sim.close()

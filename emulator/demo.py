"""`make demo`: the product working with no hardware.

Starts a local mosquitto with a TLS listener (a throwaway CA and broker
certificate made with openssl: host/tls_pki.py) and the SIM800L simulator,
boots the shipped RP2040 image on the emulated board with the modem UART
wired to the simulator, deploys the example app (examples/app) with its
broker's CA through the board's USB bridge (`make deploy`), shows the
board setting its clock from the modem's network time, the app's telemetry
arriving at the broker over TLS (the modem carries only ciphertext), sends
a command back to the board, and exits.

    python3 emulator/demo.py [--seconds 15] [--plain]
"""
import argparse
import getpass
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "emulator"))
sys.path.insert(0, os.path.join(ROOT, "host"))
from emulated_board import EmulatedBoard, make_app  # noqa: E402
from sim800l_sim import Sim800L  # noqa: E402

BOARD = os.environ.get("BOARD", "RPI_PICO_MQTT")
WORK = os.path.join(ROOT, "build", "demo")
TOPIC = "demo/device-1"


def say(who, text):
    sys.stdout.write("%-8s %s\n" % ("[" + who + "]", text))
    sys.stdout.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(tls=None):
    """mosquitto on a free loopback port (plaintext, for the demo's own
    watcher); with tls=(cert, key), a TLS 1.2 listener too, for the board.
    Returns (process, port, tls port or None)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        sys.exit("demo: mosquitto not found: run `.ci/run --deps-only` (apt-get install mosquitto)")
    port = free_port()
    tls_port = free_port() if tls else None
    conf = os.path.join(WORK, "mosquitto.conf")
    with open(conf, "w") as f:
        # (user: run as whoever runs the demo, so the log and the key are readable)
        f.write("listener %d 127.0.0.1\nallow_anonymous true\nlog_dest file %s\nuser %s\n"
                % (port, os.path.join(WORK, "mosquitto.log"), getpass.getuser()))
        if tls:
            f.write("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\ntls_version tlsv1.2\n"
                    % (tls_port, tls[0], tls[1]))
    proc = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port, tls_port
        except OSError:
            if proc.poll() is not None:
                sys.exit("demo: mosquitto did not start:\n" + proc.stderr.read().decode())
            time.sleep(0.05)
    sys.exit("demo: mosquitto did not listen on %d" % port)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15, help="how long the app runs before the demo ends")
    ap.add_argument("--image", default=os.path.join(ROOT, "firmware", BOARD + ".uf2"))
    ap.add_argument("--plain", action="store_true", help="no TLS: the board talks to mosquitto in clear")
    a = ap.parse_args()
    if not os.path.exists(a.image):
        sys.exit("demo: %s is missing: run `make firmware`" % a.image)
    import paho.mqtt.client as paho

    if os.path.isdir(WORK):
        shutil.rmtree(WORK)
    os.makedirs(WORK)
    ca = None
    if not a.plain:
        from tls_pki import demo_pki
        ca, server = demo_pki(os.path.join(WORK, "pki"))
        say("demo", "made a throwaway CA and a broker certificate for localhost with openssl")
    broker, broker_port, tls_port = start_mosquitto(None if a.plain else server)
    say("demo", "mosquitto on 127.0.0.1:%d%s" % (broker_port, "" if a.plain else
                                                  ", TLS 1.2 on 127.0.0.1:%d" % tls_port))
    sim = Sim800L()
    sim_port = sim.listen_tcp(0)
    sim.start()
    say("demo", "SIM800L simulator on 127.0.0.1:%d (the modem UART)" % sim_port)

    board = EmulatedBoard(image=a.image, flash=os.path.join(WORK, "flash.bin"),
                          uart0="connect:127.0.0.1:%d" % sim_port, deadline=a.seconds + 120)
    watcher = None
    stop = threading.Event()
    try:
        t0 = time.monotonic()
        board.start()
        board.repl_prompt()
        say("demo", "emulated Pico (%s) at the REPL after %.1f s" % (os.path.basename(a.image), time.monotonic() - t0))

        if a.plain:
            app = make_app(os.path.join(WORK, "app"), broker_port, TOPIC, "device-1", telemetry_ms=5000)
        else:
            app = make_app(os.path.join(WORK, "app"), tls_port, TOPIC, "device-1", telemetry_ms=5000,
                           ssl={"cafile": "ca.der", "server_hostname": "localhost"}, files=[ca])
            say("demo", 'the app\'s config.py: "ssl": {"cafile": "ca.der", "server_hostname": "localhost"}')
        board.usb.close()
        board.usb = None
        url = "socket://127.0.0.1:%d" % board.ports["usb"]
        say("demo", "make deploy PORT=%s APP=%s" % (url, os.path.relpath(app, ROOT)))
        p = subprocess.run(["make", "-s", "-C", ROOT, "deploy", "PORT=" + url, "APP=" + app],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in p.stdout.splitlines():
            say("deploy", line)
        if p.returncode != 0:
            sys.exit("demo: make deploy failed")

        msgs = queue.Queue()
        watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="demo-watcher")
        watcher.on_message = lambda c, u, m: msgs.put((m.topic, m.payload))
        watcher.connect("127.0.0.1", broker_port)
        watcher.subscribe(TOPIC + "/#", qos=1)
        watcher.loop_start()

        board.reconnect_usb()

        def board_output():
            line = b""
            while not stop.is_set():
                try:
                    board.usb.settimeout(0.2)
                    chunk = board.usb.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                line += chunk
                while b"\n" in line:
                    one, line = line.split(b"\n", 1)
                    say("board", one.decode(errors="replace").rstrip())
        threading.Thread(target=board_output, daemon=True).start()

        end = time.monotonic() + a.seconds
        sent = False
        telemetry = 0
        while time.monotonic() < end:
            try:
                topic, payload = msgs.get(timeout=0.5)
            except queue.Empty:
                continue
            say("broker", "%s %s" % (topic, payload.decode(errors="replace")))
            if topic.endswith("/telemetry"):
                telemetry += 1
                json.loads(payload)
                if not sent:
                    say("demo", "sending a command to the board: %s/commands led=on" % TOPIC)
                    watcher.publish(TOPIC + "/commands", b"led=on", qos=1)
                    sent = True
        if not telemetry:
            sys.exit("demo: no telemetry reached the broker (see build/demo/mosquitto.log)")
        if not a.plain:
            carried = b"".join(b for d, b in sim.dialogue)
            clock = b"AT+CCLK?" in b"".join(b for d, b in sim.dialogue if d == ">")
            if TOPIC.encode() in carried:
                sys.exit("demo: the topic went through the modem in clear")
            say("demo", "the modem carried ciphertext only (no topic, no payload in clear); the "
                "board's clock came from the modem's network time (AT+CCLK?): %s"
                % ("yes" if clock else "no"))
        say("demo", "%d telemetry messages reached the broker%s; stopping"
            % (telemetry, "" if a.plain else " over TLS"))
    finally:
        stop.set()
        if watcher is not None:
            watcher.loop_stop()
            watcher.disconnect()
        ev = board.stop()
        sim.close()
        broker.send_signal(signal.SIGTERM)
        broker.wait(5)
        if ev:
            say("demo", "board stopped (%s, %.1f s of board time)" % (ev["reason"], ev["board_seconds"]))


if __name__ == "__main__":
    main()

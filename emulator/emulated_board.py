"""Drive the emulated RP2040 board (emulator/run.js) from Python.

Used by tests/test_emulator*.py, tests/test_rom*.py and `make demo`:

    board = EmulatedBoard(image="firmware/RPI_PICO_MQTT.uf2", flash=tmp / "flash.bin")
    board.start()
    print(board.exec("import sys; print(sys.implementation)"))
    board.stop()                     # flash kept in its file: start() again = power cycle

`ensure_built()` builds the boot ROM and installs rp2040js (`make rom emulator-deps`).
"""
import json
import os
import select
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMU = os.path.join(ROOT, "emulator")
ROM = os.path.join(ROOT, "build", "emulator", "bootrom.bin")


class BoardError(Exception):
    """The board or the harness did something unexpected; the message says what."""


_built = False


def ensure_built():
    """`make rom emulator-deps` once per process (both are no-ops when up to date)."""
    global _built
    if _built:
        return
    cmd = ["make", "-s", "-C", ROOT, "-f", "emulator/emulator.mk", "rom", "emulator-deps"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise BoardError("`%s` failed:\n%s" % (" ".join(cmd), p.stdout))
    _built = True


def rom_calls(calls, flash=None):
    """Call ROM entries directly (emulator/romcall.js); returns one result dict per call."""
    ensure_built()
    req = {"rom": ROM, "calls": calls}
    if flash is not None:
        req["flash"] = flash.hex()
    p = subprocess.run(["node", os.path.join(EMU, "romcall.js")], input=json.dumps(req),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if p.returncode != 0:
        raise BoardError("romcall.js failed (%d):\n%s" % (p.returncode, p.stderr))
    return json.loads(p.stdout)


class EmulatedBoard:
    """One run of emulator/run.js with the USB REPL (and optionally UARTs) on local sockets."""

    def __init__(self, image=None, flash=None, uart0=None, uart1=None, deadline=600,
                 extra_args=(), log=None):
        self.image, self.flash = image, flash
        self.uart_modes = {"uart0": uart0, "uart1": uart1}
        self.deadline = deadline
        self.extra_args = list(extra_args)
        self.proc = None
        self.usb = None
        self.ports = {}
        self.events = []
        self.output = bytearray()       # everything the board sent over USB
        self._pending = b""             # received, not yet consumed by read_until
        self.log = log

    # ---------------------------------------------------------------- life

    def start(self, timeout=30):
        ensure_built()
        cmd = ["node", os.path.join(EMU, "run.js"), "--usb", "listen:0", "--stats",
               "--deadline", str(self.deadline)]
        if self.image:
            cmd += ["--image", str(self.image)]
        if self.flash:
            cmd += ["--flash", str(self.flash)]
        for name, mode in self.uart_modes.items():
            if mode:
                cmd += ["--" + name, mode]
        cmd += self.extra_args
        self.t_start = time.monotonic()
        self._eof = False
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ev = self.wait_event("listening", timeout)
        self.ports = ev
        self.usb = socket.create_connection(("127.0.0.1", ev["usb"]), timeout=timeout)
        self.usb.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def reconnect_usb(self, timeout=10):
        """Open the USB bridge again (after another program, e.g. mpremote, used it)."""
        if self.usb:
            self.usb.close()
        self.usb = socket.create_connection(("127.0.0.1", self.ports["usb"]), timeout=timeout)
        self.usb.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pending = b""

    def stop(self, timeout=10):
        """Stop the harness (SIGTERM: the flash file is complete); returns the stop event."""
        if self.proc is None:
            return None
        if self.usb:
            self.usb.close()
            self.usb = None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._read_events(0)
        self.stderr = self.proc.stderr.read().decode(errors="replace")
        self.proc = None
        return self.event("stop")

    def kill(self):
        """Pull the plug (SIGKILL): only completed flash operations are in the file."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self.usb:
            self.usb.close()
            self.usb = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---------------------------------------------------------------- events

    def _read_events(self, timeout):
        fd = self.proc.stdout
        deadline = time.monotonic() + timeout
        while True:
            left = max(0, deadline - time.monotonic())
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return
            line = fd.readline()
            if not line:
                self._eof = True
                return
            ev = json.loads(line)
            self.events.append(ev)
            if timeout == 0:
                continue
            return

    def event(self, name):
        for ev in self.events:
            if ev.get("event") == name:
                return ev
        return None

    def wait_event(self, name, timeout):
        deadline = time.monotonic() + timeout
        while True:
            ev = self.event(name)
            if ev:
                return ev
            if getattr(self, "_eof", False) and self.proc.wait() is not None:
                raise BoardError("harness exited (%s) before %r; stderr:\n%s" % (
                    self.proc.returncode, name, self.proc.stderr.read().decode(errors="replace")))
            left = deadline - time.monotonic()
            if left <= 0:
                raise BoardError("no %r event within %ss" % (name, timeout))
            self._read_events(left)

    def stop_event(self):
        """The harness's stop event if it stopped by itself (a ROM stop, a panic...)."""
        if self.proc is not None and self.proc.poll() is None:
            self._read_events(0)
        return self.event("stop")

    # ---------------------------------------------------------------- USB REPL

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.usb.sendall(data)

    def read_until(self, marker, timeout=10):
        """Read USB output until `marker` (bytes or str); returns what came before it."""
        if isinstance(marker, str):
            marker = marker.encode()
        deadline = time.monotonic() + timeout
        buf = self._pending
        while marker not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                stop = self.stop_event()
                raise BoardError("no %r from the board within %ss; got %r%s" % (
                    marker, timeout, bytes(buf[-400:]),
                    "; the harness stopped: %s" % stop["reason"] if stop else ""))
            self.usb.settimeout(min(left, 0.5))
            try:
                chunk = self.usb.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                stop = self.wait_stop_quietly()
                raise BoardError("USB bridge closed; the harness stopped: %s" % (stop and stop["reason"]))
            self.output += chunk
            if self.log:
                self.log(chunk)
            buf += chunk
        i = buf.index(marker)
        self._pending = buf[i + len(marker):]
        return bytes(buf[:i])

    def wait_stop_quietly(self, timeout=5):
        try:
            return self.wait_event("stop", timeout)
        except BoardError:
            return None

    def repl_prompt(self, timeout=20):
        """Interrupt whatever runs and wait for the friendly `>>> ` prompt."""
        self._pending = b""
        self.write(b"\r\x03\x03")
        self.read_until(b">>> ", timeout)
        # Drain anything else already queued (a second prompt after two Ctrl-C's).
        time.sleep(0.05)
        self._drain()

    def _drain(self):
        self.usb.settimeout(0.05)
        try:
            while True:
                chunk = self.usb.recv(4096)
                if not chunk:
                    break
                self.output += chunk
        except (socket.timeout, BlockingIOError):
            pass
        self._pending = b""

    def enter_raw(self, timeout=20):
        self.write(b"\r\x03\x03")
        time.sleep(0.05)
        self._drain()
        self.write(b"\x01")
        self.read_until(b"raw REPL; CTRL-B to exit\r\n>", timeout)

    def exec_raw(self, code, timeout=30):
        """Run code in the raw REPL (already entered); returns (stdout, stderr) text."""
        self.write(code.encode() + b"\x04")
        ok = self.read_until(b"OK", timeout)
        if ok.strip():
            raise BoardError("raw REPL did not accept the code: %r" % ok)
        out = self.read_until(b"\x04", timeout)
        err = self.read_until(b"\x04", timeout)
        self.read_until(b">", timeout)
        return out.decode(errors="replace"), err.decode(errors="replace")

    def exec(self, code, timeout=30):
        """Run code on the board (raw REPL); returns its output, raises on a traceback."""
        self.enter_raw(timeout)
        try:
            out, err = self.exec_raw(code, timeout)
        finally:
            self.write(b"\x02")           # back to the friendly REPL
        if err:
            raise BoardError("the board raised:\n%s" % err)
        return out.replace("\r\n", "\n")

    def eval(self, expr, timeout=30):
        """repr() of an expression evaluated on the board, parsed back with ast.literal_eval."""
        import ast
        out = self.exec("print(repr(%s))" % expr, timeout)
        return ast.literal_eval(out.strip())


def make_app(folder, broker_port, topic, client_id, telemetry_ms=1000, app=None, ssl=None,
             files=()):
    """A copy of examples/app whose config.py reaches a local broker through the modem
    (the SIM800L simulator dials 127.0.0.1:broker_port).  ssl: the client's "ssl"
    option (TLS; docs/tls.md); files: paths copied into the app folder beside
    config.py (a CA certificate: `make deploy` carries *.der/*.pem/*.crt/*.key)."""
    import re
    import shutil
    app = app or os.path.join(ROOT, "examples", "app")
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(app, "main.py"), folder)
    with open(os.path.join(app, "config.py")) as f:
        cfg = f.read()
    subs = [(r'TRANSPORT = "\w+"', 'TRANSPORT = "modem"'),
            (r'"server": "[^"]*"', '"server": "127.0.0.1"'),
            (r'"port": \d+,', '"port": %d,%s' % (broker_port, "" if ssl is None else
                                                   ' "ssl": %r,' % (ssl,))),
            (r'"client_id": b"[^"]*"', '"client_id": b"%s"' % client_id),
            (r'TOPIC = b"[^"]*"', 'TOPIC = b"%s"' % topic),
            (r"TELEMETRY_EVERY_MS = \d+", "TELEMETRY_EVERY_MS = %d" % telemetry_ms)]
    for pattern, repl in subs:
        cfg, n = re.subn(pattern, repl, cfg)
        if n != 1:
            raise BoardError("%s/config.py: no single match for %r" % (app, pattern))
    with open(os.path.join(folder, "config.py"), "w") as f:
        f.write(cfg)
    for path in files:
        shutil.copy(path, folder)
    return folder


def _main():
    """python3 emulator/emulated_board.py IMAGE CODE...: run code on a fresh board, print output."""
    board = EmulatedBoard(image=sys.argv[1])
    with board:
        for code in sys.argv[2:]:
            sys.stdout.write(board.exec(code))


if __name__ == "__main__":
    _main()

"""Rig for the OTA tests (no tests here): devices, a status watcher, apps.

A device is a folder (its filesystem, provisioned by host/ota_push.py) and
a process running tests/scenarios/ota_device.py (app_runner.boot()) under
build/micropython or CPython.  When the runner asks for a reset the process
ends, and the Supervisor starts it again, as a board's reset would.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import paho.mqtt.client as paho
import pytest

from conftest import ROOT, SCENARIOS, interpreter_command

sys.path.insert(0, os.path.join(ROOT, "host"))
import ota_push  # noqa: E402

FAST = {"retry_ms": 400, "give_up": 6, "health_ms": 3000, "idle_ms": 5}


def app_source(version, size=0, crash=None, confirm=True, tag=""):
    """An app: confirms health, says hello on app/<id>, idles.  crash: 'import'
    or 'main' raises there; size pads the file with comment lines."""
    lines = ["# app version %d %s" % (version, tag),
             "import asyncio",
             "VERSION = %d" % version]
    if crash == "import":
        lines.append("raise ValueError('broken at import')")
    lines += ["async def main(dev):"]
    if crash == "main":
        lines.append("    raise RuntimeError('boom in v%d')" % version)
    if confirm:
        lines.append("    dev.healthy()")
    lines += ["    await dev.client.publish(b'app/' + dev.id.encode(), b'v%d running', qos=1)" % version,
              "    while True:",
              "        await asyncio.sleep(1)", ""]
    src = "\n".join(lines)
    pad = size - len(src)
    while pad > 0:
        line = ("# " + "padding " * 12)[:min(pad, 100) - 1] + "\n"
        src += line
        pad -= len(line)
    return src.encode()


class Device:
    def __init__(self, root, dev_id, port, keys, interp="micropython", group="", version=1,
                 app=None, **conf):
        self.id = dev_id
        self.dir = os.path.join(root, dev_id)
        self.interp = interp
        self.proc = None
        self.boots = 0
        self.stopped = False
        self.results = []
        self.params = conf.pop("params", {})     # for tests/scenarios/ota_device.py
        c = dict(FAST)
        c.update(conf)
        ota_push.provision(keys, dev_id, self.dir, app or app_source(version), version,
                           "127.0.0.1", port, group, **c)
        self.log_path = os.path.join(self.dir, "..", dev_id + ".log")

    def start(self, cut=None):
        params = dict(self.params)
        if cut is not None:
            params["cut"] = cut
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "modules"), PYTHONUNBUFFERED="1",
                   SCENARIO_PARAMS=json.dumps(params))
        cmd = interpreter_command(self.interp) + [os.path.join(SCENARIOS, "runner.py"),
                                                  "ota_device", "boot"]
        log = open(self.log_path, "ab")
        log.write(b"---- boot %d%s\n" % (self.boots + 1, b"" if cut is None else b" cut %d" % cut))
        log.flush()
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.boots += 1
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=10, proc_exit_ok=False):
        """Wait until the log of the current boot holds text; returns the line."""
        end = time.monotonic() + timeout
        while True:
            boot = self.log().rsplit("---- boot", 1)[-1]
            for line in boot.splitlines():
                if line.startswith(text):
                    return line
            if (self.proc.poll() is not None and not proc_exit_ok) or time.monotonic() >= end:
                return None
            time.sleep(0.02)

    def files(self):
        return sorted(os.listdir(self.dir))

    def state(self):
        with open(os.path.join(self.dir, "ota-state.json")) as f:
            return json.load(f)


class Supervisor:
    """Restarts devices whose process ended (the board reset), as power would."""

    def __init__(self, devices):
        self.devices = list(devices)
        self.running = True
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while self.running:
            for d in self.devices:
                if d.proc is not None and d.proc.poll() is not None and not d.stopped:
                    d.results.append(d.proc.returncode)
                    if d.proc.returncode == 0:
                        d.start()
                    else:
                        d.stopped = True      # a crash of the runner itself: leave it for the test
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.t.join()
        for d in self.devices:
            d.stopped = True
            d.kill()


class Watch:
    """Every status message the devices publish (ota/s/#)."""

    def __init__(self, port, prefix="ota"):
        self.events = []
        self.cv = threading.Condition()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.c.on_message = self._msg
        self.c.on_connect = lambda c, *a: c.subscribe(prefix + "/s/#", qos=1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _msg(self, c, u, m):
        try:
            st = json.loads(m.payload)
        except ValueError:
            st = {"raw": m.payload}
        st["_retained"] = m.retain
        with self.cv:
            self.events.append(st)
            self.cv.notify_all()

    def of(self, dev_id):
        with self.cv:
            return [e for e in self.events if e.get("id") == dev_id]

    def wait(self, pred, timeout=15, after=0):
        """The first event (index >= after) for which pred(event) holds, or None."""
        end = time.monotonic() + timeout
        with self.cv:
            i = after
            while True:
                while i < len(self.events):
                    if pred(self.events[i]):
                        return self.events[i]
                    i += 1
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)

    def mark(self):
        with self.cv:
            return len(self.events)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def publisher(port):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


class Rig:
    def __init__(self, tmp_path, broker, keys):
        self.tmp, self.broker, self.keys = tmp_path, broker, keys
        self.devices = []
        self.tag = uuid.uuid4().hex[:6]
        self.watch = Watch(broker.port)
        self.sup = None
        self._pusher = None

    def device(self, name="dev", interp="micropython", start=True, **kw):
        d = Device(str(self.tmp), "%s-%s-%d" % (name, self.tag, len(self.devices)),
                   kw.pop("port", self.broker.port), self.keys, interp, **kw)
        self.devices.append(d)
        if start:
            self.boot(d)
        return d

    def boot(self, d, cut=None):
        mark = self.watch.mark()
        d.stopped = False
        d.start(cut)
        if self.sup is None:
            self.sup = Supervisor(self.devices)
        elif d not in self.sup.devices:
            self.sup.devices.append(d)
        return mark

    def up(self, d, timeout=15, after=0):
        """The device's boot status (up/trial/rolledback) at or after event index `after`."""
        return self.watch.wait(lambda e: e.get("id") == d.id and e["st"] in ("up", "trial", "rolledback")
                               and not e["_retained"], timeout, after)

    def running(self, d, version, timeout=15, after=0):
        return self.watch.wait(lambda e: e.get("id") == d.id and e["st"] == "run" and e["v"] == version,
                               timeout, after)

    @property
    def pusher(self):
        if self._pusher is None:
            self._pusher = ota_push.Pusher("127.0.0.1", self.broker.port)
        return self._pusher

    def push(self, image, version, devices, **kw):
        kw.setdefault("timeout", 30)
        kw.setdefault("ask_ms", 400)
        return self.pusher.push(self.keys, image, version, [d.id for d in devices], **kw)

    def close(self):
        if self.sup:
            self.sup.stop()
        if self._pusher:
            self._pusher.close()
        self.watch.close()


def raw_push(rig, d, image, version, key=None, nonce=7, chunk=None, mangle=None, upto=None):
    """Announcement + chunks straight from paho: mangle(seq, msg) -> msg or None (drop)."""
    topic = "ota/d/" + d.id
    chunk = chunk or ota_push.chunk_size(128, topic)
    key = key or ota_push.key_for(rig.keys, d.id)
    pub = publisher(rig.broker.port)
    try:
        pub.publish(topic, ota_push.announcement(key, version, image, chunk, nonce), qos=1).wait_for_publish(5)
        for seq, o in enumerate(range(0, len(image), chunk)):
            if upto is not None and seq >= upto:
                break
            m = ota_push.chunk_msg(version, seq, image[o:o + chunk])
            if mangle:
                m = mangle(seq, m)
            if m is not None:
                pub.publish(topic, m, qos=1).wait_for_publish(5)
    finally:
        pub.disconnect()
        pub.loop_stop()


def refusal(rig, d, version, after=0, timeout=15):
    e = rig.watch.wait(lambda e: e.get("id") == d.id and e["st"] == "refused" and e.get("t") == version,
                       timeout, after)
    assert e, "no refusal of v%d; log:\n%s" % (version, d.log()[-3000:])
    return e["why"]


def still_on(d, version):
    """Nothing left over, the old app current, the device not rebooted."""
    assert d.files() == ["app-%d.py" % version, "main.py", "ota-state.json", "ota-state2.json", "ota.json"]
    assert d.state()["cur"] == version
    assert d.proc.poll() is None and d.boots == 1


class Proxy:
    """A TCP relay to the broker, throttled toward the device (a slow radio
    link); cut() drops every connection at once (RST), losing what is in flight."""

    def __init__(self, target_port, rate=10000):
        import socket
        self.target, self.rate = target_port, rate
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(50)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        self.cuts = 0
        self.down = self.up = 0         # bytes relayed toward the device / the broker
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        while True:
            try:
                dev, _ = self.ls.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            for s in (dev, up):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.conns.append((dev, up))
            threading.Thread(target=self._pump, args=(dev, up, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, dev, self.rate), daemon=True).start()

    def _pump(self, src, dst, rate):
        while True:
            try:
                data = src.recv(256 if rate else 4096)
                if not data:
                    break
                dst.sendall(data)
            except OSError:
                break
            if rate is None:
                self.up += len(data)
            else:
                self.down += len(data)
            if rate:
                time.sleep(len(data) / rate)
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def cut(self):
        import socket
        import struct
        self.cuts += 1
        conns, self.conns = self.conns, []
        for dev, up in conns:
            for s in (dev, up):
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.cut()
        self.ls.close()


# ---- shared by the OTA test files ----------------------------------------------
@pytest.fixture
def keys(tmp_path):
    return ota_push.keygen(str(tmp_path / "keys.json"))


@pytest.fixture
def rig(tmp_path, broker, keys):
    r = Rig(tmp_path, broker, keys)
    yield r
    r.close()


class RunDevice(Device):
    """A device whose process is app_runner.run(), as a board's main.py: the
    scenario file `script` (in tests/scenarios) is that main.py."""
    script = "runner_hardening.py"

    def start(self, cut=None):
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "modules"), PYTHONUNBUFFERED="1",
                   SCENARIO_PARAMS=json.dumps(self.params))
        cmd = interpreter_command(self.interp) + [os.path.join(SCENARIOS, self.script)]
        with open(self.log_path, "ab") as log:
            log.write(b"---- boot %d\n" % (self.boots + 1))
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.boots += 1
        return self

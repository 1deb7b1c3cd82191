"""OTA app updates end to end: real mosquitto, devices = build/micropython
processes (CPython for the happy path too) with real files, the host pusher.

See tests/test_ota_rig.py for the rig and docs/ota.md for the protocol.
"""
import os
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT
from test_ota_rig import Device, Supervisor, Watch, app_source, ota_push, publisher


@pytest.fixture
def keys(tmp_path):
    return ota_push.keygen(str(tmp_path / "keys.json"))


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
                   self.broker.port, self.keys, interp, **kw)
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


@pytest.fixture
def rig(tmp_path, broker, keys):
    r = Rig(tmp_path, broker, keys)
    yield r
    r.close()


def wait_run(rig, d, version, after=0):
    e = rig.running(d, version, after=after)
    assert e, "%s never confirmed v%d; log:\n%s" % (d.id, version, d.log()[-3000:])
    return e


@pytest.mark.parametrize("interp", ["micropython", "cpython"])
def test_happy_path_4k_app(rig, interp):
    d = rig.device(interp=interp)
    assert rig.up(d)["v"] == 1
    image = app_source(2, size=4096)
    t0 = time.monotonic()
    targets = rig.push(image, 2, [d])
    took = time.monotonic() - t0
    tg = targets[d.id]
    assert (tg.state, tg.result, tg.attempts) == ("done", "updated 1 -> 2", 1), d.log()
    assert d.files() == ["app-1.py", "app-2.py", "main.py", "ota-state.json", "ota.json"]
    with open(os.path.join(d.dir, "app-2.py"), "rb") as f:
        assert f.read() == image
    st = d.state()
    assert (st["cur"], st["prev"], st["floor"], st["trial"]) == (2, 1, 2, 0)
    print("\n%s: 4096-byte app pushed and confirmed in %.2f s" % (interp, took))

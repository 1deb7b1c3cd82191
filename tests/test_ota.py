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
    assert d.files() == ["app-%d.py" % version, "main.py", "ota-state.json", "ota.json"]
    assert d.state()["cur"] == version
    assert d.proc.poll() is None and d.boots == 1


def test_wrong_signature_is_refused(rig):
    d = rig.device()
    assert rig.up(d)
    mark = rig.watch.mark()
    raw_push(rig, d, app_source(2), 2, key=b"not the key")
    assert refusal(rig, d, 2, mark) == "bad signature"
    # the pusher with a key the device does not have: refused, reported, non-zero
    other = ota_push.keygen(str(rig.tmp / "other.json"))
    t = rig.pusher.push(other, app_source(2), 2, [d.id], timeout=10, ask_ms=400)[d.id]
    assert (t.state, t.result) == ("failed", "refused: bad signature")
    time.sleep(0.3)
    still_on(d, 1)


def test_replayed_old_version_is_refused(rig):
    d = rig.device()
    assert rig.up(d)
    v2 = app_source(2)
    assert rig.push(v2, 2, [d])[d.id].state == "done"
    v3 = app_source(3)
    assert rig.push(v3, 3, [d])[d.id].state == "done"
    # the recorded, validly signed v2 push, replayed
    mark = rig.watch.mark()
    raw_push(rig, d, v2, 2)
    assert refusal(rig, d, 2, mark) == "version 2 is not newer than 3"
    # and an older one pushed by the tool: refused, exit code material
    t = rig.push(app_source(1, tag="again"), 1, [d], timeout=10)[d.id]
    assert (t.state, t.result) == ("failed", "refused: version 1 is not newer than 3")
    assert d.state()["cur"] == 3
    assert sorted(f for f in d.files() if f.startswith("app-")) == ["app-2.py", "app-3.py"]


def test_corrupted_chunk_fails_the_hash_then_a_retry_succeeds(rig):
    d = rig.device()
    assert rig.up(d)
    image = app_source(2, size=2000)
    mark = rig.watch.mark()

    def flip(seq, m):
        return m[:-1] + bytes([m[-1] ^ 1]) if seq == 5 else m
    raw_push(rig, d, image, 2, mangle=flip)
    assert refusal(rig, d, 2, mark).startswith("sha256 mismatch")
    time.sleep(0.2)
    still_on(d, 1)
    # the pusher treats a hash mismatch as worth a retry; it is a fresh transfer
    assert rig.push(image, 2, [d])[d.id].result == "updated 1 -> 2"


def test_truncated_transfer_is_asked_for_then_abandoned(rig):
    d = rig.device()
    assert rig.up(d)
    image = app_source(2, size=2000)
    mark = rig.watch.mark()
    raw_push(rig, d, image, 2, upto=10)
    need = rig.watch.wait(lambda e: e.get("id") == d.id and e["st"] == "need", 5, mark)
    assert need["n"] == 10 and not need["_retained"]
    # FAST: retry_ms 400, give_up 6: it asks again, then abandons the transfer
    n = -(-2000 // ota_push.chunk_size(128, "ota/d/" + d.id))
    assert refusal(rig, d, 2, mark, timeout=10) == "transfer stalled at chunk 10 of %d" % n
    asks = [e for e in rig.watch.of(d.id) if e["st"] == "need"]
    assert 5 <= len(asks) <= 8
    still_on(d, 1)
    # a short last chunk is not written: the device asks for it again
    mark = rig.watch.mark()
    raw_push(rig, d, image, 2, mangle=lambda s, m: m[:-3] if s == n - 1 else m)
    assert rig.watch.wait(lambda e: e.get("id") == d.id and e["st"] == "need" and e["n"] == n - 1, 5, mark)


def test_oversized_and_unfitting_announcements_are_refused(rig):
    d = rig.device(max_size=8192)
    assert rig.up(d)
    mark = rig.watch.mark()
    raw_push(rig, d, app_source(2, size=9000), 2, upto=0)
    assert refusal(rig, d, 2, mark) == "size 9000 not in 1..8192 bytes"
    mark = rig.watch.mark()
    raw_push(rig, d, app_source(2), 2, chunk=120, upto=0)
    assert refusal(rig, d, 2, mark) == "chunk 120 too big for a 128-byte receive buffer"
    time.sleep(0.2)
    still_on(d, 1)


@pytest.mark.parametrize("crash", ["main", "import", "silent"])
def test_new_app_that_fails_is_rolled_back(rig, crash):
    d = rig.device()
    assert rig.running(d, 1)
    bad = app_source(2, crash=None if crash == "silent" else crash, confirm=crash != "silent")
    mark = rig.watch.mark()
    t = rig.push(bad, 2, [d])[d.id]
    why = {"main": "RuntimeError: boom in v2", "import": "ValueError: broken at import",
           "silent": "no health confirmation within 3000 ms"}[crash]
    assert (t.state, t.result) == ("failed", "rolled back: " + why), d.log()[-3000:]
    e = rig.running(d, 1, after=mark)
    assert (e["rb"], e["why"]) == (2, why)
    st = d.state()
    assert (st["cur"], st["prev"], st["floor"], st["trial"], st["rb"]) == (1, 0, 2, 0, 2)
    assert sorted(f for f in d.files() if f.startswith("app-")) == ["app-1.py"]
    # the same version again is refused; a fixed, newer one goes in
    assert rig.push(bad, 2, [d], timeout=10)[d.id].result == "refused: version 2 is not newer than 2"
    assert rig.push(app_source(3), 3, [d])[d.id].result == "updated 1 -> 3"

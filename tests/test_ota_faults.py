"""OTA under faults: the link dropped mid-transfer, and a power cut (SIGKILL)
right before every file-system step of download, verify, swap and boot."""
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from test_ota_rig import Device, Proxy, Rig, Watch, app_source, ota_push, raw_push


@pytest.fixture
def keys(tmp_path):
    return ota_push.keygen(str(tmp_path / "keys.json"))


def test_transfer_resumes_after_the_link_drops_mid_transfer(tmp_path, broker, keys):
    """The device's link (a throttled relay, ~10 kB/s) is cut with a RST at a
    quarter of the transfer: the client reconnects by itself, the device asks
    for the chunk it wants next, the pusher resends from there."""
    proxy = Proxy(broker.port, rate=10000)
    rig = Rig(tmp_path, broker, keys)
    try:
        d = rig.device(port=proxy.port)
        assert rig.running(d, 1)
        image = app_source(2, size=8192)
        n = -(-len(image) // ota_push.chunk_size(128, "ota/d/" + d.id))
        mark = rig.watch.mark()
        out = {}
        t = threading.Thread(target=lambda: out.update(rig.push(image, 2, [d], timeout=60)))
        t.start()
        e = rig.watch.wait(lambda e: e.get("id") == d.id and e["st"] == "rx" and e["n"] >= n // 4,
                           20, mark)
        assert e and e["n"] < n, "no progress seen: %r" % e
        proxy.cut()
        t.join(70)
        tg = out[d.id]
        assert (tg.state, tg.result, tg.attempts) == ("done", "updated 1 -> 2", 1), d.log()[-3000:]
        needs = [x["n"] for x in rig.watch.of(d.id) if x["st"] == "need"]
        assert needs and min(needs) >= e["n"], needs          # resumed, not restarted
        with open(os.path.join(d.dir, "app-2.py"), "rb") as f:
            assert f.read() == image
        assert d.boots == 2                                   # one reset: the install
        print("\nlink cut at chunk >= %d of %d; resumed from chunk %d" % (e["n"], n, min(needs)))
    finally:
        rig.close()
        proxy.close()


TRIAL = {"cur": 2, "prev": 1, "floor": 2, "trial": 1, "tries": 0, "p": 1}


def _one_cut(tmp_path, port, keys, cut, image, phase):
    """Provision v1, boot with a power cut armed at step `cut`, then either
    push v2 (phase "update") or start from v2 just installed, on trial
    (phase "trial"); kill at the cut, boot again: returns what runs."""
    watch = Watch(port)
    d = Device(str(tmp_path), "%s%03d" % (phase, cut),
               port, keys)
    if phase == "trial":
        with open(os.path.join(d.dir, "app-2.py"), "wb") as f:
            f.write(image)
        with open(os.path.join(d.dir, "ota-state.json"), "w") as f:
            json.dump(TRIAL, f)
    try:
        d.start(cut)
        up = None
        for _ in range(500):            # up, or cut before it
            up = watch.wait(lambda e: e.get("id") == d.id and e["st"] in ("up", "trial"), 0.02)
            if up or d.wait_log("CUT", 0):
                break
        if phase == "update" and up and not d.wait_log("CUT", 0.05):
            raw_push(_Fake(port, keys), d, image, 2, nonce=cut)
        cut_line = d.wait_log("CUT", 10, proc_exit_ok=True)
        d.kill()
        mark = watch.mark()
        d.start()
        e = watch.wait(lambda e: e.get("id") == d.id and e["st"] == "run", 15, mark)
        assert e, "no app confirmed after cut %d (%s):\n%s" % (cut, cut_line, d.log()[-3000:])
        d.kill()
        return cut_line, e["v"], d.files(), d.state()
    finally:
        d.kill()
        watch.close()


class _Fake:
    """What raw_push needs of a Rig."""

    def __init__(self, port, keys):
        self.keys = keys

        class B:
            pass
        self.broker = B()
        self.broker.port = port


def _steps(tmp_path, broker, keys, image, phase):
    """A clean run with every step logged: the list of steps."""
    folder = tmp_path / ("probe-" + phase)
    folder.mkdir()
    d = Device(str(folder), "%s999" % phase,
               broker.port, keys)
    if phase == "trial":
        with open(os.path.join(d.dir, "app-2.py"), "wb") as f:
            f.write(image)
        with open(os.path.join(d.dir, "ota-state.json"), "w") as f:
            json.dump(TRIAL, f)
    watch = Watch(broker.port)
    try:
        d.start(cut=10 ** 6)
        assert watch.wait(lambda e: e.get("id") == d.id and e["st"] in ("up", "trial"), 10)
        if phase == "update":
            raw_push(_Fake(broker.port, keys), d, image, 2)
            d.proc.wait(15)
        else:
            assert watch.wait(lambda e: e.get("id") == d.id and e["st"] == "run", 10)
            time.sleep(0.3)
    finally:
        d.kill()
        watch.close()
    return [line for line in d.log().splitlines() if line.startswith("STEP ")]


@pytest.mark.parametrize("phase", ["update", "trial"])
def test_power_cut_before_every_file_step_leaves_a_bootable_app(tmp_path, broker, keys, phase):
    image = app_source(2, size=500)
    steps = _steps(tmp_path, broker, keys, image, phase)
    total = len(steps)
    assert 8 <= total <= 40, steps

    def run(cut):
        folder = tmp_path / ("c%d" % cut)
        folder.mkdir()
        return cut, _one_cut(folder, broker.port, keys, cut, image, phase)

    with ThreadPoolExecutor(4) as ex:
        results = sorted(ex.map(run, range(1, total + 1)))
    report = []
    switched = None
    for cut, (line, version, files, st) in results:
        report.append("%3d %-40s -> runs v%d" % (cut, (line or "")[4:], version))
        assert line and line.split()[1] == str(cut), "\n".join(report)
        assert version in (1, 2)
        assert "ota-dl.tmp" not in files and "ota-state.tmp" not in files
        apps = [f for f in files if f.startswith("app-")]
        assert "app-%d.py" % version in apps and len(apps) <= 2, files
        assert st["cur"] == version and not st["trial"]
        if version == 2 and switched is None:
            switched = cut
        if switched is not None:
            assert version == 2, "\n".join(report)        # once installed, it stays
    if phase == "update":
        # the one step that switches: renaming the new state over the old
        assert "rename ota-state.tmp ota-state.json" in results[switched - 2][1][0], "\n".join(report)
    else:
        assert switched == 1, "\n".join(report)         # a cut in the trial boot keeps v2
    print("\n" + "\n".join(report))

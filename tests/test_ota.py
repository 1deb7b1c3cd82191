"""OTA app updates end to end: real mosquitto, devices = build/micropython
processes (CPython for the happy path too) with real files, the host pusher.

See tests/test_ota_rig.py for the rig and docs/ota.md for the protocol.
"""
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_ota_rig import app_source, keys, ota_push, raw_push, refusal, rig, still_on  # noqa: F401 (fixtures)


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
    assert d.files() == ["app-1.py", "app-2.py", "main.py", "ota-state.json", "ota-state2.json",
                         "ota.json"]  # the state is kept twice (docs/ota.md)
    with open(os.path.join(d.dir, "app-2.py"), "rb") as f:
        assert f.read() == image
    st = d.state()
    assert (st["cur"], st["prev"], st["floor"], st["trial"]) == (2, 1, 2, 0)
    print("\n%s: 4096-byte app pushed and confirmed in %.2f s" % (interp, took))


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


def test_update_over_the_sim800l_driver_and_simulator(rig):
    """The same protocol with the device's MQTT going through modules/sim800l.py
    (async flavour) -> UART over TCP -> host/sim800l_sim.py -> mosquitto."""
    sys.path.insert(0, os.path.join(ROOT, "host"))
    from sim800l_sim import Sim800L
    sim = Sim800L()
    sim.listen_tcp()
    sim.start()
    try:
        fast = {"at": 600, "sync": 3000, "send": 1500, "rx": 1500, "cipstart": 3000, "reg": 3000}
        d = rig.device("sim", params={"uart_port": sim.port, "timeouts": fast})
        assert rig.running(d, 1, timeout=30), d.log()
        image = app_source(2, size=4096)
        t0 = time.monotonic()
        tg = rig.push(image, 2, [d], timeout=60)[d.id]
        took = time.monotonic() - t0
        assert (tg.state, tg.result, tg.attempts) == ("done", "updated 1 -> 2", 1), d.log()[-3000:]
        with open(os.path.join(d.dir, "app-2.py"), "rb") as f:
            assert f.read() == image
        assert sim.counts["AT+CIPSTART"] == 2            # one per boot: before and after the install
        print("\n4096-byte app over the SIM800L simulator in %.2f s; modem: %s"
              % (took, {k: v for k, v in sim.counts.items() if k.startswith("AT+CIP")}))
    finally:
        sim.close()


def test_wire_cost_of_a_4k_update_over_128_byte_buffers(rig):
    """Bytes between broker and device (both directions, MQTT framing
    included) from the announcement to the new app's confirmation."""
    from test_ota_rig import Proxy
    proxy = Proxy(rig.broker.port, rate=0)
    try:
        d = rig.device(port=proxy.port)
        assert rig.running(d, 1)
        time.sleep(0.2)
        down0, up0 = proxy.down, proxy.up
        image = app_source(2, size=4096)
        t0 = time.monotonic()
        tg = rig.push(image, 2, [d])[d.id]
        took = time.monotonic() - t0
        assert tg.state == "done"
        down, up = proxy.down - down0, proxy.up - up0
        chunk = ota_push.chunk_size(128, "ota/d/" + d.id)
        n = -(-4096 // chunk)
        print("\n4096-byte app, %d chunks of %d bytes: %d bytes to the device, %d from it "
              "(%.0f%% overhead incl. reboot and reconnect); %.2f s" % (
                  n, chunk, down, up, 100.0 * (down + up - 4096) / 4096, took))
        # chunks (PUBLISH header + topic + id + 5) + PUBACKs back; the rest is small
        assert 4096 < down < 4096 + n * (4 + 2 + len("ota/d/" + d.id) + 5) + 1200
        assert up < n * 4 + 2000
    finally:
        proxy.close()


def test_cli_push_to_a_list_reports_who_refused_and_exits_1(rig, tmp_path):
    good = [rig.device("ok") for _ in range(2)]
    # provisioned with a key of its own that the operator's keys file does not hold
    odd_keys = ota_push.keygen(str(tmp_path / "odd.json"))
    odd = rig.device("odd", start=False)
    ota_push.provision(odd_keys, odd.id, odd.dir, app_source(1), 1, "127.0.0.1", rig.broker.port)
    rig.boot(odd)
    for d in good + [odd]:
        assert rig.running(d, 1)
    app = tmp_path / "app2.py"
    app.write_bytes(app_source(2, size=1500))
    args = [sys.executable, os.path.join(ROOT, "host", "ota_push.py"), "push",
            "--keys", str(tmp_path / "keys.json"), "--app", str(app), "--version", "2",
            "--server", "127.0.0.1", "--port", str(rig.broker.port), "--ask-ms", "400",
            "--timeout", "20"]
    for d in good + [odd]:
        args += ["--device", d.id]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["device", "was", "now", "result"]
    table = {line.split()[0]: line.split(None, 3)[1:] for line in lines[1:4]}
    for d in good:
        assert table[d.id] == ["1", "2", "updated 1 -> 2"]
    assert table[odd.id] == ["1", "1", "refused: bad signature"]
    assert lines[-1].startswith("2 of 3 devices on version 2")
    # pushing again: the two are already there, the odd one still refuses
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout.count("already on 2") == 2


def test_ota_files_can_never_shadow_a_module(rig):
    """Everything the OTA writes has a name no `import` can spell ('-' in it,
    or not .py): with '' before '.frozen' on sys.path, nothing shadows."""
    import re
    d = rig.device()
    assert rig.running(d, 1)
    assert rig.push(app_source(2), 2, [d])[d.id].state == "done"
    importable = [f for f in d.files()
                  if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.py|\.mpy)?", f)]
    assert importable == ["main.py"]          # written once by provisioning; not OTA'd

"""The runner as the device's last line of defence (issue 11, defects 6 and 10).

Defect 6: app_runner.run() never returns with an exception (the board would
sit at the REPL): a broker refusing the OTA subscription, a modem bring-up
raising anything, a trial app raising SystemExit or another BaseException
all end in a retry with backoff, a rollback, or a reset.  Ctrl-C does stop
it, on purpose (docs/ota.md).  Devices here run app_runner.run() itself
(tests/scenarios/runner_hardening.py as the main script); its reset()
stand-in ends the process with status 0 and the Supervisor starts it again.

Defect 10: a damaged ota-state.json (truncated, a flipped bit, empty, junk)
never lowers the replay floor or deletes the last good app; a power cut at
any step of saving the state leaves a readable state.
"""
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as hst

from conftest import ROOT
from test_ota_rig import RunDevice, app_source, keys, raw_push, refusal, rig  # noqa: F401 (fixtures)

sys.path.insert(0, os.path.join(ROOT, "modules"))
import ota  # noqa: E402 -- the module itself, for the in-process property test

# Fast backoff for tests; reset_after high unless a test wants the reset.
FAST_RUN = {"backoff_ms": 100, "backoff_max_ms": 400, "reset_after": 1000}


def run_device(rig, interp, port=None, **conf):
    c = dict(FAST_RUN)
    c.update(conf)
    d = RunDevice(str(rig.tmp), "run-%s-%d" % (rig.tag, len(rig.devices)), port or rig.broker.port,
                  rig.keys, interp, **c)
    rig.devices.append(d)
    rig.boot(d)
    return d


def app_with(version, at_import="", main_tail=""):
    """app_source(version) with a line at import and/or lines after dev.healthy()."""
    src = app_source(version).decode()
    src = src.replace("VERSION = %d\n" % version, "VERSION = %d\n%s\n" % (version, at_import))
    src = src.replace("    dev.healthy()\n", "    dev.healthy()\n" + main_tail)
    return src.encode()


# ---- a broker that refuses the OTA subscription ---------------------------------

def _recv_exact(s, n):
    b = b""
    while len(b) < n:
        k = s.recv(n - len(b))
        if not k:
            raise OSError("closed")
        b += k
    return b


def _packet(s):
    """One MQTT packet off a blocking socket: (first byte, whole packet bytes)."""
    head = _recv_exact(s, 1)
    n, mult, lenbytes = 0, 1, b""
    while True:
        c = _recv_exact(s, 1)
        lenbytes += c
        n += (c[0] & 0x7F) * mult
        mult *= 128
        if not c[0] & 0x80:
            break
    return head[0], head + lenbytes + _recv_exact(s, n)


class RefusingRelay:
    """A relay to the real mosquitto that turns the SUBACK of a SUBSCRIBE to
    ota/d/... into 0x80 (refused) while `refuse` is set.  (mosquitto 2.0.11's
    acl_file grants any SUBSCRIBE and only drops the messages, so an ACL
    cannot make it refuse.)"""

    def __init__(self, target_port):
        self.target, self.refuse, self.refusals = target_port, True, 0
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(20)
        self.port = self.ls.getsockname()[1]
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                dev, _ = self.ls.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            self.socks += [dev, up]
            ota_pids = set()
            threading.Thread(target=self._pump, args=(dev, up, ota_pids, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, dev, ota_pids, True), daemon=True).start()

    def _pump(self, src, dst, ota_pids, down):
        try:
            while True:
                kind, pkt = _packet(src)
                i = 1
                while pkt[i] & 0x80:
                    i += 1
                i += 1                                   # i: start of the variable header
                if not down and kind == 0x82 and b"ota/d/" in pkt[i + 2:]:
                    ota_pids.add(pkt[i:i + 2])
                if down and kind == 0x90 and pkt[i:i + 2] in ota_pids and self.refuse:
                    pkt = pkt[:i + 2] + b"\x80" * (len(pkt) - i - 2)
                    self.refusals += 1
                dst.sendall(pkt)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.ls.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


INTERPS = ["micropython", "cpython"]


@pytest.mark.parametrize("interp", INTERPS)
def test_refused_ota_subscription_is_retried_with_backoff_until_granted(rig, interp):
    relay = RefusingRelay(rig.broker.port)
    try:
        d = run_device(rig, interp, port=relay.port)
        time.sleep(2.5)
        assert d.proc.poll() is None, "run() ended:\n" + d.log()[-3000:]
        # 100 ms doubling to 400 ms, plus jitter and the connects: a handful, not a busy loop
        assert 2 <= relay.refusals <= 12, (relay.refusals, d.log()[-3000:])
        assert "MQTTRefused: subscription to b'ota/d/" in d.log()
        assert not rig.watch.of(d.id), "an app ran while the device could not be updated"
        relay.refuse = False                             # the broker's ACL fixed
        assert rig.running(d, 1, timeout=10), d.log()[-3000:]
        assert d.boots == 1 and d.proc.poll() is None   # no reset was needed
    finally:
        relay.close()


@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize("bringup", ["cpin", "csq", "UnicodeError", "ValueError", "IndexError",
                                     "MemoryError", "SystemExit"])
def test_modem_bring_up_that_raises_anything_is_retried(rig, interp, bringup):
    """cpin/csq: the real SIM800L driver on a modem answering junk (a
    non-UTF-8 +CPIN:, +CSQ: ab,0); the others: a bring-up raising that."""
    d = run_device(rig, interp, params={"bringup": bringup, "fails": 2})
    assert rig.running(d, 1, timeout=15), d.log()[-3000:]
    log = d.log()
    assert log.count("BRINGUP fails with") == 2, log[-3000:]
    assert d.boots == 1 and d.proc.poll() is None, log[-3000:]


BOOM = "class Boom(BaseException):\n    pass\nraise Boom('not an Exception')"


@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize("line,why", [(BOOM, "Boom: not an Exception"),
                                      ("raise SystemExit(7)", "SystemExit: 7"),
                                      ("import sys\nsys.exit()", "SystemExit: ")])
def test_trial_app_raising_a_base_exception_at_import_is_rolled_back(rig, interp, line, why):
    d = run_device(rig, interp)
    assert rig.running(d, 1)
    mark = rig.watch.mark()
    t = rig.push(app_with(2, at_import=line), 2, [d])[d.id]
    assert (t.state, t.result) == ("failed", "rolled back: " + why), d.log()[-3000:]
    e = rig.running(d, 1, after=mark)
    assert e and (e["rb"], e["why"]) == (2, why)
    st = d.state()
    assert (st["cur"], st["floor"], st["trial"]) == (1, 2, 0)
    assert sorted(f for f in d.files() if f.startswith("app-")) == ["app-1.py"]
    assert d.proc.poll() is None and set(d.results) <= {0}, d.log()[-3000:]  # only resets


@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize("when", ["running", "backing off"])
def test_ctrl_c_stops_the_runner_for_the_repl(rig, interp, when):
    """The decision (docs/ota.md): Ctrl-C is the developer's way to the REPL."""
    relay = RefusingRelay(rig.broker.port) if when == "backing off" else None
    try:
        d = run_device(rig, interp, port=relay and relay.port, backoff_ms=300)
        if relay:
            end = time.monotonic() + 10
            while "in a row failed" not in d.log() and time.monotonic() < end:
                time.sleep(0.05)
            time.sleep(0.1)
        else:
            assert rig.running(d, 1)
        d.proc.send_signal(signal.SIGINT)
        rc = d.proc.wait(10)
        time.sleep(0.2)                                  # the Supervisor would restart a reset
        log = d.log()
        assert rc != 0 and d.boots == 1, log[-3000:]
        assert "app_runner: Ctrl-C: stopped" in log and "KeyboardInterrupt" in log, log[-3000:]
        assert "RUN RETURNED" not in log
    finally:
        if relay:
            relay.close()


@pytest.mark.parametrize("interp", INTERPS)
def test_confirmed_app_that_keeps_crashing_backs_off_then_resets(rig, interp):
    app = app_with(1, main_tail="    await asyncio.sleep(0.05)\n    raise RuntimeError('late')\n")
    d = run_device(rig, interp, app=app, backoff_ms=300, backoff_max_ms=5000, reset_after=3)
    t0 = time.monotonic()
    end = t0 + 20
    while d.boots < 2 and time.monotonic() < end:
        time.sleep(0.02)
    took = time.monotonic() - t0
    first = d.log().split("---- boot 2")[0]
    assert d.boots >= 2, first[-3000:]
    fails = [ln for ln in first.splitlines() if "in a row failed" in ln]
    assert fails == ["app_runner: boot %d in a row failed: crashed" % i for i in (1, 2, 3)], first[-3000:]
    assert first.rstrip().endswith("app_runner: reset"), first[-3000:]
    assert took >= 0.3 + 0.6 - 0.1, took                # it slept its backoff: not a busy loop
    crashed = [e for e in rig.watch.of(d.id) if e["st"] == "crashed"]
    assert crashed and crashed[0]["why"] == "RuntimeError: late"


@pytest.mark.parametrize("interp", INTERPS)
def test_app_whose_main_returns_keeps_serving_messages_and_updates(rig, interp):
    app = app_with(1, main_tail=(
        "    topic = b'in/' + dev.id.encode()\n"
        "    async def echo(m):\n"
        "        await dev.client.publish(b'out/' + dev.id.encode(), m)\n"
        "    dev.on_message = lambda t, m: asyncio.create_task(echo(bytes(m)))\n"
        "    await dev.client.subscribe(topic, qos=1)\n"
        "    await dev.client.publish(b'ready/' + dev.id.encode(), b'1', qos=1)\n"
        "    return\n"))
    import paho.mqtt.client as paho
    got = []
    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    c.connect("127.0.0.1", rig.broker.port)
    c.loop_start()
    try:
        c.subscribe("ready/#", qos=1)
        c.subscribe("out/#", qos=1)
        time.sleep(0.2)
        d = run_device(rig, interp, app=app)
        assert rig.running(d, 1)
        end = time.monotonic() + 10
        while ("ready/" + d.id, b"1") not in got and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(0.3)                                  # main() has returned by now
        c.publish("in/" + d.id, b"ping", qos=1)
        while ("out/" + d.id, b"ping") not in got and time.monotonic() < end:
            time.sleep(0.02)
        assert ("out/" + d.id, b"ping") in got, d.log()[-3000:]
        assert not [e for e in rig.watch.of(d.id) if e["st"] == "crashed"], [(e["st"], e.get("why")) for e in rig.watch.of(d.id)]
        assert rig.push(app_source(2), 2, [d])[d.id].result == "updated 1 -> 2"
    finally:
        c.disconnect()
        c.loop_stop()


# ---- defect 10: a damaged state file -------------------------------------------

GOOD = [3, 2, 5, 0, ["app-2.py", "app-3.py"]]      # what every single damage must leave


@pytest.mark.parametrize("interp", INTERPS)
def test_every_truncation_and_bit_flip_of_the_state_file_is_survived(run_scenario, tmp_path, interp):
    """app-2 (previous), app-3 (current), floor 5 (v4 and v5 refused):
    ota-state.json cut at every length and flipped at every bit, then a
    boot's boot_state().  Each must keep v3, v2 and the floor 5 intact."""
    (tmp_path / "dev").mkdir()
    r = run_scenario(interp, "runner_hardening", "damage_state", dir="dev",
                     copies=["ota-state.json"], cases="every truncation and bit flip")
    assert r["cases"] > 400
    assert list(r["outcomes"]) == [repr(GOOD)], r["outcomes"]


@pytest.mark.parametrize("interp", INTERPS)
def test_both_copies_damaged_rebuilds_from_the_app_files(run_scenario, tmp_path, interp):
    """Both copies cut at every length: the state is rebuilt from the app
    files: the newest (v3) on trial with v2 behind it, floor 3 (the newest
    on flash; v4/v5 left no file), nothing deleted."""
    (tmp_path / "dev").mkdir()
    cases = [["trunc", n] for n in range(0, 60, 3)] + [["hex", "ff00fe"], ["hex", "7b7d"],
                                                         ["hex", "5b5d"], ["hex", "6e756c6c"]]
    r = run_scenario(interp, "runner_hardening", "damage_state", dir="dev",
                     copies=["ota-state.json", "ota-state2.json"], cases=cases)
    assert list(r["outcomes"]) == [repr([3, 2, 3, 1, ["app-2.py", "app-3.py"]])], r["outcomes"]


def _steps(start_scenario, interp, tmp_path, phase):
    (tmp_path / "probe").mkdir()
    s = start_scenario(interp, "runner_hardening", "save_with_cut", dir="probe", phase=phase, cut=0)
    assert s.result() == "no cut"
    return [ln for ln in s.lines if ln.startswith("STEP ")]


@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize("phase", ["install", "repair"])
def test_power_cut_at_every_step_of_saving_the_state(start_scenario, run_scenario, tmp_path, interp, phase):
    """SIGKILL right before each file-system step of a state save (the one
    that installs v6; the repair of a damaged first copy), then a boot: a
    readable state, the floor never below 5, the switch to v6 exactly at
    the rename of the first copy."""
    steps = _steps(start_scenario, interp, tmp_path, phase)
    assert len(steps) == 8, steps                       # two copies: open, write, close, rename
    old = [3, 2, 5, 0, ["app-2.py", "app-3.py"]]
    new = [6, 3, 6, 1, ["app-3.py", "app-6.py"]]
    report, switched = [], None
    for cut in range(1, len(steps) + 1):
        folder = "c%d" % cut
        (tmp_path / folder).mkdir()
        s = start_scenario(interp, "runner_hardening", "save_with_cut", dir=folder, phase=phase, cut=cut)
        line = s.expect("CUT", timeout=20)
        s.kill()
        outcome, files = run_scenario(interp, "runner_hardening", "boot_state", dir=folder)
        report.append("%d %s -> %r" % (cut, line, outcome))
        assert outcome in ([old, new] if phase == "install" else [old]), "\n".join(report)
        assert not [f for f in files if f.endswith(".tmp")], files
        assert "ota-state.json" in files and "ota-state2.json" in files
        if outcome == new and switched is None:
            switched = cut
        assert switched is None or outcome == new, "\n".join(report)   # once switched, it stays
    if phase == "install":
        # the switch: the cut right after the rename of the first copy
        assert switched and steps[switched - 2].endswith("rename probe/ota-state.tmp probe/ota-state.json"), \
            "\n".join(report)


@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize("damage", ["truncated", "floor bit flipped", "empty"])
def test_device_with_a_damaged_state_keeps_its_app_and_refuses_replays(rig, interp, damage):
    """End to end: v2 current, v1 previous, floor 7 (v3..v7 refused or
    rolled back); ota-state.json damaged; the device boots v2 and still
    refuses v4 (a replay of a once-refused version)."""
    if interp == "cpython" and damage != "floor bit flipped":
        pytest.skip("one CPython case is enough: the state code is the same")
    d = rig.device(interp=interp, start=False)
    with open(os.path.join(d.dir, "app-2.py"), "wb") as f:
        f.write(app_source(2))
    ota.save_state(d.dir, {"cur": 2, "prev": 1, "floor": 7, "trial": 0})
    p = os.path.join(d.dir, "ota-state.json")
    with open(p, "rb") as f:
        good = f.read()
    bad = {"truncated": good[:len(good) // 2], "empty": b"",
           # '7' (0x37) -> '3' (0x33): still valid JSON, floor 3 >= cur 2: only a checksum sees it
           "floor bit flipped": good.replace(b'"floor": 7', b'"floor": 3')}[damage]
    assert bad != good
    with open(p, "wb") as f:
        f.write(bad)
    rig.boot(d)
    assert rig.running(d, 2), d.log()[-3000:]
    assert sorted(f for f in d.files() if f.startswith("app-")) == ["app-1.py", "app-2.py"]
    assert d.state()["floor"] == 7
    mark = rig.watch.mark()
    raw_push(rig, d, app_source(4), 4, upto=0)
    assert refusal(rig, d, 4, mark) == "version 4 is not newer than 7"


# ---- property: random damage to one or both copies (CPython, in process) ---------

_edit = hst.tuples(hst.sampled_from(["set", "insert", "delete"]), hst.integers(0, 200), hst.integers(0, 255))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits_a=hst.lists(_edit, min_size=1, max_size=6), edits_b=hst.lists(_edit, max_size=6),
       both=hst.booleans(), extra=hst.sampled_from([None, "ota-state.tmp", "ota-state2.tmp"]))
def test_random_damage_never_lowers_the_floor_below_the_apps_nor_deletes_them(edits_a, edits_b, both, extra):
    d = tempfile.mkdtemp()
    try:
        for v in (2, 3):
            with open(ota.app_file(d, v), "w") as f:
                f.write("# app %d\n" % v)
        st = {"cur": 3, "prev": 2, "floor": 5, "trial": 0}
        ota.save_state(d, st)
        copies = ["ota-state.json"] + (["ota-state2.json"] if both else [])
        for name, edits in zip(copies, (edits_a, edits_b)):
            p = os.path.join(d, name)
            with open(p, "rb") as f:
                b = bytearray(f.read())
            for op, i, v in edits:
                i = i % (len(b) + 1)
                if op == "insert":
                    b[i:i] = bytes([v])
                elif b and i < len(b):
                    if op == "set":
                        b[i] = v
                    else:
                        del b[i]
            with open(p, "wb") as f:
                f.write(b)
        if extra:                                       # a leftover temp file, damaged too
            with open(os.path.join(d, extra), "wb") as f:
                f.write(bytes(b[: len(b) // 2]))
        got = ota.load_state(d)
        ota.clean(d, got)
        apps = sorted(f for f in os.listdir(d) if f.startswith("app-"))
        assert apps == ["app-2.py", "app-3.py"]
        assert got["floor"] >= 3 and got["cur"] in (2, 3)
        if not both:
            assert got == st                            # the second copy is intact: nothing lost
        again = ota.load_state(d)                       # and what it wrote back reads the same
        assert again == got
    finally:
        shutil.rmtree(d)

"""A fleet of 50 devices updated by one push of the CLI to their group."""
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_ota_rig import Rig, app_source, ota_push

FLEET = 50


@pytest.fixture
def keys(tmp_path):
    return ota_push.keygen(str(tmp_path / "keys.json"))


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, os.path.join(ROOT, "host", "ota_push.py")] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def test_fleet_of_50_in_one_push(tmp_path, broker, keys):
    rig = Rig(tmp_path, broker, keys)
    group = "fleet-" + rig.tag
    try:
        t0 = time.monotonic()
        devices = [rig.device("f", start=False, group=group, idle_ms=20) for _ in range(FLEET)]
        for d in devices:
            rig.boot(d)
        for d in devices:
            assert rig.running(d, 1, timeout=30), d.log()
        booted = time.monotonic() - t0
        app = tmp_path / "app.py"
        app.write_bytes(app_source(2, size=4096))
        t0 = time.monotonic()
        r = cli("push", "--keys", str(tmp_path / "keys.json"), "--app", str(app), "--version", "2",
                "--group", group, "--server", "127.0.0.1", "--port", str(broker.port),
                "--ask-ms", "400", "--timeout", "50")
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        rows = [line.split() for line in r.stdout.splitlines()[1:FLEET + 1]]
        assert sorted(row[0] for row in rows) == sorted(d.id for d in devices)
        assert all(row[1:] == ["1", "2", "updated", "1", "->", "2"] for row in rows), r.stdout
        assert r.stdout.splitlines()[-1].startswith("50 of 50 devices on version 2")
        for d in devices:
            assert d.state()["cur"] == 2 and d.boots == 2
        # the status command agrees
        s = cli("status", "--group", group, "--server", "127.0.0.1", "--port", str(broker.port))
        assert s.returncode == 0 and s.stdout.count(" 2        run") == FLEET, s.stdout
        print("\n%d devices booted in %.1f s; one push to the group: %.1f s (%s)"
              % (FLEET, booted, took, r.stdout.splitlines()[-1]))
    finally:
        rig.close()

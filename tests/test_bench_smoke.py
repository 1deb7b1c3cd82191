"""The benchmark harness works (a few rounds each): not a measurement.

Runs bench/run.py --smoke into a temporary folder: every MicroPython client
(ours, the three peers fetched at bench time, the wire's limit), the CPython
references that are installed, and the SIM800L simulator part, against one
mosquitto; then checks that each scenario produced its numbers and the
table was written.  Speed and heap are not asserted here (`make bench`
measures them); only what cannot differ between machines: the wire's hand-
built packets allocate nothing, and our client and the wire cost one AT
round trip per QoS 0 publish over the modem.
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import MICROPYTHON, ROOT


def test_bench_harness_runs_every_client(tmp_path):
    if not os.path.exists(MICROPYTHON):
        pytest.fail("build/micropython is missing: run `make micropython` first")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke",
                        "--no-plot", "--quiet", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    res = json.loads((tmp_path / "latest.json").read_text())
    assert res["smoke"] is True
    mp = res["micropython"]
    assert set(mp) == {"ours", "umqtt", "mqtt_async", "aiomqttc", "wire"}
    for client, scenarios in mp.items():
        assert set(scenarios) == {"pub0", "pub1", "recv", "roundtrip", "throughput"}, client
        for sc, out in scenarios.items():
            assert "error" not in out, (client, sc, out)
            assert out["n"] == 10, (client, sc)
        assert scenarios["roundtrip"]["median_us"] > 0
        assert scenarios["throughput"]["msgs_per_s"] > 0
    # The hand-built packets allocate nothing: the window accounting is sound
    # (a residue below a few bytes per op is the window's fixed cost over n=10).
    for sc in ("pub0", "pub1", "recv", "roundtrip"):
        assert abs(mp["wire"][sc]["heap_per_op"]) < 16, (sc, mp["wire"][sc])
    ic = res["import_connect"]
    assert ic["ours (frozen)"]["source"] == "frozen"
    assert ic["ours (.py)"]["source"].endswith("modules/async_mqtt_client.py")
    assert ic["ours (frozen)"]["heap_in_use"] < ic["ours (.py)"]["heap_in_use"]
    for peer in ("umqtt", "mqtt_async", "aiomqttc"):
        assert ic[peer]["heap_in_use"] > 0, peer
    assert {"ours", "paho", "wire"} <= set(res["cpython"])
    for flavour in ("async", "sync"):
        for client in ("ours", "wire"):
            out = res["sim800l"][flavour][client]
            assert "error" not in out, (flavour, client, out)
            assert out["pub0"]["at_commands"] == 1.0, out
    md = (tmp_path / "latest.md").read_text()
    assert "heap per QoS 0 publish" in md and "SIM800L" in md

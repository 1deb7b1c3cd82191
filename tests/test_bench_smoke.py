"""The benchmark harness works (a few rounds each): not a measurement.

Runs bench/run.py --smoke into a temporary folder: every MicroPython client
(ours, the three peers fetched at bench time, the wire's limit), the CPython
references that are installed, and the SIM800L simulator part, against one
mosquitto; then checks that each scenario produced its numbers and the
table was written.  Speed and heap are not asserted here (`make bench`
measures them); only what cannot differ between machines: the wire's hand-
built packets allocate nothing, and our client and the wire cost one AT
round trip per QoS 0 publish over the modem.

The emulated Pico part (bench/pico/) has a test of its own: the shipped
image on the emulated board, every client and driver flavour for a few
operations, the numbers checked for what holds on any machine.
"""
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import MICROPYTHON, ROOT
from test_emulator import image  # noqa: F401  (the `make firmware` fixture)


def test_bench_harness_runs_every_client(tmp_path):
    if not os.path.exists(MICROPYTHON):
        pytest.fail("build/micropython is missing: run `make micropython` first")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke", "--no-pico",
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
    rr = res["roundtrip_ratio"]                  # the ratio's spread over passes
    assert len(rr["passes"]) == 3 and rr["min"] <= rr["median"] <= rr["max"], rr
    assert "roundtrip_vs_wire_min" in res["summary"]
    md = (tmp_path / "latest.md").read_text()
    assert "heap per QoS 0 publish" in md and "SIM800L" in md
    assert "median of 3 passes" in md


def _num(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_bench_pico_part_runs_every_client(image, broker):  # noqa: F811
    """bench/pico/pico.py --smoke: the image on the emulated Pico, through the
    SIM800L simulator to mosquitto, each client a few operations."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "pico", "pico.py"), "--smoke", "--no-build",
                        "--port", str(broker.port)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads(r.stdout)
    assert "error" not in res, res["error"]
    assert "RP2040" in res["version"]
    runs = [("ours", "async"), ("ours", "sync"), ("wire", "async"), ("wire", "sync"), ("umqtt", "sync")]
    for client, flavour in runs:
        out = res["modem"][client][flavour]
        assert "error" not in out and "failed_passes" not in out, (client, flavour, out)
        assert out["cycles_counter"] is True           # bench/pico/cycles.js is loaded
        for op in ("pub0", "pub1", "recv", "roundtrip"):
            o = out[op]
            assert all(_num(o[k]) for k in ("heap", "us", "cycles", "at_commands", "uart_bytes")), (client, op, o)
        recv = out["recv"]                                      # measured, not derived: the feeder ran
        assert not recv["derived"] and recv["heap"] >= 0 and 0 < recv["at_commands"] <= 1.0, recv
        assert recv["uart_rx"] > 64, recv                       # the 64 B message came over the UART
        for op in ("pub0", "pub1", "recv", "roundtrip"):
            o = out[op]
            # gc.mem_alloc() counts 16-byte blocks on the 32-bit image: window totals are whole blocks
            assert (o["heap"] * o["n"]) % 16 == 0, (client, flavour, op, o)
        for op in ("pub0", "pub1", "roundtrip"):
            o = out[op]
            assert o["heap"] >= 0 and o["us"] > 0 and o["cycles"] > 0, (client, flavour, op, o)
            # executed cycles never outrun the board clock (125 MHz): the counter is the CPU's
            assert o["cycles"] <= o["us"] * 125 * 1.02 + 2000, (client, flavour, op, o)
        rt = out["roundtrip"]
        assert rt["uart_tx"] > 64 and rt["uart_rx"] > 64       # the 64 B payload went out and came back
        if client in ("ours", "wire"):                          # one write per packet: one AT+CIPSEND
            assert out["pub0"]["at_commands"] == 1.0 and out["pub1"]["at_commands"] == 2.0, out
        else:                                                   # umqtt.simple writes a packet in pieces
            assert out["pub0"]["at_commands"] >= 2.0, out
            assert rt["adapter_reads"] > 0 and rt["adapter_writes"] >= 2, rt
    for client in ("ours", "wire"):                             # the in-RAM loopback: no modem at all
        out = res["loop"][client]
        assert "error" not in out, out
        rt = out["roundtrip"]
        assert rt["at_commands"] == 0 and rt["us"] > 0 and rt["cycles"] > 0, rt
    a = res["adapter"]
    assert "error" not in a, a
    assert a["read"]["heap"] >= 16 and a["read"]["cycles"] > 0 and a["write"]["cycles"] > 0, a


def test_bench_tls_part_runs(image, tmp_path):  # noqa: F811
    """bench/run.py --tls-only --smoke: bench/tls.py's every part once (the
    handshake on the emulated Pico for both key types, a round in TLS and in
    plaintext on the board, on build/micropython and through the SIM800L
    simulator), checked for what holds on any machine; ~30 s."""
    if not os.path.exists(MICROPYTHON):
        pytest.fail("build/micropython is missing: run `make micropython` first")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--tls-only", "--smoke",
                        "--pico-no-build", "--quiet", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    res = json.loads((tmp_path / "tls.json").read_text())
    pc = res["pico"]
    assert "error" not in pc, pc["error"]
    for key in ("ec", "rsa"):
        h = pc["handshake"][key]
        assert "error" not in h, (key, h)
        assert h["cycles_counter"] is True
        assert h["ms"]["median"] > 0 and h["cycles"]["median"] > 0, h
        # a full handshake: ClientHello out, the certificate chain in, several AT round trips
        assert h["at"]["median"] >= 5 and h["tx"]["median"] > 200 and h["rx"]["median"] > 500, h
        # the session's record buffers (16 KB in + 4 KB out) come from the board's GC heap
        assert h["held"]["median"] >= 20 * 1024 and h["peak"]["median"] >= h["held"]["median"] - 1024, h
        assert h["left"]["min"] >= 100 * 1024, h          # the bound
    rd = pc["round"]
    for flavour in ("async", "sync"):
        plain, tls = rd[flavour]["plain"], rd[flavour]["tls"]
        assert "error" not in plain and "error" not in tls, (flavour, plain, tls)
        pr, tr = plain["roundtrip"], tls["roundtrip"]
        assert pr["at_commands"] == tr["at_commands"] == 2.0, (pr, tr)   # one AT+CIPSEND per packet still
        assert tr["uart_bytes"] > pr["uart_bytes"], (pr, tr)              # records carry a header and a tag
        assert tls["heap_in_use_after_connect"] > plain["heap_in_use_after_connect"] + 20 * 1024
    ux = res["unix"]
    assert "failed_passes" not in ux["plain"] and "failed_passes" not in ux["tls"], ux
    assert ux["tls"]["median_us"]["median"] > 0 and ux["rt_ratio"]["median"] > 0
    for flavour in ("async", "sync"):
        d = res["unix_sim800l"][flavour]
        assert "error" not in d["plain"] and "error" not in d["tls"], d
        assert d["tls"]["roundtrip"]["at_commands"] == d["plain"]["roundtrip"]["at_commands"], d
        assert d["tls"]["connect"]["at_commands"] > d["plain"]["connect"]["at_commands"], d
    md = (tmp_path / "tls.md").read_text()
    assert "TLS 1.2 handshake" in md and "holds" in md

"""The emulated Pico part of `make bench`: the shipped image on the emulated board.

    .venv/bin/python bench/pico/pico.py --port BROKER_PORT [--smoke]   # standalone: prints JSON

bench/run.py calls run_all() with its mosquitto.  What runs:

  firmware/RPI_PICO_MQTT.uf2 (`make firmware`: the modules frozen in; a no-op
  when up to date, ~6 s after a module changed, minutes on a fresh machine)
  booted on emulator/ (rp2040js + our boot ROM), its UART0 bridged to
  host/sim800l_sim.py, which dials mosquitto.  bench/pico/board_bench.py goes
  to the board through the raw REPL, once per client, driver flavour and pass.

  cycles: node --require bench/pico/cycles.js (NODE_OPTIONS) maps rp2040js's
  executed-cycle count to a register the board reads (machine.mem32).
"""
import argparse
import json
import os
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(ROOT, "emulator"), os.path.join(ROOT, "host")]

BOARD = os.environ.get("BOARD", "RPI_PICO_MQTT")
IMAGE = os.path.join(ROOT, "firmware", BOARD + ".uf2")
CYCLES_JS = os.path.join(HERE, "cycles.js")
SCRIPT = os.path.join(HERE, "board_bench.py")
UMQTT = os.path.join(ROOT, ".cache", "bench-peers", "micropython-umqtt.simple-1.3.4", "umqtt", "simple.py")

# (client, driver flavour) over the modem; umqtt.simple is blocking: sync only.
MODEM_RUNS = (("ours", "async"), ("ours", "sync"), ("wire", "async"), ("wire", "sync"), ("umqtt", "sync"))
LOOP_RUNS = ("ours", "wire")
PASSES = 3
# Operations per run.  The emulator runs the chip at ~20 MHz of its 125 (2 shared
# cores), and a round through the driver costs ~4-5 M cycles (umqtt.simple's
# ~9 M), so these counts keep the Pico part near 3 minutes; the heap of a
# window is exact, and the spread between passes is shown.
ROUNDS = {"n": 16, "n1": 8, "nr": 12, "chunk": 8, "warm": 2}          # over the modem, per pass
SLOW_ROUNDS = {"umqtt": {"n": 10, "n1": 5, "nr": 8, "chunk": 5, "warm": 1}}
LOOP_ROUNDS = {"n": 60, "n1": 60, "chunk": 30, "warm": 3}   # in-RAM loopback
SMOKE = {"n": 4, "n1": 2, "chunk": 4, "warm": 1}
SMOKE_LOOP = {"n": 10, "n1": 10, "chunk": 10, "warm": 1}


def ensure_image(log, build=True):
    """`make firmware rom emulator-deps`: the image must hold the modules as they are now."""
    import subprocess
    if build:
        t0 = time.monotonic()
        p = subprocess.run(["make", "-s", "-C", ROOT, "firmware", "rom", "emulator-deps"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            raise RuntimeError("make firmware rom emulator-deps failed:\n" + p.stdout[-3000:])
        log("  make firmware rom emulator-deps: %.1f s" % (time.monotonic() - t0))
    if not os.path.exists(IMAGE):
        raise RuntimeError("%s is missing: run `make firmware`" % IMAGE)
    return IMAGE


def median(xs):
    s = sorted(xs)
    return s[(len(s) - 1) // 2] if s else None


class Feeder:
    """Another MQTT client (paho, on the host): 64 B QoS 0 to `topic` every
    FEED_S seconds while a topic is set, for the board's received-message
    runs.  The pace is slower than the emulated board takes a message (~2 M
    cycles, ~0.1 s of wall time at the emulator's ~20 MHz), so messages come
    one at a time, as they would to a device, not in bursts."""
    FEED_S = 0.2

    def __init__(self, port):
        import threading
        import paho.mqtt.client as paho
        self.topic = None
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-pico-feeder-%d" % os.getpid())
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.stop = threading.Event()
        self.sent = 0
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        payload = bytes(range(64))
        while not self.stop.wait(self.FEED_S):
            t = self.topic
            if t:
                self.c.publish(t, payload, qos=0)
                self.sent += 1

    def close(self):
        self.stop.set()
        self.t.join(2)
        self.c.loop_stop()
        self.c.disconnect()


class Pico:
    def __init__(self, broker_port, log, smoke=False, image=IMAGE):
        self.port, self.log, self.smoke, self.image = broker_port, log, smoke, image

    def __enter__(self):
        from emulated_board import EmulatedBoard
        from sim800l_sim import Sim800L
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-pico-")
        self.sim = Sim800L()
        sim_port = self.sim.listen_tcp(0)
        self.sim.start()
        opts = os.environ.get("NODE_OPTIONS", "")
        os.environ["NODE_OPTIONS"] = (opts + " --require " + CYCLES_JS).strip()
        try:
            self.board = EmulatedBoard(image=self.image, flash=os.path.join(self.tmp.name, "flash.bin"),
                                       uart0="connect:127.0.0.1:%d" % sim_port, deadline=1800)
            t0 = time.monotonic()
            self.board.start()
            self.board.repl_prompt(60)
        except BaseException:
            self.board.stop()
            self.sim.close()
            self.tmp.cleanup()
            raise
        finally:
            if opts:
                os.environ["NODE_OPTIONS"] = opts
            else:
                os.environ.pop("NODE_OPTIONS", None)
        self.boot_s = time.monotonic() - t0
        self.version = self.board.exec("import sys; print(sys.version, sys.implementation._machine)").strip()
        if os.path.exists(UMQTT):
            with open(UMQTT) as f:
                src = f.read()
            self.board.exec("f = open('umqtt_simple.py', 'w'); f.write(%r); f.close()" % src, 60)
        self.feeder = Feeder(self.port)
        with open(SCRIPT) as f:
            src = f.read()
        self.board.exec("f = open('bench_pico.py', 'w'); f.write(%r); f.close()" % src, 60)
        return self

    def __exit__(self, *exc):
        try:
            if getattr(self, "feeder", None):
                self.feeder.close()
            ev = self.board.stop()
            self.board_seconds = ev and ev.get("board_seconds")
        finally:
            self.sim.close()
            self.tmp.cleanup()

    def run(self, client, mode, flavour=None, **extra):
        if mode == "adapter":
            rounds = {"n": 10 if self.smoke else 100}
        else:
            rounds = dict((SMOKE if mode == "modem" else SMOKE_LOOP) if self.smoke else
                          (SLOW_ROUNDS.get(client, ROUNDS) if mode == "modem" else LOOP_ROUNDS))
        p = dict(rounds, client=client, mode=mode, flavour=flavour, host="127.0.0.1", port=self.port,
                 topic="bench/pico/%s/%s" % (client, uuid.uuid4().hex[:8]))
        p.update(extra)                 # bench/tls.py: port, ssl, rtc, skip
        if mode == "modem" and "recv" not in p.get("skip", ()):
            p["feed"] = p["topic"] + "/feed"
            self.feeder.topic = p["feed"]
        t0 = time.monotonic()
        try:
            out = self.board.exec("P = %r\nexec(open('bench_pico.py').read())" % p, timeout=600)
        except Exception as e:  # noqa: B902 -- a failed run is reported, the rest goes on
            self.feeder.topic = None
            try:
                self.board.repl_prompt(30)
            except Exception as e2:  # noqa: B902
                return {"error": "%s; then the board did not come back: %s" % (str(e)[-1200:], e2)}
            return {"error": str(e)[-1500:]}
        self.feeder.topic = None
        for line in reversed(out.splitlines()):
            if line.startswith("RESULT "):
                res = json.loads(line[7:])
                res["wall_s"] = round(time.monotonic() - t0, 1)
                return res
        return {"error": "no RESULT line: " + out[-1500:]}


OPS = ("pub0", "pub1", "recv", "roundtrip")
KEYS = ("heap", "us", "cycles", "at_commands", "uart_bytes")


def combine(rs):
    """One result from several passes: each number the median pass's, every pass kept."""
    ok = [r for r in rs if "error" not in r]
    if not ok:
        return rs[0]
    out = {k: v for k, v in ok[0].items() if k not in OPS}
    out["passes"] = len(ok)
    if len(ok) < len(rs):
        out["failed_passes"] = [r["error"] for r in rs if "error" in r]
    for op in OPS:
        if op not in ok[0]:
            continue
        d = {"n": ok[0][op]["n"], "derived": ok[0][op].get("derived", False)}
        for k in KEYS + ("uart_tx", "uart_rx", "adapter_reads", "adapter_writes"):
            vals = [r[op][k] for r in ok if op in r]
            d[k] = median(vals)
            d[k + "_passes"] = vals
        out[op] = d
    if "roundtrip" in out and out["roundtrip"].get("us"):
        # CPU-bound rate: a round's executed cycles at the Pico's 125 MHz
        c = out["roundtrip"]["cycles"]
        out["rounds_per_s_cpu"] = 125e6 / c if c else None
    return out


def run_all(broker_port, log, smoke=False, build=True, passes=None, image=None):
    """Every run (MODEM_RUNS over the simulator, LOOP_RUNS on the loopback), PASSES
    times, the passes interleaved; returns the results dict for bench/run.py."""
    t0 = time.monotonic()
    res = {"image": None, "modem": {}, "loop": {}}
    try:
        image = image or ensure_image(log, build)
    except RuntimeError as e:
        res["error"] = str(e)
        return res
    res["image"] = {"file": os.path.relpath(image, ROOT), "bytes": os.path.getsize(image)}
    passes = passes or (1 if smoke else PASSES)
    runs = {}
    try:
        _run_passes(broker_port, log, smoke, image, passes, res, runs)
    except Exception as e:  # noqa: B902 -- the board did not boot or died: say so, keep the rest of the bench
        res["error"] = "%s: %s" % (type(e).__name__, str(e)[-1500:])
        return res
    for (mode, client, flavour), rs in runs.items():
        c = combine(rs)
        if mode == "modem":
            res["modem"].setdefault(client, {})[flavour] = c
        else:
            res["loop"][client] = c
    res["duration_s"] = round(time.monotonic() - t0, 1)
    return res


def _run_passes(broker_port, log, smoke, image, passes, res, runs):
    with Pico(broker_port, log, smoke, image) as pico:
        res["boot_s"] = round(pico.boot_s, 1)
        res["version"] = pico.version
        log("  emulated Pico at the REPL in %.1f s: %s" % (pico.boot_s, pico.version))
        if os.path.exists(UMQTT):
            a = res["adapter"] = pico.run("umqtt", "adapter")
            log("  pico socket adapter (umqtt.simple's read/write over the sync modem socket), per call: %s" % (
                a.get("error") or "read(2) %+d B %+d cycles, write %+d B %+d cycles" % (
                    a["read"]["heap"], a["read"]["cycles"], a["write"]["heap"], a["write"]["cycles"])))
        for rep in range(passes):
            for client, flavour in MODEM_RUNS:
                if client == "umqtt" and not os.path.exists(UMQTT):
                    continue
                r = pico.run(client, "modem", flavour)
                log("  pico modem %-6s %-5s pass %d: %s" % (client, flavour, rep + 1, short(r)))
                runs.setdefault(("modem", client, flavour), []).append(r)
            for client in LOOP_RUNS:
                r = pico.run(client, "loop")
                log("  pico loop  %-6s       pass %d: %s" % (client, rep + 1, short(r)))
                runs.setdefault(("loop", client, None), []).append(r)
    res["board_seconds"] = pico.board_seconds


def short(r):
    if "error" in r:
        return "FAILED " + r["error"][-300:]
    parts = []
    for op in OPS:
        if op in r:
            o = r[op]
            parts.append("%s %dB %dus %dcyc %.1fAT" % (op, round(o["heap"]), round(o["us"]), round(o["cycles"]),
                                                      o["at_commands"]))
    return "; ".join(parts) + " (%.0fs)" % r.get("wall_s", 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, help="a mosquitto on 127.0.0.1 (default: start one)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--passes", type=int)
    ap.add_argument("--no-build", action="store_true", help="use firmware/*.uf2 as it is")
    a = ap.parse_args()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if a.port:
        res = run_all(a.port, log, a.smoke, not a.no_build, a.passes)
    else:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from broker import Broker
        with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as tmp:
            broker = Broker(tmp).start()
            try:
                res = run_all(broker.port, log, a.smoke, not a.no_build, a.passes)
            finally:
                broker.stop()
    print(json.dumps(res, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()

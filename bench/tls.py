"""The TLS part of `make bench`: what TLS 1.2 costs our client, next to plaintext.

    .venv/bin/python bench/run.py --tls-only [--smoke] [--pico-no-build]   # this part alone
    .venv/bin/python bench/tls.py [--smoke] [--no-build] [--no-pico]      # the same, JSON on stdout

Certificates are made with openssl (tests/tls_pki.py: a P-256 ECDSA CA and an
RSA-2048 CA, a server certificate from each); one mosquitto (tests/broker.py)
with its plaintext listener and two TLS 1.2 listeners (`ec`, `rsa`).  Then:

  emulated Pico (firmware/RPI_PICO_MQTT.uf2 on rp2040js, UART0 ->
    host/sim800l_sim.py -> mosquitto; bench/pico/pico.py boots it), the
    board's clock set from the host's UTC time with machine.RTC():
    * the handshake, bench/pico/board_tls.py: connect() of our client (async
      driver) to each TLS listener, HANDSHAKES passes in a row on one modem
      session: board time, CPU cycles, AT round trips, UART bytes, heap held
      while connected, the peak during connect() (a second asyncio task
      samples gc.mem_free() every 2 ms) and the heap left for the app;
    * the steady state, bench/pico/board_bench.py's round (publish 64 B QoS 0
      to its own subscription and receive it) in TLS and plaintext, async and
      sync driver, PICO_PASSES passes interleaved: heap, board time, cycles,
      AT round trips and UART bytes per round.
  build/micropython: bench/device/run.py's `roundtrip` scenario of ours, TLS
    (`ssl` passed through to the config) and plaintext, native socket,
    UNIX_PASSES passes interleaved; and bench/device/sim.py (ours through
    modules/sim800l.py and the simulator), async and sync, TLS and plaintext.
"""
import argparse
import json
import os
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (os.path.join(ROOT, "tests"), os.path.join(ROOT, "host"), os.path.join(HERE, "pico"), HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import pico  # noqa: E402
from subrun import run_result  # noqa: E402

MICROPYTHON = os.path.join(ROOT, "build", "micropython")
HEAPSIZE = "48M"
DEVICE = os.path.join(HERE, "device")
BOARD_TLS = os.path.join(HERE, "pico", "board_tls.py")
KEYS = (("ec", "ECDSA P-256"), ("rsa", "RSA-2048"))
HANDSHAKES = 5          # connect()s per key type on the board (smoke: 1)
PICO_PASSES = 3         # steady-state passes on the board (smoke: 1)
UNIX_PASSES = 3         # build/micropython passes (smoke: 1)
UNIX_ROUNDS = 1000      # rounds per pass, native socket (smoke: 10)
SIM_ROUNDS = 50         # rounds per pass through the SIM800L simulator (smoke: 5)
PICO_SKIP = ("pub0", "pub1", "recv")       # the board's steady state: the round only


def median(xs):
    s = sorted(x for x in xs if x is not None)
    return s[(len(s) - 1) // 2] if s else None


def summary(vals):
    """median, min, max and every pass of a list of numbers."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": median(vals), "min": min(vals), "max": max(vals), "passes": vals}


def rtc_now():
    """The host's UTC time as machine.RTC().datetime() takes it."""
    t = time.gmtime()
    return [t.tm_year, t.tm_mon, t.tm_mday, t.tm_wday, t.tm_hour, t.tm_min, t.tm_sec, 0]


class TLSBroker:
    """PKI + one mosquitto: its plaintext listener and a TLS 1.2 listener per key type
    (the lines of tests/test_tls.py's tls_broker fixture)."""

    def __enter__(self):
        from broker import Broker, free_port
        from tls_pki import PKI
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-tls-")
        self.pki = PKI(os.path.join(self.tmp.name, "pki"))
        self.ca = {"ec": self.pki.ec, "rsa": self.pki.rsa}
        servers = {"ec": self.pki.server_ec, "rsa": self.pki.server_rsa}
        self.tls_ports, lines = {}, []
        for k, _ in KEYS:
            self.tls_ports[k] = free_port()
            lines.append("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\ntls_version tlsv1.2"
                         % (self.tls_ports[k], servers[k][0], servers[k][1]))
        self.broker = Broker(os.path.join(self.tmp.name, "mosquitto"), extra_config="\n".join(lines) + "\n")
        try:
            self.broker.start()
        except BaseException:
            self.tmp.cleanup()
            raise
        self.port = self.broker.port
        return self

    def __exit__(self, *exc):
        try:
            self.broker.stop()
        finally:
            self.tmp.cleanup()

    def ssl(self, key="ec"):
        return {"cafile": self.ca[key].der, "server_hostname": "localhost"}


# ---- build/micropython --------------------------------------------------------

def unix_part(tb, log, smoke, res):
    n, passes = (10, 1) if smoke else (UNIX_ROUNDS, UNIX_PASSES)
    runs = {"plain": [], "tls": []}
    for rep in range(passes):
        for mode in (("plain", "tls") if rep % 2 == 0 else ("tls", "plain")):
            p = {"port": tb.tls_ports["ec"] if mode == "tls" else tb.port,
                 "topic": "bench/tls/%s/%s" % (mode, uuid.uuid4().hex[:8]),
                 "modules_dir": os.path.join(ROOT, "modules"), "n": n, "warm": 3 if smoke else 20}
            if mode == "tls":
                p["ssl"] = tb.ssl("ec")
            r = run_result([MICROPYTHON, "-X", "heapsize=" + HEAPSIZE, os.path.join(DEVICE, "run.py"), "ours",
                      "roundtrip", json.dumps(p)])
            log("  unix native %-5s pass %d: %s" % (mode, rep + 1, r.get("error") or
                "heap/round %.0f B, round trip median %s us, p99 %s us" % (
                    r["heap_per_op"], r["median_us"], r["p99_us"])))
            runs[mode].append(r)
    out = {"n": n}
    for mode, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        out[mode] = {"heap_per_round": summary([r["heap_per_op"] for r in ok]),
                     "median_us": summary([r["median_us"] for r in ok]),
                     "p99_us": summary([r["p99_us"] for r in ok])}
        if len(ok) < len(rs):
            out[mode]["failed_passes"] = [r["error"] for r in rs if "error" in r]
    ratios = [t["median_us"] / p["median_us"] for p, t in zip(runs["plain"], runs["tls"])
              if "error" not in p and "error" not in t and p.get("median_us")]
    out["rt_ratio"] = summary(ratios)
    res["unix"] = out

    from sim800l_sim import Sim800L
    sim = {}
    for flavour in ("async", "sync"):
        for mode in ("plain", "tls"):
            s = Sim800L()
            s.listen_tcp()
            s.start()
            try:
                p = {"uart_port": s.port, "host": "127.0.0.1",
                     "port": tb.tls_ports["ec"] if mode == "tls" else tb.port,
                     "topic": "bench/tls/sim/" + uuid.uuid4().hex[:8], "flavour": flavour,
                     "n": 5 if smoke else SIM_ROUNDS}
                if mode == "tls":
                    p["ssl"] = tb.ssl("ec")
                r = run_result([MICROPYTHON, "-X", "heapsize=" + HEAPSIZE, os.path.join(DEVICE, "sim.py"), "ours",
                          json.dumps(p)])
            finally:
                s.close()
            if "error" not in r:
                r = {k: r[k] for k in ("connect", "pub0", "pub1", "roundtrip", "flavour", "wall_s")}
            log("  unix sim800l %-5s %-5s: %s" % (flavour, mode, r.get("error") or
                "connect %d AT %d B; round %.0f B heap, %.0f us, %.1f AT, %.0f UART B" % (
                    r["connect"]["at_commands"], r["connect"]["uart_tx"] + r["connect"]["uart_rx"],
                    r["roundtrip"]["heap"], r["roundtrip"]["us"], r["roundtrip"]["at_commands"],
                    r["roundtrip"]["uart_bytes"])))
            sim.setdefault(flavour, {})[mode] = r
    res["unix_sim800l"] = sim


# ---- the emulated Pico ----------------------------------------------------------

def pico_part(tb, log, smoke, build, res):
    try:
        image = pico.ensure_image(log, build)
    except RuntimeError as e:
        res["pico"] = {"error": str(e)}
        return
    out = res["pico"] = {"image": {"file": os.path.relpath(image, ROOT), "bytes": os.path.getsize(image)},
                         "handshake": {}, "round": {}}
    try:
        with pico.Pico(tb.port, log, smoke, image) as pc:
            out["version"] = pc.version
            log("  emulated Pico at the REPL in %.1f s: %s" % (pc.boot_s, pc.version))
            for k, _ in KEYS:
                with open(tb.ca[k].der, "rb") as f:
                    pc.board.exec("f = open('ca_%s.der', 'wb'); f.write(%r); f.close()" % (k, f.read()), 60)
            with open(BOARD_TLS) as f:
                pc.board.exec("f = open('bench_tls.py', 'w'); f.write(%r); f.close()" % f.read(), 60)
            _handshakes(pc, tb, log, smoke, out)
            _rounds(pc, tb, log, smoke, out)
        out["board_seconds"] = pc.board_seconds
    except Exception as e:  # noqa: B902 -- the board did not boot or died: say so, keep the rest
        out["error"] = "%s: %s" % (type(e).__name__, str(e)[-1500:])


def _handshakes(pc, tb, log, smoke, out):
    n = 1 if smoke else HANDSHAKES
    for k, label in KEYS:
        p = {"host": "127.0.0.1", "port": tb.tls_ports[k], "passes": n, "rtc": rtc_now(),
             "ssl": {"cafile": "ca_%s.der" % k, "server_hostname": "localhost"}}
        t0 = time.monotonic()
        try:
            text = pc.board.exec("P = %r\nexec(open('bench_tls.py').read())" % p, timeout=300 + 120 * n)
            r = next(json.loads(line[7:]) for line in reversed(text.splitlines()) if line.startswith("RESULT "))
        except Exception as e:  # noqa: B902 -- report it, go on
            try:
                pc.board.repl_prompt(30)
            except Exception:  # noqa: B902
                pass
            r = {"error": str(e)[-1500:]}
            out["handshake"][k] = r
            log("  pico handshake %-3s: FAILED %s" % (k, r["error"][-400:]))
            continue
        ps = r.pop("passes")
        h = dict(r, key=label, n=len(ps), wall_s=round(time.monotonic() - t0, 1), raw=ps)
        for f in ("ms", "cycles", "at", "tx", "rx", "held", "peak", "left", "free_before", "lowest_free", "gap_ms",
                  "samples"):
            h[f] = summary([x[f] for x in ps])
        h["uart_bytes"] = summary([x["tx"] + x["rx"] for x in ps])
        out["handshake"][k] = h
        log("  pico handshake %-3s (%d passes): %s ms, %s AT, %s B UART, held %s B, peak %s B, left %s B (%.0f s)"
            % (k, len(ps), h["ms"]["passes"], h["at"]["passes"], h["uart_bytes"]["passes"],
               h["held"]["passes"], h["peak"]["passes"], h["left"]["passes"], h["wall_s"]))


def _rounds(pc, tb, log, smoke, out):
    passes = 1 if smoke else PICO_PASSES
    runs = {}
    for rep in range(passes):
        for flavour in ("async", "sync"):
            for mode in (("plain", "tls") if rep % 2 == 0 else ("tls", "plain")):
                extra = {"skip": PICO_SKIP}
                if mode == "tls":
                    extra.update(port=tb.tls_ports["ec"], rtc=rtc_now(),
                                 ssl={"cafile": "ca_ec.der", "server_hostname": "localhost"})
                r = pc.run("ours", "modem", flavour, **extra)
                log("  pico round %-5s %-5s pass %d: %s" % (flavour, mode, rep + 1, pico.short(r)))
                runs.setdefault((flavour, mode), []).append(r)
    for (flavour, mode), rs in runs.items():
        c = pico.combine(rs)
        if "error" not in c:
            c = {k: c[k] for k in ("roundtrip", "heap_in_use_after_connect", "passes", "failed_passes",
                                   "cycles_counter") if k in c}
            c["heap_in_use_after_connect_passes"] = [r.get("heap_in_use_after_connect") for r in rs
                                                     if "error" not in r]
        out["round"].setdefault(flavour, {})[mode] = c


def run_all(log, smoke=False, build=True, pico_part_on=True):
    t0 = time.monotonic()
    res = {"smoke": smoke}
    with TLSBroker() as tb:
        log("TLS: mosquitto plaintext :%d, TLS 1.2 %s" % (tb.port, ", ".join(
            "%s :%d" % (k, p) for k, p in tb.tls_ports.items())))
        unix_part(tb, log, smoke, res)
        if pico_part_on:
            log("TLS on the emulated Pico: firmware/%s.uf2" % pico.BOARD)
            pico_part(tb, log, smoke, build, res)
    res["duration_s"] = round(time.monotonic() - t0, 1)
    return res


def failures(res):
    """Names of the parts that failed (for run.py's exit status)."""
    bad = []
    for mode in ("plain", "tls"):
        if "failed_passes" in (res.get("unix") or {}).get(mode, {}):
            bad.append("tls unix " + mode)
    for fl, d in (res.get("unix_sim800l") or {}).items():
        bad += ["tls sim800l %s %s" % (fl, m) for m, r in d.items() if "error" in r]
    pc = res.get("pico") or {}
    if "error" in pc:
        bad.append("tls pico")
    bad += ["tls pico handshake " + k for k, r in pc.get("handshake", {}).items() if "error" in r]
    bad += ["tls pico round %s %s" % (fl, m) for fl, d in pc.get("round", {}).items() for m, r in d.items()
            if "error" in r or "failed_passes" in r]
    return bad


# ---- the table -------------------------------------------------------------------

def _sp(s, f):
    """'median (min–max)' of a summary, or the median alone when every pass agrees."""
    if not s:
        return "—"
    if f(s["min"]) == f(s["max"]):
        return f(s["median"])
    return "%s (%s–%s)" % (f(s["median"]), f(s["min"]), f(s["max"]))


def table(res):
    L = []
    B = lambda v: "%d B" % round(v)  # noqa: E731
    KB = lambda v: "%.1f KB" % (v / 1024)  # noqa: E731
    pc = res.get("pico") or {}
    if "error" in pc:
        L += ["Emulated Pico, TLS: FAILED: %s" % pc["error"][-300:], ""]
    hs = pc.get("handshake") or {}
    if hs:
        cols = [(k, lbl) for k, lbl in KEYS if k in hs]
        n = max([hs[k].get("n", 0) for k, _ in cols if "error" not in hs[k]] or [0])
        L.append("| emulated Pico (%s), TLS 1.2 handshake through the SIM800L simulator (async driver); "
                 "median (min–max) of %d connects | %s |" % (pc["image"]["file"], n, " | ".join(
                     "%s server" % lbl for _, lbl in cols)))
        L.append("|---|" + "---|" * len(cols))
        rows = (("board time of connect() (ticks_ms: handshake + MQTT CONNECT)", "ms",
                 lambda v: "%.2f s" % (v / 1000)),
                ("CPU cycles (emulator's count)", "cycles", lambda v: "%.0f M" % (v / 1e6)),
                ("longest the event loop was held at a stretch (another task's longest wait for its turn)",
                 "gap_ms", lambda v: "%d ms" % v),
                ("AT round trips", "at", lambda v: "%d" % v),
                ("UART bytes, board → modem / modem → board", None, None),
                ("heap held while connected (free before − free after connect, both after gc.collect())",
                 "held", B),
                ("peak heap during connect() (free before − lowest gc.mem_free() sampled every 2 ms, "
                 "garbage included)", "peak", B),
                ("heap left for the app while connected (gc.mem_free() after gc.collect())", "left", KB))
        for name, f, fm in rows:
            cells = []
            for k, _ in cols:
                h = hs[k]
                if "error" in h:
                    cells.append("failed")
                elif f is None:
                    cells.append("%s / %s" % (_sp(h["tx"], lambda v: "%d" % v), _sp(h["rx"], lambda v: "%d" % v)))
                else:
                    cells.append(_sp(h[f], fm))
            L.append("| %s | %s |" % (name, " | ".join(cells)))
        lefts = [hs[k]["left"]["min"] for k, _ in cols if "error" not in hs[k]]
        if lefts:
            least = min(lefts)
            L.append("")
            L.append("Heap left while connected in TLS, the least of any connect: %.1f KB (%d B) of the %.1f KB "
                     "free at the start of the run: the bound (at least 100 KB) %s." % (
                         least / 1024, least, hs[cols[0][0]].get("free_at_start", 0) / 1024,
                         "holds" if least >= 100 * 1024 else "does NOT hold"))
        L.append("")
    rd = pc.get("round") or {}
    if rd:
        cols = [(fl, m) for fl in ("async", "sync") for m in ("plain", "tls") if m in rd.get(fl, {})]
        passes = max([rd[fl][m].get("passes", 0) for fl, m in cols] or [0])
        L.append("| emulated Pico, round (publish 64 B QoS 0 to own subscription + receive it) through the "
                 "SIM800L simulator; median (min–max) of %d passes | %s |" % (passes, " | ".join(
                     "ours, %s driver, %s" % (fl, "TLS (P-256 server)" if m == "tls" else "plaintext")
                     for fl, m in cols)))
        L.append("|---|" + "---|" * len(cols))
        rows = (("heap per round", "heap", B),
                ("board time per round (ticks_us)", "us", lambda v: "%.1f ms" % (v / 1000)),
                ("CPU cycles per round", "cycles", lambda v: "%.2f M" % (v / 1e6)),
                ("AT round trips per round", "at_commands", lambda v: "%.1f" % v),
                ("UART bytes per round", "uart_bytes", lambda v: "%d" % round(v)))
        for name, key, fm in rows:
            cells = []
            for fl, m in cols:
                r = rd[fl][m]
                vals = (r.get("roundtrip") or {}).get(key + "_passes") or []
                cells.append("failed" if "error" in r else _sp(summary(vals), fm))
            L.append("| %s | %s |" % (name, " | ".join(cells)))
        L.append("| heap in use after connect() and subscribe() (client and driver; in TLS, the session too) | %s |" % (
            " | ".join(
                "failed" if "error" in rd[fl][m] else _sp(summary(rd[fl][m]["heap_in_use_after_connect_passes"]), B)
                for fl, m in cols)))
        L.append("")
    ux = res.get("unix") or {}
    sim = res.get("unix_sim800l") or {}
    if ux:
        L.append("| build/micropython (unix port), ours, round: publish 64 B QoS 0 to own subscription + "
                 "receive it | plaintext | TLS (P-256 server) | TLS ÷ plaintext |")
        L.append("|---|---|---|---|")
        us = lambda v: "%d µs" % round(v)  # noqa: E731

        def ratio(a, b):
            return "%.2fx" % (a / b) if a is not None and b else "—"
        pl, tl = ux.get("plain", {}), ux.get("tls", {})
        hp, ht = (pl.get("heap_per_round") or {}).get("median"), (tl.get("heap_per_round") or {}).get("median")
        L.append("| native socket, mosquitto on loopback: heap per round (n=%d) | %s | %s | %s |" % (
            ux.get("n", 0), _sp(pl.get("heap_per_round"), B), _sp(tl.get("heap_per_round"), B),
            ratio(ht, hp) if hp else ("same" if hp == ht else "—")))
        L.append("| native socket: round trip median, median (min–max) of %d passes | %s | %s | %s |" % (
            len((pl.get("median_us") or {}).get("passes", [])), _sp(pl.get("median_us"), us),
            _sp(tl.get("median_us"), us), _sp(ux.get("rt_ratio"), lambda v: "%.2fx" % v)))
        L.append("| native socket: round trip p99 | %s | %s | |" % (_sp(pl.get("p99_us"), us),
                                                                   _sp(tl.get("p99_us"), us)))
        for fl in ("async", "sync"):
            d = sim.get(fl) or {}
            p, t = d.get("plain") or {}, d.get("tls") or {}
            if not d:
                continue
            if "error" in p or "error" in t:
                L.append("| SIM800L simulator, %s driver | %s | %s | |" % (
                    fl, "failed" if "error" in p else "", "failed" if "error" in t else ""))
                continue
            pr, tr = p["roundtrip"], t["roundtrip"]
            L.append("| SIM800L simulator, %s driver: heap per round (n=%d; client + driver) | %d B | %d B | %s |"
                     % (fl, pr["n"], round(pr["heap"]), round(tr["heap"]), ratio(tr["heap"], pr["heap"])))
            L.append("| SIM800L simulator, %s driver: time per round | %.1f ms | %.1f ms | %s |" % (
                fl, pr["us"] / 1000, tr["us"] / 1000, ratio(tr["us"], pr["us"])))
            L.append("| SIM800L simulator, %s driver: AT round trips / UART bytes per round | %.1f / %d | "
                     "%.1f / %d | |" % (fl, pr["at_commands"], round(pr["uart_bytes"]), tr["at_commands"],
                                        round(tr["uart_bytes"])))
            pc_, tc = p["connect"], t["connect"]
            L.append("| SIM800L simulator, %s driver: connect(): AT round trips / UART bytes / time | "
                     "%d / %d / %.0f ms | %d / %d / %.0f ms | |" % (
                         fl, pc_["at_commands"], pc_["uart_tx"] + pc_["uart_rx"], pc_["us"] / 1000,
                         tc["at_commands"], tc["uart_tx"] + tc["uart_rx"], tc["us"] / 1000))
        L.append("")
    return "\n".join(L)


DOC_BEGIN = "<!-- bench:tls:begin (bench/run.py rewrites this part) -->"
DOC_END = "<!-- bench:tls:end -->"


def update_doc(doc, res, versions):
    """Rewrite the TLS figures between DOC_BEGIN and DOC_END in doc."""
    import re
    if not os.path.exists(doc):
        return False
    with open(doc) as f:
        text = f.read()
    if DOC_BEGIN not in text or DOC_END not in text:
        return False
    block = "%s\n\nLatest run: %s, %s; the TLS part took %s s.\n\n%s\n%s" % (
        DOC_BEGIN, versions.get("machine"), (versions.get("micropython") or "?").split(" on ")[0],
        res.get("duration_s"), table(res), DOC_END)
    text = re.sub(re.escape(DOC_BEGIN) + ".*?" + re.escape(DOC_END), lambda m: block, text, flags=re.S)
    with open(doc, "w") as f:
        f.write(text)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--no-build", action="store_true", help="use firmware/*.uf2 as it is")
    ap.add_argument("--no-pico", action="store_true")
    a = ap.parse_args()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    res = run_all(log, a.smoke, not a.no_build, not a.no_pico)
    log(table(res))
    print(json.dumps(res, indent=1, sort_keys=True))
    return 1 if failures(res) else 0


if __name__ == "__main__":
    sys.exit(main())

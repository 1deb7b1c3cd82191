#!/usr/bin/env python3
"""Push a signed app to MQTT devices running modules/app_runner.py (docs/ota.md).

    ota_push.py keygen    --keys keys.json [--device ID ...]
    ota_push.py provision --keys keys.json --id ID [--group G] --app app.py --version N
                          --server HOST [--port P] --out DIR
    ota_push.py push      --keys keys.json --app app.py --version N
                          (--device ID ... | --group G) --server HOST [--port P]
    ota_push.py status    [--group G] --server HOST [--port P]

keys.json holds {"fleet": hex, "devices": {id: hex}}; a device's own key
wins over the fleet key.  Keep it off the devices' network: only MACs go on
the wire.  `push` exits 0 only when every target device confirmed the new
version (already being on it counts).
"""
import argparse
import hashlib
import hmac
import json
import os
import secrets
import struct
import sys
import threading
import time

ANN_LEN = 79
CHUNK_HEAD = 5
RETRYABLE = ("sha256 mismatch", "size mismatch", "transfer stalled", "error: ")  # worth sending again


# ---- the wire format (mirrors modules/ota.py) ------------------------------

def announcement(key, version, image, chunk, nonce):
    body = (b"A" + struct.pack(">IIH", version, len(image), chunk)
            + hashlib.sha256(image).digest() + struct.pack(">I", nonce))
    return body + hmac.new(key, body, hashlib.sha256).digest()


def chunk_msg(version, seq, data):
    return b"D" + struct.pack(">HH", version & 0xFFFF, seq) + data


def chunk_size(buf, *topics):
    """Data bytes per chunk so that one PUBLISH (QoS 1) fits a device's receive buffer."""
    return buf - 2 - 2 - CHUNK_HEAD - max(len(t) for t in topics)


class Topics:
    def __init__(self, prefix="ota"):
        self.prefix = prefix

    def dev(self, i):
        return "%s/d/%s" % (self.prefix, i)

    def grp(self, g):
        return "%s/g/%s" % (self.prefix, g)

    def status(self, i="+"):
        return "%s/s/%s" % (self.prefix, i)


# ---- keys and provisioning ---------------------------------------------------

def load_keys(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"devices": {}}


def key_for(keys, device):
    k = keys.get("devices", {}).get(device) or keys.get("fleet")
    if not k:
        raise SystemExit("no key for %s in the keys file (run keygen)" % device)
    return bytes.fromhex(k)


def keygen(path, devices=()):
    keys = load_keys(path)
    keys.setdefault("devices", {})
    if not devices and "fleet" not in keys:
        keys["fleet"] = secrets.token_hex(32)
    for d in devices:
        keys["devices"][d] = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keys, f, indent=1)
    return keys


def provision(keys, device, out, app, version, server, port=1883, group="", **extra):
    """The files a device needs, in folder out: copy them to its filesystem."""
    os.makedirs(out, exist_ok=True)
    conf = {"id": device, "group": group, "key": key_for(keys, device).hex(),
            "mqtt": {"server": server, "port": port, "keepalive": 60}}
    mqtt = extra.pop("mqtt", None)
    if mqtt:
        conf["mqtt"].update(mqtt)
    conf.update(extra)
    with open(os.path.join(out, "ota.json"), "w") as f:
        json.dump(conf, f)
    with open(os.path.join(out, "app-%d.py" % version), "wb") as f:
        f.write(app)
    with open(os.path.join(out, "ota-state.json"), "w") as f:
        json.dump({"cur": version, "prev": 0, "floor": version, "trial": 0}, f)
    with open(os.path.join(out, "main.py"), "w") as f:
        f.write("import app_runner\napp_runner.run()\n")


# ---- pushing ---------------------------------------------------------------

class Target:
    def __init__(self, device):
        self.id = device
        self.status = None          # last status dict
        self.start_version = None
        self.state = "waiting"      # waiting, sending, trial, done, failed
        self.result = ""
        self.progress = 0.0
        self.attempts = 0
        self.last_heard = 0.0
        self.resent_from = None
        self.resent_at = 0.0


class Pusher:
    """One push of one image to many devices over paho-mqtt."""

    def __init__(self, server, port=1883, prefix="ota", client_id=None, user=None, password=None):
        import paho.mqtt.client as paho
        self.topics = Topics(prefix)
        self.lock = threading.Lock()
        self.seen = {}              # device -> last status dict (retained included)
        self.events = []            # (device, status) in arrival order
        self.cv = threading.Condition(self.lock)
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2,
                             client_id=client_id or "ota-push-" + secrets.token_hex(4))
        if user:
            self.c.username_pw_set(user, password)
        self.c.max_queued_messages_set(0)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(0.1, 2)
        self.connected = threading.Event()
        self.c.connect(server, port)
        self.c.loop_start()
        if not self.connected.wait(10):
            raise SystemExit("no connection to the broker %s:%d" % (server, port))

    def _on_connect(self, c, userdata, flags, rc, props=None):
        c.subscribe(self.topics.status(), qos=1)
        self.connected.set()

    def _on_message(self, c, userdata, m):
        try:
            st = json.loads(m.payload)
        except ValueError:
            return
        with self.cv:
            self.seen[st.get("id")] = st
            self.events.append((st.get("id"), st))
            self.cv.notify_all()

    def settle(self, quiet=0.3, most=3.0):
        """Wait for the retained statuses to come in."""
        end = time.monotonic() + most
        n = -1
        while time.monotonic() < end:
            with self.lock:
                k = len(self.events)
            if k == n:
                break
            n = k
            time.sleep(quiet)
        return dict(self.seen)

    def publish(self, topic, payload):
        return self.c.publish(topic, payload, qos=1)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()

    def push(self, keys, image, version, devices=(), group=None, buf=None, timeout=120,
             retries=3, ask_ms=None, show=None):
        """Returns {device: Target}; every target ends done or failed."""
        known = self.settle()
        if group:
            devices = sorted(d for d, s in known.items() if s.get("grp") == group)
        targets = {d: Target(d) for d in devices}
        if not targets:
            return targets
        t = self.topics
        bufs = [known.get(d, {}).get("buf") or 128 for d in targets]
        if buf:
            bufs.append(buf)
        stream_topics = [t.grp(group)] if group and len(targets) > 1 else []
        chunk = chunk_size(min(bufs), *(stream_topics + [t.dev(d) for d in targets]))
        chunks = [chunk_msg(version, i, image[o:o + chunk])
                  for i, o in enumerate(range(0, len(image), chunk))]
        nonce = secrets.randbits(32)
        anns = {}
        for d, tg in targets.items():
            st = known.get(d) or {}
            tg.start_version = st.get("v")
            if st.get("v") == version and st.get("st") in ("run", "up"):
                tg.state, tg.result, tg.progress = "done", "already on %d" % version, 1.0
                continue
            anns[d] = announcement(key_for(keys, d), version, image, chunk, nonce)
        todo = [d for d in targets if targets[d].state != "done"]

        def start(devs, topic=None):
            for d in devs:
                targets[d].attempts += 1
                targets[d].state = "sending"
                targets[d].last_heard = time.monotonic()
                self.publish(t.dev(d), anns[d])
            for d in (devs if topic is None else [None]):
                for m in chunks:
                    self.publish(topic or t.dev(d), m)

        with self.lock:
            first_event = len(self.events)
        if todo:
            start(todo, t.grp(group) if stream_topics else None)
        deadline = time.monotonic() + timeout
        stall = (ask_ms or 3000) / 1000 * 3
        cursor = first_event
        while time.monotonic() < deadline:
            with self.cv:
                if cursor == len(self.events):
                    self.cv.wait(0.2)
                new = self.events[cursor:]
                cursor = len(self.events)
            now = time.monotonic()
            for d, st in new:
                tg = targets.get(d)
                if tg is None or tg.state in ("done", "failed"):
                    continue
                tg.last_heard = now
                tg.status = st
                mine = st.get("p") == nonce
                if st.get("v") == version and st.get("st") == "run":
                    tg.state, tg.progress = "done", 1.0
                    tg.result = "updated %s -> %d" % (tg.start_version, version)
                elif st.get("rb") == version and mine:
                    tg.state, tg.result = "failed", "rolled back: " + st.get("why", "")
                elif st.get("st") == "refused" and st.get("t") == version and mine:
                    why = st.get("why", "")
                    if any(why.startswith(r) for r in RETRYABLE) and tg.attempts <= retries:
                        start([d])
                    else:
                        tg.state, tg.result = "failed", "refused: " + why
                elif st.get("st") == "refused" and st.get("t") == version:
                    tg.state, tg.result = "failed", "refused: " + st.get("why", "")
                elif mine and st.get("st") == "rx":
                    tg.progress = 0.9 * st["n"] / max(1, st["of"])
                elif mine and st.get("st") == "need":
                    n = st["n"]
                    if tg.resent_from is None or n < tg.resent_from or now - tg.resent_at > stall / 3:
                        tg.resent_from, tg.resent_at = n, now
                        for m in chunks[n:]:
                            self.publish(t.dev(d), m)
                elif mine and st.get("st") in ("ok", "trial"):
                    tg.state, tg.progress = "trial", 0.95     # installed: now its health decides
            for d, tg in targets.items():
                if tg.state == "sending" and now - tg.last_heard > stall:
                    if tg.attempts <= retries:
                        start([d])          # silent: announce again (it resumes or restarts)
                    else:
                        tg.state, tg.result = "failed", "no answer"
            if show:
                show(targets)
            if all(tg.state in ("done", "failed") for tg in targets.values()):
                break
        for tg in targets.values():
            if tg.state not in ("done", "failed"):
                tg.state, tg.result = "failed", "timed out (%s)" % ((tg.status or {}).get("st") or "silent")
        if show:
            show(targets, final=True)
        return targets


# ---- output ------------------------------------------------------------------

class Bars:
    """One progress bar per device; redrawn in place on a terminal."""

    def __init__(self, out=sys.stderr):
        self.out = out
        self.tty = out.isatty()
        self.drawn = 0
        self.last = 0.0

    def __call__(self, targets, final=False):
        if not self.tty or (not final and time.monotonic() - self.last < 0.2):
            return
        self.last = time.monotonic()
        lines = []
        for d in sorted(targets):
            tg = targets[d]
            n = int(tg.progress * 30)
            lines.append("%-20s [%s%s] %3d%% %s" % (d[:20], "#" * n, "." * (30 - n),
                                                   tg.progress * 100, tg.result or tg.state))
        if self.drawn:
            self.out.write("\x1b[%dF" % self.drawn)
        self.out.write("".join(line + "\x1b[K\n" for line in lines))
        self.out.flush()
        self.drawn = len(lines)


def table(targets, version):
    rows = [("device", "was", "now", "result")]
    for d in sorted(targets):
        tg = targets[d]
        st = tg.status or {}
        now = st.get("v", tg.start_version) if tg.state != "done" else version
        rows.append((d, str(tg.start_version), str(now), tg.result))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("%-*s  %-*s  %-*s  %s" % (w[0], r[0], w[1], r[1], w[2], r[2], r[3])
                     for r in rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def broker(p):
        p.add_argument("--server", required=True)
        p.add_argument("--port", type=int, default=1883)
        p.add_argument("--user")
        p.add_argument("--password")
        p.add_argument("--prefix", default="ota")

    k = sub.add_parser("keygen", help="create the fleet key, or keys for the given devices")
    k.add_argument("--keys", required=True)
    k.add_argument("--device", action="append", default=[])
    p = sub.add_parser("provision", help="write the files of one device into a folder")
    p.add_argument("--keys", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--group", default="")
    p.add_argument("--app", required=True)
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="another ota.json setting, e.g. health_ms=30000")
    u = sub.add_parser("push", help="push an app to devices; exit 1 if any failed")
    broker(u)
    u.add_argument("--keys", required=True)
    u.add_argument("--app", required=True)
    u.add_argument("--version", type=int, required=True)
    u.add_argument("--device", action="append", default=[])
    u.add_argument("--group")
    u.add_argument("--timeout", type=float, default=300)
    u.add_argument("--retries", type=int, default=3)
    u.add_argument("--buf", type=int, help="smallest device receive buffer (default: as reported)")
    u.add_argument("--ask-ms", type=int, default=3000, help="the devices' retry_ms")
    s = sub.add_parser("status", help="who runs which version")
    broker(s)
    s.add_argument("--group")
    a = ap.parse_args(argv)

    if a.cmd == "keygen":
        keygen(a.keys, a.device)
        print("keys in %s (mode 600)" % a.keys)
        return 0
    if a.cmd == "provision":
        extra = {}
        for kv in a.set:
            name, _, val = kv.partition("=")
            extra[name] = json.loads(val)
        with open(a.app, "rb") as f:
            app = f.read()
        provision(load_keys(a.keys), a.id, a.out, app, a.version, a.server, a.port, a.group,
                  **extra)
        print("device %s: files in %s; copy them to the board: mpremote fs cp %s/* :"
              % (a.id, a.out, a.out))
        return 0
    pusher = Pusher(a.server, a.port, a.prefix, user=a.user, password=a.password)
    try:
        if a.cmd == "status":
            seen = pusher.settle()
            print("%-20s %-8s %-10s %s" % ("device", "version", "state", "note"))
            for d in sorted(seen):
                st = seen[d]
                if a.group and st.get("grp") != a.group:
                    continue
                note = st.get("why", "") + (" (rolled back %s)" % st["rb"] if st.get("rb") else "")
                print("%-20s %-8s %-10s %s" % (d, st.get("v"), st.get("st"), note))
            return 0
        if not a.device and not a.group:
            raise SystemExit("push: give --device (one or more) or --group")
        with open(a.app, "rb") as f:
            image = f.read()
        t0 = time.monotonic()
        targets = pusher.push(load_keys(a.keys), image, a.version, a.device, a.group,
                              buf=a.buf, timeout=a.timeout, retries=a.retries,
                              ask_ms=a.ask_ms, show=Bars())
    finally:
        pusher.close()
    if not targets:
        print("no devices to update")
        return 1
    print(table(targets, a.version))
    failed = [d for d, tg in targets.items() if tg.state != "done"]
    print("%d of %d devices on version %d in %.1f s" % (len(targets) - len(failed), len(targets),
                                                       a.version, time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

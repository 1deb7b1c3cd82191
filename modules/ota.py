"""OTA app updates over MQTT: signed, streamed in small chunks, atomic, with rollback.

The agent rides on an AsyncMQTTClient that app_runner owns (see docs/ota.md
for the whole flow).  Topics, with prefix P (default b"ota"):

    P/d/<id>     in:  announcements and chunks for this device (QoS 1)
    P/g/<group>  in:  chunks (or announcements) for the whole group
    P/s/<id>     out: status, JSON; retained, except progress ("rx") and
                      requests ("need")

Announcement, 79 bytes:  b"A" ver:u32 size:u32 chunk:u16 sha256:32 nonce:u32
                         mac:32 = HMAC-SHA256(key, the 47 bytes before it)
Chunk:                   b"D" ver:u16 (low bits) seq:u16 data (chunk bytes;
                         the last one holds the rest)

An announcement is refused (status "refused", "why" says why) when its MAC
is wrong, its version is not above every version this device ever ran
(replays), it is bigger than max_size or the free space, or its chunks do
not fit the receive buffer.  Chunks are written in order to ota-dl.tmp, so
the image is never held in RAM; a gap or silence makes the device ask for
the chunk it wants next ("need").  At the end the file is re-read and its
size and SHA-256 checked, then swapped in: rename to app-<ver>.py, then one
atomic rename of the state file makes it current.  The file names hold a
'-', so no `import` can ever reach them: an OTA'd file never shadows a
frozen module.

The state is kept twice (ota-state.json, then ota-state2.json), each copy
written to a temp file and renamed over, each carrying a checksum ("ck") of
its own text.  A copy that is truncated, empty or has one flipped bit fails
the check and the other copy is used (and the bad one rewritten); with both
gone, the state is rebuilt from the app-<n>.py files on flash.  So a
damaged file never lowers the replay floor below the newest app on flash,
and never makes the boot delete the last good app.
"""
import os
import json
import hashlib
from binascii import hexlify, unhexlify

from mpcompat import ticks_ms, ticks_diff

ANN = 0x41          # b"A"
CHUNK = 0x44        # b"D"
ANN_LEN = 79
SIGNED = 47         # announcement bytes covered by the MAC
CHUNK_HEAD = 5      # b"D" + ver + seq
STATE = "ota-state.json"
STATE_TMP = "ota-state.tmp"
STATE2 = "ota-state2.json"      # the second copy, written after the first
STATE2_TMP = "ota-state2.tmp"
_CK = b', "ck": "'              # the checksum field, always written last
_STATE_MAX = 1024               # a bigger state file is damage, not a state
DL = "ota-dl.tmp"


# ---- signatures ---------------------------------------------------------

def hmac_sha256(key, msg):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(k ^ 0x36 for k in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(k ^ 0x5C for k in key))
    outer.update(inner.digest())
    return outer.digest()


def same(a, b):
    """Constant-time comparison of two byte strings."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0


def u32(b, i):
    return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]


# ---- files and state ------------------------------------------------------

def path(d, name):
    return d + "/" + name if d else name


def app_file(d, ver):
    return path(d, "app-%d.py" % ver)


def exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def remove(p):
    try:
        os.remove(p)
    except OSError:
        pass


def replace(src, dst):
    """Rename src over dst: atomic on littlefs and POSIX.  FAT refuses to
    replace: then dst goes first, and load_state() falls back to src."""
    try:
        os.rename(src, dst)
    except OSError:
        os.remove(dst)
        os.rename(src, dst)


def _ck(body):
    return hexlify(hashlib.sha256(body).digest()[:4])


def _valid(st):
    """A state we could have written: the numbers are there and make sense."""
    if not isinstance(st, dict) or "cur" not in st or "floor" not in st:
        return False
    for k in ("cur", "prev", "floor", "trial", "tries"):
        v = st.get(k, 0)
        if type(v) is not int or v < 0:
            return False
    return st.get("trial", 0) in (0, 1) and st["floor"] >= st["cur"] and st["floor"] >= st.get("prev", 0)


def _read(p, checked):
    """The state in file p, or None.  checked: only a copy whose checksum
    holds; else only a plain JSON state without one (as provisioned), which
    load_state() then checks against the flash: a copy whose checksum is
    there but wrong is never trusted."""
    try:
        with open(p, "rb") as f:
            text = f.read(_STATE_MAX + 1)
        if len(text) > _STATE_MAX:
            return None
        i = text.rfind(_CK)
        if checked:
            if i < 0:
                return None
            body = text[:i] + b"}"
            if text[i + len(_CK):] != _ck(body) + b'"}':
                return None
            text = body
        elif i >= 0:
            return None
        st = json.loads(text)
    except Exception:               # noqa: B902 -- OSError, ValueError, UnicodeError...: damage
        return None
    if not _valid(st):
        return None
    st.pop("ck", None)              # a checksum field whose marker was damaged
    return st


def _app_versions(d):
    vs = []
    for name in os.listdir(d or "."):
        if name.startswith("app-") and name.endswith(".py") and name[4:-3].isdigit():
            vs.append(int(name[4:-3]))
    return sorted(vs)


def _rebuild(d):
    """Both copies lost: the newest app on flash runs on trial (the one
    before it is its fallback); the floor is that newest version."""
    vs = _app_versions(d)
    if not vs:
        return None
    prev = vs[-2] if len(vs) > 1 else 0
    print("ota: state unreadable, rebuilt from app files", vs)
    return {"cur": vs[-1], "prev": prev, "floor": vs[-1], "trial": 1 if prev else 0, "tries": 0}


def _fits_flash(d, st):
    """An unchecked state must match the apps on flash: each is its cur or
    prev (so the boot deletes none), none above its floor."""
    return all(v in (st["cur"], st.get("prev", 0)) and v <= st["floor"] for v in _app_versions(d))


def _first(d, checked):
    for name in (STATE, STATE_TMP, STATE2, STATE2_TMP):
        st = _read(path(d, name), checked)
        if st is not None and (checked or _fits_flash(d, st)):
            return name, st
    return None, None


def load_state(d):
    """The state dict ({"cur", "prev", "floor", "trial", "tries", ...}) or
    None (no state and no app).  Takes the first copy whose checksum holds,
    in the order they are written: ota-state.json, its temp (a FAT swap cut
    short), ota-state2.json, its temp; else a plain unchecked one; else
    rebuilds it from the app files.  Rewrites both copies unless the first
    was good and the second is identical to it."""
    name, st = _first(d, True)
    if name == STATE and _same_file(d):
        return st                   # both copies good and alike: nothing to write
    if st is None:
        st = _first(d, False)[1] or _rebuild(d)
    if st is not None:
        try:
            save_state(d, st)
        except OSError as e:        # a full flash: the copy we read stays as it was
            print("ota: state not rewritten:", e)
    return st


def _same_file(d):
    try:
        with open(path(d, STATE), "rb") as a, open(path(d, STATE2), "rb") as b:
            return a.read(_STATE_MAX) == b.read(_STATE_MAX)
    except OSError:
        return False


def _write(p, data):
    with open(p, "wb") as f:
        f.write(data)


def text(s, n=120):
    """s as printable ASCII, at most n characters: a reason that goes into
    the state file (JSON escapes a non-ASCII character as up to 12 bytes; a
    state grown past _STATE_MAX would read as damage)."""
    return "".join(c if " " <= c <= "~" else "?" for c in str(s)[:n])


def save_state(d, st):
    """Both copies, each to a temp file renamed over the copy: the first
    rename is the switch; a cut before the second leaves the first newer,
    which load_state() prefers."""
    st = {k: (text(v) if type(v) is str else v) for k, v in st.items() if k != "ck"}
    body = json.dumps(st).encode()
    data = body[:-1] + _CK + _ck(body) + b'"}'
    for name, tmp in ((STATE, STATE_TMP), (STATE2, STATE2_TMP)):
        _write(path(d, tmp), data)
        replace(path(d, tmp), path(d, name))


def clean(d, st):
    """Remove leftovers: a cut download, and app files neither current nor previous."""
    remove(path(d, DL))
    remove(path(d, STATE_TMP))
    remove(path(d, STATE2_TMP))
    keep = ("app-%d.py" % st.get("cur", 0), "app-%d.py" % st.get("prev", 0))
    for name in os.listdir(d or "."):
        if name.startswith("app-") and name.endswith(".py") and name not in keep:
            remove(path(d, name))


def _is(buf, n, topic):
    """buf[0:n] == topic, without allocating."""
    if n != len(topic):
        return False
    i = 0
    while i < n:
        if buf[i] != topic[i]:
            return False
        i += 1
    return True


# ---- the agent -------------------------------------------------------------

class Agent:
    def __init__(self, client, conf, state, buf):
        self.c = client
        self.id = conf["id"]
        pre = conf.get("prefix", "ota")
        self.t_dev = ("%s/d/%s" % (pre, self.id)).encode()
        self.group = conf.get("group") or ""
        self.t_grp = ("%s/g/%s" % (pre, self.group)).encode() if self.group else b""
        self.t_status = ("%s/s/%s" % (pre, self.id)).encode()
        self.key = unhexlify(conf["key"])
        self.dir = conf.get("dir", "")
        self.max_size = conf.get("max_size", 65536)
        self.retry_ms = conf.get("retry_ms", 3000)
        self.give_up = conf.get("give_up", 10)
        self.buf = buf
        self.st = state
        self.out = []               # statuses waiting for report()
        self.reboot = False
        self.f = None               # the download, while one runs
        self.ver = self.nonce = 0
        self.asked_at = 0
        self._va = self._vb = -1    # cached payload view (no allocation per chunk)
        self._v = None

    async def start(self):
        await self.c.subscribe(self.t_dev, qos=1)
        if self.t_grp:
            await self.c.subscribe(self.t_grp, qos=1)

    def wants(self, tl):
        return _is(self.buf, tl, self.t_dev) or (self.t_grp and _is(self.buf, tl, self.t_grp))

    # ---- status ----

    def status(self, st, retain=True, **kw):
        m = {"id": self.id, "v": self.st.get("cur", 0), "st": st}
        if retain:                  # the last word of a device: who, where, what fits
            m["grp"] = self.group
            m["buf"] = len(self.buf)
        m.update(kw)
        self.out.append((json.dumps(m).encode(), retain))

    def _xfer(self, st, retain=True, **kw):
        self.status(st, retain, t=self.ver, p=self.nonce, **kw)

    async def report(self):
        while self.out:
            msg, retain = self.out.pop(0)
            await self.c.publish(self.t_status, msg, retain, 1 if retain else 0)

    # ---- messages ----

    def handle(self, tl, end):
        """A message on one of our topics sits in buf: topic [0:tl], payload [tl:end]."""
        b = self.buf
        if end - tl >= CHUNK_HEAD and b[tl] == CHUNK:
            self._chunk(b, tl + 1, end)
        elif end > tl and b[tl] == ANN:
            self._announce(bytes(b[tl:end]))

    def failed(self, e):
        """handle() raised (a full flash, a bad file system): drop the transfer, say why."""
        self.f = None
        remove(path(self.dir, DL))
        self._xfer("refused", why="error: %s: %s" % (type(e).__name__, e))

    def _announce(self, a):
        if len(a) != ANN_LEN:
            return self.status("refused", why="malformed announcement (%d bytes)" % len(a))
        ver, size, chunk = u32(a, 1), u32(a, 5), (a[9] << 8) | a[10]
        sha, nonce = a[11:43], u32(a, 43)
        why = None
        if not same(hmac_sha256(self.key, a[:SIGNED]), a[SIGNED:]):
            why = "bad signature"
        elif self.f and ver == self.ver and sha == self.sha:
            self.nonce = nonce          # announced again (a retry): carry on
            self._ask(True)
            return
        elif self.st.get("trial"):
            why = "busy: version %d is on trial" % self.st["cur"]
        elif ver <= self.st.get("floor", 0):
            why = "version %d is not newer than %d" % (ver, self.st.get("floor", 0))
        elif not 0 < size <= self.max_size:
            why = "size %d not in 1..%d bytes" % (size, self.max_size)
        elif chunk < 1 or 4 + CHUNK_HEAD + chunk + max(len(self.t_dev), len(self.t_grp)) > len(self.buf):
            why = "chunk %d too big for a %d-byte receive buffer" % (chunk, len(self.buf))
        else:
            try:
                s = os.statvfs(self.dir or ".")
                if s[0] * s[4] < size + 4096:
                    why = "no room: %d bytes free" % (s[0] * s[4])
            except (OSError, AttributeError):
                pass
        if why:
            return self.status("refused", t=ver, p=nonce, why=why)
        self._abort()
        self.ver, self.size, self.chunk, self.sha, self.nonce = ver, size, chunk, sha, nonce
        self.n = (size + chunk - 1) // chunk
        self.every = max(4, self.n // 5)   # progress reports: about 5 per transfer
        self.next = 0
        self.asked = -1
        self.asks = 0
        self.f = open(path(self.dir, DL), "wb")
        self.last = ticks_ms()
        self._xfer("rx", False, n=0, of=self.n)

    def _chunk(self, b, i, end):
        if self.f is None or ((b[i] << 8) | b[i + 1]) != self.ver & 0xFFFF:
            return                          # not for the transfer running now
        seq = (b[i + 2] << 8) | b[i + 3]
        i += 4
        if seq != self.next:
            if seq > self.next:
                self._ask(False)            # one went missing
            return                          # a duplicate
        if end - i != min(self.chunk, self.size - seq * self.chunk):
            self._ask(False)                # cut short: ask again
            return
        if i != self._va or end != self._vb:
            self._v, self._va, self._vb = b[i:end], i, end
        self.f.write(self._v)
        self.next = seq + 1
        self.last = ticks_ms()
        self.asks = 0
        if self.next == self.n:
            self._finish()
        elif self.next % self.every == 0:
            self._xfer("rx", False, n=self.next, of=self.n)

    def _ask(self, always):
        """Ask for the chunk we want next, at most once per retry_ms for one seq."""
        now = ticks_ms()
        if always or self.asked != self.next or ticks_diff(now, self.asked_at) >= self.retry_ms:
            self.asked, self.asked_at = self.next, now
            self._xfer("need", False, n=self.next, of=self.n)

    def tick(self):
        """Called when idle: a silent transfer asks again, then gives up."""
        if self.f is not None and ticks_diff(ticks_ms(), self.last) >= self.retry_ms:
            self.asks += 1
            self.last = ticks_ms()
            if self.asks > self.give_up:
                n = self.next
                self._abort()
                self._xfer("refused", why="transfer stalled at chunk %d of %d" % (n, self.n))
            else:
                self._ask(True)

    def _abort(self):
        if self.f is not None:
            self.f.close()
            self.f = None
            remove(path(self.dir, DL))

    def _finish(self):
        self.f.close()
        self.f = None
        dl = path(self.dir, DL)
        why = self._verify(dl)
        if why:
            remove(dl)
            return self._xfer("refused", why=why)
        d, cur = self.dir, self.st.get("cur", 0)
        replace(dl, app_file(d, self.ver))
        st = {"cur": self.ver, "prev": cur, "floor": self.ver, "trial": 1, "tries": 0,
              "p": self.nonce}
        save_state(d, st)
        self.st = st
        clean(d, st)
        self._xfer("ok")
        self.reboot = True

    def _verify(self, p):
        """Re-read what landed on flash: size and SHA-256."""
        if os.stat(p)[6] != self.size:
            return "size mismatch: %d bytes, announced %d" % (os.stat(p)[6], self.size)
        h = hashlib.sha256()
        block = bytearray(64)
        with open(p, "rb") as f:
            while True:
                k = f.readinto(block)
                if not k:
                    break
                h.update(block if k == 64 else block[:k])
        got = h.digest()              # once: MicroPython's hash is final after it
        if got != self.sha:
            return "sha256 mismatch: %s" % hexlify(got[:6]).decode()
        return None

# The runner as the device's last line of defence (issue 11, defects 6 and 10).
#
# Two ways in:
# - As a scenario (tests/scenarios/runner.py runs one `async def f(p)`):
#   damage_state, save_with_cut, boot_state: ota-state.json damage and power
#   cuts while the state is saved, in the folder p["dir"].
# - As the main script of a device process (`<interpreter>
#   tests/scenarios/runner_hardening.py`, params in SCENARIO_PARAMS, cwd =
#   the device's filesystem): app_runner.run(), the whole main.py of a
#   board, with a modem bring-up that fails as p["bringup"] says.  run()
#   never returns; its reset() stand-in ends the process with status 0.
import sys
import os
import json

if sys.implementation.name == "micropython" and __name__ == "__main__":
    sys.path[:] = [sys.argv[0].rsplit("/", 1)[0], ".frozen"]

import ota
import app_runner

STATE = {"cur": 3, "prev": 2, "floor": 5, "trial": 0, "rb": 5, "why": "ValueError: bad v5"}


def _write(p, data):
    with open(p, "wb") as f:
        f.write(data)


def _read(p):
    with open(p, "rb") as f:
        return f.read()


def _damaged(good, how):
    """good (bytes) damaged as how = ["trunc", n] | ["flip", byte, bit] | ["hex", data]."""
    if how[0] == "trunc":
        return good[:how[1]]
    if how[0] == "flip":
        b = bytearray(good)
        b[how[1]] ^= 1 << how[2]
        return bytes(b)
    from binascii import unhexlify
    return unhexlify(how[1])


def _provision(d, apps=(2, 3), st=STATE):
    for name in os.listdir(d):
        os.remove(d + "/" + name)
    for v in apps:
        _write(ota.app_file(d, v), ("# app %d\n" % v).encode())
    ota.save_state(d, st)


def _outcome(d, conf):
    st = app_runner.boot_state(conf)
    return [st.get("cur"), st.get("prev"), st.get("floor"), st.get("trial"),
            sorted(n for n in os.listdir(d) if n.startswith("app-"))]


async def damage_state(p):
    """For each damage in p["cases"] to p["copies"] (state file names): a
    device with app-2 (previous), app-3 (current) and floor 5, saved by this
    interpreter's ota.save_state(); the copies damaged; then a boot's
    app_runner.boot_state().  Returns [cur, prev, floor, trial, apps] per case."""
    d = p["dir"]
    conf = {"dir": d, "trial_boots": 2}
    _provision(d)
    good = {name: _read(d + "/" + name) for name in p["copies"]}
    cases = p["cases"]
    if cases == "every truncation and bit flip":
        n = min(len(g) for g in good.values())
        cases = [["trunc", i] for i in range(n)] + [["flip", i, b] for i in range(n) for b in range(8)]
    seen = {}
    for how in cases:
        _provision(d)
        for name in p["copies"]:
            _write(d + "/" + name, _damaged(good[name], how))
        got = repr(_outcome(d, conf))
        seen.setdefault(got, how)       # each distinct outcome, with the first damage that gave it
    return {"cases": len(cases), "outcomes": seen}


class _Cut:
    """ota's os and open with a power cut right before the Nth file-system
    mutation: prints "CUT N what" and freezes until the test's SIGKILL (the
    same steps as tests/scenarios/ota_device.py).  cut 0: a probe, printing
    "STEP N what" for each step instead (only then: the test's reader waits
    for one line at a time)."""

    def __init__(self, cut):
        self.n, self.cut = 0, cut

    def point(self, what):
        self.n += 1
        if not self.cut:
            print("STEP", self.n, what)
        elif self.n == self.cut:
            print("CUT", self.n, what)
            import time
            while True:
                time.sleep(1)


def _arm(cut):
    c = _Cut(cut)

    class Os:
        def __getattr__(self, name):
            return getattr(os, name)

        def rename(self, a, b):
            c.point("rename %s %s" % (a, b))
            os.rename(a, b)

        def remove(self, a):
            c.point("remove " + a)
            os.remove(a)

    class File:
        def __init__(self, f, name):
            self.f, self.name = f, name

        def write(self, b):
            c.point("write %s %d" % (self.name, len(b)))
            return self.f.write(b)

        def close(self):
            c.point("close " + self.name)
            self.f.close()

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.close()

    def op(name, mode="r"):
        if "w" not in mode:
            return open(name, mode)
        c.point("open " + name)
        return File(open(name, mode), name)

    ota.os = Os()
    ota.open = op


async def save_with_cut(p):
    """Provision (v2 previous, v3 current, floor 5), then with a power cut
    armed at step p["cut"]: phase "install" saves the state that installs v6
    (app-6.py in place, as after the swap's first step); phase "repair"
    damages ota-state.json first, so the boot's load rewrites both copies."""
    d = p["dir"]
    _provision(d)
    if p["phase"] == "install":
        _write(ota.app_file(d, 6), b"# app 6\n")
        _arm(p["cut"])
        ota.save_state(d, {"cur": 6, "prev": 3, "floor": 6, "trial": 1, "tries": 0})
    else:
        _write(d + "/" + ota.STATE, _read(d + "/" + ota.STATE)[:20])
        _arm(p["cut"])
        ota.load_state(d)
    return "no cut"


async def boot_state(p):
    """What the next boot makes of the folder: [cur, prev, floor, trial, apps], files."""
    return _outcome(p["dir"], {"dir": p["dir"], "trial_boots": 2}), sorted(os.listdir(p["dir"]))


# ---- the device process: app_runner.run() ------------------------------------

class _JunkModem:
    """A UART whose modem answers the bring-up with junk in one reply
    (p["bringup"]: "cpin" a non-UTF-8 +CPIN:, "csq" a non-numeric +CSQ:) and
    ERROR to anything it does not know, so the real driver fails."""

    def __init__(self, junk):
        self.junk, self.out, self.cmd = junk, b"", b""

    def write(self, buf, off=0, n=None):
        n = len(buf) - off if n is None else n
        self.cmd += bytes(buf[off:off + n])
        while b"\r" in self.cmd:
            line, self.cmd = self.cmd.split(b"\r", 1)
            self.out += self._answer(line.strip())
        return n

    def _answer(self, cmd):
        if cmd in (b"AT", b"ATE0"):
            return b"\r\nOK\r\n"
        if cmd == b"AT+CPIN?":
            return b"\r\n+CPIN: \xff\xfe\xc3\r\n\r\nOK\r\n" if self.junk == "cpin" else b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
        if cmd in (b"AT+CREG?", b"AT+CGREG?"):
            return b"\r\n" + cmd[2:-1] + b": 0,1\r\n\r\nOK\r\n"
        if cmd == b"AT+CSQ":
            return b"\r\n+CSQ: ab,0\r\n\r\nOK\r\n"
        return b"\r\nERROR\r\n"

    def readinto(self, buf, n=None):
        n = min(len(buf) if n is None else n, len(self.out))
        if not n:
            return None
        buf[:n] = self.out[:n]
        self.out = self.out[n:]
        return n

    def read(self, n=-1):
        b = bytearray(64)
        k = self.readinto(b)
        return bytes(b[:k]) if k else None

    def any(self):
        return len(self.out)


_RAISE = {"UnicodeError": lambda: UnicodeError("junk byte 0xff"), "ValueError": lambda: ValueError("ab"),
          "IndexError": lambda: IndexError("x"), "MemoryError": lambda: MemoryError(),
          "SystemExit": lambda: SystemExit(3)}


def _transport(p):
    """The bring-up: fails p["fails"] times as p["bringup"] says, then the native socket."""
    left = [p.get("fails", 2)]

    async def bring_up():
        if left[0] > 0:
            left[0] -= 1
            kind = p["bringup"]
            print("BRINGUP fails with", kind)
            if kind in _RAISE:
                raise _RAISE[kind]()
            from sim800l import SIM800L
            m = SIM800L(_JunkModem(kind), apn="internet",
                        timeouts={"at": 300, "sync": 600, "sim": 600, "reg": 600})
            await m.start()
            raise AssertionError("the junk modem came up")
        return None, False
    return bring_up


def main():
    p = json.loads(os.getenv("SCENARIO_PARAMS") or "{}")
    print("BOOT", sys.implementation.name)
    if sys.implementation.name == "micropython":
        for m in ("app_runner", "ota"):
            assert "/" not in getattr(sys.modules[m], "__file__", "/"), m + " is not frozen"
    app_runner.run(transport=_transport(p) if p.get("bringup") else None)
    print("RUN RETURNED")
    sys.exit(3)


if __name__ == "__main__":
    main()

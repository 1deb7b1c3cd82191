# An OTA'd device: app_runner.boot() in the current folder (the device's
# filesystem), under CPython or build/micropython.  Returns "reboot" when the
# runner asks for a reset; the test's supervisor then starts it again.
#
# p["cut"] = N: a power cut right before the Nth file-system mutation
# (open for writing, write, close of a written file, rename, remove) made by
# ota/app_runner: the device prints "CUT N <what>" and freezes; the test
# kills it with SIGKILL there.  Every step is logged as "STEP N <what>".
# p["uart_port"]: connect through the SIM800L driver to host/sim800l_sim.py.
import sys
import os
import time
import app_runner
import ota

_count = [0]
_cut = [0]


def _point(what):
    _count[0] += 1
    print("STEP", _count[0], what)
    if _count[0] == _cut[0]:
        print("CUT", _count[0], what)
        while True:                     # frozen until SIGKILL
            time.sleep(1)


class _File:
    def __init__(self, f, name):
        self.f, self.name = f, name

    def write(self, b):
        _point("write %s %d" % (self.name, len(b)))
        return self.f.write(b)

    def close(self):
        _point("close " + self.name)
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def _open(name, mode="r"):
    if "w" not in mode:
        return open(name, mode)
    _point("open " + name)
    return _File(open(name, mode), name)


class _Os:
    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, a, b):
        _point("rename %s %s" % (a, b))
        os.rename(a, b)

    def remove(self, a):
        _point("remove " + a)
        os.remove(a)


async def boot(p):
    if p.get("cut") is not None:
        _cut[0] = p["cut"]
        ota.os = _Os()
        ota.open = _open
    print("BOOT", sys.implementation.name)
    transport = None
    if p.get("uart_port"):              # MQTT over the SIM800L driver and the simulator
        from sim800l import SIM800L
        from sim800l_uart import tcp_uart

        async def transport():
            m = SIM800L(tcp_uart("127.0.0.1", p["uart_port"]), apn="internet",
                        timeouts=p.get("timeouts"))
            await m.start()
            return m.socket_class(async_=True), True
    return await app_runner.boot(app_runner.load_conf(""), transport)

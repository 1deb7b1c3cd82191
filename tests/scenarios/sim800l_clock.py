# Network time through the SIM800L driver (tests/test_sim800l_clock.py arms
# the simulator): AT+CLTS/AT+CCLK? at bring-up, a late *PSUTTZ URC, junk.
# Runs under CPython and build/micropython, sync and async flavours.
#
# The board's clock: where there is no machine.RTC (CPython, the unix port)
# the driver leaves the system clock alone; with p["fake_rtc"] a stand-in
# for machine.RTC records what the driver would set, as on rp2/esp32.
import sim800l_bringup
from mpcompat import asleep_ms, ticks_diff, ticks_ms
from sim800l_mqtt import make_modem


class FakeRTC:
    calls = []

    def datetime(self, t=None):
        FakeRTC.calls.append(list(t))


def report(modem, out=None):
    out = out if out is not None else {}
    out.update(network_time=modem.network_time, clock_set=modem.clock_set,
               source=modem.clock_source, note=modem.clock_note,
               clock_errors=modem.clock_errors, junk=modem.junk, urcs=modem.urcs,
               rtc=FakeRTC.calls, ip=modem.ip)
    return out


async def started(p):
    if p.get("fake_rtc"):
        sim800l_bringup._RTC = FakeRTC
    modem = await make_modem(p)
    if p["flavour"] == "async":
        await modem.start()
    else:
        modem.start_blocking()
    return modem


async def read_clock(modem, p):
    if p["flavour"] == "async":
        return await modem.read_clock()
    return modem.read_clock_blocking()


async def bringup(p):
    """start(), then p.get("reads", 0) calls of read_clock()."""
    modem = await started(p)
    out = {"commands": modem.at_commands}
    report(modem, out)
    out["reads"] = []
    for _ in range(p.get("reads", 0)):           # (MicroPython: no await in a comprehension)
        out["reads"].append(await read_clock(modem, p))
    return report(modem, out)


async def late(p):
    """start(); then a link to the broker, idle: read until the network's
    time comes (the test fires *PSUTTZ once it sees READY)."""
    modem = await started(p)
    out = {"after_start": modem.network_time}
    is_async = p["flavour"] == "async"
    S = modem.socket_class(async_=is_async)
    s = S()
    r = s.connect((p["host"], p["port"]))
    if is_async:
        await r
    out["after_connect"] = modem.network_time
    print("READY")
    buf = bytearray(16)
    t0 = ticks_ms()
    while p.get("wait") and modem.network_time == out["after_connect"] and \
            ticks_diff(ticks_ms(), t0) < 5000:
        s.readinto(buf, 16)                      # an idle link: the parser runs here
        await asleep_ms(5)
    r = s.close()
    if is_async:
        await r
    return report(modem, out)

# Runs ON the emulated Pico, sent by bench/tls.py through the raw REPL with a
# preamble `P = {...}`.  Prints `RESULT <json>`.
#
# The TLS handshake of our client through the frozen SIM800L driver (async
# flavour) -> machine.UART(0) -> host/sim800l_sim.py -> mosquitto's TLS
# listener, P["passes"] times in a row on one modem session:
#   ms        board time of connect() (time.ticks_ms): the handshake's modem
#             round trips and mbedTLS's computation, and the MQTT CONNECT
#   cycles    CPU cycles the chip executed meanwhile (bench/pico/cycles.js)
#   at/tx/rx  AT round trips and UART bytes (the driver's stats())
#   held      heap held while connected: gc.mem_free() after gc.collect()
#             before connect() minus the same after it (client state + the
#             TLS session's buffers: on the board mbedTLS allocates from the
#             GC heap)
#   peak      the most heap in use during connect(): the lowest gc.mem_free()
#             a second asyncio task saw, sampling every P["sample_ms"] ms
#             (garbage not yet collected counts too: it bounds the peak from
#             above), against gc.mem_free() after gc.collect() before connect
#   left      gc.mem_free() after gc.collect() while connected: the heap left
#             for the app (the bound: >= 100 KB)
#   gap_ms    the longest time the sampling task waited for its turn: how long
#             the event loop was held at a stretch (by mbedTLS's computation)
# Each pass's figures go into an array made before the first pass, so the
# harness holds no more heap after pass 5 than after pass 1.
# The board's clock is set first (P["rtc"], the host's UTC time): the
# broker's certificate is checked against it.
import gc
import json
import machine
import asyncio
from array import array
from time import ticks_ms, ticks_diff

gc.collect()
FREE_AT_START = gc.mem_free()
_M32 = machine.mem32
_CYC = 0x40068000
HAVE_CYC = _M32[_CYC + 8] == 0x43594331


def cyc():
    return _M32[_CYC] if HAVE_CYC else 0


class Sampler:
    def __init__(self, every_ms):
        self.every = every_ms
        self.low = gc.mem_free()
        self.n = 0
        self.gap = 0
        self.run = True

    async def go(self):
        t = ticks_ms()
        while self.run:
            f = gc.mem_free()
            if f < self.low:
                self.low = f
            self.n += 1
            await asyncio.sleep_ms(self.every)
            t1 = ticks_ms()
            g = ticks_diff(t1, t)
            if g > self.gap:
                self.gap = g
            t = t1


async def main():
    p = P
    machine.RTC().datetime(tuple(p["rtc"]))
    from sim800l import SIM800L
    from async_mqtt_client import AsyncMQTTClient
    import board
    m = SIM800L(board.modem_uart(), apn="internet")
    await m.start()
    machine.RTC().datetime(tuple(p["rtc"]))     # after bring-up: ours, whatever the modem's clock said
    sock_cls = m.socket_class(async_=True)
    client = AsyncMQTTClient({"client_id": b"bench-pico-tls", "server": p["host"], "port": p["port"],
                              "keepalive": 60, "timeout_ms": p.get("timeout_ms", 60000), "ssl": p["ssl"]},
                             memoryview(bytearray(128)))
    out = {"free_at_start": FREE_AT_START, "cycles_counter": HAVE_CYC}
    F = ("ms", "cycles", "at", "tx", "rx", "free_before", "left", "held", "peak", "lowest_free", "samples",
         "gap_ms")
    rows = array("i", bytearray(4 * len(F) * p["passes"]))
    for i in range(p["passes"]):
        gc.collect()
        free0 = gc.mem_free()
        s0 = m.stats()
        smp = Sampler(p.get("sample_ms", 2))
        asyncio.create_task(smp.go())
        await asyncio.sleep_ms(0)
        c0 = cyc()
        t0 = ticks_ms()
        await client.connect(sock_cls=sock_cls, async_sock=True)
        ms = ticks_diff(ticks_ms(), t0)
        c = (cyc() - c0) & 0xFFFFFFFF
        smp.run = False
        s1 = m.stats()
        await asyncio.sleep_ms(p.get("sample_ms", 2) + 1)
        gc.collect()
        free1 = gc.mem_free()
        j = i * len(F)
        rows[j:j + len(F)] = array("i", (ms, c if c < 0x80000000 else -1, s1["at_commands"] - s0["at_commands"],
                                         s1["uart_tx"] - s0["uart_tx"], s1["uart_rx"] - s0["uart_rx"],
                                         free0, free1, free0 - free1, free0 - smp.low, smp.low, smp.n, smp.gap))
        await client.disconnect()
        await asyncio.sleep_ms(50)
    gc.collect()
    out["free_after_all"] = gc.mem_free()
    out["passes"] = [dict(zip(F, rows[i * len(F):(i + 1) * len(F)])) for i in range(p["passes"])]
    out["stats"] = m.stats()
    return out


print("RESULT " + json.dumps(asyncio.run(main())))

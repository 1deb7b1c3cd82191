# One benchmark scenario for one client, under build/micropython (or CPython).
#
#   micropython -X heapsize=48M bench/device/run.py CLIENT SCENARIO JSON_PARAMS
#
# CLIENT is a module c_<client>.py beside this file: the client's documented
# usage, one loop per scenario, nothing else.  The loops run inside one
# measured window each: the collector off (a big heap, so it never needs to
# run), the peers' own gc.collect() calls replaced by a no-op, heap =
# gc.mem_alloc() after - before, minus the same window around an empty loop.
# Prints `RESULT <json>`.
import sys
import json

MICROPYTHON = sys.implementation.name == "micropython"


def setup_path(params):
    here = sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else "."
    bench = here.rsplit("/", 1)[0] if "/" in here else ".."
    if MICROPYTHON:
        path = [here, bench + "/shims"]
        if params.get("peer_dir"):
            path.append(params["peer_dir"])
        if params.get("src") == "py":               # our modules from .py files
            path.append(params["modules_dir"])
        path.append(".frozen")
        sys.path[:] = path
    else:
        sys.path[:0] = [here] + ([params["peer_dir"]] if params.get("peer_dir") else []) + \
            [params["modules_dir"]]


NAME, SCENARIO, PARAMS = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
setup_path(PARAMS)

import gc  # noqa: E402
import asyncio  # noqa: E402

if MICROPYTHON:
    from time import ticks_us, ticks_diff  # noqa: E402
    from array import array  # noqa: E402

    def mem():
        return gc.mem_alloc()
else:
    import time
    from array import array  # noqa: E402

    def ticks_us():
        return time.perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b

    def mem():
        return 0

A = __import__("c_" + NAME)


class _NoCollect:
    """Stands in for a peer's `gc` during a measured window: collect() does nothing."""

    @staticmethod
    def collect():
        pass

    def __getattr__(self, name):
        return getattr(gc, name)


NO_COLLECT = _NoCollect()


def neutralise():
    saved = []
    for name in getattr(A, "MODULES", ()):
        m = sys.modules.get(name)
        if m is not None and getattr(m, "gc", None) is gc:
            saved.append(m)
            m.gc = NO_COLLECT
    return saved


def restore(saved):
    for m in saved:
        m.gc = gc


async def _empty(*args):
    pass


async def window(fn, *args):
    """Run `await fn(*args)` with the collector off; returns (bytes, us)."""
    saved = neutralise()
    gc.collect()
    gc.disable()
    m0 = mem()
    t0 = ticks_us()
    await fn(*args)
    t = ticks_diff(ticks_us(), t0)
    used = mem() - m0
    gc.enable()
    restore(saved)
    return used, t


async def measured(fn, *args):
    base, _ = await window(_empty, *args)
    used, t = await window(fn, *args)
    return used - base, t


# Latency is timed in a pass of its own, in chunks of LATENCY_CHUNK rounds
# with a collection between chunks (outside every timed round), the same for
# every client.  Why: with the collector off for a whole run, MicroPython's
# allocator slows down as garbage piles up -- py/gc.c moves its search start
# (gc_last_free_atb_index) only on single-block allocations, so each
# multi-block allocation scans past all the garbage made since.  A device's
# collector runs whenever its small heap fills; a pass that never collects
# would time that artefact (measured: our round trip 46 -> 151 us over
# 12,000 rounds without a collection, flat at 42-48 us with one per 100).
LATENCY_CHUNK = 100


async def timed_rounds(fn, c, n, t, payload, times):
    mv = memoryview(times)
    done = 0
    while done < n:
        k = min(LATENCY_CHUNK, n - done)
        gc.collect()
        await fn(c, k, t, payload, mv[done:done + k])
        done += k


def percentiles(times, n):
    s = sorted(times[i] for i in range(n))
    return {"median_us": s[n // 2], "p99_us": s[min(n - 1, (n * 99) // 100)],
            "min_us": s[0], "max_us": s[-1], "mean_us": sum(s) / n}


class Feeder:
    """Another MQTT client in this process: hand-built QoS 0 PUBLISHes to the
    client's topic, one write each from one prebuilt buffer (0 bytes of heap)."""

    def __init__(self, port, topic, payload):
        import socket
        s = socket.socket()
        s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        cid = b"bench-feeder"
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + bytes((0, len(cid))) + cid
        self._w = s.write if MICROPYTHON else s.sendall
        self._w(bytes((0x10, len(body))) + body)
        ack = s.recv(4)
        assert ack[:2] == b"\x20\x02" and ack[3] == 0, ack
        body = bytes((len(topic) >> 8, len(topic) & 255)) + topic + payload
        self.pkt = bytes((0x30, len(body))) + body
        self.sock = s

    def send(self):
        self._w(self.pkt)

    def close(self):
        self._w(b"\xe0\x00")
        self.sock.close()


async def main():
    p = PARAMS
    n = p.get("n", 1000)
    warm = p.get("warm", 20)
    payload = bytes(range(64))
    own, sink = p["topic"], p["topic"] + "/sink"
    T = A.topic
    out = {"client": NAME, "scenario": SCENARIO, "n": n}
    if SCENARIO == "import_connect":
        gc.collect()
        m0 = mem()
        c = await A.connect(p)
        gc.collect()
        out["heap_in_use"] = mem() - m0
        out["source"] = A.source()
        await A.close(c)
        return out
    c = await A.connect(p)
    out["source"] = A.source()
    times = array("I", [0] * max(n, warm))
    if SCENARIO == "pub0":
        await A.pub0(c, warm, T(sink), payload)
        used, t = await measured(A.pub0, c, n, T(sink), payload)
        out.update(heap_per_op=used / n, us_per_op=t / n)
    elif SCENARIO == "pub1":
        if not getattr(A, "QOS1", True):
            out["unsupported"] = A.QOS1_WHY
        else:
            await A.pub1(c, warm, T(sink), payload, times)
            used, t = await measured(A.pub1, c, n, T(sink), payload, times)
            await timed_rounds(A.pub1, c, n, T(sink), payload, times)
            out.update(heap_per_op=used / n, us_per_op=t / n, **percentiles(times, n))
    elif SCENARIO == "recv":
        await A.subscribe(c, T(own))
        f = Feeder(p["port"], own.encode(), payload)
        await A.recv(c, warm, f)
        used, t = await measured(A.recv, c, n, f)
        out.update(heap_per_op=used / n, us_per_op=t / n)
        f.close()
    elif SCENARIO == "roundtrip":
        await A.subscribe(c, T(own))
        await A.roundtrip(c, warm, T(own), payload, times)
        used, t = await measured(A.roundtrip, c, n, T(own), payload, times)
        await timed_rounds(A.roundtrip, c, n, T(own), payload, times)
        out.update(heap_per_op=used / n, us_per_op=t / n, **percentiles(times, n))
    elif SCENARIO == "throughput":
        # n QoS 0 publishes as fast as the client's publish loop goes, then one
        # to our own subscription: when it comes back the broker has taken all n.
        await A.subscribe(c, T(own))
        await A.pub0(c, warm, T(sink), payload)
        await A.roundtrip(c, 1, T(own), payload, times)
        # As before every other timed pass: with garbage left (the times
        # array above), MicroPython's allocator scans past it for every
        # frame a call puts on the heap, and the figure swung 4x between
        # runs of the same code (27K vs 109K msgs/s, found with gdb).
        gc.collect()
        t0 = ticks_us()
        await A.pub0(c, n, T(sink), payload)
        await A.roundtrip(c, 1, T(own), payload, times)
        t = ticks_diff(ticks_us(), t0)
        out.update(msgs_per_s=n * 1e6 / t, us_total=t)
    else:
        raise ValueError("unknown scenario " + SCENARIO)
    await A.close(c)
    return out


try:
    result = asyncio.run(main())
    print("RESULT " + json.dumps(result))
except BaseException as e:  # noqa: B902 -- report everything
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    else:
        import traceback
        traceback.print_exc()
    sys.exit(1)

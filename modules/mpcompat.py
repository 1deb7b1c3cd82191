# MicroPython's time and asyncio extras, and the same names on CPython, so
# the frozen modules (client, modem driver, OTA) run unchanged on a host.
try:
    from time import ticks_ms, ticks_diff, sleep_ms
except ImportError:             # CPython
    import time as _time

    def ticks_ms():
        return _time.monotonic_ns() // 1000000

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        _time.sleep(ms / 1000)

try:
    from micropython import const
except ImportError:             # CPython: const() is MicroPython's compile-time constant
    def const(x):
        return x

try:
    import asyncio
except ImportError:             # MicroPython before 1.21
    import uasyncio as asyncio

# asyncio.sleep_ms (MicroPython) or its equivalent
asleep_ms = getattr(asyncio, "sleep_ms", None) or (lambda ms: asyncio.sleep(ms / 1000))


def jitter(span):
    """A random delay in [0, span) ms, so a fleet does not retry in step."""
    if span <= 0:
        return 0
    try:
        import random
        return random.getrandbits(20) % span
    except (ImportError, AttributeError):
        return ticks_ms() % span

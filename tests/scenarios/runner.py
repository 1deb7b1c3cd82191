# Runs one device-side scenario under CPython or MicroPython.
#
#   SCENARIO_PARAMS=JSON <interpreter> tests/scenarios/runner.py MODULE FUNCTION
#
# (The params travel in the environment: the unix port aborts on an argv
# string of 256 bytes or more.)
# MODULE is a file in tests/scenarios; FUNCTION an `async def f(p)` taking the
# params dict.  Prints `RESULT <repr>` of what it returns, or the traceback and
# exits 1.  On MicroPython the product modules must come frozen from the
# image: sys.path is cut to this folder and '.frozen', and the runner checks
# that every product module it imported is frozen.
import sys
import json

PRODUCT = ("async_mqtt_client", "mqtt_codec", "sim800l", "sim800l_uart", "ota", "app_runner", "mpcompat")


def main():
    import os
    name, func, params = sys.argv[1], sys.argv[2], json.loads(os.getenv("SCENARIO_PARAMS"))
    micropython = sys.implementation.name == "micropython"
    if micropython:
        here = sys.argv[0].rsplit("/", 1)[0]
        sys.path[:] = [here, ".frozen"]
    import asyncio
    mod = __import__(name)
    result = asyncio.run(getattr(mod, func)(params))
    if micropython:
        for m in PRODUCT:
            if m in sys.modules and "/" in getattr(sys.modules[m], "__file__", "/"):
                raise AssertionError(m + " was not imported from the frozen image: " + sys.modules[m].__file__)
    print("RESULT", repr(result))


try:
    main()
except BaseException as e:  # noqa: B902 -- report everything, including KeyboardInterrupt
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    else:
        import traceback
        traceback.print_exc()
    sys.exit(1)

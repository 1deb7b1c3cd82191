# aiomqttc catches TimeoutError by that name: the one asyncio.wait_for raises.
# Imported by aiomqttc's adapter only.  Adding a name to builtins makes
# MicroPython keep an override dict that every builtin lookup (len,
# isinstance, ...) consults first, VM-wide: measured, our client's QoS 0
# publish loop went from ~95k to ~34k msgs/s in a process that imported
# this.  So no other client runs with it.
import asyncio
import builtins

if not hasattr(builtins, "TimeoutError"):
    builtins.TimeoutError = asyncio.TimeoutError

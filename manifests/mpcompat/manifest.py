# mpcompat: the MicroPython/CPython shims (ticks, const, asyncio) every
# other component imports.  Required by mqtt, sim800l and ota; frozen once.
metadata(description="MicroPython/CPython compatibility shims of the mqtt-device components")
add_library("mqtt-device", "..")  # its siblings, for require(); also when included alone
module("mpcompat.py", base_path="../../modules")

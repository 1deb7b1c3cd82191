# sim800l: the SIM800L 2G-modem socket driver (sim800l.py and every
# sim800l_*.py it is split into).  Needs no MQTT: the client gets its
# socket class.  Files are listed sorted, so every machine freezes them in
# the same order (reproducible images).
import os

metadata(description="SIM800L 2G modem socket driver")
add_library("mqtt-device", "..")  # its siblings, for require(); also when included alone
require("mpcompat", library="mqtt-device")
for name in sorted(os.listdir("../../modules")):
    if name == "sim800l.py" or (name.startswith("sim800l_") and name.endswith(".py")):
        module(name, base_path="../../modules")

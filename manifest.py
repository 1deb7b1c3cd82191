# The product's device code, frozen into every image we build: the unix port
# (`make micropython`, via tools/unix-manifest.py) and every board in boards/.
# MicroPython's manifest tools run this with its own folder as the working
# directory.  The files are named in sorted order: freeze("modules") alone
# takes the filesystem's listing order, which can differ between machines
# and would make images differ too.
import os

freeze("modules", sorted(f for f in os.listdir("modules") if f.endswith(".py")))

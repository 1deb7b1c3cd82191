# The product's device code, frozen into every image we build: the unix port
# (`make micropython`, via tools/unix-manifest.py) and every board in boards/.
# Paths are relative to this file.
freeze("modules")

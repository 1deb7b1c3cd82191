# Benchmarks (issues 8 and 12): included from the Makefile.
# bench/run.py also runs `make firmware rom emulator-deps` for the emulated Pico part
# (a no-op when up to date; ~6 s after a module changed; minutes on a fresh machine).

bench: setup micropython  ## benchmark our client against its peers, side by side, on build/micropython and on the emulated Pico: bench/results/latest.{json,md,png}
	@.venv/bin/python -m pip install -q -r bench/requirements.txt
	@.venv/bin/python bench/run.py

.PHONY: bench

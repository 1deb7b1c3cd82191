# Benchmarks (issue 8): included from the Makefile.

bench: setup micropython  ## benchmark our client against its peers, side by side: bench/results/latest.{json,md,png}
	@.venv/bin/python -m pip install -q -r bench/requirements.txt
	@.venv/bin/python bench/run.py

.PHONY: bench

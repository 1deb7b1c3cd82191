# Long randomized runs of the client's model test (issue 11): included from the Makefile.
# CI runs tests/test_client_model.py on a fixed, derandomized budget; this runs it long.
FUZZ_EXAMPLES ?= 200
FUZZ_STEPS ?= 60

fuzz: setup  ## long random run of the client against its model (mosquitto, link faults); FUZZ_EXAMPLES=200 FUZZ_STEPS=60 FUZZ_SEED= FUZZ_SHRINK=1
	@FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_STEPS=$(FUZZ_STEPS) $(PYTHON) -m pytest tests/test_client_model.py -k against_model -p no:cacheprovider -s $(PYTEST_ARGS)

.PHONY: fuzz

# Two commands on a fresh machine (see README "Quick start"):
#   make run    set up .venv and run the worker on the embedded default
#   make test   set up .venv and run the test suite
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	# CPU torch first: anything later that depends on torch finds it satisfied.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/secstream run

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/secstream bench store

clean:
	rm -rf $(VENV) build *.egg-info .secstream

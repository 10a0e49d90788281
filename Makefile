# Two commands on a fresh machine (see README "Quick start"):
#   make run    set up .venv and run the worker on the embedded default
#   make test   set up .venv and run the test suite
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPOSE_V1 := $(VENV)/compose-v1

.PHONY: run test setup bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	# CPU torch first: anything later that depends on torch finds it satisfied.
	$(BIN)/pip install --quiet torch==2.13.0 uv
	# uv downloads and installs the rest in parallel (pip took ~6 of a fresh clone's minutes); it keeps
	# the torch above, which satisfies every requirement on it.
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]'
	touch $(STAMP)

# docker-compose 1.29.2 (Debian bookworm's docker-compose package) for `docker-compose config` in
# tests/unit/test_compose_config.py. Its own venv: it pins PyYAML<6 and jsonschema<4 (the project
# needs >=4), and PyYAML 5.4.1's sdist builds only with Cython<3 and without build isolation.
$(COMPOSE_V1)/.installed: | $(STAMP)
	test -x $(COMPOSE_V1)/bin/python || $(BIN)/python -m venv $(COMPOSE_V1)
	$(COMPOSE_V1)/bin/pip install --quiet 'cython==0.29.37' wheel
	$(COMPOSE_V1)/bin/pip install --quiet --no-build-isolation pyyaml==5.4.1
	$(COMPOSE_V1)/bin/pip install --quiet docker-compose==1.29.2
	touch $@

setup: $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/secstream run

# Three test processes (pytest-xdist) on the 2-core machine, one file each at a time: the suite waits on the
# workers and brokers it starts (two processes kept the cores 154% busy, three 181%: 446 s -> 361-392 s,
# 2026-12-08), and a file's module fixtures run once. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 3

test: $(STAMP) $(COMPOSE_V1)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/secstream bench store

clean:
	rm -rf $(VENV) build *.egg-info .secstream

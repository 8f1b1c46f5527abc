# Parley — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test typecheck install system-deps services clean cluster

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[cloud,test]'
	$(BIN)/python -m parley.providers.turn.smart_turn fetch
	@touch $(STAMP)

install: $(STAMP)

## make run: install, then run the main job on offline defaults.
run: install
	$(BIN)/parley up

## make cluster: Kamailio + NUM_WORKERS (2) workers + the API as processes under honcho (docs/deploy.md);
## needs DATABASE_URL and REDIS_URL; honours SIP_PORT, API_PORT, API_KEYS, DATA_DIR.
cluster: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash deploy/cluster.sh

## make test: install test needs (Debian packages when root), start Redis/PostgreSQL if needed, type-check
## src/ with mypy (settings in pyproject.toml), run pytest (the import-layering check is tests/test_layering.py).
## The sources are byte-compiled first: the suite starts `parley` in a subprocess dozens of times, and with
## PYTHONDONTWRITEBYTECODE set (as on CI) each start would compile all of src/ again (~0.4 s a start).
test: install system-deps services typecheck
	$(BIN)/python -m compileall -q src > /dev/null
	@bash scripts/run-tests.sh $(BIN)/python $(PYTEST_ARGS)

typecheck: install
	$(BIN)/python -m mypy

system-deps:
	@bash scripts/system-deps.sh

services:
	@bash scripts/ensure-services.sh

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

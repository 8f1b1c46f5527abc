# Parley — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test install system-deps services clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[cloud,test]'
	@touch $(STAMP)

install: $(STAMP)

## make run: install, then run the main job on offline defaults.
run: install
	$(BIN)/parley up

## make test: install test needs (Debian packages when root), start Redis/PostgreSQL if needed, run pytest.
test: install system-deps services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

system-deps:
	@bash scripts/system-deps.sh

services:
	@bash scripts/ensure-services.sh

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

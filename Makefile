# Two commands set up a fresh machine:
#   make serve   create .venv, install collab, run the server (SQLite file collab.db)
#   make test    create .venv, install test dependencies (Python, npm, Chromium), run everything
# .ci/run calls `make test` with CI=true, where a missing service fails instead of skipping.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: serve test lint node-deps chromium bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/collab serve $(ARGS)

# compileall: the suite starts hundreds of collab processes, and where PYTHONDONTWRITEBYTECODE
# is set (this machine) each would compile collab from source again (~0.1 s of CPU each).
test: $(STAMP) node-deps chromium lint
	$(BIN)/python -m compileall -q collab > /dev/null
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check collab tests scripts
	$(BIN)/ruff format --check collab tests scripts
	$(BIN)/mypy

node-deps: tests/interop/node_modules/.stamp client/node_modules/.stamp tests/browser/webrtc/node_modules/.stamp \
	   scripts/bench/yjs-server/node_modules/.stamp

%/node_modules/.stamp: %/package-lock.json
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

chromium:
	scripts/install-chromium

bench: $(STAMP) scripts/bench/yjs-server/node_modules/.stamp
	$(BIN)/python scripts/bench/fanout.py
	$(BIN)/python scripts/bench/store.py

clean:
	rm -rf $(VENV) tests/interop/node_modules client/node_modules tests/browser/webrtc/node_modules \
	   scripts/bench/yjs-server/node_modules

# The front door: `make run` and `make test` are all a new machine needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json
ASSETS := app/static/asyncapi
REACT_COMPONENT := node_modules/@asyncapi/react-component

.PHONY: install run test lint typecheck pytest lock clean deploy-check asyncapi asyncapi-check screenshots bench

install: $(STAMP) $(NODE_STAMP) $(ASSETS)/index.js $(ASSETS)/default.min.css

# Reinstall only when the lock or the project metadata changes.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The AsyncAPI parser (make test) and the AsyncAPI page's renderer, which the gateway serves.
$(NODE_STAMP): package.json package-lock.json .npmrc
	npm ci
	touch $(NODE_STAMP)

# The AsyncAPI page's renderer as package data, where app/main.py looks first: as in the image.
$(ASSETS)/index.js: $(NODE_STAMP)
	install -D -m 644 $(REACT_COMPONENT)/browser/standalone/index.js $@
$(ASSETS)/default.min.css: $(NODE_STAMP)
	install -D -m 644 $(REACT_COMPONENT)/styles/default.min.css $@

run: install
	$(BIN)/python -m app

lint: install
	$(BIN)/ruff check app breakwater tests bench
	$(BIN)/ruff format --check app breakwater tests bench

typecheck: install
	$(BIN)/mypy app

pytest: install
	$(BIN)/pytest -q

test: lint typecheck asyncapi-check pytest

# Regenerate asyncapi.yaml after changing channels, models, queues or app/spec.py; commit it.
asyncapi: install
	$(BIN)/faststream docs gen app.main:app --yaml --out asyncapi.yaml

# The reference AsyncAPI parser on the committed document (pytest runs it too).
asyncapi-check: install
	node tools/asyncapi/validate.mjs asyncapi.yaml

# The Dockerfile (hadolint) and the Helm chart (Helm's own engine, Kubernetes 1.30 schemas) alone;
# `make test` runs the same checks as part of pytest.
deploy-check: install
	$(BIN)/pytest -q tests/deploy

# Benchmarks (issue 6), ~5 min: bench/results/<date>.json and docs/bench.png. Not part of `make test`.
bench: install
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install -y wrk"; exit 1; }
	$(BIN)/python -m bench

# Regenerate docs/status.png: the status page during an outage, in headless Chromium.
screenshots: install
	BREAKWATER_STATUS_SCREENSHOT=docs/status.png $(BIN)/pytest -q tests/integration/test_status_page.py

# Regenerate the lock after changing dependencies in pyproject.toml.
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --no-emit-index-url \
		--no-emit-find-links --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) node_modules $(ASSETS) .mypy_cache .pytest_cache .ruff_cache

# The front door: `make run` and `make test` are all a new machine needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json
TOOLS_STAMP := tools/asyncapi-tools/node_modules/.package-lock.json
ASSETS := app/static/asyncapi
REACT_COMPONENT := node_modules/@asyncapi/react-component
OPENAPI_ASSETS := app/static/openapi
SWAGGER_UI := node_modules/swagger-ui-dist

.PHONY: system install run test lint typecheck pytest lock clean deploy-check asyncapi asyncapi-check openapi screenshots bench image-check

install: $(STAMP) $(NODE_STAMP) $(TOOLS_STAMP) $(ASSETS)/index.js $(ASSETS)/default.min.css \
	$(OPENAPI_ASSETS)/swagger-ui-bundle.js $(OPENAPI_ASSETS)/swagger-ui.css

# Reinstall only when the lock or the project metadata changes.
# System packages (Python's venv, Node.js and npm) come from tools/bootstrap, which only looks when
# they are there already.
$(STAMP): requirements.lock pyproject.toml | system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The AsyncAPI parser (make test) and the AsyncAPI page's renderer, which the gateway serves.
$(NODE_STAMP): package.json package-lock.json .npmrc | system
	npm ci
	touch $(NODE_STAMP)

# Other people's AsyncAPI tools that the tests run offline on our documents (the AsyncAPI CLI's
# validate, its HTML template), in a folder of their own: ~560 MB the gateway never needs.
$(TOOLS_STAMP): tools/asyncapi-tools/package.json tools/asyncapi-tools/package-lock.json \
		tools/asyncapi-tools/.npmrc | system
	npm ci --prefix tools/asyncapi-tools
	touch $(TOOLS_STAMP)

# The AsyncAPI page's renderer as package data, where app/documents/pages.py looks first: as in the image.
$(ASSETS)/index.js: $(NODE_STAMP)
	install -D -m 644 $(REACT_COMPONENT)/browser/standalone/index.js $@
$(ASSETS)/default.min.css: $(NODE_STAMP)
	install -D -m 644 $(REACT_COMPONENT)/styles/default.min.css $@

# The OpenAPI page's renderer (npm swagger-ui-dist), the same way.
$(OPENAPI_ASSETS)/swagger-ui-bundle.js: $(NODE_STAMP)
	install -D -m 644 $(SWAGGER_UI)/swagger-ui-bundle.js $@
$(OPENAPI_ASSETS)/swagger-ui.css: $(NODE_STAMP)
	install -D -m 644 $(SWAGGER_UI)/swagger-ui.css $@

system:
	@tools/bootstrap base

# A broker on localhost when none answers and this may install one; without, the gateway serves
# with its breaker open and stores what it accepts.
run: install
	@tools/bootstrap run
	$(BIN)/python -m app

lint: install
	$(BIN)/ruff check app breakwater tests bench examples tools
	$(BIN)/ruff format --check app breakwater tests bench examples tools

typecheck: install
	$(BIN)/mypy app

# The tests need a real RabbitMQ, a headless Chromium and wrk: tools/bootstrap installs what is missing.
pytest: install
	@tools/bootstrap test
	$(BIN)/pytest -q

test: lint typecheck asyncapi-check pytest

# Regenerate asyncapi.yaml after changing channels, models, queues or app/documents/asyncapi.py; commit it.
asyncapi: install
	$(BIN)/faststream docs gen app.main:app --yaml --out asyncapi.yaml

# Regenerate openapi.json (the HTTP ingress) after changing channels, models or app/documents/openapi.py;
# commit it. The default catalog without API tokens or CloudEvents, whatever the environment or
# .env says.
openapi: install
	BREAKWATER_CATALOG=default BREAKWATER_API_TOKENS= BREAKWATER_CLOUDEVENTS=off $(BIN)/breakwater openapi --out openapi.json

# The reference AsyncAPI parser on the committed document (pytest runs it too).
asyncapi-check: install
	node tools/asyncapi/validate.mjs asyncapi.yaml

# The Dockerfile (hadolint) and the Helm chart (Helm's own engine, Kubernetes 1.30 schemas) alone;
# `make test` runs the same checks as part of pytest.
deploy-check: install
	$(BIN)/pytest -q tests/deploy

# The container image, built for real with podman/buildah from local stand-in bases (made once by
# debootstrap, cached in podman's storage) and run against the local RabbitMQ: readiness, an event
# through, a partition stored and replayed, uid/gid, volume, stop, HEALTHCHECK, size. Needs root;
# ~3.5 min the first time, ~40 s after. `.ci/run` runs it after `make test`.
image-check: install
	@tools/bootstrap image
	bash tools/image-check/run

# Benchmarks (issue 6), ~15 min: bench/results/<date>.json and docs/bench.png. Not part of `make test`.
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
	rm -rf $(VENV) node_modules tools/asyncapi-tools/node_modules $(ASSETS) $(OPENAPI_ASSETS) .mypy_cache .pytest_cache .ruff_cache

# Breakwater's container image: a virtual environment built from requirements.lock (hash-checked),
# with the AsyncAPI and OpenAPI pages' renderers from package-lock.json as package data, copied into a clean
# runtime stage that runs as an unprivileged user.
#
#   docker build -t breakwater:0.1.0 .
#   docker run -p 8000:8000 -v breakwater-data:/data \
#       -e BREAKWATER_BROKER_URL=amqp://user:pass@rabbitmq:5672/ breakwater:0.1.0
#
# The bases are pinned by exact tag. To pin the digests as well, pass the references resolved where
# a registry is reachable: --build-arg PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:<digest>
# --build-arg NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# ---------------------------------------------------------------------------------------------
# The pages' renderers (the versions of package-lock.json): npm @asyncapi/react-component for the
# AsyncAPI page, npm swagger-ui-dist for the OpenAPI page. `npm ci` checks every package against
# the lock's integrity hash and runs no install scripts (.npmrc). Only their two files each leave
# this stage, from /static/<page>/; no Node reaches the runtime image.
FROM ${NODE_IMAGE} AS assets

# Another npm registry (a mirror), for this stage only: --build-arg NPM_CONFIG_REGISTRY=<url>.
ARG NPM_CONFIG_REGISTRY
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN npm ci \
    && mkdir -p /static/asyncapi /static/openapi \
    && cp node_modules/@asyncapi/react-component/browser/standalone/index.js \
        node_modules/@asyncapi/react-component/styles/default.min.css /static/asyncapi/ \
    && cp node_modules/swagger-ui-dist/swagger-ui-bundle.js \
        node_modules/swagger-ui-dist/swagger-ui.css /static/openapi/

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Another package index (a mirror), for this stage only: --build-arg PIP_INDEX_URL=<url>. The
# hashes of requirements.lock are checked whatever the index.
ARG PIP_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1

WORKDIR /src
COPY pyproject.toml requirements.lock ./

# requirements.lock also holds the dev tools (pytest, mypy, helm, hadolint ...). Keep the blocks of
# the packages the service needs: the closure, over the lock's "# via" lines, of
# [project].dependencies plus [build-system].requires. Versions and hashes stay the lock's own;
# `pip check` below fails the build if the closure ever missed something.
RUN python -c "import functools, re, tomllib; \
norm = lambda name: re.sub(r'[-_.]+', '-', name).lower(); \
blocks = [b for b in re.split(r'\n(?=[a-z0-9])', open('requirements.lock').read()) if '==' in b.split('\n')[0]]; \
via = {norm(b.split('==')[0]): {norm(p) for p in re.findall(r'^ +#(?: via)? +([\w.-]+)', b, re.M)} for b in blocks}; \
meta = tomllib.load(open('pyproject.toml', 'rb')); \
roots = {norm(re.match(r'[\w.-]+', r)[0]) for r in meta['project']['dependencies'] + meta['build-system']['requires']}; \
need = functools.reduce(lambda n, _: n | {p for p, v in via.items() if v & n}, via, roots); \
open('runtime.lock', 'w').write('\n'.join(b for b in blocks if norm(b.split('==')[0]) in need) + '\n')" \
    && python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --require-hashes --no-deps -r runtime.lock

COPY README.md ./
COPY app ./app
COPY breakwater ./breakwater
# The pages' renderers as package data ([tool.setuptools.package-data]): installed into /opt/venv
# with the project, where app/documents/pages.py looks first (app/static/asyncapi/ and
# app/static/openapi/).
COPY --from=assets /static/ ./app/static/
# The project itself, built with the locked setuptools (no unpinned build environment); then the
# installers leave the environment: the runtime image has no pip and no setuptools in /opt/venv.
RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/venv/bin/python -m pip check \
    && /opt/venv/bin/python -m pip uninstall --yes setuptools pip

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="breakwater" \
      org.opencontainers.image.description="Store-and-forward event gateway for RabbitMQ: typed events in, confirmed persistent events out, nothing lost while the broker is away." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it and fsGroup can match it.
# /app is made here, root's and read-only to the user: buildah creates a missing WORKDIR owned by
# the final USER.
RUN groupadd --system --gid 10001 breakwater \
    && useradd --system --uid 10001 --gid breakwater --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin breakwater \
    && mkdir /app /data \
    && chown breakwater:breakwater /data

COPY --from=build /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BREAKWATER_HTTP_HOST=0.0.0.0 \
    BREAKWATER_HTTP_PORT=8000 \
    BREAKWATER_STORE_PATH=/data/fallback.db \
    BREAKWATER_LOG_FORMAT=json

# The fallback store: mount a persistent volume here, or events stored during an outage die with
# the container.
VOLUME ["/data"]
WORKDIR /app
EXPOSE 8000
USER 10001:10001

# SIGTERM: uvicorn stops accepting and lets in-flight requests finish, then the inbound consumers
# drain, within BREAKWATER_SHUTDOWN_GRACE_S each (default 20 s); the process exits 0. Give the
# container at least twice that plus a margin before a kill (`docker stop -t 50`).
STOPSIGNAL SIGTERM

# Liveness only: /healthz answers 200 while the process serves. /readyz (can events be accepted)
# belongs to an orchestrator's readiness probe, not here. It probes the address the gateway binds
# (BREAKWATER_HTTP_HOST; 0.0.0.0 and :: by loopback), directly, whatever proxy variables are set.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; host = os.environ.get('BREAKWATER_HTTP_HOST', '0.0.0.0').strip().strip('[]'); host = {'': '127.0.0.1', '0.0.0.0': '127.0.0.1', '::': '::1'}.get(host, host); urllib.request.build_opener(urllib.request.ProxyHandler({})).open('http://%s:%s/healthz' % ('[%s]' % host if ':' in host else host, os.environ.get('BREAKWATER_HTTP_PORT', '8000')), timeout=4)"]

ENTRYPOINT ["breakwater"]
CMD ["run"]

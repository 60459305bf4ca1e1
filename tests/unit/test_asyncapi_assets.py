"""The AsyncAPI page's renderer ships with the project: placed in app/static/asyncapi/ (the
container image and `make install` do that), its two files are package data of the wheel, and
app/documents/pages.py serves them from there before it looks for node_modules, and only without
either falls back to a CDN."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from app import main
from app.documents import pages

ROOT = Path(__file__).resolve().parents[2]
REACT_COMPONENT = ROOT / "node_modules/@asyncapi/react-component"
# Name served under /docs/static/asyncapi/ -> the file of the npm package.
RENDERER = {
    "index.js": "browser/standalone/index.js",
    "default.min.css": "styles/default.min.css",
}


def renderer_file(name: str) -> Path:
    path = REACT_COMPONENT / RENDERER[name]
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make install` (npm ci)")
    return path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of a copy of the project with the renderer placed as the image's build stage places
    it; the real tree is left alone."""
    tmp = tmp_path_factory.mktemp("wheel")
    project = tmp / "project"
    # The sources without app/static: only what this test places there goes into the wheel.
    shutil.copytree(
        ROOT / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__", "static")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    static = project / "app/static/asyncapi"
    static.mkdir(parents=True)
    for name in RENDERER:
        shutil.copy(renderer_file(name), static / name)
    # What `pip wheel --no-deps --no-build-isolation .` does, minus pip's three processes: the
    # build backend of [build-system], from this environment, in one.
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]
    out = tmp / "dist"
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import {backend['build-backend']} as backend; backend.build_wheel({str(out)!r})",
        ],
        cwd=project,
        check=True,
        capture_output=True,
        timeout=60,
    )
    (built,) = out.glob("breakwater-*.whl")
    return built


def test_the_wheel_ships_the_renderer_as_package_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for name in RENDERER:
            shipped = archive.read(f"app/static/asyncapi/{name}")
            assert shipped == renderer_file(name).read_bytes(), name
        record = archive.read(
            next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        )
    assert b"app/static/asyncapi/index.js," in record


def test_the_installed_app_serves_the_packaged_renderer_first(wheel: Path, tmp_path: Path) -> None:
    """The wheel unpacked as an installation is: app/documents/pages.py finds its package data, not
    the node_modules that happen to be beside the package (here a decoy with other contents)."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    decoy = site / "node_modules/@asyncapi/react-component"
    for name, path in RENDERER.items():
        (decoy / path).parent.mkdir(parents=True, exist_ok=True)
        (decoy / path).write_text(f"decoy {name}", encoding="utf-8")
    probe = """if True:
        import asyncio, json
        import httpx
        import app.main as main
        from app.documents import pages

        async def fetch() -> dict[str, str]:
            transport = httpx.ASGITransport(app=main.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                page = await client.get(pages.ASYNCAPI_PATH)
                assets = {"page": page.text}
                for name in pages.ASSET_MEDIA_TYPES:
                    response = await client.get(f"{pages.ASSETS_PATH}/{name}")
                    assert response.status_code == 200, name
                    assets[name] = response.headers["content-type"] + " " + str(
                        len(response.content)
                    )
                    assets[name + ":decoy"] = str(response.content.startswith(b"decoy"))
            return assets

        print(json.dumps({
            "main": main.__file__,
            "found": {k: str(v) for k, v in pages.page_assets(pages.ASSET_SOURCES).items()},
            "served": asyncio.run(fetch()),
        }))
    """
    env = {
        **os.environ,
        "PYTHONPATH": str(site),  # ahead of the editable install of the real tree
        "BREAKWATER_STORE_PATH": str(tmp_path / "store.db"),
    }
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert Path(report["main"]) == site / "app/main.py"
    assert report["found"] == {name: str(site / "app/static/asyncapi" / name) for name in RENDERER}
    served = report["served"]
    # Relative URLs of the gateway itself, nothing from a CDN.
    assert re.findall(r'<script src="([^"]+)"', served["page"]) == ["static/asyncapi/index.js"]
    assert re.findall(r'rel="stylesheet" href="([^"]+)"', served["page"]) == [
        "static/asyncapi/default.min.css"
    ]
    for name, media in pages.ASSET_MEDIA_TYPES.items():
        size = renderer_file(name).stat().st_size
        assert served[name] == f"{media} {size}"
        assert served[f"{name}:decoy"] == "False"


# --- the lookup order of app/documents/pages.py, in process -------------------------------------


def test_main_looks_in_the_package_first_then_in_node_modules() -> None:
    package, node_modules = pages.ASSET_SOURCES
    static = Path(main.__file__).resolve().parent / "static/asyncapi"
    assert package == {name: static / name for name in RENDERER}
    assert node_modules == {name: REACT_COMPONENT / path for name, path in RENDERER.items()}


def _source(root: Path, layout: dict[str, str]) -> dict[str, Path]:
    paths = {name: root / path for name, path in layout.items()}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(path.name, encoding="utf-8")
    return paths


def test_the_first_complete_source_wins(tmp_path: Path) -> None:
    package = _source(tmp_path / "package", {name: name for name in RENDERER})
    node_modules = _source(tmp_path / "node_modules", RENDERER)

    assert pages.page_assets([package, node_modules]) == package
    package["default.min.css"].unlink()  # half a renderer is none
    assert pages.page_assets([package, node_modules]) == node_modules
    for path in node_modules.values():
        path.unlink()
    assert pages.page_assets([package, node_modules]) is None


def test_without_the_renderer_the_page_falls_back_to_the_cdn_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = {name: tmp_path / name for name in RENDERER}
    monkeypatch.setattr(pages, "ASSET_SOURCES", (missing, missing))

    with caplog.at_level(logging.WARNING, logger="breakwater"):
        route, assets = pages.asyncapi_page()

    assert assets == []
    assert route.asyncapi_js_url.startswith("https://")
    assert any("CDN" in record.getMessage() for record in caplog.records)

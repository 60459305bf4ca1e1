"""Runs other people's tools with no network at all, to prove they need none: in a new network
namespace (`unshare -rn`: no interface but a downed loopback), with a private HOME."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "asyncapi-tools"
ASYNCAPI_CLI = TOOLS / "node_modules" / ".bin" / "asyncapi"
HTML_TEMPLATE = TOOLS / "node_modules" / "@asyncapi" / "html-template"
INSTALL_HINT = "run `make install` (it installs them with `npm ci --prefix tools/asyncapi-tools`)"

# The AsyncAPI CLI's usage analytics (a New Relic sink) are on unless this file, which it reads
# from ASYNCAPI_METRICS_CONFIG_PATH (else it writes ~/.asyncapi-analytics), says otherwise.
ANALYTICS_OFF = {"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "tests"}


@functools.cache
def _unshare() -> str:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("`unshare` (util-linux) is needed to run the AsyncAPI tools without network")
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.fail(f"`unshare -rn` cannot make a network namespace here: {probe.stderr.strip()}")
    return unshare


def run_offline(
    args: Sequence[str | Path],
    home: Path,
    *,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`args` without network, HOME at `home`, the CLI's analytics off."""
    home.mkdir(parents=True, exist_ok=True)
    analytics = home / "asyncapi-analytics.json"
    analytics.write_text(json.dumps(ANALYTICS_OFF), encoding="utf-8")
    environment = {
        **{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
        "HOME": str(home),
        "ASYNCAPI_METRICS_CONFIG_PATH": str(analytics),
        # node-config, which the CLI loads, warns that the project has no config/ folder.
        "SUPPRESS_NO_CONFIG_WARNING": "1",
        **(env or {}),
    }
    return subprocess.run(
        [_unshare(), "-rn", *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def asyncapi_cli() -> Path:
    if not ASYNCAPI_CLI.exists() or not HTML_TEMPLATE.is_dir():
        pytest.fail(f"@asyncapi/cli and @asyncapi/html-template are not installed: {INSTALL_HINT}")
    return ASYNCAPI_CLI

"""tools/bootstrap: quiet when everything is there, a clear message instead of a failure deep inside
apt-get when something is missing and it cannot install it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BOOTSTRAP = Path(__file__).resolve().parents[2] / "tools/bootstrap"
# What the script itself runs, besides the tools it looks for.
PLUMBING = ("bash", "timeout", "mktemp", "rm", "cat", "id")


def _path_with(tmp_path: Path, tools: dict[str, str | None]) -> str:
    """A PATH holding only the plumbing and `tools`: name -> a script's body, or None for the real
    command."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in PLUMBING:
        real = shutil.which(name)
        assert real, name
        (folder / name).symlink_to(real)
    for name, body in tools.items():
        if body is None:
            real = shutil.which(name)
            assert real, f"{name} is not installed here"
            (folder / name).symlink_to(real)
        else:
            (folder / name).unlink(missing_ok=True)
            (folder / name).write_text(f"#!/bin/sh\n{body}\n")
            (folder / name).chmod(0o755)
    return str(folder)


def _run(path: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BOOTSTRAP), *args],
        env={"PATH": path, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _test_with_a_broker(tmp_path: Path, node: str | None) -> subprocess.CompletedProcess[str]:
    """`tools/bootstrap test` with every tool there but `node` as given (None: the real one),
    and a broker port that answers: a listening socket of this test."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = str(listener.getsockname()[1])
        path = _path_with(
            tmp_path, {"npm": "exit 0", "node": node, "chromium": "exit 0", "wrk": "exit 0"}
        )
        return _run(path, "test", BREAKWATER_BOOTSTRAP_BROKER_PORT=port)


def test_with_everything_there_it_says_nothing(tmp_path: Path) -> None:
    result = _test_with_a_broker(tmp_path, node=None)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_not_root_and_a_tool_missing_says_what_to_install(tmp_path: Path) -> None:
    path = _path_with(tmp_path, {"npm": "exit 0", "id": "echo 1000"})
    result = _run(path, "image")
    assert result.returncode == 1
    assert result.stderr.startswith("bootstrap: missing podman buildah runc debootstrap (make")
    assert (
        "not root: run 'sudo apt-get install -y podman buildah runc debootstrap'" in result.stderr
    )


def test_no_broker_and_not_root_run_goes_on_without_one(tmp_path: Path) -> None:
    path = _path_with(tmp_path, {"npm": "exit 0", "id": "echo 1000"})
    result = _run(path, "run", BREAKWATER_BOOTSTRAP_BROKER_PORT="1")
    assert result.returncode == 0, result.stderr
    assert "sudo apt-get install -y rabbitmq-server" in result.stderr
    assert result.stderr.endswith(
        "the gateway starts anyway, with its breaker open, and stores events\n"
    )


def test_no_broker_and_not_root_test_stops(tmp_path: Path) -> None:
    path = _path_with(tmp_path, {"npm": "exit 0", "id": "echo 1000"})
    result = _run(path, "test", BREAKWATER_BOOTSTRAP_BROKER_PORT="1")
    assert result.returncode == 1
    assert "rabbitmq-server" in result.stderr


@pytest.mark.parametrize("args", [(), ("deploy",)])
def test_wrong_usage(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = _run(os.environ["PATH"], *args)
    assert result.returncode == 2
    assert "usage: tools/bootstrap base|run|test|image" in result.stderr


def test_a_node_too_old_for_the_asyncapi_tools_is_named_before_the_tests_fail(
    tmp_path: Path,
) -> None:
    # A `node` that says it is 18 and fails the version check, as Node 18 does.
    fake = 'case "$1" in --version) echo v18.20.4 ;; *) exit 1 ;; esac'
    result = _test_with_a_broker(tmp_path, node=fake)
    assert result.returncode == 1
    assert result.stderr.startswith("bootstrap: Node.js v18.20.4 is older than 20.19")

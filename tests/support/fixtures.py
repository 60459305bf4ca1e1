"""Pytest fixtures for fault tests.

* ``private_rabbit`` (session): one private RabbitMQ node for destructive tests, always stopped.
* ``clean_private_rabbit`` (function): the same node, with every fault undone after the test.
* ``fault_proxy`` (function): a :class:`FaultProxy` in front of the SHARED broker (127.0.0.1:5672).
* ``private_fault_proxy`` (function): a :class:`FaultProxy` in front of the private node.

Register them once in the root ``conftest.py``: ``pytest_plugins = ["tests.support.fixtures"]``,
or import the functions (named ``fixture_<name>`` so that ruff's F811 stays quiet) into a module:
``from tests.support.fixtures import fixture_private_rabbit  # noqa: F401``.
Importing into several modules is safe: every copy of ``private_rabbit`` shares one node.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.rabbit_node import (
    RabbitNode,
    free_port,
    kill_beams_with_home,
    pid_alive,
    proc_start_ticks,
)

__all__ = [
    "PRIVATE_ROOT",
    "SHARED_HOST",
    "SHARED_PORT",
    "acquire_private_node",
    "fixture_clean_private_rabbit",
    "fixture_fault_proxy",
    "fixture_private_fault_proxy",
    "fixture_private_rabbit",
    "reap_stale_nodes",
    "release_private_node",
]

SHARED_HOST = "127.0.0.1"
SHARED_PORT = 5672
#: Every private node of a test session lives in ``PRIVATE_ROOT/bwtest_<pytest pid>``.
PRIVATE_ROOT = Path(tempfile.gettempdir()) / "breakwater-test-rabbit"
_OWNER_FILE = "owner.json"

_lock = threading.Lock()
_node: RabbitNode | None = None
_users = 0


def _owner_alive(node_dir: Path) -> bool:
    """Is the test process that created ``node_dir`` still running (same pid, same start time)?"""
    owner_file = node_dir / _OWNER_FILE
    try:
        owner = json.loads(owner_file.read_text())
        pid, ticks = int(owner["pid"]), int(owner["start_ticks"])
    except FileNotFoundError:
        # Another session may be between mkdir and writing its owner file: give it a minute.
        with contextlib.suppress(OSError):
            return time.time() - node_dir.stat().st_mtime < 60
        return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return pid_alive(pid) and proc_start_ticks(pid) == ticks


def reap_stale_nodes(root: Path = PRIVATE_ROOT) -> list[Path]:
    """Kill nodes (and remove dirs) left by test sessions that died; spare live sessions' nodes."""
    reaped: list[Path] = []
    if not root.is_dir():
        return reaped
    for node_dir in root.iterdir():
        if not node_dir.is_dir() or _owner_alive(node_dir):
            continue
        kill_beams_with_home(node_dir / "home")
        shutil.rmtree(node_dir, ignore_errors=True)
        reaped.append(node_dir)
    return reaped


def acquire_private_node() -> RabbitNode:
    """Start (once per process) and return the session's private node."""
    global _node, _users
    with _lock:
        if _node is None:
            reap_stale_nodes()
            name = f"bwtest_{os.getpid()}"
            node_dir = PRIVATE_ROOT / name
            shutil.rmtree(node_dir, ignore_errors=True)  # a fresh node every session
            node_dir.mkdir(parents=True)
            (node_dir / _OWNER_FILE).write_text(
                json.dumps({"pid": os.getpid(), "start_ticks": proc_start_ticks(os.getpid())})
            )
            node = RabbitNode(name, free_port(), free_port(), node_dir)
            atexit.register(_stop_at_exit, node)
            node.start()
            _node = node
        elif not _node.is_running():
            _node.start()  # a test killed it and did not restart it
        _users += 1
        return _node


def release_private_node() -> None:
    """Drop one user; the last one stops the node and removes its directory."""
    global _node, _users
    with _lock:
        _users -= 1
        if _users > 0 or _node is None:
            return
        node, _node = _node, None
        try:
            node.stop()
        finally:
            shutil.rmtree(node.base_dir, ignore_errors=True)


def _stop_at_exit(node: RabbitNode) -> None:
    with contextlib.suppress(Exception):
        node.stop()
    shutil.rmtree(node.base_dir, ignore_errors=True)


@pytest.fixture(scope="session", name="private_rabbit")
def fixture_private_rabbit() -> Iterator[RabbitNode]:
    """A private RabbitMQ node for the whole session (started once, always stopped)."""
    node = acquire_private_node()
    try:
        yield node
    finally:
        release_private_node()


@pytest.fixture(name="clean_private_rabbit")
def fixture_clean_private_rabbit(private_rabbit: RabbitNode) -> Iterator[RabbitNode]:
    """The private node; afterwards resumed, restarted if dead, app started, alarm cleared."""
    yield private_rabbit
    private_rabbit.reset_faults()


@pytest.fixture(name="fault_proxy")
def fixture_fault_proxy() -> Iterator[FaultProxy]:
    """A fault proxy in front of the shared broker at 127.0.0.1:5672; use ``.url``."""
    with FaultProxy(SHARED_HOST, SHARED_PORT) as proxy:
        yield proxy


@pytest.fixture(name="private_fault_proxy")
def fixture_private_fault_proxy(private_rabbit: RabbitNode) -> Iterator[FaultProxy]:
    """A fault proxy in front of the private node."""
    with FaultProxy("127.0.0.1", private_rabbit.amqp_port) as proxy:
        yield proxy

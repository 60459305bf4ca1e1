"""`breakwater store ...` against real store files, run as the console script operators run.

Each command runs in a child process with only the `BREAKWATER_*` variables a test gives it and
tmp_path as its working directory (so no `.env` of the developer's leaks in).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.catalog.default import DEFAULT_CATALOG
from app.events import Event
from app.store.fallback import FallbackStore

BREAKWATER = Path(sys.executable).with_name("breakwater")
NOW = datetime.now(UTC)
# (channel, seconds ago): the store's order is acceptance order, oldest first.
EVENTS = (
    ("orders.created", 300),
    ("payments.captured", 240),
    ("orders.created", 200),
    ("orders.created", 100),
    ("payments.captured", 30),
)


@dataclass(frozen=True)
class StoreFile:
    path: Path
    events: tuple[Event, ...]
    used_bytes: int

    def ids(self, channel: str | None = None) -> list[str]:
        return [e.message_id for e in self.events if channel in (None, e.channel)]


def breakwater(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert BREAKWATER.exists(), f"{BREAKWATER} missing: run `make install`"
    clean = {key: value for key, value in os.environ.items() if not key.startswith("BREAKWATER_")}
    return subprocess.run(
        [str(BREAKWATER), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def stats(store: StoreFile) -> dict[str, object]:
    result = breakwater("store", "stats", "--path", str(store.path), cwd=store.path.parent)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


@pytest.fixture
async def store(tmp_path: Path) -> StoreFile:
    path = tmp_path / "volume" / "fallback.db"
    events = tuple(
        Event(
            channel=channel,
            body=json.dumps(DEFAULT_CATALOG[channel].example).encode(),
            message_id=f"{channel}-{n}",
            correlation_id=f"corr-{n}",
            timestamp=(datetime.now(UTC) - timedelta(seconds=ago)).replace(microsecond=0),
        )
        for n, (channel, ago) in enumerate(EVENTS)
    )
    async with FallbackStore(path, max_bytes=10**6) as fallback:
        for event in events:
            assert await fallback.put(event)
        used = fallback.used_bytes()
    return StoreFile(path, events, used)


@pytest.fixture
async def held(store: StoreFile) -> AsyncIterator[StoreFile]:
    """The store, owned (locked) by this process as a running gateway would own it."""
    async with FallbackStore(store.path, max_bytes=10**6):
        yield store


def test_stats_reports_depth_bytes_and_oldest_age_per_channel_of_breakwater_store_path(
    store: StoreFile, tmp_path: Path
) -> None:
    result = breakwater(
        "store", "stats", cwd=tmp_path, env={"BREAKWATER_STORE_PATH": str(store.path)}
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["path"] == str(store.path)
    assert report["depth"] == 5
    assert report["bytes"] == store.used_bytes
    assert 300 <= report["oldest_age_s"] < 360
    channels = report["channels"]
    assert set(channels) == {"orders.created", "payments.captured"}
    assert channels["orders.created"]["depth"] == 3
    assert 300 <= channels["orders.created"]["oldest_age_s"] < 360
    assert channels["payments.captured"]["depth"] == 2
    assert 240 <= channels["payments.captured"]["oldest_age_s"] < 300


def test_path_option_overrides_the_store_path_setting(store: StoreFile, tmp_path: Path) -> None:
    missing = tmp_path / "elsewhere" / "fallback.db"
    env = {"BREAKWATER_STORE_PATH": str(missing)}

    from_setting = breakwater("store", "stats", cwd=tmp_path, env=env)
    from_option = breakwater("store", "stats", "--path", str(store.path), cwd=tmp_path, env=env)

    assert from_setting.returncode == 2
    assert f"no fallback store at {missing}" in from_setting.stderr
    assert not missing.parent.exists(), "stats must not create a store"
    assert from_option.returncode == 0, from_option.stderr
    assert json.loads(from_option.stdout)["depth"] == 5


def test_stats_list_and_export_read_a_store_that_a_running_gateway_holds(
    held: StoreFile, tmp_path: Path
) -> None:
    path = str(held.path)
    assert (
        json.loads(breakwater("store", "stats", "--path", path, cwd=tmp_path).stdout)["depth"] == 5
    )
    assert len(breakwater("store", "list", "--path", path, cwd=tmp_path).stdout.splitlines()) == 5
    exported = breakwater("store", "export", "--jsonl", "--path", path, cwd=tmp_path)
    assert len(exported.stdout.splitlines()) == 5


def test_list_shows_the_oldest_events_first_one_line_each(store: StoreFile, tmp_path: Path) -> None:
    path = str(store.path)

    first_three = breakwater("store", "list", "--path", path, "--limit", "3", cwd=tmp_path)
    payments = breakwater(
        "store", "list", "--path", path, "--channel", "payments.captured", cwd=tmp_path
    )

    assert first_three.returncode == 0, first_three.stderr
    lines = first_three.stdout.splitlines()
    assert [line.split()[3] for line in lines] == store.ids()[:3]
    assert [line.split()[2] for line in lines] == [e.channel for e in store.events[:3]]
    assert lines[0].split()[1] == store.events[0].timestamp.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert [line.split()[3] for line in payments.stdout.splitlines()] == store.ids(
        "payments.captured"
    )


def test_export_writes_every_event_as_a_json_line_oldest_first(
    store: StoreFile, tmp_path: Path
) -> None:
    everything = breakwater("store", "export", "--jsonl", "--path", str(store.path), cwd=tmp_path)
    orders = breakwater(
        "store",
        "export",
        "--jsonl",
        "--path",
        str(store.path),
        "--channel",
        "orders.created",
        cwd=tmp_path,
    )

    assert everything.returncode == 0, everything.stderr
    records = [json.loads(line) for line in everything.stdout.splitlines()]
    assert [r["message_id"] for r in records] == store.ids()
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    for record, event in zip(records, store.events, strict=True):
        assert record["channel"] == event.channel
        assert record["correlation_id"] == event.correlation_id
        assert datetime.fromisoformat(record["timestamp"]) == event.timestamp
        assert record["payload"] == DEFAULT_CATALOG[event.channel].example
    assert [json.loads(line)["message_id"] for line in orders.stdout.splitlines()] == store.ids(
        "orders.created"
    )


def test_purge_without_yes_refuses_and_deletes_nothing(store: StoreFile, tmp_path: Path) -> None:
    result = breakwater(
        "store", "purge", "--channel", "orders.created", "--path", str(store.path), cwd=tmp_path
    )

    assert result.returncode == 2
    assert "without --yes" in result.stderr
    assert stats(store)["depth"] == 5


def test_purge_with_yes_deletes_only_that_channel_and_logs_as_configured(
    store: StoreFile, tmp_path: Path
) -> None:
    result = breakwater(
        "store",
        "purge",
        "--channel",
        "orders.created",
        "--yes",
        cwd=tmp_path,
        env={"BREAKWATER_STORE_PATH": str(store.path), "BREAKWATER_LOG_FORMAT": "json"},
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"channel": "orders.created", "deleted": 3}
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(entry["level"] == "warning" and "purged 3" in entry["message"] for entry in logs), (
        result.stderr
    )
    after = stats(store)
    assert after["depth"] == 2
    assert after["channels"] == {
        "payments.captured": {"depth": 2, "oldest_age_s": pytest.approx(240, abs=60)}
    }
    exported = breakwater("store", "export", "--path", str(store.path), cwd=tmp_path)
    remaining = [json.loads(line)["message_id"] for line in exported.stdout.splitlines()]
    assert remaining == store.ids("payments.captured")


def test_purge_refuses_while_another_process_holds_the_store(
    held: StoreFile, tmp_path: Path
) -> None:
    result = breakwater(
        "store",
        "purge",
        "--channel",
        "orders.created",
        "--yes",
        "--path",
        str(held.path),
        cwd=tmp_path,
    )

    assert result.returncode == 2
    assert "in use by another process" in result.stderr
    assert stats(held)["depth"] == 5


def test_replay_without_a_broker_gives_up_and_keeps_every_event(
    store: StoreFile, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"amqp://guest:n0t-f0r-l0gs@127.0.0.1:{port}/"

    result = breakwater(
        "store",
        "replay",
        "--path",
        str(store.path),
        "--connect-timeout-s",
        "1",
        cwd=tmp_path,
        env={"BREAKWATER_BROKER_URL": url},
    )

    assert result.returncode == 3
    assert f"no broker answered at amqp://guest:***@127.0.0.1:{port}/" in result.stderr
    assert "5 events stay" in result.stderr
    assert "n0t-f0r-l0gs" not in result.stdout + result.stderr
    assert stats(store)["depth"] == 5


# --- breakwater openapi -------------------------------------------------------------------------

OPENAPI_JSON = Path(__file__).resolve().parents[2] / "openapi.json"


def test_openapi_prints_the_committed_document_for_the_default_catalog(tmp_path: Path) -> None:
    result = breakwater("openapi", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == OPENAPI_JSON.read_text(encoding="utf-8")


def test_openapi_writes_the_document_of_the_named_catalog_requiring_tokens_when_set(
    tmp_path: Path,
) -> None:
    out = tmp_path / "api.json"
    result = breakwater(
        "openapi",
        "--catalog",
        "default",
        "--out",
        str(out),
        cwd=tmp_path,
        env={"BREAKWATER_API_TOKENS": "secret-token"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    document = json.loads(out.read_text(encoding="utf-8"))
    operation = document["paths"]["/v1/events/orders.created"]["post"]
    assert operation["security"] == [{"bearerAuth": []}]
    assert "secret-token" not in out.read_text(encoding="utf-8")


def test_openapi_of_a_broken_catalog_prints_its_problems_and_exits_1(tmp_path: Path) -> None:
    result = breakwater("openapi", "--catalog", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert result.returncode == 1
    assert "missing.yaml" in result.stderr
    assert result.stdout == ""

"""The built image, run: the checks of `make image-check` that need a broker, a partition and
accounting (tools/image-check/run does the rest and the clean-up).

The container runs with `--network host` and reaches the shared RabbitMQ through a FaultProxy on
the host (tests/support/fault_proxy.py), in a private vhost; a consumer reads `breakwater.events`
directly from the broker. Phases:

1. container A (BREAKWATER_HTTP_HOST a specific address, 127.0.0.2): /readyz, the HEALTHCHECK,
   uid/gid of PID 1, /app read-only, an event published and received;
2. a partition: events answered `stored`, the store in the named volume, replayed after the heal;
3. a second partition: events stored, then `podman stop -t 50` while partitioned: exit code 0
   within the grace period, logs all JSON;
4. container B on the same volume (default BREAKWATER_HTTP_HOST 0.0.0.0), broker reachable: the
   events stored before the stop are replayed, the HEALTHCHECK is healthy, it stops with 0;
5. accounting: every accepted event delivered at least once.

Each check prints one line, `PASS name: detail` or `FAIL name: detail`; the exit code is the
number of failures (capped at 100).

    PYTHONPATH=. .venv/bin/python tools/image-check/check_image.py --image IMAGE --vhost VHOST \
        --volume VOLUME --label KEY=VALUE
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.integration.gateway_process import free_port
from tests.integration.outage_helpers import Answer, Recorder, post_event
from tests.support.fault_proxy import FaultProxy

RUNTIME_ID = 10001
STOP_TIMEOUT_S = 50  # the Dockerfile's advice: twice BREAKWATER_SHUTDOWN_GRACE_S plus a margin
SPECIFIC_HOST = (
    "127.0.0.2"  # a loopback address other than 127.0.0.1: the HEALTHCHECK must follow it
)
CHANNEL = "orders.created"
FAST_BREAKER = {
    "BREAKWATER_PUBLISH_TIMEOUT_S": "1",
    "BREAKWATER_BREAKER_FAIL_MAX": "2",
    "BREAKWATER_BREAKER_RESET_TIMEOUT_S": "1",
}
RUN_FLAGS = [
    "--network",
    "host",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
    # No systemd here to run the HEALTHCHECK's timer: it is run by hand (`podman healthcheck run`).
    "--health-interval",
    "disable",
]


def podman(
    *args: str, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "--runtime", "runc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


@dataclass
class Report:
    failures: int = 0
    lines: list[str] = field(default_factory=list)

    def result(self, name: str, ok: bool, detail: str = "") -> bool:
        line = f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else "")
        print(line, flush=True)
        self.lines.append(line)
        self.failures += not ok
        return ok

    @contextlib.contextmanager
    def check(self, name: str) -> Iterator[dict[str, str]]:
        """A check whose body raises AssertionError (or anything else) to fail; it may set
        `detail["detail"]` for the PASS line."""
        detail: dict[str, str] = {}
        try:
            yield detail
        except Exception as exc:  # every failure is reported, the next check still runs
            self.result(name, False, f"{type(exc).__name__}: {exc}".strip())
        else:
            self.result(name, True, detail.get("detail", ""))


@dataclass
class Container:
    name: str
    port: int
    host: str

    @property
    def base_url(self) -> str:
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}"

    def readyz(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.base_url}/readyz", timeout=5).json()
        return body

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name, check=True).stdout.strip()

    def logs(self) -> str:
        result = podman("logs", self.name)
        return result.stdout + result.stderr


class ImageCheck:
    def __init__(self, args: argparse.Namespace) -> None:
        self.image: str = args.image
        self.vhost: str = args.vhost
        self.volume: str = args.volume
        self.label: str = args.label
        self.run_id = uuid.uuid4().hex[:10]
        self.report = Report()
        self.proxy = FaultProxy(upstream_host=args.broker_host, upstream_port=args.broker_port)
        self.broker_url = f"amqp://guest:guest@{args.broker_host}:{args.broker_port}/{self.vhost}"
        self.containers: list[Container] = []
        self.answers: list[Answer] = []

    # -- helpers --------------------------------------------------------------------------------

    def start(self, suffix: str, host: str | None) -> Container:
        port = free_port()
        container = Container(
            f"breakwater-image-check-{self.run_id}-{suffix}", port, host or "0.0.0.0"
        )
        env = {
            "BREAKWATER_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{self.proxy.port}/{self.vhost}",
            "BREAKWATER_HTTP_PORT": str(port),
            **FAST_BREAKER,
        }
        if host is not None:
            env["BREAKWATER_HTTP_HOST"] = host
        flags = [f"--env={key}={value}" for key, value in env.items()]
        podman(
            "run",
            "--detach",
            "--name",
            container.name,
            "--label",
            self.label,
            *RUN_FLAGS,
            "--volume",
            f"{self.volume}:/data",
            *flags,
            self.image,
            check=True,
        )
        self.containers.append(container)
        return container

    def wait_connected(self, container: Container, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if container.inspect("{{.State.Running}}") != "true":
                raise AssertionError(f"container exited:\n{container.logs()[-2000:]}")
            try:
                body = container.readyz()
                if body.get("broker_connected"):
                    return body
                last = body
            except (httpx.HTTPError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"not connected within {timeout}s (last: {last})")

    def send(self, container: Container, prefix: str, count: int) -> list[Answer]:
        with httpx.Client(base_url=container.base_url) as client:
            answers = [
                post_event(client, CHANNEL, f"{self.run_id}-{prefix}-{i:03d}") for i in range(count)
            ]
        self.answers.extend(answers)
        return answers

    def wait_depth(self, container: Container, depth: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = container.readyz().get("store_depth")
            if seen == depth:
                return
            time.sleep(0.2)
        raise AssertionError(f"store_depth {seen}, not {depth}, after {timeout}s")

    def healthcheck(self, container: Container) -> str:
        result = podman("healthcheck", "run", container.name, timeout=30)
        status = container.inspect("{{.State.Health.Status}}")
        assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}{result.stderr}"
        assert status == "healthy", status
        return status

    def stop(self, container: Container) -> float:
        started = time.monotonic()
        podman("stop", "--time", str(STOP_TIMEOUT_S), container.name, timeout=STOP_TIMEOUT_S + 30)
        elapsed = time.monotonic() - started
        code = container.inspect("{{.State.ExitCode}}")
        assert code == "0", f"exit code {code} after {elapsed:.1f}s:\n{container.logs()[-2000:]}"
        assert elapsed < STOP_TIMEOUT_S, f"took {elapsed:.1f}s: killed at the end of the grace"
        return elapsed

    def store_file(self) -> Path:
        mountpoint = podman(
            "volume", "inspect", "--format", "{{.Mountpoint}}", self.volume, check=True
        ).stdout.strip()
        return Path(mountpoint) / "fallback.db"

    # -- the phases -----------------------------------------------------------------------------

    def run(self) -> int:
        with self.proxy, Recorder(self.broker_url, self.run_id) as recorder:
            try:
                self.phases(recorder)
            finally:
                for container in self.containers:
                    podman("rm", "--force", "--time", "0", container.name)
        return self.report.failures

    def phases(self, recorder: Recorder) -> None:
        check = self.report.check
        a = self.start("a", SPECIFIC_HOST)

        with check("readyz") as out:
            body = self.wait_connected(a)
            out["detail"] = f"broker_connected, breaker {body.get('breaker')}, on {a.base_url}"
        if self.report.failures:
            print(a.logs()[-3000:], file=sys.stderr)
            return

        with check(f"HEALTHCHECK healthy, BREAKWATER_HTTP_HOST={SPECIFIC_HOST}") as out:
            out["detail"] = self.healthcheck(a)
            # The old probe (always 127.0.0.1) fails against this container: the fix is exercised.
            old = podman(
                "exec",
                a.name,
                "python",
                "-c",
                f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{a.port}/healthz', timeout=2)",
            )
            assert old.returncode != 0, "127.0.0.1 answers too: the specific address is not tested"
            out["detail"] += " (a probe of 127.0.0.1 fails, as it should)"

        with check("uid/gid 10001") as out:
            status = podman("exec", a.name, "cat", "/proc/1/status", check=True).stdout
            ids = {
                line.split(":")[0]: line.split()[1:]
                for line in status.splitlines()
                if line.startswith(("Uid:", "Gid:"))
            }
            assert ids["Uid"] == [str(RUNTIME_ID)] * 4, ids
            assert ids["Gid"] == [str(RUNTIME_ID)] * 4, ids
            out["detail"] = (
                f"PID 1 runs as {RUNTIME_ID}:{RUNTIME_ID} ({a.inspect('{{.Config.User}}')})"
            )

        with check("/app and /opt/venv not writable, /data writable") as out:
            for path in ("/app/x", "/opt/venv/x"):
                touched = podman("exec", a.name, "touch", path)
                assert touched.returncode != 0, f"the runtime user can write {path}"
            podman("exec", a.name, "test", "-w", "/data", check=True)
            out["detail"] = "touch /app/x and /opt/venv/x fail as 10001"

        with check("event published and received") as out:
            (answer,) = self.send(a, "direct", 1)
            assert answer.status_code == 202, answer
            assert answer.status == "published", answer
            recorder.wait_for([answer.message_id], timeout=15, path="direct")
            out["detail"] = f"202 published, {answer.message_id} consumed from breakwater.events"

        stored: list[Answer] = []
        with check("events stored during a partition") as out:
            self.proxy.partition()
            stored = self.send(a, "partition", 5)
            assert all(s.status_code == 202 and s.status == "stored" for s in stored), [
                (s.status_code, s.status) for s in stored
            ]
            self.wait_depth(a, len(stored), timeout=5)
            slowest = max(s.elapsed for s in stored)
            out["detail"] = (
                f"{len(stored)} answered 202 stored (slowest {slowest:.2f}s), store_depth {len(stored)}"
            )

        with check("the store in the volume") as out:
            path = self.store_file()
            stat = path.stat()
            assert (stat.st_uid, stat.st_gid) == (RUNTIME_ID, RUNTIME_ID), (
                stat.st_uid,
                stat.st_gid,
            )
            out["detail"] = f"{path} ({stat.st_size} bytes, owner {stat.st_uid}:{stat.st_gid})"

        with check("replayed after the partition") as out:
            self.proxy.heal()
            started = time.monotonic()
            recorder.wait_for([s.message_id for s in stored], timeout=30, path="replay")
            self.wait_depth(a, 0, timeout=15)
            out["detail"] = (
                f"{len(stored)} replayed in {time.monotonic() - started:.1f}s, store_depth 0"
            )

        before_stop: list[Answer] = []
        with check(f"podman stop -t {STOP_TIMEOUT_S} during a partition") as out:
            self.proxy.partition()
            before_stop = self.send(a, "stop", 5)
            assert all(s.status == "stored" for s in before_stop), [s.status for s in before_stop]
            self.wait_depth(a, len(before_stop), timeout=5)
            elapsed = self.stop(a)
            out["detail"] = (
                f"exit code 0 after {elapsed:.1f}s, {len(before_stop)} events left in the store"
            )

        with check("logs: JSON lines, no traceback") as out:
            lines = [line for line in a.logs().splitlines() if line.strip()]
            bad = []
            for line in lines:
                try:
                    json.loads(line)
                except ValueError:
                    bad.append(line)
            assert not bad, f"{len(bad)} non-JSON lines, e.g. {bad[:3]}"
            assert "Traceback" not in "\n".join(lines)
            # The image's `breakwater run` is on uvloop (the default BREAKWATER_EVENT_LOOP).
            assert "breakwater ready on the uvloop event loop" in "\n".join(lines)
            out["detail"] = f"{len(lines)} lines, uvloop"

        self.proxy.heal()
        b = self.start("b", None)
        with check(
            "nothing lost across the stop: replayed by a new container on the volume"
        ) as out:
            self.wait_connected(b)
            recorder.wait_for([s.message_id for s in before_stop], timeout=30, path="replay")
            self.wait_depth(b, 0, timeout=15)
            out["detail"] = f"{len(before_stop)} replayed, store_depth 0"

        with check("HEALTHCHECK healthy, BREAKWATER_HTTP_HOST=0.0.0.0 (default)") as out:
            out["detail"] = self.healthcheck(b)

        with check(f"podman stop -t {STOP_TIMEOUT_S}, broker reachable") as out:
            out["detail"] = f"exit code 0 after {self.stop(b):.1f}s"

        with check("accounting") as out:
            accepted = [s.message_id for s in self.answers if s.accepted]
            refused = [s for s in self.answers if not s.accepted]
            assert not refused, [(s.message_id, s.status_code) for s in refused]
            recorder.wait_for(accepted, timeout=10)
            recorder.wait_quiet()
            deliveries = recorder.deliveries()
            duplicates = len(deliveries) - len({d.message_id for d in deliveries})
            paths: dict[str, int] = {}
            for delivery in deliveries:
                paths[delivery.path or "?"] = paths.get(delivery.path or "?", 0) + 1
            out["detail"] = (
                f"{len(accepted)} accepted, {len(accepted)} delivered at least once,"
                f" {duplicates} duplicates (at-least-once); deliveries by path {paths}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--vhost", required=True)
    parser.add_argument("--volume", required=True)
    parser.add_argument("--label", required=True, help="KEY=VALUE put on every container")
    parser.add_argument(
        "--broker-host", default=os.environ.get("BREAKWATER_CHECK_BROKER_HOST", "127.0.0.1")
    )
    parser.add_argument("--broker-port", type=int, default=5672)
    args = parser.parse_args(argv)
    return min(ImageCheck(args).run(), 100)


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark shares: a private vhost, the 1 KiB payload, the gateway as a child process,
a consumer that timestamps arrivals on `breakwater.events`, and small statistics helpers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from yarl import URL

from app.broker.topology import EVENTS_EXCHANGE, EVENTS_EXCHANGE_ARGUMENTS, UNROUTED
from app.catalog.default import DEFAULT_CATALOG

ROOT = Path(__file__).resolve().parents[1]
# Where the gateway under test (`python -m app`) runs from; see bench/__init__.py.
APP_ROOT = Path(os.environ.get("BENCH_APP_ROOT") or ROOT).resolve()
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
CACHE_DIR = BENCH_DIR / ".cache"
FIGURE = ROOT / "docs" / "bench.png"

AMQP_HOST = os.environ.get("BENCH_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("BENCH_AMQP_PORT", "5672"))
RABBITMQCTL = os.environ.get("RABBITMQCTL", "rabbitmqctl")

CHANNEL = "orders.created"
INBOUND_QUEUE = DEFAULT_CATALOG[CHANNEL].inbound_queue
PAYLOAD_BYTES = 1024

# The same payload declared as a JSON Schema (BREAKWATER_CATALOG=bench/catalog.yaml), on a channel
# of its own name: the `*_declarative` cases run a gateway with this catalog beside the default's.
DECLARED_CATALOG = BENCH_DIR / "catalog.yaml"
DECLARED_CHANNEL = "orders.created.declared"
DECLARED_INBOUND_QUEUE = f"breakwater.in.{DECLARED_CHANNEL}"
DECLARED_ENV = {"BREAKWATER_CATALOG": str(DECLARED_CATALOG)}
# The `*_asyncio` cases: the standard library's event loop instead of uvloop (the default), the
# before-and-after of uvloop and httptools in one run.
ASYNCIO_ENV = {"BREAKWATER_EVENT_LOOP": "asyncio"}


# -- the broker ------------------------------------------------------------------------------


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [RABBITMQCTL, *args], check=True, capture_output=True, text=True, timeout=timeout
    )
    return done.stdout


@contextlib.contextmanager
def private_vhost(prefix: str = "breakwater-bench") -> Iterator[str]:
    """A vhost of our own on the shared broker (deleted afterwards); yields its AMQP URL."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    rabbit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rabbit = rabbitmqctl("version", timeout=30).strip().splitlines()[-1]

    def git(*args: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
        return ""

    commit_file = APP_ROOT / "COMMIT"
    return {
        "app_root": str(APP_ROOT),
        "app_commit": (
            commit_file.read_text().strip() if commit_file.exists() else git("rev-parse", "HEAD")
        ),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "rabbitmq_version": rabbit,
        "python_version": platform.python_version(),
        "git_commit": git("rev-parse", "HEAD"),
        "app_dirty": APP_ROOT == ROOT and bool(git("status", "--porcelain", "--", "app")),
        "hostname": socket.gethostname(),
        "loadavg_at_start": os.getloadavg()[0],
    }


# -- the payload -----------------------------------------------------------------------------


def order_payload(n: int) -> dict[str, Any]:
    """A valid `OrderCreated` whose normalised JSON is exactly PAYLOAD_BYTES long."""
    items = [
        {"sku": f"SKU-{n:08d}-{k}-".ljust(99, "x"), "quantity": k + 1, "unit_price": "9.50"}
        for k in range(6)
    ]
    payload: dict[str, Any] = {
        "order_id": f"ord-{n:08d}",
        "customer_id": f"cus-{n % 977:06d}",
        "items": items,
        "currency": "EUR",
        "total": "199.50",  # 9.50 x (1+2+...+6)
    }
    size = len(order_body(payload))
    payload["order_id"] = payload["order_id"].ljust(
        len(payload["order_id"]) + PAYLOAD_BYTES - size, "0"
    )
    return payload


def order_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def order_bytes(n: int) -> bytes:
    return order_body(order_payload(n))


def message_id(prefix: str, n: int) -> str:
    """Ids that sort in sending order (the order check compares the numbers)."""
    return f"{prefix}-{n:09d}"


def id_number(message_id: str) -> int:
    return int(message_id.rsplit("-", 1)[1])


# -- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest rank on sorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_summary(ms: Sequence[float], prefix: str = "") -> dict[str, float | int | None]:
    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        f"{prefix}count": len(ms),
        f"{prefix}p50_ms": r(percentile(ms, 50)),
        f"{prefix}p90_ms": r(percentile(ms, 90)),
        f"{prefix}p99_ms": r(percentile(ms, 99)),
        f"{prefix}max_ms": r(max(ms) if ms else None),
        f"{prefix}mean_ms": r(statistics.fmean(ms) if ms else None),
    }


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


# -- the gateway as a child process ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def broker_pid() -> int | None:
    """The OS process of the broker the benchmarks run on (its CPU is part of every figure)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        return int(rabbitmqctl("eval", "list_to_integer(os:getpid()).", timeout=30).strip())
    return None


def rss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


@dataclass
class Gateway:
    """`python -m app` in a child process, started the way users start it."""

    workdir: Path
    broker_url: str
    env: Mapping[str, str] = field(default_factory=dict)
    name: str = "gateway"
    profile_dir: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    _profiler: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "BREAKWATER_BROKER_URL": self.broker_url,
            "BREAKWATER_HTTP_HOST": "127.0.0.1",
            "BREAKWATER_HTTP_PORT": str(self.port),
            "BREAKWATER_STORE_PATH": str(self.workdir / f"{self.name}.db"),
            "BREAKWATER_LOG_FORMAT": "console",
            **self.env,
        }

    def start(self, *, until: str = "connected", timeout: float = 30.0) -> float:
        """Start; return seconds from process start until `until` holds: "ready" (/readyz 200),
        "connected" (broker_connected) or "none" (do not wait)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app"],
            cwd=APP_ROOT,
            env=self.environment(),
            stdout=log,
            stderr=log,
        )
        log.close()
        if until == "none":
            return 0.0
        return self.wait(until, timeout)

    def wait(self, until: str, timeout: float = 30.0, poll_s: float = 0.005) -> float:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}"
                    )
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    response = client.get(f"{self.base_url}/readyz")
                    if self._holds(until, response.status_code, response.json()):
                        return time.monotonic() - self.started_at
                time.sleep(poll_s)
        raise TimeoutError(f"{self.name}: {until!r} not reached within {timeout}s:\n{self.logs()}")

    @staticmethod
    def _holds(until: str, status: int, body: dict[str, Any]) -> bool:
        if until == "ready":
            return status == 200
        if until == "connected":
            return bool(body.get("broker_connected"))
        if until == "open":
            return body.get("breaker") == "open"
        raise ValueError(until)

    def readyz(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.base_url}/readyz", timeout=5.0).json())

    def rss_kib(self) -> int | None:
        return rss_kib(self.pid)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def start_profile(self, label: str) -> None:
        """Attach py-spy (when profiling was asked for) until `stop_profile`."""
        if self.profile_dir is None or self.proc is None:
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{label}.txt"
        self._profiler = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop_profile(self) -> None:
        if self._profiler is not None:
            self._profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._profiler.wait(30)
            self._profiler = None

    def stop(self) -> None:
        self.stop_profile()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# -- a consumer of breakwater.events -----------------------------------------------------------


@dataclass(slots=True)
class Arrival:
    at: float  # time.monotonic() (system-wide, comparable across processes) on arrival
    message_id: str
    path: str | None
    correlation_id: str = ""


async def declare_events_exchange(
    channel: aio_pika.abc.AbstractChannel,
) -> aio_pika.abc.AbstractExchange:
    await channel.declare_exchange(UNROUTED, aio_pika.ExchangeType.FANOUT, durable=True)
    return await channel.declare_exchange(
        EVENTS_EXCHANGE,
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments=EVENTS_EXCHANGE_ARGUMENTS,
    )


class ArrivalRecorder:
    """An exclusive queue bound to `breakwater.events` (routing key CHANNEL), consumed without
    acks; records when each message arrived."""

    def __init__(self, url: str, routing_key: str = CHANNEL) -> None:
        self.url = url
        self.routing_key = routing_key
        self.arrivals: list[Arrival] = []
        self._connection: AbstractRobustConnection | None = None
        self._wanted = 0
        self._enough = asyncio.Event()

    async def __aenter__(self) -> ArrivalRecorder:
        self._connection = await aio_pika.connect_robust(self.url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=2000)
        exchange = await declare_events_exchange(channel)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, self.routing_key)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        path = headers.get("x-breakwater-path")
        self.arrivals.append(
            Arrival(
                time.monotonic(),
                message.message_id or "",
                path.decode() if isinstance(path, bytes) else (str(path) if path else None),
                message.correlation_id or "",
            )
        )
        if self._wanted and len(self.arrivals) >= self._wanted:
            self._enough.set()

    def reset(self) -> None:
        self.arrivals = []
        self._enough.clear()

    async def wait_for(self, count: int, timeout: float) -> bool:  # noqa: ASYNC109
        """True once `count` messages arrived; False after `timeout` seconds."""
        self._wanted = count
        self._enough.clear()
        if len(self.arrivals) >= count:
            return True
        try:
            await asyncio.wait_for(self._enough.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_for_child(
        self,
        count: int,
        timeout: float,  # noqa: ASYNC109
        proc: subprocess.Popen[bytes],
        log: Path,
    ) -> bool:
        """`wait_for`, failing at once (with its log) when the producing child process dies."""
        waiter = asyncio.ensure_future(self.wait_for(count, timeout))
        while not waiter.done():
            if proc.poll() is not None and len(self.arrivals) < count:
                waiter.cancel()
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{_tail(log)}")
            await asyncio.wait([waiter], timeout=0.2)
        return waiter.result()

    async def wait_quiet(self, quiet_s: float, timeout: float) -> None:  # noqa: ASYNC109
        """Until nothing arrived for `quiet_s` (or `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.arrivals[-1].at if self.arrivals else 0.0
            if time.monotonic() - last >= quiet_s:
                return
            await asyncio.sleep(quiet_s / 4)


def _tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def throughput(arrivals: Sequence[Arrival]) -> tuple[float, float]:
    """(events/s from first to last arrival, that span in seconds)."""
    if len(arrivals) < 2:
        return 0.0, 0.0
    span = arrivals[-1].at - arrivals[0].at
    return rate(len(arrivals) - 1, span), round(span, 3)


def order_check(arrivals: Sequence[Arrival], prefix: str, by: str = "message_id") -> dict[str, Any]:
    """Per-channel order: ids (all of one channel) must arrive in increasing order; `by` names
    the property that carries them ("correlation_id" for messages sent without a message_id)."""
    ids = [getattr(a, by) for a in arrivals]
    numbers = [id_number(i) for i in ids if i.startswith(prefix)]
    inversions = sum(1 for a, b in itertools.pairwise(numbers) if b <= a)
    return {
        "order_ok": inversions == 0,
        "order_inversions": inversions,
        "unique": len(set(numbers)),
        "duplicates": len(numbers) - len(set(numbers)),
    }


# -- publishing helpers -----------------------------------------------------------------------


async def publish_confirmed(
    url: str,
    bodies: Sequence[bytes],
    ids: Sequence[str | None],
    *,
    routing_key: str,
    exchange_name: str = "",
    in_flight: int = 64,
    properties: Callable[[int], dict[str, Any]] | None = None,
) -> float:
    """Publish persistent, confirmed messages with `in_flight` outstanding; return seconds. An id
    of None sends its message without a message_id."""
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        if exchange_name:
            exchange = await channel.get_exchange(exchange_name, ensure=False)
        else:
            exchange = channel.default_exchange
        gate = asyncio.Semaphore(in_flight)

        async def one(index: int) -> None:
            async with gate:
                extra = properties(index) if properties else {}
                await exchange.publish(
                    aio_pika.Message(
                        bodies[index],
                        message_id=ids[index],
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        **extra,
                    ),
                    routing_key=routing_key,
                )

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(bodies))))
        return time.perf_counter() - started
    finally:
        await connection.close()


async def purge_queue(url: str, queue_name: str) -> None:
    """Empty a queue: whatever an earlier run left (unacked and requeued, or parked) must not
    count in the next one, nor weigh on the broker under it."""
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        await queue.purge()
    finally:
        await connection.close()


async def declare_outbound_topology(url: str) -> None:
    """`breakwater.events`, its alternate exchange and `breakwater.unrouted`, declared by the
    gateway's own code: what every HTTP case publishes into, whoever runs first."""
    from app.broker.topology import Declarer, declare_outbound

    connection = await aio_pika.connect_robust(url)
    try:
        declarer = Declarer(connection)
        await declare_outbound(declarer)
        await declarer.close()
    finally:
        await connection.close()


async def declare_inbound_queue(url: str, channel: str = CHANNEL) -> None:
    """Declare `breakwater.in.<channel>` (of the default catalog, or DECLARED_CHANNEL) exactly as
    the gateway does (same arguments)."""
    from faststream.rabbit import RabbitBroker

    from app.ingress.amqp_ingress import inbound_queue

    if channel == DECLARED_CHANNEL:
        from app.catalog.declarative import load_file

        event_channel = load_file(DECLARED_CATALOG)[channel]
    else:
        event_channel = DEFAULT_CATALOG[channel]
    broker = RabbitBroker(url, logger=None)
    await broker.connect()
    try:
        await broker.declare_queue(inbound_queue(event_channel))
    finally:
        await broker.stop()


def child(
    module_args: Sequence[str], log: Path, *, capture: bool = False, stdin: bool = False
) -> subprocess.Popen[bytes]:
    """A bench helper (`python -m bench.yardsticks ...`) in a child process; its stdout is piped
    when `capture`, else it goes to `log` with stderr (FastStream logs to stdout); its stdin is
    piped when `stdin`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.yardsticks", *module_args],
            cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else out,
            stderr=out,
        )
    finally:
        out.close()


def through(url: str, port: int) -> str:
    """`url` with its host and port replaced by a local proxy's."""
    return str(URL(url).with_host("127.0.0.1").with_port(port))


def stop_child(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Context:
    """What a benchmark gets: its broker (a private vhost), a scratch directory, and whether to
    attach py-spy to the gateway while it measures."""

    broker_url: str
    workdir: Path
    profile_dir: Path | None = None
    smoke: bool = False
    loop: str = "uvloop"  # BREAKWATER_EVENT_LOOP of every gateway whose case sets none

    def gateway(self, name: str, **kwargs: Any) -> Gateway:
        kwargs.setdefault("broker_url", self.broker_url)
        kwargs["env"] = {"BREAKWATER_EVENT_LOOP": self.loop, **kwargs.get("env", {})}
        return Gateway(self.workdir / name, name=name, profile_dir=self.profile_dir, **kwargs)


def accepted_counts(base_url: str, channel: str = CHANNEL) -> dict[str, float]:
    """`breakwater_events_accepted_total` of `channel` by status, from /metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=5.0).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("breakwater_events_accepted_total{") and f'channel="{channel}"' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] = float(line.rsplit(" ", 1)[1])
    return counts

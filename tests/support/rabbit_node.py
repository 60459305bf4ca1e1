"""A private, disposable RabbitMQ node for destructive tests (never the shared broker).

The node gets its own HOME (with its own Erlang cookie), node name, AMQP and distribution ports,
data and log directories, config file, enabled-plugins file and env file, so nothing is read from
``/etc/rabbitmq`` (whose config binds 5672, the shared broker's port) and nothing but
``127.0.0.1:<amqp_port>`` and ``127.0.0.1:<dist_port>`` is bound (plus the listeners of the plugins a
node is asked to enable). The shared epmd on 4369 is reused.

The CLI is ``/usr/lib/rabbitmq/bin/rabbitmqctl`` run directly as the current user with the node's
HOME: the ``/usr/sbin/rabbitmqctl`` wrapper re-runs itself via ``su rabbitmq``, which drops HOME
(and so the cookie) and the environment, so it can only reach the shared node.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["SHARED_NODE_NAME", "RabbitNode", "RabbitNodeError", "free_port"]

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
SHARED_NODE_NAME = "rabbit@localhost"

# rabbitmqctl exit code when the node cannot be reached (EX_UNAVAILABLE).
_EX_UNAVAILABLE = 69

_PR_SET_CHILD_SUBREAPER = 36
# Helper programs of an Erlang VM; a zombie child of ours with one of these names is an orphan
# we adopted as subreaper (subprocess never starts them directly), so reaping it steals nothing.
_ERLANG_HELPERS = frozenset({"inet_gethost", "erl_child_setup", "erlexec", "epmd"})
_subreaper = False


class RabbitNodeError(RuntimeError):
    """A rabbitmqctl call or a node life-cycle step failed."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the kernel picks it; race-prone only in theory)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _proc_stat(pid: int) -> tuple[str, str, int, int] | None:
    """(comm, state, ppid, start ticks) from /proc/<pid>/stat, or None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    head, _, tail = stat.rpartition(")")
    fields = tail.split()
    return head.partition("(")[2], fields[0], int(fields[1]), int(fields[19])


def _proc_state(pid: int) -> str | None:
    """The /proc state letter of a process, or None when it does not exist."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def proc_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[3]


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (Linux ``prctl``).

    ``rabbitmq-server -detached`` double-forks, so the beam and its helpers are orphans. PID 1 on
    these machines does not reap orphans, so every stopped node would stay a ``<defunct>`` entry
    in ``ps``; as subreaper we adopt them and :func:`reap_orphans` collects them.
    """
    global _subreaper
    if not _subreaper:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _subreaper


def descendants(pid: int) -> list[int]:
    """All live descendants of a process (via /proc/<pid>/task/*/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found.extend(children)
                todo.extend(children)
    return found


def reap_orphans(pids: Iterable[int] = ()) -> None:
    """Reap zombie children of ours that are ``pids`` or Erlang helper programs."""
    me = os.getpid()
    wanted = set(pids)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _proc_stat(pid)
        if stat is None or stat[2] != me or stat[1] != "Z":
            continue
        if pid in wanted or stat[0] in _ERLANG_HELPERS:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def beam_pids_with_home(home: Path) -> list[int]:
    """OS pids of every live beam.smp started with ``-home <home>`` (i.e. from that HOME)."""
    wanted = str(home).encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_bytes().strip() != b"beam.smp":
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        pairs = itertools.pairwise(argv)
        if any(a == b"-home" and b == wanted for a, b in pairs) and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int], timeout: float) -> bool:
    """Wait until none of ``pids`` is alive, reaping those that are zombie children of ours."""
    deadline = time.monotonic() + timeout
    while True:
        reap_orphans(pids)
        if not any(pid_alive(p) for p in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _settle(pids: list[int], timeout: float = 3) -> None:
    """Give a dead node's helper processes a moment to exit and reap them (best effort)."""
    _wait_gone(pids, timeout)
    reap_orphans(pids)


def kill_beams_with_home(home: Path, timeout: float = 10) -> list[int]:
    """SIGCONT + SIGKILL every beam.smp running from ``home``; returns the pids killed."""
    pids = beam_pids_with_home(home)
    family = [d for pid in pids for d in descendants(pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pids, timeout):
        raise RabbitNodeError(f"beam.smp {pids} from {home} survived SIGKILL")
    _settle(family)
    return pids


class RabbitNode:
    """A private RabbitMQ node started detached from ``base_dir`` and driven by rabbitmqctl."""

    def __init__(
        self,
        name: str,
        amqp_port: int,
        dist_port: int,
        base_dir: Path,
        extra_config: str = "",
        plugins: Iterable[str] = (),
    ) -> None:
        if "@" not in name:
            name = f"{name}@localhost"
        if name == SHARED_NODE_NAME:
            raise ValueError(f"{name} is the shared broker's node name; pick another")
        if 5672 in (amqp_port, dist_port) or 25672 in (amqp_port, dist_port):
            raise ValueError("5672/25672 belong to the shared broker")
        self.name = name
        #: more rabbitmq.conf lines (e.g. a TLS listener)
        self.extra_config = extra_config
        #: plugins to enable (e.g. rabbitmq_management, with its listener in `extra_config`)
        self.plugins = tuple(plugins)
        self.amqp_port = amqp_port
        self.dist_port = dist_port
        self.base_dir = Path(base_dir).resolve()
        self.home = self.base_dir / "home"
        self.mnesia_base = self.base_dir / "mnesia"
        self.log_base = self.base_dir / "log"
        self.pid_file = self.base_dir / "node.pid"
        self.config_file = self.base_dir / "rabbitmq.conf"
        self.advanced_config_file = self.base_dir / "advanced.config"
        self.plugins_file = self.base_dir / "enabled_plugins"
        self.env_file = self.base_dir / "rabbitmq-env.conf"
        self.start_log = self.base_dir / "start.out"
        self._os_pid: int | None = None
        self._seen_pids: set[int] = set()
        #: seconds the last start() took from launch to ``await_startup`` success
        self.last_start_seconds: float | None = None

    # -- environment ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def log_file(self) -> Path:
        return self.log_base / f"{self.name}.log"

    def env(self) -> dict[str, str]:
        """The environment for the server and the CLI (no RABBITMQ_*/ERL_* leak in from ours)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.home),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.mnesia_base),
            RABBITMQ_LOG_BASE=str(self.log_base),
            RABBITMQ_PID_FILE=str(self.pid_file),
            RABBITMQ_CONFIG_FILE=str(self.config_file),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.advanced_config_file),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.plugins_file),
            # Without this, /etc/rabbitmq/rabbitmq-env.conf (NODENAME=rabbit@localhost) is sourced.
            RABBITMQ_CONF_ENV_FILE=str(self.env_file),
            # Bind the distribution listener to loopback only (default is 0.0.0.0).
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            # Only used if no epmd runs yet; the shared one on 127.0.0.1:4369 is reused otherwise.
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_CRASH_DUMP=str(self.base_dir / "erl_crash.dump"),
        )
        return env

    def _prepare(self) -> None:
        for d in (self.base_dir, self.home, self.mnesia_base, self.log_base):
            d.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(20).upper())
        os.chmod(cookie, 0o400)  # Erlang refuses a cookie readable by others
        self.config_file.write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users.guest = true\n"
            "log.console = false\n"
            "log.file.level = info\n" + self.extra_config
        )
        self.advanced_config_file.write_text("[].\n")
        # No management/prometheus listeners unless asked for.
        self.plugins_file.write_text(f"[{','.join(self.plugins)}].\n")
        self.env_file.write_text("# intentionally empty: see RabbitNode.env()\n")

    # -- CLI --------------------------------------------------------------------------------------

    def _cli(
        self, tool: str, args: tuple[str, ...], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [str(RABBITMQ_BIN / tool), "-n", self.name, *args],
                env=self.env(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RabbitNodeError(
                f"{tool} {' '.join(args)} on {self.name} timed out after {timeout}s"
            ) from exc
        finally:
            reap_orphans()  # the CLI VM's inet_gethost helpers outlive it

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl -n <node> *args``; return stdout, raise with stderr on failure."""
        proc = self._cli("rabbitmqctl", args, timeout)
        if proc.returncode != 0:
            raise RabbitNodeError(
                f"rabbitmqctl {' '.join(args)} on {self.name} exited {proc.returncode}:\n"
                f"{proc.stderr.strip()}\n{proc.stdout.strip()}"
            )
        return proc.stdout

    def diagnostics(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmq-diagnostics -n <node> *args`` and return stdout."""
        proc = self._cli("rabbitmq-diagnostics", args, timeout)
        if proc.returncode != 0:
            raise RabbitNodeError(
                f"rabbitmq-diagnostics {' '.join(args)} on {self.name} exited "
                f"{proc.returncode}:\n{proc.stderr.strip()}\n{proc.stdout.strip()}"
            )
        return proc.stdout

    def status(self, timeout: float = 30) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            self.ctl("status", "--formatter", "json", timeout=timeout)
        )
        return data

    # -- life cycle -------------------------------------------------------------------------------

    def os_pid(self) -> int | None:
        """The beam.smp pid of this node, or None when it is not running (works while paused)."""
        if self._os_pid is not None and pid_alive(self._os_pid):
            return self._os_pid
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            if pid in beam_pids_with_home(self.home):
                self._os_pid = pid
                return pid
        pids = beam_pids_with_home(self.home)
        self._os_pid = pids[0] if pids else None
        return self._os_pid

    def is_running(self) -> bool:
        return self.os_pid() is not None

    def start(self, timeout: float = 60) -> None:
        """Start detached and wait for ``await_startup``; on failure leave nothing running."""
        if self.is_running():
            raise RabbitNodeError(f"{self.name} is already running (pid {self.os_pid()})")
        become_subreaper()
        self._prepare()
        # A beam left over from a crashed run in this base dir would hold the node name.
        kill_beams_with_home(self.home)
        self.pid_file.unlink(missing_ok=True)
        for port in (self.amqp_port, self.dist_port):
            if _port_in_use(port):
                raise RabbitNodeError(f"port {port} is already in use; pick another")
        started = time.monotonic()
        deadline = started + timeout
        try:
            with self.start_log.open("ab") as out:
                # erl -detached forks and returns at once; never give it our pipes.
                subprocess.run(
                    [str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"],
                    env=self.env(),
                    cwd=self.base_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    check=True,
                    timeout=30,
                )
            self._await_startup(deadline)
        except BaseException as exc:
            self._force_kill()
            if isinstance(exc, Exception):
                raise RabbitNodeError(
                    f"{self.name} failed to start: {exc}\n{self._log_tail()}"
                ) from exc
            raise
        self.last_start_seconds = time.monotonic() - started
        self.os_pid()

    def _await_startup(self, deadline: float) -> None:
        # await_startup fails at once (69) until the node has registered with epmd, so retry.
        launched = time.monotonic()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RabbitNodeError(f"{self.name} not ready before the deadline")
            alive = beam_pids_with_home(self.home)
            self._seen_pids.update(alive)
            if time.monotonic() - launched > 5 and not alive:
                raise RabbitNodeError(
                    f"{self.name}: the Erlang VM exited during boot (a detached node's console "
                    "output is lost: run rabbitmq-server without -detached, env=node.env(), "
                    "to see why)"
                )
            proc = self._cli(
                "rabbitmqctl",
                ("await_startup", "--timeout", str(max(1, int(remaining)))),
                timeout=remaining + 10,
            )
            if proc.returncode == 0:
                return
            if proc.returncode != _EX_UNAVAILABLE:
                raise RabbitNodeError(f"await_startup exited {proc.returncode}: {proc.stderr}")
            time.sleep(0.3)

    def _log_tail(self, lines: int = 30) -> str:
        chunks: list[str] = []
        for path in (self.start_log, self.log_file):
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {path} ---\n" + "\n".join(tail))
        return "\n".join(chunks)

    def _force_kill(self) -> None:
        kill_beams_with_home(self.home)
        reap_orphans(self._seen_pids)  # beams that died on their own are zombies of ours
        self._seen_pids.clear()
        self._os_pid = None
        self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 60) -> None:
        """``rabbitmqctl stop``, wait for the beam to exit (SIGKILL if it will not). Idempotent."""
        pid = self.os_pid()
        if pid is None:
            self._force_kill()
            return
        family = descendants(pid)
        self.resume()  # a SIGSTOPped node cannot answer stop
        with contextlib.suppress(RabbitNodeError):
            self.ctl("stop", timeout=timeout)  # on failure, fall through to the kill below
        if not _wait_gone([pid], timeout=timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._force_kill()
        _settle([pid, *family])

    def kill9(self) -> None:
        """SIGKILL the node's beam.smp (a crash: no clean shutdown, connections just die)."""
        pid = self.os_pid()
        if pid is None:
            raise RabbitNodeError(f"{self.name} is not running")
        family = descendants(pid)
        os.kill(pid, signal.SIGKILL)
        if not _wait_gone([pid], timeout=10):
            raise RabbitNodeError(f"beam.smp {pid} survived SIGKILL")
        _settle(family)
        self._os_pid = None
        self.pid_file.unlink(missing_ok=True)

    def pause(self) -> None:
        """SIGSTOP the beam: the node keeps its sockets open and answers nothing."""
        pid = self.os_pid()
        if pid is None:
            raise RabbitNodeError(f"{self.name} is not running")
        os.kill(pid, signal.SIGSTOP)
        self._wait_state(pid, stopped=True)

    def resume(self) -> None:
        """SIGCONT the beam (harmless when it is not paused)."""
        pid = self.os_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            self._wait_state(pid, stopped=False)

    @staticmethod
    def _wait_state(pid: int, stopped: bool, timeout: float = 2) -> None:
        """Wait until the signal took effect (delivery is asynchronous)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = _proc_state(pid)
            if state is None or (state == "T") == stopped:
                return
            time.sleep(0.01)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults -----------------------------------------------------------------------------------

    def stop_app(self) -> None:
        """Stop the RabbitMQ app: the VM stays up, the AMQP listener and all connections close."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")

    def set_memory_alarm(self, on: bool) -> None:
        """Raise (watermark 0) or clear (watermark 0.4) the memory alarm that blocks publishers."""
        self.ctl("set_vm_memory_high_watermark", "0" if on else "0.4")

    def close_all_connections(self, why: str = "test") -> None:
        self.ctl("close_all_connections", why)

    def reset_faults(self) -> None:
        """Undo every fault this class can inject: resume, restart if dead, start_app, no alarm."""
        self.resume()
        if not self.is_running():
            self.start()
            return
        self.start_app()  # a no-op when the app runs
        self.set_memory_alarm(False)

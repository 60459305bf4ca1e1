"""`python -m bench [NAME ...]`: run benchmarks, print one JSON line per result, save and plot.

Names: forwarding, http, batch, store, keys, outage, replay, scale (default: all, in that order).
Each benchmark gets a private vhost on the broker (BENCH_AMQP_HOST/PORT, default 127.0.0.1:5672),
created and deleted with rabbitmqctl, and a scratch directory that is removed afterwards (--keep
keeps it, with the gateways' logs). Results go to bench/results/<date>.json (merged with that
day's earlier results of other benchmarks) and docs/bench.png; --smoke runs tiny sizes and saves
nothing unless --results is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import (
    batches,
    forwarding,
    http_ingress,
    key_cost,
    outage,
    replay,
    scale,
    store_writes,
)
from bench.common import FIGURE, RESULTS_DIR, Context, machine_info, private_vhost
from bench.targets import evaluate

BENCHMARKS: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        forwarding,
        http_ingress,
        batches,
        store_writes,
        key_cost,
        outage,
        replay,
        scale,
    )
}


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row, default=str), flush=True)


def sized(module: ModuleType, smoke: bool, overrides: list[str]) -> Any:
    """The module's FULL (or SMOKE) size with `FIELD=VALUE` overrides of the fields it has."""
    size = module.SMOKE if smoke else module.FULL
    fields = {f.name: f for f in dataclasses.fields(size)}
    changes: dict[str, Any] = {}
    for override in overrides:
        name, _, value = override.partition("=")
        if name in fields:
            changes[name] = type(getattr(size, name))(value)
    return dataclasses.replace(size, **changes)


async def run_one(
    module: ModuleType,
    size: Any,
    keep: bool,
    profile_dir: Path | None,
    smoke: bool = False,
    loop: str = "uvloop",
) -> list[dict[str, Any]]:
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if keep:
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-{module.NAME}-"))
            print(f"# {module.NAME}: scratch directory {workdir}", file=sys.stderr)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        url = stack.enter_context(private_vhost()) if getattr(module, "USES_BROKER", True) else ""
        ctx = Context(
            broker_url=url, workdir=workdir, profile_dir=profile_dir, smoke=smoke, loop=loop
        )
        rows: list[dict[str, Any]] = await module.run(ctx, size)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for row in rows:
        row["measured_at"] = now
    print(f"# {module.NAME}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return rows


def save(
    path: Path, rows: list[dict[str, Any]], benches: list[str], command: str
) -> dict[str, Any]:
    """Merge into the day's file: this run's benchmarks replace their earlier results."""
    document: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            document = json.loads(path.read_text())
    kept = [row for row in document.get("results", []) if row.get("bench") not in benches]
    results = kept + rows
    runs = [r for r in document.get("runs", []) if set(r.get("benchmarks", [])) - set(benches)]
    runs.append(
        {
            "command": command,
            "benchmarks": benches,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
        }
    )
    document = {
        "date": path.stem,
        "machine": runs[-1]["machine"],
        "runs": runs,
        "results": results,
        "targets": evaluate(results),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    return document


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names",
        nargs="*",
        choices=[[], *BENCHMARKS],
        metavar="NAME",
        help=f"{', '.join(BENCHMARKS)} (default: all, in that order)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the code paths")
    parser.add_argument("--keep", action="store_true", help="keep scratch directories and logs")
    parser.add_argument(
        "--results", type=Path, help="results file (default bench/results/<date>.json)"
    )
    parser.add_argument(
        "--figure", type=Path, default=FIGURE, help="figure (default docs/bench.png)"
    )
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the gateway into DIR")
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the gateways' event loop (BREAKWATER_EVENT_LOOP) where a case does not set it;"
        " the `*_asyncio` cases always run on asyncio's",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a size field of the benchmarks that have it (e.g. events=5000)",
    )
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    command = shlex.join(["python", "-m", "bench", *argv])

    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in names:
        try:
            module = BENCHMARKS[name]
            size = sized(module, args.smoke, args.set)
            got = await run_one(module, size, args.keep, args.profile, args.smoke, args.loop)
        except Exception as exc:
            failed.append(name)
            print(f"# {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        for row in got:
            emit(row)
        rows += got
    for target in evaluate(rows):
        emit({"kind": "target", **target})

    if args.smoke and args.results is None:
        return 1 if failed else 0
    path = args.results or RESULTS_DIR / f"{datetime.now(UTC).date().isoformat()}.json"
    document = save(path, rows, [n for n in names if n not in failed], command)
    print(f"# results: {path}", file=sys.stderr)
    if not args.no_plot:
        from bench.plot import draw

        draw(document, args.figure)
        print(f"# figure: {args.figure}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

"""Driving `wrk` (Debian package `wrk`): a Lua script that POSTs one JSON body, with a unique
`Idempotency-Key` per request or (`run(..., keys=False)`) with no such header at all, and a parser
for wrk's `--latency` report. Both variants build every request the same way (one `wrk.format`
per request), so that wrk, which shares the machine with the gateway, costs the same in each."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCRIPT = """\
-- POST the body in args[1]; with a key prefix in args[2] (not empty), every request gets its own
-- Idempotency-Key (args[2]-thread-n), without one no request has an Idempotency-Key header.
-- args[3], ... are more headers, each "Name: value".
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  body = file:read("*a")
  file:close()
  if args[2] and args[2] ~= "" then
    prefix = args[2] .. "-" .. tid .. "-"
  end
  headers = {["Content-Type"] = "application/json"}
  for i = 3, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
end

function request()
  counter = counter + 1
  if prefix then
    headers["Idempotency-Key"] = prefix .. counter
  end
  return wrk.format("POST", nil, headers, body)
end
"""

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m)$")


def available() -> bool:
    return shutil.which("wrk") is not None


def _ms(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse(output: str) -> dict[str, Any]:
    """The figures of one `wrk --latency` report (latencies in ms)."""
    result: dict[str, Any] = {}
    if match := re.search(r"^\s*Requests/sec:\s+([\d.]+)", output, re.M):
        result["requests_per_s"] = float(match.group(1))
    if match := re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", output, re.M):
        result["requests"] = int(match.group(1))
        result["duration_s"] = round(_ms(match.group(2)) / 1000, 3)
    if match := re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M):
        result["mean_ms"] = round(_ms(match.group(1)), 3)
        result["max_ms"] = round(_ms(match.group(3)), 3)
    for percent, value in re.findall(r"^\s+(\d+(?:\.\d+)?)%\s+(\S+)\s*$", output, re.M):
        result[f"p{float(percent):g}_ms"] = round(_ms(value), 3)
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    result["socket_errors"] = sum(int(n) for n in match.groups()) if match else 0
    return result


def run(
    url: str,
    body_file: Path,
    key_prefix: str,
    *,
    duration_s: float,
    connections: int,
    threads: int = 1,
    timeout_s: float = 10,
    keys: bool = True,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST `body_file` to `url` for `duration_s`; every request has its own Idempotency-Key
    (`key_prefix`-thread-n) when `keys`, none has the header otherwise; and `headers`."""
    script = body_file.with_suffix(".lua")
    script.write_text(SCRIPT)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={round(timeout_s)}s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        str(body_file),
        key_prefix if keys else "",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration_s + 60
    )
    figures = parse(done.stdout)
    figures["connections"] = connections
    figures["idempotency_keys"] = keys
    return figures

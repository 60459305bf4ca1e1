"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the samples are.

    python -m bench.profile_report FILE [--top N] [--match TEXT]

Prints the share of samples per thread, the top frames by self time and by inclusive time
(each frame counted once per stack), optionally only for stacks containing TEXT.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LOCATION = re.compile(r" \((?P<file>[^()]*?):(?P<line>\d+)\)$")


def _short(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (file.py)`: lines differ per sample, files do not."""
    match = _LOCATION.search(frame)
    if not match:
        return frame.strip()
    name = frame[: match.start()].strip()
    path = match.group("file")
    parts = path.split("/")
    tail = "/".join(parts[-2:]) if "site-packages" in path or "python3" in path else parts[-1]
    return f"{name} ({tail})"


def summarise(path: Path, top: int = 20, match: str | None = None) -> str:
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        if match and match not in stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        # "thread (0x7f...): MainThread" (py-spy --threads) names the thread.
        threads[frames[0].rpartition(": ")[2] if frames[0].startswith("thread") else "?"] += count
        names = [_short(f) for f in frames[1:]] or [frames[0]]
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return f"{path}: no samples"
    lines = [f"{path}: {total} samples" + (f" containing {match!r}" if match else "")]
    lines.append("threads: " + ", ".join(f"{t} {n / total:.0%}" for t, n in threads.most_common()))
    lines.append(f"-- top {top} by self time")
    lines += [f"{n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append(f"-- top {top} by inclusive time")
    lines += [f"{n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--match")
    args = parser.parse_args()
    print(summarise(args.file, args.top, args.match))


if __name__ == "__main__":
    main()

"""Breakwater's benchmark suite (issue 6): each benchmark runs the gateway and its yardstick in one
run on the same broker. `python -m bench` runs them all; `python -m bench --help` says more.

`BENCH_APP_ROOT=DIR` benchmarks the `app` package in DIR (e.g. an exported commit) instead of the
working tree's; the suite's own code stays the working tree's.
"""

from __future__ import annotations

import os
import sys

APP_ROOT = os.environ.get("BENCH_APP_ROOT")
if APP_ROOT and APP_ROOT not in sys.path:
    sys.path.insert(0, APP_ROOT)

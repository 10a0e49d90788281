"""`secstream run` whose vector store can be made slow or failing from outside: the worker of the fault
tests (tests/integration/test_faults.py) and of the backpressure benchmark (bench/e2e.py).

The store is the real embedded Qdrant engine. What a Qdrant server outage looks like
to the worker cannot be produced here (no server, no Docker), so it is injected at
the engine's boundary, where the real client's failures surface: while the file named
by ``SECSTREAM_TEST_FAULT_FILE`` says ``fail``, every store call raises the
``StoreError`` the engine raises for an unreachable server (caused by
``ConnectionRefusedError``); while it says ``slow <seconds>``, every call first sleeps
that long. Everything else is the product's code path, retry wrapper included.

Run as ``python -m bench.fault_store`` with the usual SECSTREAM_* environment. Nothing in the
product imports this module.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams import runtime
from streams.store_base import StoreError, VectorStore

FAULTY_CALLS = ("ensure", "upsert", "count", "attach", "search_dense", "search_sparse", "search_multi", "retrieve",
                "retrieve_points", "flush", "info")


def fault_now(control: Path) -> tuple[str, float]:
    """The fault asked for now: ("fail", 0), ("slow", seconds) or ("", 0)."""
    try:
        words = control.read_text().split()
    except OSError:
        return "", 0.0
    if not words:
        return "", 0.0
    return words[0], float(words[1]) if len(words) > 1 else 0.0


def faulty(store: VectorStore, control: Path) -> VectorStore:
    """Make ``store``'s calls obey ``control`` (see the module docstring); returns the same store."""
    def wrap(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def run(*args: Any, **kwargs: Any) -> Any:
            kind, seconds = fault_now(control)
            if kind == "fail":
                raise StoreError(f"{name}: injected outage") from ConnectionRefusedError(111, "Connection refused")
            if kind == "slow":
                time.sleep(seconds)
            return call(*args, **kwargs)
        return run

    for name in FAULTY_CALLS:
        setattr(store, name, wrap(name, getattr(store, name)))
    return store


def main() -> int:
    control = Path(os.environ["SECSTREAM_TEST_FAULT_FILE"])
    real_open = runtime.open_store

    def open_store(**kwargs: Any) -> VectorStore:
        return faulty(real_open(**kwargs), control)

    runtime.open_store = open_store  # build_store (streams/runtime.py) wraps it in the RetryingStore
    from streams.cli import main as cli_main

    return cli_main(["run"])


if __name__ == "__main__":
    sys.exit(main())

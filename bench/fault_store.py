"""`secstream run` whose vector store can be made slow or failing from outside: the worker of the fault
tests (tests/integration/test_faults.py) and of the backpressure benchmark (bench/e2e.py).

The store is the real embedded Qdrant engine. What a Qdrant server outage looks like
to the worker cannot be produced here (no server, no Docker), so it is injected at
the engine's boundary, where the real client's failures surface: while the file named
by ``SECSTREAM_TEST_FAULT_FILE`` says ``fail``, every store call raises the
``StoreError`` the engine raises for an unreachable server (caused by
``ConnectionRefusedError``); while it says ``slow <seconds>``, every call first sleeps
that long. Everything else is the product's code path, retry wrapper included.

The same file injects a consumer stall: when it says ``stop-fetching``, the worker's Faust consumer
pauses its events partitions once, behind the worker's back (a consumer that stops fetching); a
rebalance resumes them. That is what the consumer watch (streams/worker/consumer_watch.py) must find and
recover from (tests/integration/test_stall_guard.py).

When it says ``skip-record``, the worker's delivery loop never hands the next events record it fetches to its
stream, once (as Faust's loop did to one record after a restart in the restart stress): a hole below the
records processed after it, which the consumer watch must find and repair by seeking back.

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

from streams.stages import factory as runtime
from streams.store.base import StoreError, VectorStore

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


def stop_fetching_on_demand(control: Path) -> None:
    """Make every Worker of this process pause its events partitions once ``control`` says ``stop-fetching``."""
    from streams.worker import faust_app as worker_app

    init = worker_app.Worker.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)  # installs the worker's own getmany (streams/kafka/faust_consumer.py) ...
        skip_record_on_demand(control, self.settings.topic_events)  # ... which the skip-record fault wraps
        done = [False]

        async def inject() -> None:
            if done[0] or fault_now(control)[0] != "stop-fetching":
                return
            tps = [tp for tp in self.app.consumer.assignment() if tp.topic == self.settings.topic_events]
            if tps:
                self.app.consumer.pause_partitions(tps)
                done[0] = True
                print(f"fault: stopped fetching {sorted(tp.partition for tp in tps)}", file=sys.stderr, flush=True)

        self.app.timer(0.5, name="fault-consumer")(inject)

    worker_app.Worker.__init__ = __init__


def skip_record_on_demand(control: Path, topic: str) -> None:
    """Make the Faust consumer of this process swallow the next ``topic`` record once ``control`` says
    ``skip-record`` (see the module docstring); call after the worker installed its own ``getmany``."""
    from faust.transport import consumer as faust_consumer

    getmany = faust_consumer.Consumer.getmany
    if getattr(getmany, "_secstream_fault", False):
        return
    state = {"done": False, "checked": 0.0}

    async def skipping(self: Any, timeout: float) -> Any:
        async for tp, message in getmany(self, timeout):
            if not state["done"] and tp.topic == topic and time.monotonic() - state["checked"] > 0.2:
                state["checked"] = time.monotonic()
                if fault_now(control)[0] == "skip-record":
                    state["done"] = True
                    print(f"fault: skipped record {tp.partition}/{message.offset}", file=sys.stderr, flush=True)
                    continue
            yield tp, message

    skipping._secstream_fault = True  # type: ignore[attr-defined]
    faust_consumer.Consumer.getmany = skipping


def main() -> int:
    control = Path(os.environ["SECSTREAM_TEST_FAULT_FILE"])
    stop_fetching_on_demand(control)
    real_open = runtime.open_store

    def open_store(**kwargs: Any) -> VectorStore:
        return faulty(real_open(**kwargs), control)

    runtime.open_store = open_store  # build_store (streams/stages/factory.py) wraps it in the RetryingStore
    from streams.cli.main import main as cli_main

    return cli_main(["run"])


if __name__ == "__main__":
    sys.exit(main())

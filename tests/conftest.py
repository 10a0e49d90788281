"""Suite-wide hooks: the slowest files first, so that `make test`'s two processes finish together.

`pytest-xdist --dist loadfile` hands out whole files in collection order, one at a time as a process
frees up. In alphabetical order a file of 48 s (the stall guard) started late and ran alone at the end
while the other process sat idle (2026-12-08). Longest first (LPT scheduling) leaves only short files
for the end. The order below is the measured one (`make test`'s ``--durations``, 2026-12-08); a file not
listed keeps its place after them, so a missing or renamed entry costs time, never a test.
"""

from __future__ import annotations

import pytest

SLOWEST_FIRST = (
    "integration/test_faults.py",
    "integration/test_stall_guard.py",
    "integration/test_entity_recovery.py",
    "integration/test_alert_dedup.py",
    "integration/test_replay.py",
    "integration/test_session_recovery.py",
    "integration/test_bench_restarts.py",
    "integration/test_worker_e2e.py",
    "unit/test_categorical_training.py",
    "integration/test_fetch_wait.py",
    "integration/test_bench_e2e.py",
    "integration/test_run_demo.py",
    "integration/test_bench_traffic.py",
    "integration/test_feedback_worker.py",
    "unit/test_threshold.py",
    "integration/test_kafka_security.py",
    "integration/test_hunt.py",
)


def _rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    for i, name in enumerate(SLOWEST_FIRST):
        if path.endswith("/tests/" + name):
            return i
    return len(SLOWEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: a file's tests, and the unlisted files, keep their order

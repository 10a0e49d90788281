"""Smoke test of the restart stress (bench/restarts.py): two restarts and the drain, one partition, on the
embedded broker with real worker processes. What it asserts is the bench's own verdict on this short run
(no stall, every produced event stored exactly once), not a timing."""

from __future__ import annotations

import json

import pytest

from bench.restarts import main

pytestmark = pytest.mark.integration


def test_restarts_bench_runs_and_finds_every_event_once(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--restarts", "2", "--partitions", "1", "--rate", "40", "--seed", "3", "--json"])
    out = capsys.readouterr().out
    (row,) = json.loads(out.strip().splitlines()[-1])
    assert code == 0, out
    assert row["restarts"] == 2 and len(row["restarts_detail"]) == 3  # two restarts, then the drain
    assert row["stalls"] == 0 and row["missing"] == 0 and row["extra"] == 0
    assert row["produced"] == row["stored"] > 0
    assert all(r["exit"] in (0, -9) for r in row["restarts_detail"])  # SIGTERM exits 0, SIGKILL is -9

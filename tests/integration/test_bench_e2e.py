"""`secstream bench e2e` runs end to end on the embedded broker and a worker process (a short smoke run:
the figures themselves are the benchmark's, measured in docs/benchmarks.md, never asserted here)."""

from __future__ import annotations

import json

import pytest

from bench.e2e import main

pytestmark = pytest.mark.integration


def test_bench_e2e_reports_each_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rates", "100", "--seconds", "3", "--warmup-seconds", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (step,) = out["steps"]
    assert step["rate"] == 100 and step["sent"] > 0
    assert step["achieved"] > 0 and step["rss_max"] > 0
    assert step["cpu_us_per_event"] > 0  # the worker's CPU time over the step, per event it consumed
    assert set(step) >= {"p50_ms", "p99_ms", "lag_end", "canaries", "alerted", "sustained"}
    assert "max_sustained_p99_under_250ms" in out


def test_bench_e2e_refuses_bad_rates(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--rates", "fast"])
    assert err.value.code == 2
    assert "--rates takes numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["--workers", "5"])
    assert err.value.code == 2
    assert "--workers must be 1 to 4" in capsys.readouterr().err

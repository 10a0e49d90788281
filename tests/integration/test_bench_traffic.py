"""`secstream bench traffic` on a small stream: one worker on the embedded broker, every topic read back. What it
asserts is the bench's own bookkeeping (every event on the events topic, steps for them, bytes on every topic
read), not sizes, which are the benchmark's to measure (docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.traffic import SAMPLE, main, read_values

pytestmark = pytest.mark.integration


def test_traffic_counts_every_topic_of_a_small_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(read_values(SAMPLE)[:60]) + b"\n")
    assert main(["--events", str(events), "--json", "--timeout", "240"]) == 0
    out = json.loads(capsys.readouterr().out)
    topics = out["topics"]
    assert out["events"] == 60 and topics["secstream.events"]["messages"] == 60
    # one session step per sessionized event (entity steps wait for the detector's warm-up: none in 60 events)
    assert 0 < topics["secstream-session-steps"]["messages"] <= 60 and topics["secstream-sessions-changelog"]["messages"]
    assert all(v["bytes"] > 0 for v in topics.values())


def test_traffic_refuses_a_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--events", "/nonexistent/events.jsonl"])
    assert err.value.code == 2 and "no such file" in capsys.readouterr().err

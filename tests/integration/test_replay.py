"""`secstream replay`: the output contract of docs/architecture.md, on the real sshd sample and
on a JSON-lines file with bad records (recorded as errors, exit code 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.alert import validate_alert
from streams.cli.main import main

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
OPENSSH = DATA / "loghub" / "OpenSSH_2k.log"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.skipif(not OPENSSH.exists(), reason=f"sample data not found at {OPENSSH} (needs ../shared/data)")
def test_replay_openssh_writes_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert main(["replay", str(OPENSSH), "--format", "sshd", "--out", str(out)]) == 0
    events = _lines(out / "events.jsonl")
    assert len(events) == 2000
    for e in events:
        assert set(e) == {"event_id", "session_id", "score", "alert"}
        assert 0.0 <= e["score"] <= 100.0 and isinstance(e["alert"], bool)
    alerts = _lines(out / "alerts.jsonl")
    event_alerts = [a for a in alerts if a["kind"] == "event_anomaly"]
    assert event_alerts and len(event_alerts) == sum(e["alert"] for e in events)
    for a in alerts:
        validate_alert(a)
    assert {a["evidence"]["event_ids"][0] for a in event_alerts} <= {e["event_id"] for e in events}
    assert (out / "sessions.jsonl").exists()
    for s in _lines(out / "sessions.jsonl"):
        assert set(s) == {"session_id", "score", "alert", "events"} and s["events"] >= 1


def test_replay_records_bad_lines_as_errors(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    good = {"time": "2026-01-01T00:00:00Z", "message": "Accepted password for alice", "session_id": "s1"}
    src.write_bytes(b"\n".join([
        json.dumps(good).encode(),
        b"{not json",
        json.dumps({"message": "no time"}).encode(),
        b"\xff\xfe binary",
        json.dumps({**good, "time": "2026-01-01T00:00:01Z"}).encode(),
    ]) + b"\n")
    out = tmp_path / "r"
    assert main(["replay", str(src), "--format", "jsonl", "--out", str(out)]) == 0
    events = _lines(out / "events.jsonl")
    assert [("error" in e) for e in events] == [False, True, True, True, False]
    assert [e["line"] for e in events if "error" in e] == [2, 3, 4]
    assert events[1]["error"].startswith("not_json") and events[2]["error"].startswith("missing_field")
    assert events[3]["error"].startswith("not_utf8")
    sessions = _lines(out / "sessions.jsonl")
    assert sessions == [{"session_id": "s1", "score": sessions[0]["score"], "alert": False, "events": 2}]


HDFS = DATA / "hdfs" / "hdfs_events_2percent.parquet"


@pytest.mark.skipif(not HDFS.exists(), reason=f"HDFS sample not found at {HDFS} (needs ../shared/data)")
def test_replay_hdfs_subset_sessions_and_session_alerts(tmp_path: Path) -> None:
    from bench.eval_hdfs import load_records
    from streams.cli.replay import replay_records
    from streams.stages.factory import build_pipeline
    from streams.config.settings import Settings

    recs, ordered = load_records(HDFS, limit_sessions=400)
    assert ordered
    out = tmp_path / "r"
    summary = replay_records(iter(recs), build_pipeline(Settings(), store=None), out, batch_size=500)
    events = _lines(out / "events.jsonl")
    sessions = _lines(out / "sessions.jsonl")
    assert len(events) == len(recs) and summary.sessions == len(sessions)
    for s in sessions:
        assert set(s) == {"session_id", "score", "alert", "events"} and s["events"] >= 1
        assert 0.0 <= s["score"] <= 100.0
    assert sum(s["events"] for s in sessions) == len(events)
    assert {e["session_id"] for e in events} == {s["session_id"] for s in sessions}
    assert {s["session_id"].split("#")[0] for s in sessions} <= {json.loads(r.value)["session_id"] for r in recs}
    session_alerts = [a for a in _lines(out / "alerts.jsonl") if a["kind"] == "session_anomaly"]
    assert session_alerts and len(session_alerts) == sum(s["alert"] for s in sessions)
    for a in session_alerts:
        validate_alert(a)
        assert a["evidence"]["session_id"] and 1 <= len(a["evidence"]["event_ids"]) <= 20
        assert a["explanation"]["top_terms"] and set(a["explanation"]["components"]) == {"events", "templates"}


@pytest.mark.skipif(not HDFS.exists(), reason=f"HDFS sample not found at {HDFS} (needs ../shared/data)")
def test_eval_hdfs_subset_prints_metrics_and_writes_the_pr_curve(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench.eval_hdfs import evaluate

    res = evaluate(DATA, limit_sessions=300, plot=tmp_path / "pr.png")
    assert res["blocks"] == 300 and res["threshold"] == 90.0
    for key in ("roc_auc", "pr_auc", "precision", "recall", "f1", "best_f1"):
        assert 0.0 <= res[key] <= 1.0 or res[key] != res[key], key  # NaN only without both classes
    png = Path(res["pr_curve_png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = Path(res["pr_curve_csv"]).read_text(encoding="utf-8").splitlines()
    assert rows[0] == "threshold,precision,recall" and len(rows) > 2

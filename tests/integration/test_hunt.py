"""`secstream hunt` end to end: a real edge store filled by the real pipeline (replay of the bundled
sample, sessions included), the worker's saved encoder state, then hunts through the API and the CLI."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from encoders.hybrid import HybridEncoder
from streams.adapters import read_records
from streams.cli.main import main
from streams.hunt.engine import HuntError, HuntFilters, HuntHit, hunt
from streams.cli.replay import replay_records
from streams.stages.factory import build_pipeline, build_session_stage, build_store
from streams.sample import sample_path
from streams.config.settings import Settings
from streams.stages.snapshots import save_state
from streams.store import CollectionSpec, StorePoint, VectorStore, point_id

pytestmark = pytest.mark.integration

#: the first 3,300 sample events hold the mimikatz chain (02:31) and the rclone exfiltration (03:00)
N_EVENTS = 3300
LIKED = "sample-002546"  # mimikatz.exe sekurlsa::logonpasswords, process create


@dataclass
class Hunted:
    data_dir: Path
    settings: Settings
    encoder: HybridEncoder
    events: dict[str, dict[str, Any]]  # event_id → the input event
    sessions: list[str]  # session ids written by the replay
    alert: dict[str, Any]  # an event_anomaly alert stored in the "alerts" collection


@pytest.fixture(scope="module")
def hunted(tmp_path_factory: pytest.TempPathFactory) -> Hunted:
    data_dir = tmp_path_factory.mktemp("hunt")
    settings = Settings(data_dir=data_dir)
    records = list(itertools.islice(read_records(sample_path(), "jsonl"), N_EVENTS))
    store = build_store(settings)
    try:
        pipeline = build_pipeline(settings, store)
        stage = build_session_stage(settings, pipeline, store)
        replay_records(iter(records), pipeline, data_dir / "out", sessions=stage)
        save_state(pipeline, data_dir / "state")  # as Worker.save does
        alerts = [json.loads(line) for line in (data_dir / "out" / "alerts.jsonl").read_text().splitlines()]
        alert = next(a for a in alerts if a["kind"] == "event_anomaly" and a["evidence"]["event_ids"] == ["sample-002548"])
        # the "alerts" collection as the alert stage stores it: point id = point_id(alert_id), payload = the alert
        store.ensure(CollectionSpec(name="alerts", dense_dim=pipeline.encoder.dim, sparse_name=None))
        evidence = store.retrieve_points("events", [point_id("sample-002548")])[0]
        store.upsert("alerts", [StorePoint(id=point_id(alert["alert_id"]), dense=evidence.dense, payload=alert)])
    finally:
        store.close()
    events = {e["event_id"]: e for e in (json.loads(r.value) for r in records if r.value is not None)}
    sessions = [json.loads(line)["session_id"] for line in (data_dir / "out" / "sessions.jsonl").read_text().splitlines()]
    return Hunted(data_dir, settings, pipeline.encoder, events, sessions, alert)


@pytest.fixture
def store(hunted: Hunted) -> Iterator[VectorStore]:
    s = build_store(hunted.settings)
    yield s
    s.close()


def _event_ids(hits: list[HuntHit]) -> list[str]:
    return [h.payload["event_id"] for h in hits if h.collection == "events"]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_text_query_finds_the_events_containing_the_text_first(hunted: Hunted, store: VectorStore) -> None:
    containing = {i for i, e in hunted.events.items() if "mimikatz" in e["message"].lower()}
    assert 2 <= len(containing) <= 10
    result = hunt(store, hunted.encoder, "mimikatz", limit=20)
    first = result.hits[: len(containing)]
    assert {h.payload.get("event_id") for h in first} == containing
    assert all(h.collection == "events" and "sparse" in h.ranks for h in first)
    rclone = {i for i, e in hunted.events.items() if "rclone" in e["message"].lower()}
    hits = hunt(store, hunted.encoder, "rclone", limit=len(rclone), collections=("events",)).hits
    assert len(rclone) >= 2 and set(_event_ids(hits)) == rclone
    # a phrase: events that both lists found (the template by the dense vector, the words by the sparse terms)
    hits = hunt(store, hunted.encoder, "Accepted publickey for", limit=10, collections=("events",)).hits
    assert len(hits) == 10
    assert all("Accepted publickey for" in h.payload["message"] and set(h.ranks) == {"dense", "sparse"} for h in hits)


def test_like_an_event_returns_it_first_then_similar_ones(hunted: Hunted, store: VectorStore) -> None:
    result = hunt(store, hunted.encoder, like=LIKED, limit=10)
    top = result.hits[0]
    assert top.collection == "events" and top.payload["event_id"] == LIKED and top.ranks["like"] == 1
    assert top.scores["like"] == pytest.approx(1.0, abs=1e-3)
    liked = hunted.events[LIKED]
    similar = [h for h in result.hits[1:] if h.collection == "events"][:4]
    assert len(similar) == 4
    # the next events are process starts (Sysmon 1 / Security 4688) on the same workstation
    assert all(h.payload["event_type"] == liked["event_type"] == "process_start" for h in similar)
    assert all(h.payload["host"] == liked["host"] for h in similar)
    sessions = [h for h in result.hits if h.collection == "sessions"]
    assert sessions and sessions[0].payload["entity"] == {"type": "user", "id": "srahman@ws-sgp-005"}
    assert "like" in sessions[0].ranks


def test_like_an_alert_uses_its_evidence_events(hunted: Hunted, store: VectorStore) -> None:
    result = hunt(store, hunted.encoder, like=hunted.alert["alert_id"], limit=5, collections=("events",))
    assert result.hits[0].payload["event_id"] == "sample-002548"
    with pytest.raises(HuntError, match="not found; --like takes an event id or an alert id stored in") as info:
        hunt(store, hunted.encoder, like="no-such-id", store_label="STORE")
    assert "STORE" in str(info.value) and "\n" not in str(info.value)


def test_entity_and_time_filters_keep_exactly_what_they_should(hunted: Hunted, store: VectorStore) -> None:
    since, until = _epoch("2025-03-11T02:25:00Z"), _epoch("2025-03-11T02:40:00Z")

    def expected(keep: Any) -> set[str]:
        return {i for i, e in hunted.events.items() if keep(e)}

    def inside(e: dict[str, Any]) -> bool:
        return since <= _epoch(e["time"]) <= until

    # --like ranks every point the filter lets through (no similarity floor), so the sets are exact
    cases = [
        (HuntFilters(entity=("user", "srahman")), expected(lambda e: e.get("user") == "srahman")),
        (HuntFilters(entity=(None, "ws-sgp-005")), expected(lambda e: "ws-sgp-005" in
                                                           {e.get(f) for f in ("user", "host", "src_ip", "dst_ip")})),
        (HuntFilters(since=since, until=until), expected(inside)),
        (HuntFilters(entity=("host", "ws-sgp-005"), since=since, until=until),
         expected(lambda e: e.get("host") == "ws-sgp-005" and inside(e))),
        (HuntFilters(entity=("src_ip", "10.99.99.99")), set()),
    ]
    for filters, want in cases:
        assert len(want) < 400 and (want or filters.entity == ("src_ip", "10.99.99.99"))
        hits = hunt(store, hunted.encoder, like=LIKED, filters=filters, limit=400, collections=("events",)).hits
        assert set(_event_ids(hits)) == want, filters
    # sessions: by their own entity (user@host sessions belong to the user and to the host), overlapping the range
    all_srahman = hunt(store, hunted.encoder, like=LIKED, filters=HuntFilters(entity=("user", "srahman")), limit=400,
                       collections=("sessions",)).hits
    assert {h.payload["session_id"] for h in all_srahman} == {
        s for s in hunted.sessions if s.startswith("user+host:srahman@")}
    in_range = hunt(store, hunted.encoder, like=LIKED, filters=HuntFilters(entity=("user", "srahman"), since=since,
                                                                           until=until),
                    limit=400, collections=("sessions",)).hits
    assert {h.id for h in in_range} == {h.id for h in all_srahman
                                        if h.payload["end_epoch"] >= since and h.payload["start_epoch"] <= until}
    assert 0 < len(in_range) < len(all_srahman)
    by_host = hunt(store, hunted.encoder, like=LIKED, filters=HuntFilters(entity=("host", "ws-sgp-005")), limit=400,
                   collections=("sessions",)).hits
    assert {h.payload["session_id"] for h in by_host} == {
        s for s in hunted.sessions if s.split("#")[0].endswith("@ws-sgp-005") or s.split("#")[0] == "host:ws-sgp-005"}
    assert len(by_host) >= 2


def test_cli_prints_a_table_and_json_lines(hunted: Hunted, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SECSTREAM_DATA_DIR", str(hunted.data_dir))
    monkeypatch.delenv("SECSTREAM_QDRANT_URL", raising=False)
    assert main(["hunt", "mimikatz", "--entity", "host:ws-sgp-005", "--until", "2025-03-11T03:00:00Z",
                 "--limit", "3"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["#", "kind", "rrf", "via", "time", "entity", "score", "summary"]
    assert len(lines) == 2 + 3 and all(line.split()[1] == "event" for line in lines[2:])
    assert "user:srahman" in lines[2] and "sparse:1" in lines[2]
    assert "3 hits" in err and "note:" not in err  # the worker's encoder state was found
    assert main(["hunt", "--like", LIKED, "--limit", "4", "--json"]) == 0
    out, _ = capsys.readouterr()
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["rank"] for d in docs] == [1, 2, 3, 4]
    assert docs[0]["collection"] == "events" and docs[0]["payload"]["event_id"] == LIKED
    assert docs[0]["id"] == point_id(LIKED) and docs[0]["ranks"]["like"] == 1
    assert set(docs[0]) == {"rank", "collection", "id", "rrf", "ranks", "scores", "payload"}


@pytest.mark.parametrize(("argv", "needle"), [
    (["hunt", "x", "--since", "yesterday"], "--since: 'yesterday' is not a time"),
    (["hunt", "x", "--until", "2025-99-01"], "--until:"),
    (["hunt", "x", "--entity", "usr:root"], "valid: user, host, src_ip, dst_ip"),
    (["hunt", "x", "--limit", "0"], "--limit must be >= 1"),
    (["hunt"], "TEXT, --like ID, or both"),
    (["hunt", "x", "--since", "1h", "--until", "2h"], "--since is after --until"),
])
def test_cli_bad_arguments_give_one_line_and_exit_2(argv: list[str], needle: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_cli_store_held_by_a_worker_is_one_line_not_a_traceback(hunted: Hunted, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = ("import sys; from pathlib import Path; from streams.store import EdgeStore; "
            "s = EdgeStore(Path(sys.argv[1])); s.attach('events'); print('ready', flush=True); sys.stdin.read(); "
            "s.close()")
    holder = subprocess.Popen(  # another process holds the embedded store, as a running worker does
        [sys.executable, "-c", code, str(hunted.data_dir / "qdrant")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        monkeypatch.setenv("SECSTREAM_DATA_DIR", str(hunted.data_dir))
        monkeypatch.delenv("SECSTREAM_QDRANT_URL", raising=False)
        assert main(["hunt", "mimikatz"]) == 1
        err = capsys.readouterr().err
        assert "open in another process" in err and len(err.strip().splitlines()) == 1
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    monkeypatch.setenv("SECSTREAM_DATA_DIR", str(hunted.data_dir / "nowhere"))
    assert main(["hunt", "mimikatz"]) == 1
    assert "no store at" in capsys.readouterr().err

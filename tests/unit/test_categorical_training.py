"""Self-supervised categorical tables: synthetic separation, artifact round trip, unknown row, real data."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoders.categorical import CategoricalEncoder, normalize_value, read_artifact, write_artifact
from encoders.training import TrainConfig, adjacency_relations, mean_pair_cosine, sessionize, train_categorical

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GROUPS = (("a1", "a2", "a3"), ("b1", "b2", "b3"))


def _synthetic(n_sessions: int = 300, length: int = 8, seed: int = 0) -> list[list[dict[str, Any]]]:
    """Each session draws all its event types from one group; the groups never meet."""
    rng = random.Random(seed)
    sessions = []
    for s in range(n_sessions):
        group = GROUPS[s % 2]
        sessions.append([{"time": f"2024-01-01T00:{i:02d}:00Z", "message": "x", "event_type": rng.choice(group),
                          "process": f"/usr/bin/{group[0][0]}proc", "session_id": f"s{s}"} for i in range(length)])
    return sessions


def _cos(table: np.ndarray, vocab: list[str], a: str, b: str) -> float:
    return mean_pair_cosine(table, vocab, [(a, b)])


@pytest.fixture(scope="module")
def trained() -> Any:
    return train_categorical(_synthetic(), TrainConfig(fields=("event_type", "process"), epochs=3, seed=3))


def test_normalize_process_basename() -> None:
    assert normalize_value("process", "C:\\Windows\\System32\\CMD.EXE") == "cmd.exe"
    assert normalize_value("process", "/usr/sbin/sshd") == "sshd"
    assert normalize_value("event_type", " Logon ") == "logon"


def test_synthetic_groups_separate(trained: Any) -> None:
    table, vocab = trained.tables["event_type"], trained.vocab["event_type"]
    within = [_cos(table, vocab, a, b) for g in GROUPS for a, b in itertools.combinations(g, 2)]
    between = [_cos(table, vocab, a, b) for a in GROUPS[0] for b in GROUPS[1]]
    assert min(within) > max(between)
    assert np.mean(within) - np.mean(between) > 0.2
    assert trained.loss_curve[-1] < trained.loss_curve[0]


def test_training_is_deterministic(trained: Any) -> None:
    again = train_categorical(_synthetic(), TrainConfig(fields=("event_type", "process"), epochs=3, seed=3))
    for f in trained.fields:
        np.testing.assert_array_equal(again.tables[f], trained.tables[f])


def test_artifact_round_trip_and_unknown(trained: Any, tmp_path: Path) -> None:
    art = write_artifact(tmp_path, trained.fields, trained.vocab, trained.tables, {"training": {"epochs": 3}})
    assert art.version.startswith("cat-v1-") and read_artifact(tmp_path).version == art.version
    enc, again = CategoricalEncoder(artifact=tmp_path), CategoricalEncoder.from_artifact(tmp_path / "categorical.json")
    assert enc.version == art.version and enc.dim == 16 and enc.trained
    events = [{"event_type": "a1", "process": "/usr/bin/aproc"}, {"event_type": "mimikatz", "process": "x.exe"}]
    np.testing.assert_array_equal(enc.encode(events).vectors, again.encode(events).vectors)
    assert enc.bucket("event_type", "never-seen") == 0 == enc.bucket("process", "C:\\tmp\\mimikatz.exe")
    # the unknown event's vector is exactly the learned unknown rows
    expected = np.concatenate([trained.tables["event_type"][0], trained.tables["process"][0]])
    np.testing.assert_allclose(enc.encode(events[1:]).vectors[0], expected / np.linalg.norm(expected), atol=1e-6)
    enc.update([{"event_type": "mimikatz"}])  # frozen vocabulary
    assert enc.bucket("event_type", "mimikatz") == 0
    with pytest.raises(ValueError):
        CategoricalEncoder().restore(enc.snapshot())


def test_artifact_tamper_detected(trained: Any, tmp_path: Path) -> None:
    write_artifact(tmp_path, trained.fields, trained.vocab, trained.tables)
    meta = tmp_path / "categorical.json"
    meta.write_text(meta.read_text().replace('"a1"', '"zz"'))
    with pytest.raises(ValueError):
        read_artifact(tmp_path)


def test_sessionize_fallbacks() -> None:
    events = [
        {"time": "2024-01-01T00:00:00Z", "host": "h", "attributes": {"pid": 1}},
        {"time": "2024-01-01T00:00:01Z", "host": "h", "attributes": {"pid": 2}},
        {"time": "2024-01-01T00:00:02Z", "host": "h", "attributes": {"pid": 1}},
        {"time": "2024-01-01T00:10:00Z", "host": "g"},
        {"time": "2024-01-01T01:10:00Z", "host": "g"},
        {"time": "2024-01-01T00:00:00Z", "session_id": "s"},
    ]
    assert [len(s) for s in sessionize(events)] == [2, 1, 1, 1, 1]


def test_train_command(tmp_path: Path) -> None:
    from streams.cli.train import main

    data = tmp_path / "e.jsonl"
    lines = [f'{{"time": "2024-01-01T00:{i % 60:02d}:00Z", "message": "m", "event_type": "t{i % 3}", '
             f'"session_id": "s{i // 6}"}}' for i in range(120)]
    data.write_text("\n".join([*lines, "not json"]) + "\n")
    assert main(["categorical", str(data), "--format", "jsonl", "--out", str(tmp_path / "m"), "--epochs", "1"]) == 0
    art = read_artifact(tmp_path / "m")
    assert art.metadata["training"]["records"] == 121 and art.metadata["training"]["rejected"] == 1
    assert main([str(tmp_path / "nope.log"), "--out", str(tmp_path / "x")]) == 2


@pytest.mark.skipif(not (DATA / "hdfs").is_dir(), reason="needs ../shared/data/hdfs (sample data not in this checkout)")
def test_hdfs_related_event_types_nearer() -> None:
    """Related = consecutive in a block >= 5 times; unrelated = never within 2 events. Values >= 20 events.

    The adapter's records as plain JSON (training reads fields, not the decoded model: decoding 222k events
    took 25 of this test's 40 s), and every fourth block (2,876 blocks: 10 related and 3 unrelated pairs)."""
    import json

    from streams.adapters import read_records

    records = read_records(DATA / "hdfs" / "hdfs_events_2percent.parquet", "parquet")
    sessions = sessionize(json.loads(r.value) for r in records if r.value is not None)[::4]
    result = train_categorical(sessions, TrainConfig(epochs=3))
    related, unrelated = adjacency_relations(sessions, "event_type", min_count=20)
    assert related and unrelated
    table, vocab = result.tables["event_type"], result.vocab["event_type"]
    after = mean_pair_cosine(table, vocab, related), mean_pair_cosine(table, vocab, unrelated)
    before = (mean_pair_cosine(result.initial_tables["event_type"], vocab, related),
              mean_pair_cosine(result.initial_tables["event_type"], vocab, unrelated))
    print(f"event_type related/unrelated cosine before {before}, after {after}")
    assert after[0] > after[1]

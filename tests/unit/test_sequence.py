"""Session sequence model (GRU, next-template prediction): learns a grammar, seeded determinism,
snapshot/restore and artifact round trips, argument checks, online readiness, session-score
integration and `secstream train sessions` on an HDFS slice."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from detection.sequence import (
    ARTIFACT_JSON,
    OnlineSequenceScorer,
    SequenceModel,
    SequenceSurprise,
    load_artifact,
    write_artifact,
)
from detection.session_score import SessionScorer, session_alert
from detection.sessions import Session
from schemas.alert import validate_alert

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SMALL = {"hidden": 16, "emb_dim": 8, "batch_size": 32, "lr": 0.01}


def _grammar(n: int, seed: int) -> list[list[str]]:
    """login, 1–4 × (read, write), logout: "write" always follows "read"."""
    rng = random.Random(seed)
    return [["login", *(["read", "write"] * rng.randint(1, 4)), "logout"] for _ in range(n)]


@pytest.fixture(scope="module")
def trained() -> SequenceModel:
    model = SequenceModel(seed=3, **SMALL)
    model.fit(_grammar(400, 0), epochs=15)
    return model


def _as_json(obj: object) -> object:
    return json.loads(json.dumps(obj, default=lambda a: np.asarray(a).tolist()))


def test_learns_grammar_broken_order_is_surprising(trained: SequenceModel) -> None:
    normal = trained.surprise(_grammar(50, 1))
    broken = trained.surprise([["login", "read", "write", "read", "logout"],  # a write is missing
                               ["login", "read", "read", "write", "logout"]])  # a read came twice
    worst_normal = max(s.max_nll for s in normal)
    assert all(b.max_nll > worst_normal + 1.0 for b in broken)
    assert broken[0].worst[:2] == ("read", "logout") and broken[0].worst[2] < 0.05
    assert broken[1].worst[:2] == ("read", "read")
    assert all(s.steps == len(seq) + 1 for s, seq in zip(normal, _grammar(50, 1)))
    unseen = trained.surprise([["login", "format_disk", "logout"]])[0]  # a template never seen: UNK
    assert unseen.max_nll > worst_normal and unseen.misses >= 1


def test_fit_is_seeded_and_leaves_global_rng_alone() -> None:
    data = _grammar(120, 5)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = SequenceModel(seed=9, **SMALL), SequenceModel(seed=9, **SMALL)
    assert a.fit(data, 2) == b.fit(data, 2)
    assert torch.rand(1).item() == before.item()  # the global torch RNG did not move
    sa, sb = a.snapshot(), b.snapshot()
    assert sa["meta"] == sb["meta"] and all(np.array_equal(sa["arrays"][k], sb["arrays"][k]) for k in sa["arrays"])
    assert a.surprise(data[:5]) == b.surprise(data[:5])
    c = SequenceModel(seed=10, **SMALL)
    c.fit(data, 2)
    assert not np.array_equal(c.snapshot()["arrays"]["out.weight"], sa["arrays"]["out.weight"])


def test_numpy_inference_matches_torch_forward(trained: SequenceModel) -> None:
    ids = trained._encode(["login", "read", "write", "logout"])[0][:-1]
    with torch.no_grad():
        ref = torch.log_softmax(trained.net(torch.tensor([ids])), dim=-1)[0].double().numpy()
    assert np.abs(ref - trained.log_probs(ids)).max() < 1e-4


def test_snapshot_restore_and_artifact_round_trip(trained: SequenceModel, tmp_path: Path) -> None:
    probe = [*_grammar(5, 7), ["login", "write", "logout"], ["nothing", "known"]]
    expected = trained.surprise(probe)
    restored = SequenceModel.from_snapshot(_as_json(trained.snapshot()))  # type: ignore[arg-type]
    assert restored.surprise(probe) == expected
    written = write_artifact(tmp_path / "m", trained, {"training": {"sessions": 400}})
    loaded = load_artifact(tmp_path / "m")
    assert loaded.version == written.version and loaded.version.startswith("seq-v1-")
    assert loaded.metadata["training"]["sessions"] == 400
    assert loaded.model.surprise(probe) == expected and loaded.model.vocab == trained.vocab
    doc = json.loads((tmp_path / "m" / ARTIFACT_JSON).read_text())
    doc["model"]["vocab"] = list(reversed(doc["model"]["vocab"]))
    (tmp_path / "m" / ARTIFACT_JSON).write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="artifact content"):
        load_artifact(tmp_path / "m")
    with pytest.raises(ValueError, match="never fitted"):
        write_artifact(tmp_path / "x", SequenceModel(**SMALL))


def test_vocabulary_is_bounded_rest_is_unk() -> None:
    model = SequenceModel(max_vocab=8, min_count=2, **SMALL)
    seqs = [[f"t{i % 12}", f"t{(i + 1) % 12}"] for i in range(240)] + [["once"]]
    model.fit(seqs, 1)
    assert len(model.vocab) == 8 and "once" not in model.vocab
    assert model.net.emb.weight.shape[0] == 4 + 8


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_vocab": 4}, r"max_vocab must be in \[8, 65536\]"),
    ({"hidden": 0}, r"hidden must be in \[2, 1024\]"),
    ({"max_len": 1}, r"max_len must be in \[2, 100000\]"),
    ({"top_g": 0}, r"top_g must be in \[1, 1024\]"),
    ({"lr": 0.0}, r"lr must be in \(0, 1\]"),
    ({"batch_size": 0}, r"batch_size must be in \[1, 4096\]"),
])
def test_bad_model_arguments_name_the_range(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SequenceModel(**kwargs)


def test_bad_online_arguments_and_fit_arguments() -> None:
    with pytest.raises(ValueError, match=r"buffer must be in \[1, "):
        OnlineSequenceScorer(buffer=0)
    with pytest.raises(ValueError, match=r"refit_every must be in \[0, "):
        OnlineSequenceScorer(refit_every=-1)
    with pytest.raises(ValueError, match="epochs and max_steps must be >= 1"):
        SequenceModel(**SMALL).fit([["a"]], 0)
    with pytest.raises(ValueError, match="at least one sequence"):
        SequenceModel(**SMALL).fit([], 1)


def test_online_scorer_not_ready_before_first_fit_then_refits() -> None:
    online = OnlineSequenceScorer(min_sessions=30, refit_every=20, first_epochs=2, epochs=1, seed=1, **SMALL)
    data = _grammar(80, 2)
    for seq in data[:29]:
        assert online.surprise(seq) is None and not online.ready
        assert online.learn(seq) is False
    assert online.learn(data[29]) is True and online.ready
    assert online.surprise(data[30]) is not None
    fits = [online.learn(seq) for seq in data[30:70]]
    assert fits.count(True) == 2 and online.model.fits == 3
    other = OnlineSequenceScorer(min_sessions=30, refit_every=20, first_epochs=2, epochs=1, seed=1, **SMALL)
    other.restore(_as_json(online.snapshot()))  # type: ignore[arg-type]
    assert other.surprise(data[75]) == online.surprise(data[75])
    assert [other.learn(s) for s in data[70:80]] == [online.learn(s) for s in data[70:80]]
    assert other.surprise(data[0]) == online.surprise(data[0])


def _session(sid: str, seq: list[str]) -> Session:
    s = Session(session_id=sid, key=sid, entity=("session", sid), start=0.0, end=float(len(seq)), events=len(seq),
                vec=np.eye(8, dtype=np.float64)[0])
    for tid in seq:
        s.bag[tid] += 1
        s.sequence.append(tid)
        s.templates[tid] = f"template {tid}"
    return s


def test_session_scorer_uses_sequence_only_when_ready_and_round_trips() -> None:
    def scorer() -> SessionScorer:
        online = OnlineSequenceScorer(min_sessions=60, refit_every=50, first_epochs=20, epochs=5, seed=2, **SMALL)
        return SessionScorer(8, k=5, bag_dim=32, warmup=10, invariants=False, sequence=online)

    sc = scorer()
    grammar = _grammar(160, 3)
    early = [sc.process(_session(f"n{i}", seq)) for i, seq in enumerate(grammar[:60])]
    assert all(r.sequence is None and r.sequence_score == 0.0 for r in early)
    late = [sc.process(_session(f"n{i}", seq)) for i, seq in enumerate(grammar[60:], start=60)]
    assert all(r.sequence is not None for r in late) and sc.sequence is not None and sc.sequence.ready
    other = scorer()
    other.restore(_as_json(sc.snapshot()))  # type: ignore[arg-type]
    odd = _session("odd", ["login", "read", "read", "write", "logout"])
    r1, r2 = sc.score(odd), other.score(odd)
    assert r1.sequence == r2.sequence and r1.score == r2.score and r1.sequence_score == r2.sequence_score
    assert r1.sequence is not None and r1.sequence.worst[:2] == ("read", "read")
    assert r1.sequence_score > np.percentile([r.sequence_score for r in late], 90)


def test_alert_names_the_sequence_step_when_it_drives() -> None:
    sc = SessionScorer(8, k=3, bag_dim=32, warmup=0, invariants=False)
    for i in range(20):
        sc.process(_session(f"n{i}", ["a", "b"]))
    odd = _session("odd", ["a", "c", "b"])
    res = sc.score(odd)
    drives = dataclasses.replace(res, sequence_score=100.0,
                                 sequence=SequenceSurprise(9.0, 3.0, ("a", "c", 1.2e-4), 1, 4))
    terms = [t["term"] for t in session_alert(odd, drives, model_version="t")["explanation"]["top_terms"]]
    assert terms[0] == "unexpected next template (sequence model, p=0.00012): template a → template c"
    validate_alert(session_alert(odd, drives, model_version="t"))
    quiet = dataclasses.replace(res, sequence_score=0.5,
                                sequence=SequenceSurprise(1.0, 0.5, ("a", "c", 0.4), 0, 4))
    terms = [t["term"] for t in session_alert(odd, quiet, model_version="t")["explanation"]["top_terms"]]
    assert not any("sequence model" in t for t in terms)


def test_train_sessions_command_errors(tmp_path: Path) -> None:
    from streams.cli.train import main

    assert main(["sessions", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "x")]) == 2
    data = tmp_path / "e.jsonl"
    data.write_text('{"time": "2024-01-01T00:00:00Z", "message": "m"}\n')
    assert main(["sessions", str(data), "--format", "jsonl", "--out", str(tmp_path / "x")]) == 2  # no session key
    assert main(["sessions", str(data), "--format", "jsonl", "--out", str(tmp_path / "x"), "--key-regex", "("]) == 2


@pytest.mark.skipif(not (DATA / "hdfs").is_dir(), reason="needs ../shared/data/hdfs (sample data not in this checkout)")
def test_train_sessions_on_hdfs_slice_matches_pipeline_template_ids(tmp_path: Path) -> None:
    from streams.adapters import read_records
    from streams.stages.pipeline import Accepted
    from streams.stages.factory import build_pipeline
    from streams.config.settings import Settings
    from streams.cli.train import main

    path = DATA / "hdfs" / "hdfs_events_2percent.parquet"
    out = tmp_path / "m"
    assert main(["sessions", str(path), "--format", "parquet", "--out", str(out), "--limit", "3000",
                 "--epochs", "1", "--key-regex", r"blk_-?\d+"]) == 0
    art = load_artifact(out)
    assert art.metadata["training"]["records"] == 3000 and art.metadata["training"]["sessions"] > 50
    pipeline = build_pipeline(Settings(), store=None)
    values = [r.value for r in read_records(path, "parquet") if r.value is not None][:3000]
    ids: Counter[str] = Counter()
    for i in range(0, len(values), 2000):
        outcome = pipeline.process(values[i: i + 2000])
        ids.update(r.template_id for r in outcome.results if isinstance(r, Accepted) and r.template_id)
    assert set(art.model.vocab) == {t for t, n in ids.items() if n >= art.model.min_count}

"""Rare and first-seen values (Good–Turing missing mass), pure."""

from __future__ import annotations

import copy
import random

from detection.rarity import ValueRarity, field_value


def _events(values: list[str], field: str = "process") -> list[dict]:
    return [{field: v} for v in values]


def test_first_seen_is_surprising_only_where_the_vocabulary_is_stable() -> None:
    stable = ValueRarity(fields=("process",), min_events=10)
    stable.learn(_events(["chrome.exe", "outlook.exe", "teams.exe"] * 400))
    churn = ValueRarity(fields=("process",), min_events=10)
    churn.learn(_events([f"tmp{i}.exe" for i in range(600)] + ["chrome.exe"] * 600))
    new_stable = stable.score(_events(["mimikatz.exe"]))[0]
    new_churn = churn.score(_events(["mimikatz.exe"]))[0]
    assert new_stable is not None and new_churn is not None
    assert new_stable.seen == 0 and new_stable.surprise > 3.0  # 1 in 1,200
    assert new_churn.surprise < 0.5  # half the events bring a new value: nothing special
    assert stable.score(_events(["chrome.exe"]))[0].surprise < 0.5


def test_scoring_is_prequential_within_a_batch_and_changes_nothing() -> None:
    r = ValueRarity(fields=("process",), min_events=5)
    r.learn(_events(["a.exe"] * 100))
    before = copy.deepcopy(r.snapshot())
    out = r.score(_events(["x.exe", "x.exe", "x.exe"]))
    assert [o.seen for o in out] == [0, 1, 2]
    assert out[0].surprise > out[1].surprise > out[2].surprise
    assert r.snapshot() == before


def test_no_opinion_before_enough_history_and_rarest_field_wins() -> None:
    r = ValueRarity(fields=("process", "dst_port"), min_events=50)
    assert r.score([{"process": "a.exe"}])[0].surprise == 0.0
    r.learn([{"process": "a.exe", "dst_port": 443} for _ in range(100)])
    best = r.score([{"process": "a.exe", "dst_port": 4444}])[0]
    assert best.field == "dst_port" and best.value == "4444" and best.term() == "dst_port=4444"


def test_memory_is_bounded_and_snapshot_round_trips() -> None:
    r = ValueRarity(fields=("process",), min_events=1, max_values=1000)
    rnd = random.Random(3)
    r.learn(_events([f"p{rnd.randrange(10**9)}.exe" for _ in range(20_000)]))
    assert len(r.counts["process"]) <= 1000
    other = ValueRarity(fields=("process",), min_events=1, max_values=1000)
    other.restore(copy.deepcopy(r.snapshot()))
    probe = _events(["p1.exe", "new.exe"])
    assert r.score(probe) == other.score(probe)


def test_a_field_of_recurring_values_stays_bounded_and_prunes_rarely() -> None:
    # each value seen twice: forgetting the values seen once frees nothing, so without the
    # halving every new value would scan the full table (and be forgotten at once)
    r = ValueRarity(fields=("dst_port",), min_events=1, max_values=1000)
    prunes = []
    prune = r._prune
    r._prune = lambda f: (prunes.append(f), prune(f))  # type: ignore[method-assign]
    for i in range(0, 20_000, 50):
        r.learn(_events([str(p) for p in range(i, i + 50) for _ in range(2)], "dst_port"))
        assert len(r.counts["dst_port"]) <= 1000
    assert len(prunes) <= 2 * 20_000 // 500
    assert r.counts["dst_port"]["19999"] == 2  # the latest values are still learned
    assert r.singletons["dst_port"] == sum(1 for c in r.counts["dst_port"].values() if c == 1)


def test_process_paths_compare_by_basename() -> None:
    assert field_value({"process": r"C:\Tools\MimiKatz.EXE"}, "process") == "mimikatz.exe"
    assert field_value({"process": "/usr/sbin/sshd"}, "process") == "sshd"
    assert field_value({"dst_port": 443}, "dst_port") == "443"
    assert field_value({"process": ""}, "process") is None

"""Alert dedup and rate limiting (detection/dedup.py), on alerts built from real sshd events of the bundled sample."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from detection.alerts import event_alert
from detection.dedup import AlertDeduper, group_key
from detection.times import event_time, iso_time
from schemas.alert import validate_alert

SAMPLE = Path(__file__).resolve().parents[2] / "streams" / "sample"


def _sample_event() -> dict[str, Any]:
    with gzip.open(SAMPLE / "sample_events.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if event.get("user") and event.get("source") == "sshd":
                return dict(event)
    raise AssertionError("the bundled sample has no sshd event with a user")


BASE = _sample_event()


def _alert(i: int, *, dt: float = 0.2, template: str = "tpl-1", user: str | None = None,
           score: float = 95.0) -> dict[str, Any]:
    """The alert of copy ``i`` of one anomalous event: its own event id, ``dt`` seconds after the previous."""
    event = dict(BASE)
    event["event_id"] = f"copy-{i}"
    event["time"] = iso_time(event_time(BASE["time"]) + i * dt)
    entity = ("user", user or str(BASE["user"]))
    return event_alert(event=event, entity=entity, score=score, confidence=0.9, warmup=False,
                       components={"text": 0.5}, neighbours=[], terms=[], template="t <*>", template_id=template,
                       model_version="m1")


def test_200_copies_in_one_batch_are_one_alert_with_count_200() -> None:
    d = AlertDeduper()
    out = d.process([_alert(i) for i in range(200)])
    assert len(out.published) == 1 and out.new == 1 and out.folded == 199
    doc = out.published[0]
    assert doc["count"] == 200 and doc["alert_id"] == _alert(0)["alert_id"] and "update" not in doc
    assert doc["first_seen"] == _alert(0)["time"] and doc["last_seen"] == _alert(199)["time"]
    assert doc["evidence"]["event_ids"] == [f"copy-{i}" for i in range(20)]  # the first 20 kept
    validate_alert(doc)


def test_copies_over_batches_are_one_alert_and_updates_of_it() -> None:
    d = AlertDeduper()
    alerts = [_alert(i) for i in range(200)]
    docs = [doc for a in range(0, 200, 50) for doc in d.process(alerts[a:a + 50]).published]
    assert [doc["count"] for doc in docs] == [50, 100, 150, 200]
    assert len({doc["alert_id"] for doc in docs}) == 1
    assert [doc.get("update", False) for doc in docs] == [False, True, True, True]
    for doc in docs:
        validate_alert(doc)


def test_a_redelivered_batch_is_not_counted_twice() -> None:
    d = AlertDeduper()
    batch = [_alert(i) for i in range(10)]
    assert d.process(batch).published[0]["count"] == 10
    again = d.process(batch)
    assert again.published == [] and again.repeated == 10


def test_a_quiet_gap_longer_than_the_window_opens_a_new_alert() -> None:
    d = AlertDeduper(window_s=600)
    first = d.process([_alert(0)]).published[0]
    later = d.process([_alert(1, dt=601)]).published[0]  # 601 s after
    assert later["alert_id"] != first["alert_id"] and later["count"] == 1 and "update" not in later
    assert len(d) == 1  # the old group closed


def test_other_template_or_entity_is_another_group() -> None:
    d = AlertDeduper()
    out = d.process([_alert(0), _alert(1, template="tpl-2"), _alert(2, user="someone-else")])
    assert len(out.published) == 3 and len({group_key(a) for a in out.published}) == 3


def test_rate_limit_folds_an_entitys_excess_into_one_overflow_alert() -> None:
    d = AlertDeduper(rate_limit=20)
    out = d.process([_alert(i, template=f"tpl-{i}") for i in range(25)])
    normal = [a for a in out.published if not a.get("rate_limited")]
    over = [a for a in out.published if a.get("rate_limited")]
    assert len(normal) == 20 and len(over) == 1 and out.rate_limited == 5
    assert over[0]["count"] == 5 and "rate limit" in over[0]["title"]
    validate_alert(over[0])
    # another entity is not limited by this one
    assert not d.process([_alert(99, user="someone-else")]).published[0].get("rate_limited")


def test_severity_and_score_follow_the_highest_alert_of_the_group() -> None:
    d = AlertDeduper()
    doc = d.process([_alert(0, score=91.0), _alert(1, score=99.0)]).published[0]
    assert doc["score"] == 99.0 and doc["severity"] in ("high", "critical")


def test_state_from_records_continues_exactly() -> None:
    d = AlertDeduper(rate_limit=3)
    alerts = [_alert(i, template=f"tpl-{i % 5}") for i in range(40)]
    store: dict[str, Any] = {}

    def keep(records: list[tuple[str, Any]]) -> None:
        for k, v in records:
            if v is None:
                store.pop(k, None)
            else:
                store[k] = json.loads(json.dumps(v))  # what a changelog holds: plain JSON

    d.process(alerts[:20])
    keep(d.take_records())
    rebuilt = AlertDeduper(rate_limit=3)
    rebuilt.load_records(store.items())
    assert rebuilt.process(alerts[20:]).published == d.process(alerts[20:]).published
    with pytest.raises(ValueError, match="rate_limit"):
        AlertDeduper(rate_limit=0)


def test_the_same_alert_raised_again_after_its_group_closed_is_not_new() -> None:
    d = AlertDeduper(window_s=600)
    first = [_alert(i) for i in range(5)]
    d.process(first)
    d.process([_alert(10, dt=700)])  # moves the watermark: the first group closes
    assert len(d) == 1
    again = d.process(first)  # the same events scored again (a replay of the same stream)
    assert again.published == [] and again.repeated == 5
    bounded = AlertDeduper(max_known=3)
    bounded.process([_alert(i, template=f"tpl-{i}") for i in range(5)])
    assert len(bounded.known) == 3


def test_late_alerts_of_old_events_fold_among_themselves() -> None:
    """A backfill or a re-sent file: alerts far behind the watermark still form groups (they used to close
    their group at the next alert, so each published as new)."""
    d = AlertDeduper(window_s=600)
    d.process([_alert(100_000)])  # the watermark is now 20,000 s ahead of what follows
    late = [_alert(i, dt=1.0) for i in range(50)]
    docs = [doc for a in range(0, 50, 10) for doc in d.process(late[a:a + 10]).published]
    assert len({doc["alert_id"] for doc in docs}) == 1 and docs[-1]["count"] == 50
    d.process([_alert(100_000 + 5000)])  # an on-time alert of the key, 1,000 s on: its own group again
    assert [g.last_t for g in d.groups.values()] == [event_time(_alert(105_000)["time"])]
    restored = AlertDeduper(window_s=600)
    d2 = AlertDeduper(window_s=600)
    d2.process([_alert(100_000)])
    d2.process(late[:10])
    restored.load_records([(k, v) for k, v in d2.take_records() if v is not None])
    assert restored.process(late[10:20]).published[0]["count"] == 20  # the late group survives a restart

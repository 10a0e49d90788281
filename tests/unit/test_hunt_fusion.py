"""Pure parts of hunting: reciprocal rank fusion, the hunt's store filters, time and entity parsing."""

from __future__ import annotations

import math

import pytest

from streams.hunt.engine import (
    HuntError,
    HuntFilters,
    event_filter,
    pseudo_event,
    reciprocal_rank_fusion,
    session_entity_ok,
    session_filter,
)
from streams.hunt.args import parse_entity, parse_when
from streams.store import FieldContains, FieldMatch, FieldRange


def test_rrf_scores_are_sums_of_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion({"dense": ["a", "b", "c"], "sparse": ["c", "a"]}, k=60)
    by_key = {f.key: f for f in fused}
    assert by_key["a"].score == pytest.approx(1 / 61 + 1 / 62)
    assert by_key["c"].score == pytest.approx(1 / 63 + 1 / 61)
    assert by_key["b"].score == pytest.approx(1 / 62)
    assert [f.key for f in fused] == ["a", "c", "b"]
    assert by_key["a"].ranks == {"dense": 1, "sparse": 2}
    assert by_key["b"].ranks == {"dense": 2}


def test_rrf_agreement_beats_a_single_first_place() -> None:
    # x is first in one list only; y is second in both: RRF prefers the item both lists found
    fused = reciprocal_rank_fusion({"one": ["x", "y"], "two": ["z", "y"]})
    assert fused[0].key == "y"


def test_rrf_tie_breaks_are_deterministic() -> None:
    # a and b have equal scores and are in one list each: best rank, then first appearance
    fused = reciprocal_rank_fusion({"one": ["a"], "two": ["b"]})
    assert [f.key for f in fused] == ["a", "b"]
    # equal score, more lists first: 1/(k+1)+1/(k+3) vs 1/(k+2)+1/(k+2) differ, so build an exact tie with k=0
    fused = reciprocal_rank_fusion({"one": ["p", "q"], "two": ["r", "q"], "three": ["s"]}, k=0)
    assert fused[0].key == "q" and fused[0].score == pytest.approx(1.0)
    assert [f.key for f in fused[1:]] == ["p", "r", "s"]


def test_rrf_counts_a_repeated_key_once_at_its_best_rank() -> None:
    fused = reciprocal_rank_fusion({"one": ["a", "b", "a"]}, k=1)
    assert {f.key: f.score for f in fused} == {"a": pytest.approx(1 / 2), "b": pytest.approx(1 / 3)}


def test_rrf_tied_scores_share_the_mean_of_their_positions() -> None:
    rankings = {"dense": ["a", "b", "c", "d"], "sparse": ["d", "c"]}
    fused = reciprocal_rank_fusion(rankings, scores={"dense": [0.9, 0.5, 0.5 + 1e-9, 0.5]})
    by_key = {f.key: f for f in fused}
    assert by_key["a"].ranks == {"dense": 1} and by_key["b"].ranks == {"dense": 3}
    assert by_key["d"].ranks == {"dense": 3, "sparse": 1} and by_key["c"].ranks == {"dense": 3, "sparse": 2}
    assert [f.key for f in fused] == ["d", "c", "a", "b"]
    # a large tie does not outweigh a clear first place of another list
    tied = reciprocal_rank_fusion({"dense": [f"t{i}" for i in range(30)], "sparse": ["s"]},
                                  scores={"dense": [0.23] * 30})
    assert tied[0].key == "s" and tied[1].ranks == {"dense": 15.5}
    with pytest.raises(ValueError, match="3 scores"):
        reciprocal_rank_fusion({"dense": ["a", "b"]}, scores={"dense": [1.0, 0.5, 0.1]})


def test_rrf_edge_cases() -> None:
    assert reciprocal_rank_fusion({}) == []
    assert reciprocal_rank_fusion({"empty": []}) == []
    keys = [("events", "1"), ("sessions", "1")]  # same point id, two collections: two items
    assert len(reciprocal_rank_fusion({"x": keys})) == 2
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion({"x": ["a"]}, k=-1)
    assert all(math.isfinite(f.score) for f in reciprocal_rank_fusion({"x": ["a", "b"]}, k=0))


def test_parse_when_accepts_rfc3339_dates_and_ages() -> None:
    now = 1_741_660_000.0
    assert parse_when("2025-03-11T02:30:00Z", now) == 1_741_660_200.0
    assert parse_when("2025-03-11T03:30:00+01:00", now) == 1_741_660_200.0
    assert parse_when("2025-03-11T02:30:00", now) == 1_741_660_200.0  # no offset: UTC
    assert parse_when("2025-03-11", now) == 1_741_651_200.0
    assert parse_when("30m", now) == now - 1800
    assert parse_when("2h", now) == now - 7200
    assert parse_when("7d", now) == now - 7 * 86400
    assert parse_when("1.5h", now) == now - 5400
    assert parse_when("now", now) == now
    for bad in ("yesterday", "2h ago", "-5m", "", "2025-13-01"):
        with pytest.raises(ValueError, match="RFC 3339"):
            parse_when(bad, now)


def test_parse_entity_forms() -> None:
    assert parse_entity("user:root") == ("user", "root")
    assert parse_entity("src_ip:10.0.0.1") == ("src_ip", "10.0.0.1")
    assert parse_entity("bastion-01") == (None, "bastion-01")
    assert parse_entity("fe80::1") == (None, "fe80::1")  # IPv6, not a type
    assert parse_entity("CORP\\srahman") == (None, "CORP\\srahman")
    with pytest.raises(ValueError, match="valid: user, host, src_ip, dst_ip"):
        parse_entity("usr:root")
    with pytest.raises(ValueError, match="no value"):
        parse_entity("host:")
    with pytest.raises(ValueError, match="empty"):
        parse_entity("  ")


def test_event_filter_maps_entity_and_time() -> None:
    f = event_filter(HuntFilters(entity=("host", "db-01"), since=10.0, until=20.0))
    assert f.must == (FieldMatch("host", ("db-01",)), FieldRange("time", gte=10.0, lte=20.0, datetime=True))
    assert f.should == ()
    bare = event_filter(HuntFilters(entity=(None, "db-01")))
    assert bare.must == () and {c.key for c in bare.should} == {"user", "host", "src_ip", "dst_ip"}
    assert not event_filter(HuntFilters())


def test_session_filter_is_a_superset_that_session_entity_ok_makes_exact() -> None:
    f = session_filter(HuntFilters(entity=("user", "ann"), since=5.0, until=9.0))
    assert FieldMatch("entity.type", ("user",)) in f.must
    assert FieldContains("entity.id", "ann@", at_start=True) in f.should
    assert FieldRange("end_epoch", gte=5.0) in f.must and FieldRange("start_epoch", lte=9.0) in f.must

    def session(kind: str, ident: str) -> dict[str, object]:
        return {"entity": {"type": kind, "id": ident}}

    assert session_entity_ok(session("user", "ann@db-01"), ("user", "ann"))
    assert session_entity_ok(session("user", "ann@db-01"), ("host", "db-01"))
    assert session_entity_ok(session("user", "ann@db-01"), (None, "db-01"))
    assert not session_entity_ok(session("user", "ann@db-010"), ("host", "db-01"))  # substring, not the host
    assert not session_entity_ok(session("user", "anna@db-01"), ("user", "ann"))
    assert session_entity_ok(session("user", "a@corp.com@db-01"), ("user", "a@corp.com"))
    assert session_entity_ok(session("src_ip", "10.0.0.1"), ("src_ip", "10.0.0.1"))
    assert not session_entity_ok(session("src_ip", "10.0.0.1"), ("user", "10.0.0.1"))
    assert session_entity_ok(session("session", "x"), None)


def test_pseudo_event_reads_field_words() -> None:
    assert pseudo_event("Failed password user=root dst_port=22") == {
        "message": "Failed password", "user": "root", "dst_port": 22}
    assert pseudo_event("user=root") == {"user": "root"}
    assert pseudo_event("rhost=1.2.3.4 x") == {"message": "rhost=1.2.3.4 x"}  # not an event field: text
    assert pseudo_event("a user=root", keep_fields_in_message=True)["message"] == "a user=root"
    with pytest.raises(HuntError, match="src_ip"):
        pseudo_event("src_ip=not-an-ip")
    with pytest.raises(HuntError, match="after --until"):
        HuntFilters(since=2.0, until=1.0)

"""Dynamic entity embeddings (issue #5): windows, batch updates, serving without leakage, cold start,
drift alerts on an OpenSSH-derived scenario, snapshot/restore, bounds and argument errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.entity_scenario import (  # the OpenSSH drift scenario, shared with the replay benchmark
    CHANGE_AT,
    CHANGED,
    OPENSSH,
    SLOW,
    SLOW_FROM,
    SLOW_LEN,
    T0,
    openssh_scenario,
)
from detection.entities import EntityTable, batch_update, hour_slices
from detection.entity_drift import DriftScorer, entity_drift_alert
from detection.entity_groups import entity_keys, peer_group, unit_rows
from detection.entity_tracker import EntityTracker
from detection.entity_windows import TumblingWindows
from schemas.alert import validate_alert


def iso(t: float) -> str:
    from detection.times import iso_time

    return iso_time(t)


def ev(t: float, user: str | None = None, ip: str | None = None, ident: str = "", **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"time": iso(t), "message": "m", "event_id": ident or f"e{t}-{user}-{ip}", **more}
    if user:
        out["user"] = user
    if ip:
        out["src_ip"] = ip
    return out


def centres(n: int, dim: int, seed: int) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed).standard_normal((n, dim)))


# ----------------------------------------------------------------------------- keys, windows, arguments


def test_entity_keys_and_peer_groups() -> None:
    e = {"user": " alice ", "host": "", "src_ip": "2001:0db8:0000:0000:0000:0000:0000:0001", "dst_ip": "x"}
    assert entity_keys(e) == [("user", "alice"), ("src_ip", "2001:db8::1")]
    assert entity_keys(e, ("dst_ip",)) == []  # an address that does not parse is no entity
    assert peer_group(("src_ip", "10.1.2.3")) == "10.1.2.0/24"
    assert peer_group(("src_ip", "2001:db8::1")) == "2001:db8::/64"
    assert peer_group(("user", "alice")) is None


def test_windows_close_on_event_time_and_count_too_late_events() -> None:
    w = TumblingWindows(2, window_s=60, lateness_s=30)
    one = np.ones((1, 2))
    assert w.advance(10) == []
    assert w.add([10], [[("user", "a")]], one, ["e1"]).all()
    assert w.advance(85) == []  # 85 < end 60 + lateness 30: window [0, 60) still open
    assert w.add([50], [[("user", "a")]], 3 * one, ["late-ok"]).all()  # late, within lateness: joins
    closed = w.advance(90)
    assert [(c.start, c.end, c.keys, c.counts.tolist()) for c in closed] == [(0.0, 60.0, [("user", "a")], [2])]
    assert closed[0].means().tolist() == [[2.0, 2.0]] and closed[0].event_ids == [["e1", "late-ok"]]
    assert not w.add([59], [[("user", "a"), ("src_ip", "10.0.0.1")]], one).any()  # too late: dropped
    assert w.dropped == {"user": 1, "src_ip": 1}
    assert w.add([61], [[("user", "a")]], one).all() and len(w) == 1
    assert [c.start for c in w.flush()] == [60.0]


def test_window_key_cap_counts_overflow() -> None:
    w = TumblingWindows(2, window_s=60, lateness_s=0, max_keys=2)
    keys = [[("src_ip", f"10.0.0.{i}")] for i in range(4)]
    w.add([1, 2, 3, 4], keys, np.ones((4, 2)))
    assert w.pending() == 2 and w.overflow == {"src_ip": 2}


@pytest.mark.parametrize(("make", "words"), [
    (lambda: TumblingWindows(4, window_s=30), ["60", "900"]),
    (lambda: TumblingWindows(4, window_s=1000), ["60", "900"]),
    (lambda: TumblingWindows(4, window_s=300, lateness_s=301), ["lateness_s", "300"]),
    (lambda: EntityTable(4, slices=5), ["slices", "24"]),
    (lambda: EntityTable(4, lr=0.0), ["lr"]),
    (lambda: EntityTracker(4, types=("user", "mailbox")), ["user", "src_ip", "mailbox"]),
    (lambda: EntityTracker(4, max_entities=10, max_window_keys=11), ["max_window_keys"]),
    (lambda: EntityTracker(4, parts={"text": slice(0, 9)}), ["parts"]),
    (lambda: DriftScorer(min_ratio=1.0), ["min_ratio"]),
])
def test_bad_arguments_name_the_valid_range(make: Any, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert all(word in str(info.value) for word in words), info.value


def test_bad_shapes_are_clear_errors() -> None:
    tr = EntityTracker(4)
    with pytest.raises(ValueError, match=r"shape \(1, 4\)"):
        tr.process([ev(T0, "a")], np.zeros((1, 3)))
    table = EntityTable(4, max_entities=2)
    with pytest.raises(ValueError, match="max_entities=2"):
        table.commit([("user", str(i)) for i in range(3)], np.zeros((3, 4)), T0, T0 + 300)


# ----------------------------------------------------------------------------- the batch update


def test_vectorized_update_equals_the_formula() -> None:
    rng = np.random.default_rng(3)
    dim, lr, slices = 16, 0.3, 4
    table = EntityTable(dim, lr=lr, slices=slices, slice_weight=0.1, warm_start=False)
    keys = [("user", f"u{i}") for i in range(50)]
    m1, m2 = rng.standard_normal((50, dim)), rng.standard_normal((50, dim))
    table.commit(keys, m1, T0, T0 + 300)
    e1 = table.prev_base[:50].copy() + lr * (m1.astype(np.float32) - table.prev_base[:50])  # from the prior
    np.testing.assert_allclose(table.base[:50], e1, rtol=1e-5, atol=1e-6)
    s = int(hour_slices([T0 + 300], slices)[0])
    a_old = table.adj[s][:50].copy()
    table.commit(keys, m2, T0 + 300, T0 + 600)
    for i in range(50):  # the formula, one entity at a time
        e_new = e1[i] + lr * (m2[i] - e1[i])
        np.testing.assert_allclose(table.base[i], e_new, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(table.adj[s][i], a_old[i] + lr * ((m2[i] - e_new) - a_old[i]), atol=1e-5)
        view = table.current(keys[i], at=T0 + 300)
        assert view is not None and view.version == 2 and view.window_end == T0 + 600
        np.testing.assert_allclose(view.vector, unit_rows(table.base[i] + 0.1 * table.adj[s][i]), atol=1e-6)
    # batch_update itself, and the warm start: max(lr, 1/(version + 2))
    np.testing.assert_allclose(batch_update(m1, m2, lr), m1 + lr * (m2 - m1), rtol=1e-5, atol=1e-6)
    warm = EntityTable(dim, lr=0.2)
    warm.commit(keys[:1], m1[:1], T0, T0 + 300)
    prior = warm.prev_base[0].copy()
    np.testing.assert_allclose(warm.base[0], prior + 0.5 * (m1[0] - prior), rtol=1e-5, atol=1e-6)


def test_cold_start_from_the_24_peers_then_the_population() -> None:
    dim = 8
    a, b, c, x = centres(4, dim, 1)
    table = EntityTable(dim, lr=1.0)  # versions equal their window means: the priors are exact
    keys = ([("src_ip", f"10.1.2.{i}") for i in range(1, 6)] + [("src_ip", f"10.9.9.{i}") for i in range(1, 6)]
            + [("user", "root")])
    table.commit(keys, np.stack([a] * 5 + [b] * 5 + [c]), T0, T0 + 300)
    assert table.current(("src_ip", "10.1.2.200")).basis == "prior"  # served before its first version
    table.commit([("src_ip", "10.1.2.77"), ("src_ip", "172.16.0.1"), ("user", "bob")], np.stack([x, x, x]),
                 T0 + 300, T0 + 600)

    def prior(key: tuple[str, str]) -> np.ndarray:  # what the first version started from
        return unit_rows(table.prev_base[table.row(key)])

    assert prior(("src_ip", "10.1.2.77")) @ a > 0.999  # its /24's mean, not the other /24 or the population
    assert prior(("src_ip", "172.16.0.1")) @ unit_rows(a + b) > 0.999  # no peers in its /24: the population
    assert prior(("user", "bob")) @ c > 0.999
    first = EntityTable(dim)  # very first window of a type: its entities' mean, never zeros
    first.commit([("user", "u1"), ("user", "u2")], np.stack([a, b]), T0, T0 + 300)
    np.testing.assert_allclose(unit_rows(first.prev_base[:2]), np.stack([unit_rows(a + b)] * 2), atol=1e-5)


def test_lru_bound_evicts_the_least_recently_committed() -> None:
    dim = 4
    table = EntityTable(dim, max_entities=3)
    vec = np.ones((1, dim))
    for i, name in enumerate(["a", "b", "c", "a", "d"]):
        table.commit([("user", name)], vec, T0 + 300 * i, T0 + 300 * (i + 1))
    assert table.keys() == [("user", "c"), ("user", "a"), ("user", "d")] and table.evicted == 1
    pop = table.groups.rows[("user", "*")]
    assert table.groups.count[pop] == 3
    np.testing.assert_allclose(table.groups.sum[pop], 3 * unit_rows(np.ones(dim)), atol=1e-5)


# ----------------------------------------------------------------------------- serving and scoring


def two_behaviours(windows: int, change_at: int, dim: int = 16) -> tuple[list[dict[str, Any]], np.ndarray]:
    """User "u" does A until window ``change_at``, then B; 20 other users keep their own behaviour."""
    rng = np.random.default_rng(9)
    base = centres(22, dim, 2)
    events, vectors = [], []
    for w in range(windows):
        for j in range(21):
            user = "u" if j == 0 else f"other{j}"
            centre = base[21] if (j == 0 and w >= change_at) else base[j]
            for k in range(4):
                t = T0 + 300 * w + 20 + 80 * k + rng.uniform(0, 5)
                events.append(ev(t, user, f"10.0.{j}.{k + 1}", ident=f"w{w}-{user}-{k}"))
                vectors.append(unit_rows(centre + 0.05 * rng.standard_normal(dim)))
    order = np.argsort([e["time"] for e in events], kind="stable")
    return [events[i] for i in order], np.stack(vectors)[order]


def test_no_temporal_leakage_and_arrival_order_within_lateness_does_not_matter() -> None:
    k = 6  # user "u" changes at window k; window k's events must still be compared with behaviour A
    events, vectors = two_behaviours(windows=10, change_at=k)
    start_k = T0 + 300 * k
    in_window = [i for i, e in enumerate(events) if start_k <= _t(e) < start_k + 300]
    upto_k = [i for i, e in enumerate(events) if _t(e) < start_k + 300]
    # (a) only windows <= k, in time order
    a = EntityTracker(16, lateness_s=60).process([events[i] for i in upto_k], vectors[upto_k])
    # (b) everything, with window k+1's first events arriving before window k's last (within lateness)
    late = [i for i in in_window if _t(events[i]) >= start_k + 240]
    early_next = [i for i, e in enumerate(events) if start_k + 300 <= _t(e) < start_k + 320]
    order = [i for i in range(len(events)) if i not in late and i not in early_next]
    cut = order.index(in_window[0])
    order = order[:cut] + [i for i in order[cut:] if i in in_window] + early_next + late + \
        [i for i in order[cut:] if i not in in_window]
    tr = EntityTracker(16, lateness_s=60)
    b = tr.process([events[i] for i in order], vectors[order])
    assert not b.late.any() and tr.windows.dropped == {}
    raw_b = dict(zip([events[i]["event_id"] for i in order], b.raw))
    ver_b = dict(zip([events[i]["event_id"] for i in order], b.version))
    for pos, i in enumerate(upto_k):
        eid = events[i]["event_id"]
        assert raw_b[eid] == pytest.approx(a.raw[pos], abs=1e-6, nan_ok=True), eid
        assert ver_b[eid] == a.version[pos]
    # window k of "u" is compared with A only: still far, although windows k and k+1 (both B) closed
    u_k = [pos for pos, i in enumerate(upto_k) if i in in_window and events[i].get("user") == "u"]
    assert min(a.raw[pos] for pos in u_k) > 0.5
    latest = tr.current(("user", "u"))  # what a leaky scorer would have used
    assert latest is not None and latest.window_end is not None and latest.window_end > start_k
    assert max(1.0 - float(vectors[upto_k[pos]] @ latest.vector) for pos in u_k) < 0.5


def _t(event: dict[str, Any]) -> float:
    from detection.times import event_time

    return event_time(event["time"])


def test_entity_score_counts_what_is_usual_for_the_population_but_not_for_this_user() -> None:
    events, vectors = two_behaviours(windows=8, change_at=99)
    tr = EntityTracker(16, types=("user",), lateness_s=0)
    tr.process(events, vectors)
    pattern_of_other1 = vectors[[i for i, e in enumerate(events) if e.get("user") == "other1"][-1]]
    t = T0 + 300 * 9
    res = tr.process([ev(t, "u", ident="x1"), ev(t + 1, "other1", ident="x2")], np.stack([pattern_of_other1] * 2))
    assert res.basis == ["own", "own"]
    assert res.score[0] > 90 and res.score[1] < 10
    new_user = tr.process([ev(t + 2, "newcomer", ident="x3")], pattern_of_other1[None])
    assert new_user.basis == ["prior"] and new_user.version.tolist() == [0]


def test_snapshot_restore_round_trip_as_plain_data_and_safetensors(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    events, vectors = two_behaviours(windows=12, change_at=8)
    half = len(events) // 2
    a = EntityTracker(16, max_entities=200)
    a.process(events[:half], vectors[:half])
    state = a.snapshot()
    meta = json.loads(json.dumps(state["meta"]))  # plain data
    save_file({k: np.ascontiguousarray(v) for k, v in state["arrays"].items()}, str(tmp_path / "e.safetensors"))
    b = EntityTracker(16, max_entities=200)
    b.restore({"meta": meta, "arrays": load_file(str(tmp_path / "e.safetensors"))})
    ra, rb = a.process(events[half:], vectors[half:]), b.process(events[half:], vectors[half:])
    np.testing.assert_array_equal(ra.score, rb.score)
    assert [len(w.findings) for w in ra.windows] == [len(w.findings) for w in rb.windows]
    for wa, wb in zip(ra.windows + a.flush(), rb.windows + b.flush()):
        np.testing.assert_array_equal(wa.drift.score, wb.drift.score)
        np.testing.assert_array_equal(wa.commit.versions, wb.commit.versions)
    with pytest.raises(ValueError, match="types"):
        EntityTracker(16, types=("user",)).restore(state)


# ----------------------------------------------------------------------------- OpenSSH drift scenario

@pytest.fixture(scope="module")
def drift_run() -> dict[str, Any]:
    if not OPENSSH.is_file():
        pytest.skip(f"needs {OPENSSH} (the shared sample data lives beside the project, not in a clone)")
    stream, vectors, parts = openssh_scenario()
    tr = EntityTracker(vectors.shape[1], parts=parts)
    reports, history = [], {}  # user → version → committed embedding
    for a in range(0, len(stream), 500):
        reports += tr.process(stream[a:a + 500], vectors[a:a + 500]).windows
        for user in (SLOW, CHANGED, "user03"):
            view = tr.current(("user", user))
            if view is not None:
                history.setdefault(user, {})[view.window_end] = view.vector
    reports += tr.flush()
    return {"reports": reports, "tracker": tr, "stream": stream, "vectors": vectors, "parts": parts,
            "history": history}


def test_openssh_abrupt_change_alerts_within_two_windows_and_stable_users_do_not(drift_run: dict[str, Any]) -> None:
    findings = [f for rep in drift_run["reports"] for f in rep.findings]
    users = [f for f in findings if f.key[0] == "user"]
    assert [f.key for f in users] == [("user", CHANGED)], [(f.key, f.score) for f in users]
    hit = users[0]
    window = int((hit.window_start - T0) // 300)
    assert CHANGE_AT <= window <= CHANGE_AT + 1 and hit.score >= 90
    alert = entity_drift_alert(hit, model_version="test")
    validate_alert(alert)
    assert alert["kind"] == "entity_drift" and alert["entity"] == {"type": "user", "id": CHANGED}
    assert alert["alert_id"] == entity_drift_alert(copy.deepcopy(hit), model_version="test")["alert_id"]
    explanation = alert["explanation"]
    assert set(explanation["components"]) == set(drift_run["parts"])
    assert any(n["summary"].startswith("before") for n in explanation["neighbours"])
    assert any(n["summary"].startswith("after") for n in explanation["neighbours"])
    assert alert["evidence"]["event_ids"]


def test_openssh_slow_drift_raises_nothing_although_it_moves_as_far(drift_run: dict[str, Any]) -> None:
    scores = {}
    for rep in drift_run["reports"]:
        for i, key in enumerate(rep.commit.keys):
            if key in (("user", SLOW), ("user", CHANGED)) and rep.drift.scored[i]:
                scores.setdefault(key[1], []).append(float(rep.drift.score[i]))
    assert max(scores[SLOW]) < 90 and len(scores[SLOW]) >= SLOW_LEN, scores[SLOW]
    # the slow drift was real: from before it began to the end, it moved far more than a stable user
    # and about as far as the abrupt change did
    before = T0 + 300 * SLOW_FROM

    def went(user: str) -> float:
        versions = drift_run["history"][user]
        first = max(end for end in versions if end <= before)
        return 1.0 - float(versions[first] @ versions[max(versions)])

    assert went(SLOW) > 5 * went("user03") and went(SLOW) > 0.5 * went(CHANGED), {
        u: went(u) for u in (SLOW, CHANGED, "user03")}


def test_openssh_replay_gives_the_same_alert_ids(drift_run: dict[str, Any]) -> None:
    stream, vectors = drift_run["stream"], drift_run["vectors"]
    tr = EntityTracker(vectors.shape[1], parts=drift_run["parts"])
    again = tr.process(stream, vectors).windows + tr.flush()  # one batch instead of 500-event batches
    ids = [entity_drift_alert(f, model_version="v")["alert_id"] for rep in again for f in rep.findings]
    first = [entity_drift_alert(f, model_version="v")["alert_id"] for rep in drift_run["reports"]
             for f in rep.findings]
    assert ids == first

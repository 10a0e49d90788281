"""Alert titles are read by people (issue 16): one fact, each value once, no score but the alert's own, codes as words.

Alerts are built as the product builds them, from realistic events: OTRF-style Windows records through the
Windows adapter (streams/adapters/windows.py), rare values from :class:`ValueRarity` trained on such events,
the event pipeline trained on sshd lines, and dedup folding a later, higher-scored copy into an alert.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from detection.alerts import event_alert, event_summary, readable, title_for
from detection.dedup import AlertDeduper
from detection.entity_alerts import entity_event_alert
from detection.entity_drift import DriftFinding, entity_drift_alert
from detection.rarity import RareValue, ValueRarity
from detection.session_score import SessionScorer, session_alert
from detection.sessions import Session
from schemas.alert import validate_alert
from streams.adapters.windows import windows_event
from streams.config.settings import Settings
from streams.stages.factory import build_pipeline

_SCORE = re.compile(r"\bscore\D{0,3}(\d+(?:\.\d+)?)", re.IGNORECASE)
_VALUE_FIELDS = ("event_type", "source", "host", "user", "src_ip", "dst_ip", "dst_port", "process", "outcome")


def _occurrences(text: str, value: str) -> int:
    return len(re.findall(rf"(?<![\w.-]){re.escape(value)}(?![\w.-])", text))


def assert_readable_title(alert: Mapping[str, Any], event: Mapping[str, Any] | None = None,
                          rare: RareValue | None = None) -> None:
    """The title repeats no field value (as stored or as words), mentions no score but the alert's, no raw code."""
    title = alert["title"]
    values = [str(v) for k in _VALUE_FIELDS if (v := (event or {}).get(k)) not in (None, "")]
    values += [str(alert["entity"]["id"])] + ([str(rare.value)] if rare is not None else [])
    for value in set(values):
        shown = {value, readable(value, (event or {}).get("source"))}
        assert sum(_occurrences(title, v) for v in shown if len(v) > 1) <= 1, (value, title)
    for number in _SCORE.findall(title):
        assert round(float(number)) == round(float(alert["score"])), title
    assert not re.search(r"windows_event_|\b[a-z]+_[a-z_]+\b", title.split(" for ")[0].split(" on ")[0]), title


# ------------------------------------------------------------------ Windows records through the adapter

def _win(event_id: int, channel: str, **fields: Any) -> dict[str, Any]:
    """An OTRF Security-Datasets style record (nxlog JSON), mapped by the Windows adapter."""
    record = {"@timestamp": "2020-09-21T19:35:41.000Z", "EventID": event_id, "Channel": channel,
              "Hostname": "WORKSTATION5.theshire.local", "SourceName": channel.split("/")[0], **fields}
    return windows_event(record)


def _logon(i: int) -> dict[str, Any]:
    return _win(4624, "Security", TargetUserName=f"user{i % 7}", TargetDomainName="THESHIRE", LogonType=3,
                IpAddress=f"172.18.39.{i % 20 + 2}", IpPort="0", TargetLogonId=f"0x{i:x}")


def _alert(event: dict[str, Any], i: int, score: float = 97.4, rare: RareValue | None = None) -> dict[str, Any]:
    event = {**event, "event_id": f"win-{i}"}
    who = event.get("user") or event.get("host")
    return event_alert(event=event, entity=("user" if event.get("user") else "host", str(who)), score=score,
                       confidence=1.0, warmup=False, components={"text": 1.0}, neighbours=[],
                       terms=[{"term": rare.term(), "weight": rare.surprise}] if rare else [], template=None,
                       template_id=None, model_version="m1", rare=rare)


@pytest.fixture(scope="module")
def rarity() -> ValueRarity:
    """Value counts of 300 logons and one earlier special-privileges logon (4672), as the detector keeps them."""
    r = ValueRarity()
    r.learn([_logon(i) for i in range(300)])
    r.learn([_win(4672, "Security", SubjectUserName="pgustavo", SubjectDomainName="THESHIRE")])
    return r


def test_a_rare_event_type_is_named_once(rarity: ValueRarity) -> None:
    event = _win(4672, "Security", SubjectUserName="pgustavo", SubjectDomainName="THESHIRE")
    rare = rarity.score([event])[0]
    assert rare is not None and rare.field == "event_type" and rare.value == "privilege_assignment" and rare.seen == 1
    alert = _alert(event, 1, rare=rare)
    validate_alert(alert)
    # was "Rare (seen 1x) event_type privilege_assignment in privilege_assignment for pgustavo (score 97)"
    assert alert["title"] == "Rare event type privilege assignment (seen once before) for pgustavo"
    assert_readable_title(alert, event, rare)


def test_a_windows_event_the_adapter_has_no_name_for_reads_windows_event_id(rarity: ValueRarity) -> None:
    event = _win(5857, "Microsoft-Windows-WMI-Activity/Operational", ProviderName="WMIProv",
                 ProcessID=1592, Code="0x0", HostProcess="wmiprvse.exe")
    assert event["event_type"] == "windows_event_5857"  # the adapter's code, kept for scoring and hunting
    rare = rarity.score([event])[0]
    assert rare is not None and rare.seen == 0
    alert = _alert(event, 2, rare=rare)
    validate_alert(alert)
    assert "Windows event 5857" in alert["title"] and "windows_event" not in alert["title"]
    assert_readable_title(alert, event, rare)
    plain = _alert(event, 3)  # no rare value: the vector score alone
    assert plain["title"] == "Unusual Windows event 5857 for WORKSTATION5.theshire.local"
    assert_readable_title(plain, event)


def test_sysmon_and_unknown_ids_read_as_words_and_known_ones_by_their_name() -> None:
    sysmon = _win(16, "Microsoft-Windows-Sysmon/Operational", User="THESHIRE\\pgustavo")
    assert sysmon["source"] == "sysmon" and sysmon["event_type"] == "windows_event_16"
    assert title_for(sysmon) == "Unusual Sysmon event 16 for pgustavo"
    assert readable("windows_event_unknown") == "Windows event (unknown id)"
    known = _win(4688, "Security", SubjectUserName="pgustavo", NewProcessName="C:\\Windows\\System32\\cmd.exe")
    assert known["event_type"] == "process_start"
    rare = RareValue("process", "cmd.exe", 0, 2.5)
    alert = _alert(known, 4, rare=rare)
    assert alert["title"] == "First-seen process cmd.exe in process start for pgustavo"
    assert_readable_title(alert, known, rare)


def test_a_rare_value_that_is_the_entity_is_not_repeated() -> None:
    event = _logon(5)
    rare = RareValue("user", str(event["user"]), 0, 3.0)  # rarity on users (a configured field)
    alert = _alert(event, 5, rare=rare)
    assert alert["title"] == f"First-seen user {event['user']} in authentication"
    assert_readable_title(alert, event, rare)


# ------------------------------------------------------------------ the event pipeline


@pytest.fixture(scope="module")
def trained():  # noqa: ANN201
    pipeline = build_pipeline(Settings(warmup_events=5), store=None)
    pipeline.process([json.dumps({"time": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                                  "message": f"Accepted password for u{i % 3}", "source": "sshd", "user": f"u{i % 3}",
                                  "process": "sshd", "event_type": "authentication"}).encode() for i in range(300)])
    return pipeline


def test_pipeline_alerts_on_windows_events_have_readable_titles(trained) -> None:  # noqa: ANN001
    events = [_win(5857, "Microsoft-Windows-WMI-Activity/Operational", ProviderName="WMIProv", ProcessID=1592,
                   Message="WMIProv provider started with result code 0x0. HostProcess = wmiprvse.exe; "
                           "ProcessID = 1592"),
              _win(4672, "Security", SubjectUserName="pgustavo", SubjectDomainName="THESHIRE",
                   Message="Special privileges assigned to new logon. SeDebugPrivilege SeBackupPrivilege")]
    out = trained.process([json.dumps({**e, "time": "2026-01-01T01:00:00Z"}).encode() for e in events])
    assert len(out.alerts) == 2
    by_type = {a["event"]["event_type"]: a for a in out.alerts}
    assert "Windows event 5857" in by_type["windows_event_5857"]["title"]
    for alert in out.alerts:
        validate_alert(alert)
        assert_readable_title(alert, alert["event"])


# ------------------------------------------------------------------ the score lives in its own field


def test_dedup_raising_the_score_leaves_no_stale_score_in_the_title() -> None:
    """Seen: "score 93" in the title of an alert whose score field was 100 (a later copy folded in)."""
    event = {**_logon(7), "event_id": "a", "time": "2026-01-01T00:00:00Z"}
    first = _alert(event, 10, score=92.6)
    later = _alert({**event, "time": "2026-01-01T00:00:01Z"}, 11, score=100.0)
    d = AlertDeduper()
    (doc,) = d.process([first, later]).published
    assert doc["score"] == 100.0 and doc["count"] == 2
    assert_readable_title(doc, event_summary(event))
    assert not _SCORE.search(doc["title"]) and not re.search(r"\b9[23]\b", doc["title"])


def test_rate_limited_title_names_the_entity_once() -> None:
    d = AlertDeduper(rate_limit=2)
    alerts = [_alert({**_logon(7), "time": f"2026-01-01T00:00:0{i}Z"}, 20 + i) for i in range(4)]
    for i, a in enumerate(alerts):  # different templates: separate groups, then the rate limit
        a["explanation"]["template_id"] = f"t{i}"
    over = [doc for doc in d.process(alerts).published if doc.get("rate_limited")]
    assert len(over) == 1 and over[0]["count"] == 2
    assert over[0]["title"] == f"More event anomaly alerts on user user0 than the rate limit (2 per {d.window_s:.0f} s)"
    assert_readable_title(over[0], over[0]["event"])


def test_entity_session_and_drift_titles_carry_no_score() -> None:
    v, ref = np.array([1.0, 0.0, 0.0, 0.0], np.float32), np.array([0.0, 1.0, 0.0, 0.0], np.float32)
    event = event_summary(_logon(3))
    entity = entity_event_alert(event=event, event_id="e9", time="2026-01-01T00:00:00Z", entity=("user", "user3"),
                                score=100.0, entity_score=100.0, event_score=86.0, distance=0.9, version=3,
                                basis="own", vector=v, reference=ref, parts={"text": slice(0, 4)}, template=None,
                                template_id=None, model_version="m1")
    assert entity["title"] == "Unusual authentication for user user3, unlike its own behaviour"
    assert any("population 86" in t["term"] for t in entity["explanation"]["top_terms"])  # the numbers stay here
    assert_readable_title(entity, event)

    drift = entity_drift_alert(DriftFinding(key=("user", "bob"), version=3, window_start=0.0, window_end=60.0,
                                            score=96.0, move=0.4, move_ratio=4.0, peer=None, peer_ratio=None,
                                            peer_group="g", history=9, warmup=False, components={"text": 1.0},
                                            event_ids=["e1"]), model_version="m1")
    assert drift["title"] == "Behaviour of user bob changed abruptly (version 3)"
    assert_readable_title(drift)

    scorer = SessionScorer(8, k=5, bag_dim=32, warmup=20)

    def session(sid: str, tids: list[str]) -> Session:
        vec = np.zeros(8)
        vec[sum(map(ord, tids[-1])) % 8] = 1.0
        s = Session(session_id=sid, key=sid, entity=("session", sid), start=0.0, end=float(len(tids)),
                    events=len(tids), vec=vec, event_ids=[f"{sid}-{i}" for i in range(len(tids))])
        for tid in tids:
            s.bag[tid] += 1
            s.sequence.append(tid)
        return s

    for i in range(60):
        scorer.process(session(f"n{i}", ["open", "read", "close"]))
    odd = session("odd", ["open", "close", "read", "wipe"])
    alert = session_alert(odd, scorer.score(odd), model_version="m1")
    validate_alert(alert)
    assert alert["title"] == "Unusual session odd (4 events)"
    assert_readable_title(alert)

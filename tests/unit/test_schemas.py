"""SecurityEvent/Alert models vs. their JSON Schema files, and the event parsing contract."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any, get_args

import jsonschema
import pytest

from detection.confidence import WARMUP_REASONS
from schemas import (
    REASONS,
    Alert,
    AlertEventSummary,
    InvalidEvent,
    SecstreamError,
    SecurityEvent,
    decode_event,
    load_schema,
    parse_event,
    validate_alert,
)
from schemas.alert import AlertExplanation, AlertTransition, WarmupReason

EVENT_SCHEMA = load_schema("security_event.v1")
ALERT_SCHEMA = load_schema("alert.v1.json")
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def _schema_ok(schema: dict[str, Any], obj: object) -> bool:
    return jsonschema.Draft202012Validator(schema, format_checker=FORMATS).is_valid(obj)


def _enum(prop: dict[str, Any]) -> set[str]:
    return {v for v in prop["enum"] if v is not None}


def _literal(model: type, field: str) -> set[str]:
    ann = model.model_fields[field].annotation
    # Optional[Annotated[Literal[...], ...]] -> the Literal's values
    stack, out = [ann], set()
    while stack:
        t = stack.pop()
        if isinstance(t, str):
            out.add(t)
        elif t is not type(None):
            stack.extend(get_args(t))
    return out


VALID_EVENT: dict[str, Any] = {
    "time": "2024-03-01T12:00:00.250+02:00",
    "message": "Accepted password for alice from 10.0.0.5 port 50022 ssh2",
    "source": "sshd",
    "event_type": "authentication",
    "severity": "informational",
    "outcome": "success",
    "host": "bastion",
    "user": "alice",
    "process": "sshd",
    "src_ip": "10.0.0.5",
    "dst_ip": "2001:db8::10",
    "src_port": 50022,
    "dst_port": 22,
    "protocol": "tcp",
    "bytes_in": 10,
    "bytes_out": 0,
    "packets": 3,
    "duration_ms": 1.5,
    "session_id": "s-1",
    "attributes": {"pid": 1234, "tty": "ssh", "interactive": True},
}

VALID_ALERT: dict[str, Any] = {
    "schema_version": "1",
    "alert_id": "al-0123",
    "kind": "event_anomaly",
    "time": "2024-03-01T12:00:01Z",
    "first_seen": "2024-03-01T12:00:00.250Z",
    "last_seen": "2024-03-01T12:00:01Z",
    "count": 2,
    "score": 93.5,
    "severity": "high",
    "confidence": 0.8,
    "warmup": False,
    "title": "Rare login for alice",
    "entity": {"type": "user", "id": "alice"},
    "evidence": {"event_ids": ["ev-1", "ev-2"], "session_id": None},
    "explanation": {
        "components": {"text": 0.6, "categorical": 0.3, "network": 0.1},
        "neighbours": [{"id": "ev-9", "similarity": 0.41, "summary": "sshd authentication success"}],
        "top_terms": [{"term": "accepted", "weight": 1.2}],
        "template": "Accepted password for <*> from <IP> port <NUM> ssh2",
        "template_id": "t-17",
    },
    "event": {"source": "sshd", "user": "alice", "dst_port": 22, "outcome": "success", "message": "Accepted…"},
    "model_version": "hybrid-1",
}


# ------------------------------------------------------------------ agreement with the JSON files


def test_schema_files_are_valid_2020_12() -> None:
    for schema, name in ((EVENT_SCHEMA, "security_event.v1.json"), (ALERT_SCHEMA, "alert.v1.json")):
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"https://secstream.dev/schemas/{name}"


def test_event_model_and_schema_have_same_properties_and_required() -> None:
    assert set(EVENT_SCHEMA["properties"]) == set(SecurityEvent.model_fields)
    required = {n for n, f in SecurityEvent.model_fields.items() if f.is_required()}
    assert set(EVENT_SCHEMA["required"]) == required == {"time", "message"}
    assert EVENT_SCHEMA["additionalProperties"] is True


def test_event_enums_agree() -> None:
    props = EVENT_SCHEMA["properties"]
    assert _enum(props["severity"]) == _literal(SecurityEvent, "severity")
    assert _enum(props["outcome"]) == _literal(SecurityEvent, "outcome") == {"success", "failure", "unknown"}


def test_alert_model_and_schema_agree() -> None:
    assert set(ALERT_SCHEMA["properties"]) == set(Alert.model_fields)
    required = {n for n, f in Alert.model_fields.items() if f.is_required()} | {"schema_version"}
    assert set(ALERT_SCHEMA["required"]) == required
    assert set(Alert.model_fields) - required == {"event", "confidence", "warmup", "warmup_reasons",
                                                  "confidence_basis", "update", "rate_limited", "threshold"}
    props = ALERT_SCHEMA["properties"]
    assert _enum(props["warmup_reasons"]["items"]) == set(get_args(WarmupReason)) == set(WARMUP_REASONS)
    basis_model = get_args(Alert.model_fields["confidence_basis"].annotation)[0]
    assert set(props["confidence_basis"]["properties"]) == set(basis_model.model_fields)
    expl = props["explanation"]
    assert set(expl["properties"]) == set(AlertExplanation.model_fields)
    assert set(expl["required"]) == {n for n, f in AlertExplanation.model_fields.items() if f.is_required()}
    transition = expl["properties"]["transitions"]["items"]
    assert set(transition["properties"]) == {f.alias or n for n, f in AlertTransition.model_fields.items()}
    assert _enum(props["kind"]) == _literal(Alert, "kind")
    assert _enum(props["severity"]) == _literal(Alert, "severity")
    entity_model = Alert.model_fields["entity"].annotation
    assert _enum(props["entity"]["properties"]["type"]) == _literal(entity_model, "type")
    event_model = Alert.model_fields["event"].annotation
    summary_fields = set(get_args(event_model)[0].model_fields)
    assert set(props["event"]["properties"]) == summary_fields
    assert ALERT_SCHEMA["additionalProperties"] is False


def test_valid_event_accepted_by_both() -> None:
    assert _schema_ok(EVENT_SCHEMA, VALID_EVENT)
    ev = parse_event(VALID_EVENT)
    assert _schema_ok(EVENT_SCHEMA, ev.to_dict())
    assert ev.to_dict()["time"] == "2024-03-01T10:00:00.250Z"


@pytest.mark.parametrize(
    "patch",
    [
        {"time": None}, {"message": None}, {"src_port": 70000}, {"dst_port": -1}, {"src_port": "22"},
        {"src_port": 22.5}, {"severity": "severe"}, {"outcome": "ok"}, {"src_ip": "10.0.0.256"},
        {"dst_ip": "fe80::1%eth0"}, {"time": "2024-03-01 12:00:00"}, {"time": "2024-03-01T12:00:00"},
        {"time": True}, {"time": -5}, {"time": 10**15}, {"time": "1969-12-31T23:00:00Z"},
        {"bytes_in": -1}, {"packets": 1.5}, {"duration_ms": -0.1}, {"user": 7}, {"host": ["a"]},
        {"attributes": {"nested": {"a": 1}}}, {"attributes": [1]}, {"event_id": ""},
        {"user": "u" * 1025}, {"host": "h" * 5000}, {"session_id": "s" * 1025},
    ],
)
def test_invalid_event_rejected_by_both(patch: dict[str, Any]) -> None:
    obj = {**VALID_EVENT, **patch}
    obj = {k: v for k, v in obj.items() if not (k in ("time", "message") and v is None)}
    assert not _schema_ok(EVENT_SCHEMA, obj)
    with pytest.raises(InvalidEvent):
        parse_event(obj)


def test_valid_alert_accepted_by_both() -> None:
    assert _schema_ok(ALERT_SCHEMA, VALID_ALERT)
    alert = Alert.model_validate(VALID_ALERT)
    validate_alert(alert.to_dict())
    validate_alert(alert.model_dump(mode="json"))
    minimal = {k: v for k, v in VALID_ALERT.items() if k not in ("event", "confidence", "warmup")}
    validate_alert(Alert.model_validate(minimal).to_dict())
    assert "event" not in Alert.model_validate(minimal).to_dict()
    assert "threshold" not in Alert.model_validate(minimal).to_dict()
    with_threshold = {**VALID_ALERT, "threshold": 93.5}  # the threshold the score crossed (optional)
    assert _schema_ok(ALERT_SCHEMA, with_threshold)
    assert Alert.model_validate(with_threshold).to_dict()["threshold"] == 93.5


FULL_ALERT: dict[str, Any] = {
    **VALID_ALERT,
    "warmup_reasons": ["template", "entity"],
    "confidence_basis": {"history": 5000, "neighbours": 3, "support": 12, "density": 4.0, "template_seen": 0,
                         "entity_seen": 3, "factors": {"stream": 1.0, "support": 1.0, "template": 0.5, "entity": 0.56}},
    "explanation": {
        **VALID_ALERT["explanation"],
        "template_frequency": {"count": 0, "share": 0.0},
        "transitions": [{"from": "START", "to": "Accepted password for <*>", "from_id": None, "to_id": "t-17",
                         "probability": 0.002, "surprise": 2.699}],
    },
}


def test_alert_with_confidence_and_explanation_fields_accepted_by_both() -> None:
    assert _schema_ok(ALERT_SCHEMA, FULL_ALERT)
    alert = Alert.model_validate(FULL_ALERT)
    assert alert.to_dict() == FULL_ALERT  # the transition's "from" survives the round trip
    validate_alert(alert.to_dict())
    # the new fields are optional, also inside the explanation and the basis
    assert "template_frequency" not in Alert.model_validate(VALID_ALERT).to_dict()["explanation"]
    validate_alert({**FULL_ALERT, "confidence_basis": {"factors": {"entity": 0.6}}, "warmup_reasons": []})


@pytest.mark.parametrize(
    "patch",
    [
        {"warmup_reasons": ["weather"]}, {"warmup_reasons": ["template", "template"]},
        {"confidence_basis": {"factors": {"stream": 1.5}}}, {"confidence_basis": {"support": -1}},
        {"confidence_basis": {"why": 1}},
        {"explanation": {**VALID_ALERT["explanation"], "template_frequency": {"count": 3, "share": 1.5}}},
        {"explanation": {**VALID_ALERT["explanation"], "transitions": [{"from": "a", "to": "b"}]}},
    ],
)
def test_invalid_confidence_fields_rejected_by_schema(patch: dict[str, Any]) -> None:
    obj = {**FULL_ALERT, **patch}
    assert not _schema_ok(ALERT_SCHEMA, obj)
    with pytest.raises(SecstreamError):
        validate_alert(obj)


@pytest.mark.parametrize(
    "patch",
    [
        {"kind": "weird"}, {"score": 101}, {"score": -1}, {"count": 0}, {"confidence": 1.5}, {"threshold": 101},
        {"severity": "unknown"}, {"schema_version": "2"}, {"time": "yesterday"}, {"extra": 1},
        {"entity": {"type": "planet", "id": "x"}}, {"evidence": {"event_ids": []}},
        {"explanation": {**VALID_ALERT["explanation"], "components": {"text": "high"}}},
    ],
)
def test_invalid_alert_rejected_by_both(patch: dict[str, Any]) -> None:
    obj = {**VALID_ALERT, **patch}
    assert not _schema_ok(ALERT_SCHEMA, obj)
    with pytest.raises(SecstreamError):
        validate_alert(obj)
    with pytest.raises(ValueError):
        Alert.model_validate(obj)


def test_alert_event_summary_from_event() -> None:
    ev = parse_event({**VALID_EVENT, "message": "x" * 1000})
    summary = AlertEventSummary.from_event(ev, max_message=100)
    assert summary.message is not None and len(summary.message) == 100
    validate_alert({**VALID_ALERT, "event": summary.model_dump(mode="json")})


# ------------------------------------------------------------------ parsing contract


@pytest.mark.parametrize(
    ("obj", "reason", "field"),
    [
        ([1, 2], "not_object", ""),
        ("text", "not_object", ""),
        ({"message": "m"}, "missing_field", "time"),
        ({"time": 0}, "missing_field", "message"),
        ({"time": 0, "message": 5}, "wrong_type", "message"),
        ({"time": 0, "message": "m", "src_port": "22"}, "wrong_type", "src_port"),
        ({"time": 0, "message": "m", "src_port": True}, "wrong_type", "src_port"),
        ({"time": [1], "message": "m"}, "wrong_type", "time"),
        ({"time": 0, "message": "m", "src_port": 70000}, "invalid_value", "src_port"),
        ({"time": 0, "message": "m", "src_ip": "300.1.1.1"}, "invalid_value", "src_ip"),
        ({"time": 0, "message": "m", "severity": "urgent"}, "invalid_value", "severity"),
        ({"time": "2300-01-01T00:00:00Z", "message": "m"}, "invalid_value", "time"),
        ({"time": 0, "message": "é" * 40000}, "too_large", "message"),
        ({"time": 0, "message": "m", "user": "é" * 1025}, "too_large", "user"),
    ],
)
def test_parse_event_reason_codes(obj: object, reason: str, field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(obj)
    assert info.value.reason == reason
    assert info.value.reason in REASONS
    assert info.value.detail.startswith(field)
    assert str(info.value) == f"{reason}: {info.value.detail}"


def test_port_detail_is_readable() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event({"time": 0, "message": "m", "src_port": 70000})
    assert info.value.detail == "src_port: 70000 is not in 0..65535"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "not_utf8"),
        (b"{not json", "not_json"),
        (b'{"time": NaN, "message": "m"}', "not_json"),
        (b'{"time": 0, "message": "m", "x": Infinity}', "not_json"),
        (b"[" * 20000 + b"]" * 20000, "not_json"),
        (b"42", "not_object"),
        (b'{"message": "m"}', "missing_field"),
        (b'{"time": 0, "message": "m", "dst_port": 1.5}', "wrong_type"),
        (b'{"time": 1e400, "message": "m"}', "invalid_value"),
        (b'{"time": 0, "message": "\\ud800"}', "invalid_value"),
        (b'{"time": 0, "message": "' + b"a" * 100_000 + b'"}', "too_large"),
    ],
)
def test_decode_event_reason_codes(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw, max_bytes=200_000 if reason != "too_large" else 81920)
    assert info.value.reason == reason


def test_ten_megabyte_message_is_too_large() -> None:
    raw = json.dumps({"time": 0, "message": "A" * 10_000_000}).encode()
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw)
    assert info.value.reason == "too_large"


def test_random_bytes_only_ever_raise_invalid_event() -> None:
    rng = random.Random(20240301)
    prefixes = [b"", b"{", b'{"time": 0, "message": ', b"[", b'"']
    for _ in range(2000):
        raw = rng.choice(prefixes) + rng.randbytes(rng.randint(0, 200))
        try:
            decode_event(raw)
        except InvalidEvent as exc:
            assert exc.reason in REASONS


def test_time_forms_normalize_to_utc() -> None:
    a = parse_event({"time": "2024-01-01T01:00:00+01:00", "message": "m"})
    b = parse_event({"time": 1704067200000, "message": "m"})
    c = parse_event({"time": 1704067200000.0, "message": "m"})
    d = parse_event({"time": "2024-01-01t00:00:00.000000001z", "message": "m"})
    assert a.time == b.time == c.time == d.time
    assert a.time.utcoffset() == timedelta(0)  # normalized to UTC
    assert a.to_dict()["time"] == "2024-01-01T00:00:00.000Z"
    assert a.event_id == b.event_id == c.event_id == d.event_id


def test_event_id_is_deterministic_and_kept_when_given() -> None:
    e1 = decode_event(json.dumps(VALID_EVENT).encode())
    e2 = parse_event(dict(reversed(list(VALID_EVENT.items()))))
    assert e1.event_id == e2.event_id
    assert e1.event_id is not None and e1.event_id.startswith("ev-") and len(e1.event_id) == 35
    assert parse_event({**VALID_EVENT, "message": "other"}).event_id != e1.event_id
    assert parse_event({**VALID_EVENT, "event_id": "mine"}).event_id == "mine"
    # the id is a function of the content only: re-parsing the output gives the same id
    assert parse_event(e1.to_dict()).to_dict() == e1.to_dict()


def test_unknown_fields_move_to_attributes() -> None:
    ev = parse_event({"time": 0, "message": "m", "rule": "R1", "score": 3.5, "tags": ["a", "b"],
                      "nested": {"k": 1}, "empty": None, "attributes": {"rule": "explicit"}})
    assert ev.attributes == {"rule": "explicit", "score": 3.5, "tags": '["a", "b"]', "nested": '{"k": 1}'}
    assert "rule" not in ev.to_dict()


def test_ipv6_and_null_optionals() -> None:
    ev = parse_event({"time": 0, "message": "m", "src_ip": "2001:DB8:0:0::1", "dst_ip": "::1", "user": None})
    assert ev.src_ip == "2001:db8::1" and ev.dst_ip == "::1" and ev.user is None


def test_entity_preference() -> None:
    base = {"time": 0, "message": "m"}
    assert parse_event({**base, "user": "u", "host": "h"}).entity() == ("user", "u")
    assert parse_event({**base, "host": "h", "src_ip": "1.2.3.4"}).entity() == ("host", "h")
    assert parse_event({**base, "src_ip": "1.2.3.4"}).entity() == ("src_ip", "1.2.3.4")
    assert parse_event({**base, "source": "hdfs"}).entity() == ("unknown", "hdfs")
    assert parse_event(base).entity() == ("unknown", "unknown")


def test_invalid_event_reason_is_checked() -> None:
    with pytest.raises(ValueError):
        InvalidEvent("bogus", "x")
    assert isinstance(InvalidEvent("not_json", "x"), SecstreamError)

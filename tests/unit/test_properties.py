"""Property-based tests of bad input (issue 7, point 5), with hypothesis.

Strategies build valid SecurityEvents from the schema's fields (real IPv4/IPv6, ports 0..65535, times
in 1970..2200, unicode edge cases) and break them in every way the fuzz campaign does (``bench/fuzz.py``)
and more: missing or null required fields, a wrong type per field, out-of-range values, invalid IPs,
extreme or non-finite times, fields over the size limits, deep nesting, truncation, invalid UTF-8,
unpaired surrogates. Properties: :func:`decode_event` only ever raises :class:`InvalidEvent` with a
documented reason (the expected one per family); valid events round-trip; the pipeline gives one result
per input, in order, rejects exactly the malformed ones with a DLQ record that keeps the raw bytes, and
accepts every valid neighbour. The input adapters are in ``test_properties_adapters.py``.

Runs derandomized without an example database, so CI sees the same examples on every run.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from schemas.errors import REASONS, InvalidEvent
from schemas.models import MAX_MESSAGE_BYTES, SecurityEvent, decode_event
from schemas.alert import load_schema
from streams.kafka import json_codec as wire
from streams.stages.pipeline import PROCESSING_ERROR, Accepted, Pipeline, Rejected
from streams.stages.factory import build_pipeline
from streams.config.settings import Settings
from tests.unit.strategies import (
    MAX_MS,
    Case,
    broken_docs,
    case_of,
    chars,
    extra_fields,
    malformed_cases,
    random_bytes,
    serialised,
    time_strings,
    valid_cases,
    valid_docs,
)

EVENT_SCHEMA = load_schema("security_event.v1")
TIME_PATTERN = re.compile(EVENT_SCHEMA["properties"]["time"]["anyOf"][0]["pattern"])
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def props(n: int) -> settings:
    """Deterministic settings: no example database, derandomized, no deadline (the encoder is real)."""
    return settings(max_examples=n, database=None, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


def _outcome(raw: bytes) -> SecurityEvent | InvalidEvent:
    """decode_event's verdict; any exception but InvalidEvent fails the test."""
    try:
        return decode_event(raw)
    except InvalidEvent as exc:
        return exc


def _check_verdict(case: Case, got: SecurityEvent | InvalidEvent) -> None:
    if case.reasons is None:
        assert isinstance(got, SecurityEvent), f"{case.family}: valid event rejected: {got}"
        return
    if isinstance(got, InvalidEvent):
        assert got.reason in REASONS and got.detail, (case.family, got)
        if case.reasons:
            assert got.reason in case.reasons, f"{case.family}: {got.reason} ({got.detail}), expected {case.reasons}"
    else:
        assert not case.reasons, f"{case.family}: malformed input accepted: {got.to_dict()}"


# --------------------------------------------------------------------------- decode_event


@props(500)
@given(malformed_cases())
@example(Case("null_required", b'{"time": null, "message": "m"}', frozenset({"missing_field"})))
@example(Case("null_required", b'{"time": 0, "message": null}', frozenset({"missing_field"})))
@example(Case("extreme_time", b'{"time": "2026-01-01T00:00:00+99:99", "message": "m"}',
              frozenset({"invalid_value"})))
@example(Case("extreme_time", b'{"time": "2026-01-01T00:00:00+24:00", "message": "m"}',
              frozenset({"invalid_value"})))
def test_decode_raises_only_invalid_event_with_the_expected_reason(case: Case) -> None:
    got = _outcome(case.raw)
    event(f"{case.family}: {got.reason if isinstance(got, InvalidEvent) else 'accepted'}")
    _check_verdict(case, got)


@props(200)
@given(random_bytes())
def test_arbitrary_bytes_never_raise_anything_but_invalid_event(raw: bytes) -> None:
    got = _outcome(raw)
    if isinstance(got, InvalidEvent):
        assert got.reason in REASONS and got.detail


@props(200)
@given(valid_docs(), st.booleans())
def test_valid_event_keeps_its_fields_and_round_trips(doc: dict[str, Any], ascii_only: bool) -> None:
    ev = decode_event(serialised(doc, ascii_only))
    assert ev.message == doc["message"]
    for name in ("source", "event_type", "host", "user", "process", "protocol", "session_id", "severity",
                 "outcome", "bytes_in", "bytes_out", "packets"):
        assert getattr(ev, name) == doc.get(name)
    for name in ("src_port", "dst_port"):
        assert getattr(ev, name) == (None if doc.get(name) is None else int(doc[name]))
    for name in ("src_ip", "dst_ip"):  # normalised, same address
        if doc.get(name) is None:
            assert getattr(ev, name) is None
        else:
            assert ipaddress.ip_address(getattr(ev, name)) == ipaddress.ip_address(doc[name])
    assert ev.time.utcoffset() == timedelta(0) and EPOCH <= ev.time < datetime(2201, 1, 1, tzinfo=UTC)
    if isinstance(doc["time"], int):
        assert ev.time == EPOCH + timedelta(milliseconds=doc["time"])
    if doc.get("event_id") is not None:
        assert ev.event_id == doc["event_id"]
    explicit = doc.get("attributes") or {}
    for key, value in doc.items():  # unknown fields move into attributes unless given there
        if key not in SecurityEvent.model_fields and value is not None and key not in explicit:
            assert key in ev.attributes
    # the wire form decodes to the same event, and both the input and the output satisfy the schema
    again = decode_event(ev.to_json())
    assert again.to_dict() == ev.to_dict()
    assert decode_event(again.to_json()) == again
    validator = jsonschema.Draft202012Validator(EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert validator.is_valid(ev.to_dict())
    assert validator.is_valid(doc), list(validator.iter_errors(doc))[:1]


@props(300)
@given(time_strings())
@example("2026-01-01T00:00:00+99:99")
@example("2026-01-01T00:00:00-24:00")
def test_a_time_string_the_model_accepts_matches_the_schema_pattern(text: str) -> None:
    got = _outcome(json.dumps({"time": text, "message": "m"}).encode())
    event("accepted" if isinstance(got, SecurityEvent) else "rejected")
    if isinstance(got, SecurityEvent):
        assert TIME_PATTERN.search(text), f"model accepts {text!r}, the schema does not"
        assert datetime(1970, 1, 1, tzinfo=UTC) <= got.time < datetime(2201, 1, 1, tzinfo=UTC)
    else:
        assert got.reason == "invalid_value" and got.detail.startswith("time"), got


@props(200)
@given(st.one_of(broken_docs(), valid_docs().map(lambda d: ("valid", d, None))), extra_fields(), st.booleans())
@example(("null_required", {"time": None, "message": "m"}, frozenset({"missing_field"})), {"zz": 1}, True)
@example(("null_required", {"time": 0, "message": None}, frozenset({"missing_field"})), {"zz": 1}, True)
def test_an_unknown_field_never_changes_the_verdict(broken: tuple[str, dict[str, Any], frozenset[str] | None],
                                                    extra: dict[str, Any], ascii_only: bool) -> None:
    family, doc, _ = broken
    plain = _outcome(serialised(doc, ascii_only or family == "surrogate"))
    wider = _outcome(serialised({**doc, **{k: v for k, v in extra.items() if k not in doc}},
                                ascii_only or family == "surrogate"))
    assert type(plain) is type(wider), (family, plain, wider)
    if isinstance(plain, InvalidEvent) and isinstance(wider, InvalidEvent):
        assert plain.reason == wider.reason, (family, plain, wider)


# --------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return build_pipeline(Settings(), store=None)


def _raw_of(record: dict[str, Any]) -> bytes:
    if record["raw_encoding"] == "utf-8":
        return str(record["raw"]).encode("utf-8")
    assert record["raw_encoding"] == "base64"
    return base64.b64decode(record["raw"], validate=True)


def _strict_loads(text: bytes) -> Any:
    def reject(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=reject)


@props(50)
@given(st.lists(st.one_of(valid_cases(long_messages=False), malformed_cases(), random_bytes().map(case_of)),
                min_size=1, max_size=20))
@example([case_of(b'{"time": 0, "message": "huge counter", "bytes_in": 1' + b"0" * 400 + b"}", valid=True),
          case_of(b"\xff")])
def test_pipeline_rejects_exactly_the_malformed_and_keeps_the_valid_neighbours(pipeline: Pipeline,
                                                                            batch: list[Case]) -> None:
    out = pipeline.process([c.raw for c in batch])
    assert [r.index for r in out.results] == list(range(len(batch)))
    for case, res in zip(batch, out.results, strict=True):
        if case.reasons is None:
            assert isinstance(res, Accepted), f"{case.family}: valid event rejected: {res}"
            continue
        verdict = _outcome(case.raw)
        if isinstance(verdict, SecurityEvent):  # random bytes that happen to be an event
            assert isinstance(res, Accepted)
            continue
        assert isinstance(res, Rejected), f"{case.family}: malformed input accepted"
        assert res.reason != PROCESSING_ERROR, res.detail
        assert (res.reason, res.detail) == (verdict.reason, verdict.detail)
        _check_verdict(case, verdict)
        record = res.dlq_record("prop")
        text = wire.dumps(record)
        back = _strict_loads(text)
        assert back["reason"] == res.reason and back["detail"] == res.detail and back["source"] == "prop"
        assert _raw_of(back) == case.raw and back["raw_bytes"] == len(case.raw)
        assert len(text) <= 6 * len(case.raw) + len(res.detail) * 6 + 512  # linear in the input: bounded
    assert len(out.accepted) + len(out.rejected) == len(batch)
    if out.vectors is not None:
        assert out.vectors.shape[0] == len(out.accepted)


# --------------------------------------------------------------------------- streams.kafka.json_codec


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(chars),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(chars, max_size=8), inner, max_size=4),
    max_leaves=20,
)


@props(200)
@given(_JSON)
def test_wire_dumps_is_strict_json_that_reads_back_equal(value: Any) -> None:
    text = wire.dumps(value)
    text.decode("utf-8")
    assert _strict_loads(text) == value


def test_strategy_bounds_are_the_schemas() -> None:
    assert MAX_MS == EVENT_SCHEMA["properties"]["time"]["anyOf"][1]["maximum"]
    assert MAX_MESSAGE_BYTES == EVENT_SCHEMA["properties"]["message"]["maxLength"]

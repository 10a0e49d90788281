"""SECSTREAM_PAYLOAD_FIELDS: the allow-list of event fields an ``events`` store point keeps. By default every
SecurityEvent field, so whatever unknown fields a producer sends reach the payload (as attributes); a narrower
list keeps them out of the store."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from streams.config.payload_fields import DEFAULT_PAYLOAD_FIELDS, EVENT_FIELDS, PayloadFields
from streams.store.collections import EVENTS
from streams.stages.factory import build_pipeline
from streams.config.settings import Settings
from streams.store import open_store, point_id

EVENT = {"event_id": "e-1", "time": "2026-01-01T00:00:00.000Z", "message": "Accepted password for alice",
         "user": "alice", "host": "ws-1", "src_ip": "10.0.0.9", "attributes": {"event_code": 4624, "logon_token": "t0k"}}
PIPELINE_FIELDS = {"template", "template_id", "score", "novelty", "warmup", "warmup_reasons", "confidence",
                   "model_version"}


def test_default_keeps_every_event_field() -> None:
    fields = PayloadFields.parse(DEFAULT_PAYLOAD_FIELDS)
    assert fields.keeps_everything and fields.spec() == DEFAULT_PAYLOAD_FIELDS
    assert fields.apply(EVENT) == EVENT and fields.apply(EVENT) is not EVENT
    assert Settings().payload_fields == DEFAULT_PAYLOAD_FIELDS
    assert {"event_id", "time", "message", "attributes"} <= set(EVENT_FIELDS)


def test_allow_list_with_single_attributes() -> None:
    fields = PayloadFields.parse(" time, event_id,user ,attributes.event_code")
    assert fields.spec() == "time,event_id,user,attributes.event_code"
    assert fields.apply(EVENT) == {"event_id": "e-1", "time": EVENT["time"], "user": "alice",
                                   "attributes": {"event_code": 4624}}
    assert "attributes" not in fields.apply({**EVENT, "attributes": {"other": 1}})
    assert PayloadFields.parse("event_id,time").apply(EVENT) == {"event_id": "e-1", "time": EVENT["time"]}
    everything = PayloadFields.parse("event_id,time,attributes,attributes.event_code")  # all attributes win
    assert everything.apply(EVENT)["attributes"] == EVENT["attributes"]


@pytest.mark.parametrize("spec, expect", [
    ("event_id,time,password", "unknown payload fields ['password']"),
    ("event_id,time,attributes.", "unknown payload fields ['attributes.']"),
    ("time,message", "must include event_id"),
    ("", "must include event_id and time"),
])
def test_bad_allow_list_names_what_is_valid(spec: str, expect: str) -> None:
    with pytest.raises(ValueError, match=expect.replace("[", r"\[").replace("]", r"\]")):
        PayloadFields.parse(spec)
    with pytest.raises(ValidationError) as err:
        Settings(payload_fields=spec)
    assert err.value.errors()[0]["loc"] == ("payload_fields",)


def _stored_payload(payload_fields: str) -> dict[str, object]:
    store = open_store(engine="local")  # qdrant-client local mode, in memory
    try:
        pipeline = build_pipeline(Settings(payload_fields=payload_fields, warmup_events=5), store)
        raw = json.dumps({**EVENT, "password": "hunter2", "session_token": {"v": "s3ss"}}).encode()
        (accepted,) = pipeline.process([raw]).accepted
        (point,) = store.retrieve(EVENTS, [point_id(accepted.event_id)])
        return dict(point.payload)
    finally:
        store.close()


def test_pipeline_stores_only_allowed_fields() -> None:
    default = _stored_payload(DEFAULT_PAYLOAD_FIELDS)  # unknown top-level fields land in attributes, stored
    assert default["attributes"]["password"] == "hunter2" and "s3ss" in default["attributes"]["session_token"]
    assert set(default) == set(EVENT) | PIPELINE_FIELDS

    narrow = _stored_payload("event_id,time,user,host,attributes.event_code")
    assert set(narrow) == {"event_id", "time", "user", "host", "attributes"} | PIPELINE_FIELDS
    assert narrow["attributes"] == {"event_code": 4624}
    text = json.dumps(narrow)
    assert "hunter2" not in text and "s3ss" not in text and "t0k" not in text and "10.0.0.9" not in text

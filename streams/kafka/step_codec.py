"""The steps on the internal topics: what the events agent sends the session and entity agents.

A step is one scored event as a later stage needs it (its key, time, ids, score, template and vector),
sent to ``<app_id>-session-steps`` keyed by its session key and to ``<app_id>-entity-steps`` keyed by
its entity, so every step of a session or an entity reaches the same partition and worker.

A step on the wire is a frame: the byte ``0x01``, the length of its fields (uint32, little-endian), its
fields as compact JSON, then its vector as raw little-endian float32. The vector is most of a step
(433 floats), and base64 in JSON made it a third larger and cost an encode and a decode per step. A
step in the earlier format (JSON with the vector as base64 float32 under ``"v"``, still in a topic
after an upgrade) is read too. A step that cannot be read is logged and skipped: it is our own
output, so it is a bug, not bad input.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from streams.kafka.json_codec import dumps, stack_newest, vector_from
from streams.stages.entity_stage import EntityStep
from streams.stages.pipeline import Accepted, BatchOutcome

if TYPE_CHECKING:
    from streams.stages.session_stage import SessionStage

log = logging.getLogger(__name__)

FRAME = b"\x01"  # a JSON step starts with "{"
_LENGTH = struct.Struct("<I")


def frame(fields: dict[str, Any], vector: np.ndarray) -> bytes:
    """One step on the wire: tag, fields length, fields as JSON, vector as raw float32 (module docstring)."""
    meta = dumps(fields)
    return FRAME + _LENGTH.pack(len(meta)) + meta + np.ascontiguousarray(vector, dtype="<f4").tobytes()


def unframe(raw: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """Inverse of :func:`frame`; also reads a step in the earlier JSON format. Raises ValueError when unreadable."""
    if raw[:1] == FRAME:
        if len(raw) < 1 + _LENGTH.size:
            raise ValueError(f"step frame of {len(raw)} bytes has no fields length")
        (n,) = _LENGTH.unpack_from(raw, 1)
        start = 1 + _LENGTH.size
        body = raw[start + n:]
        if start + n > len(raw) or len(body) % 4:
            raise ValueError(f"step frame of {len(raw)} bytes does not hold {n} bytes of fields and a float32 vector")
        fields = json.loads(raw[start:start + n])
        if not isinstance(fields, dict):
            raise ValueError("step fields are not a JSON object")
        return fields, np.frombuffer(body, dtype="<f4")  # a read-only view: the decoders stack the rows (a copy)
    fields = json.loads(raw)
    if not isinstance(fields, dict):
        raise ValueError("step is not a JSON object")
    return fields, vector_from(fields["v"])


def encode_session_steps(outcome: BatchOutcome, stage: SessionStage,
                         sources: Sequence[tuple[int, int]] | None = None) -> list[tuple[bytes, bytes]]:
    """(key, value) of the session steps of a processed batch, in input order; ``sources``: the (partition,
    offset) each input was read from, carried as ``src`` so the session agent skips re-deliveries."""
    out: list[tuple[bytes, bytes]] = []
    if outcome.vectors is None:
        return out
    for r in outcome.results:
        if not isinstance(r, Accepted) or r.event is None or r.row < 0:
            continue
        found = stage.key_of(r.event)
        if found is None:
            continue
        key, entity = found
        step = {"k": key, "en": list(entity), "t": r.event["time"], "id": r.event_id, "tid": r.template_id or "",
                "tpl": r.template or "", "s": round(float(r.score), 3)}
        if sources is not None:
            step["src"] = list(sources[r.index])
        out.append((key.encode("utf-8"), frame(step, outcome.vectors[r.row])))
    return out


def decode_session_steps(values: Sequence[bytes]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Steps (plain dicts) and their vectors; an unreadable step is logged and skipped (it is our own output)."""
    steps, rows = [], []
    for v in values:
        try:
            d, vec = unframe(v)
            rows.append(vec)
            steps.append(d)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("skipping unreadable session step: %s", exc)
    return stack_newest(steps, rows)


def encode_entity_steps(steps: Sequence[EntityStep], vectors: np.ndarray) -> list[tuple[bytes, bytes]]:
    """(key, value) messages of steps for ``<app>-entity-steps`` (:func:`frame`)."""
    out = []
    for step, vec in zip(steps, vectors):
        value = {"en": list(step.entity), "t": step.time, "id": step.event_id, "s": round(step.score, 3),
                 "a": step.alerted, "tid": step.template_id, "tpl": step.template,
                 "ev": step.summary, "sid": step.session_id, "sev": step.severity}
        out.append((step.key, frame(value, vec)))
    return out


def decode_entity_steps(values: Iterable[bytes]) -> tuple[list[EntityStep], np.ndarray]:
    """Inverse of :func:`encode_entity_steps`; an unreadable step is logged and skipped (it is our own output)."""
    steps, rows = [], []
    for raw in values:
        try:
            d, vec = unframe(raw)
            steps.append(EntityStep((str(d["en"][0]), str(d["en"][1])), str(d["t"]), str(d["id"]), float(d["s"]),
                                    bool(d["a"]), str(d["tid"]), str(d["tpl"]), dict(d["ev"]),
                                    d.get("sid"), d.get("sev")))
            rows.append(vec)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("skipping unreadable entity step: %s", exc)
    return stack_newest(steps, rows)

"""The steps on the internal topics: what the events agent sends the session and entity agents.

A step is one scored event as a later stage needs it (its key, time, ids, score, template and vector),
sent to ``<app_id>-session-steps`` keyed by its session key and to ``<app_id>-entity-steps`` keyed by
its entity, so every step of a session or an entity reaches the same partition and worker.

A step was once a frame of its own: the byte ``0x01``, the length of its fields (uint32, little-endian), its
fields as compact JSON, then its vector as raw little-endian float32. The vector is most of a step
(433 floats), and base64 in JSON made it a third larger and cost an encode and a decode per step. A
step in the earlier format (JSON with the vector as base64 float32 under ``"v"``, still in a topic
after an upgrade) is read too. A step that cannot be read is logged and skipped: it is our own
output, so it is a bug, not bad input.

The events agent sends steps in bulk (:func:`pack`): one message per destination partition per batch (cut at
:data:`BULK_BYTES`), not one per step. A bulk message is the byte ``0x02``, the length of the fields (uint32
LE) and the number of vector rows (uint32 LE), the fields as one compact JSON object ``{"steps": [...],
"rows": [...]}`` (each step's ``"r"`` is its row; ``rows``, optional, holds the fields all steps of a row
share), then the rows as raw float32. An event's steps that go to one partition (its user and its host, say)
share one row: its vector and its fields (time, id, score, summary...) once. The partition is the one Kafka's
default partitioner gives the step's key (:func:`streams.kafka.partition_keys.partition_of`), so a key's steps
stay on one partition across the change, and their order within a partition is the batch's order. Single
frames and JSON steps are still read (a topic written before the upgrade).
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from streams.kafka.json_codec import dumps, stack_newest, vector_from
from streams.kafka.partition_keys import partition_of
from streams.stages.entity_stage import EntityStep
from streams.stages.pipeline import Accepted, BatchOutcome

if TYPE_CHECKING:
    from streams.stages.session_stage import SessionStage

log = logging.getLogger(__name__)

FRAME = b"\x01"  # a JSON step starts with "{"
BULK = b"\x02"
_LENGTH = struct.Struct("<I")
_BULK_HEAD = struct.Struct("<II")  # fields length, vector rows
#: most vector bytes in one bulk message (the producer sends up to 1 MiB of a partition per request)
BULK_BYTES = 512 * 1024


def unframe(raw: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """One step of the single-step formats written before bulk steps: a frame (tag, fields length, fields as
    JSON, vector as raw float32) or JSON with a base64 vector. Raises ValueError when unreadable."""
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


def pack(steps: Sequence[tuple[bytes, dict[str, Any], int]], vectors: np.ndarray, partitions: int,
         max_bytes: int = BULK_BYTES, row_fields: Mapping[int, dict[str, Any]] | None = None
         ) -> list[tuple[int, bytes]]:
    """Bulk messages of ``steps`` (key, fields, row of ``vectors``), in order: ``(partition, message)``, one per
    partition unless its rows pass ``max_bytes`` (module docstring). ``row_fields``: fields every step of a
    row has (its event's), sent once per row of a message instead of once per step."""
    by_partition: dict[int, list[tuple[dict[str, Any], int]]] = {}
    for key, fields, row in steps:
        by_partition.setdefault(partition_of(key, partitions), []).append((fields, row))
    row_bytes = 4 * int(vectors.shape[1]) if vectors.ndim == 2 else 0
    out: list[tuple[int, bytes]] = []
    for partition in sorted(by_partition):
        chunk: list[dict[str, Any]] = []
        rows: dict[int, int] = {}  # row of ``vectors`` -> row of the message
        for fields, row in by_partition[partition]:
            if row not in rows and chunk and (len(rows) + 1) * row_bytes > max_bytes:
                out.append((partition, _bulk(chunk, vectors, rows, row_fields)))
                chunk, rows = [], {}
            chunk.append({**fields, "r": rows.setdefault(row, len(rows))})
        out.append((partition, _bulk(chunk, vectors, rows, row_fields)))
    return out


def _bulk(chunk: list[dict[str, Any]], vectors: np.ndarray, rows: dict[int, int],
          row_fields: Mapping[int, dict[str, Any]] | None) -> bytes:
    body: dict[str, Any] = {"steps": chunk}
    if row_fields is not None:
        body["rows"] = [row_fields.get(row, {}) for row in rows]  # in message-row order (dicts keep insertion)
    meta = dumps(body)
    matrix = np.ascontiguousarray(vectors[np.fromiter(rows, dtype=np.int64, count=len(rows))], dtype="<f4")
    return BULK + _BULK_HEAD.pack(len(meta), len(rows)) + meta + matrix.tobytes()


def unpack(raw: bytes) -> list[tuple[dict[str, Any], np.ndarray]]:
    """The steps of one message, bulk (:func:`pack`; a row's fields merged into each of its steps) or single
    (:func:`unframe`): (fields, vector) each; the vectors are read-only views. Raises ValueError when the
    message is unreadable."""
    if raw[:1] != BULK:
        return [unframe(raw)]
    start = 1 + _BULK_HEAD.size
    if len(raw) < start:
        raise ValueError(f"bulk steps of {len(raw)} bytes have no header")
    n, count = _BULK_HEAD.unpack_from(raw, 1)
    body = len(raw) - start - n
    if body < 0 or (count and body % (4 * count)) or (not count and body):
        raise ValueError(f"bulk steps of {len(raw)} bytes do not hold {n} bytes of fields and {count} float32 rows")
    meta = json.loads(raw[start:start + n])
    steps = meta.get("steps") if isinstance(meta, dict) else None
    shared = meta.get("rows") or [{}] * count if isinstance(meta, dict) else None
    if not isinstance(steps, list) or not isinstance(shared, list) or len(shared) != count:
        raise ValueError("bulk step fields are not {\"steps\": [...], \"rows\": [...]} with a row each")
    matrix = np.frombuffer(raw, dtype="<f4", offset=start + n).reshape(count, -1) if count else None
    out = []
    for d in steps:
        if not isinstance(d, dict) or not isinstance(d.get("r"), int) or matrix is None or not 0 <= d["r"] < count:
            raise ValueError("a bulk step without a readable row")
        out.append(({**shared[d["r"]], **d}, matrix[d["r"]]))
    return out


def encode_session_steps(outcome: BatchOutcome, stage: SessionStage, partitions: int,
                         sources: Sequence[tuple[int, int]] | None = None) -> list[tuple[int, bytes]]:
    """``(partition, message)`` of the session steps of a processed batch (:func:`pack`), in input order;
    ``sources``: the (partition, offset) each input was read from, carried as ``src`` so the session agent
    skips re-deliveries."""
    if outcome.vectors is None:
        return []
    steps: list[tuple[bytes, dict[str, Any], int]] = []
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
        steps.append((key.encode("utf-8"), step, r.row))
    return pack(steps, outcome.vectors, partitions) if steps else []


def decode_session_steps(values: Sequence[bytes]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Steps (plain dicts) and their vectors; an unreadable message is logged and skipped (it is our own output)."""
    steps, rows = [], []
    for v in values:
        try:
            for d, vec in unpack(v):
                rows.append(vec)
                steps.append(d)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("skipping unreadable session steps: %s", exc)
    return stack_newest(steps, rows)


def encode_entity_steps(steps: Sequence[EntityStep], vectors: np.ndarray, partitions: int,
                        rows: Sequence[int] | None = None) -> list[tuple[int, bytes]]:
    """``(partition, message)`` of entity steps for ``<app>-entity-steps`` (:func:`pack`); ``rows``: the row of
    ``vectors`` of each step (default: one row per step)."""
    items = []
    shared: dict[int, dict[str, Any]] = {}  # an event's fields, once per row (its steps differ by entity only)
    for i, step in enumerate(steps):
        row = i if rows is None else rows[i]
        if row not in shared:
            shared[row] = {"t": step.time, "id": step.event_id, "s": round(step.score, 3), "a": step.alerted,
                           "tid": step.template_id, "tpl": step.template, "ev": step.summary,
                           "sid": step.session_id, "sev": step.severity}
        items.append((step.key, {"en": list(step.entity)}, row))
    return pack(items, vectors, partitions, row_fields=shared) if items else []


def decode_entity_steps(values: Iterable[bytes]) -> tuple[list[EntityStep], np.ndarray]:
    """Inverse of :func:`encode_entity_steps`; an unreadable message is logged and skipped (it is our own output)."""
    steps, rows = [], []
    for raw in values:
        try:
            found = unpack(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("skipping unreadable entity steps: %s", exc)
            continue
        for d, vec in found:
            try:
                steps.append(EntityStep((str(d["en"][0]), str(d["en"][1])), str(d["t"]), str(d["id"]),
                                        float(d["s"]), bool(d["a"]), str(d["tid"]), str(d["tpl"]), dict(d["ev"]),
                                        d.get("sid"), d.get("sev")))
                rows.append(vec)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                log.warning("skipping an unreadable entity step: %s", exc)
    return stack_newest(steps, rows)

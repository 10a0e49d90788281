"""Closed sessions as points of the Qdrant ``sessions`` collection, and the two ways a hunt finds them.

A session point has three vectors and a payload:

- ``session`` (dense, cosine): the session vector (``SessionScorer.vector``: recency-weighted
  event mean ⊕ hashed bag of templates), quantized like every dense vector (store default);
- ``templates`` (sparse, IDF): the bag of template ids, each id hashed to a stable 32-bit index
  (:func:`template_index`), weight ``sqrt(count)`` (counts of colliding ids are summed first);
- ``members`` (multivector, MaxSim over cosine, int8): the session's deduplicated event vectors
  (``Session.member_matrix()``: the first event vector of each distinct template, at most 32 rows),
  so :func:`similar_sessions` matches sessions by late interaction: a session scores high when
  every query row has a close member, whatever else it contains.

Point ids are ``point_id("session:" + session_id)``: a replayed or re-closed session overwrites
itself. Payload fields are listed in :func:`session_point`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detection.sessions import Session
from detection.times import iso_time
from streams.store import (
    CollectionSpec,
    Hit,
    MultiVectorSpec,
    SparseTerms,
    StoreError,
    StorePoint,
    VectorStore,
    point_id,
)

__all__ = ["DENSE", "MAX_PAYLOAD_EVENT_IDS", "MAX_PAYLOAD_TEMPLATES", "MEMBERS", "SESSIONS", "SPARSE", "session_point",
           "session_point_id", "session_spec", "sessions_by_templates", "similar_sessions", "template_index",
           "template_terms"]

SESSIONS = "sessions"
DENSE, SPARSE, MEMBERS = "session", "templates", "members"
MAX_PAYLOAD_TEMPLATES = 20
MAX_PAYLOAD_EVENT_IDS = 20


def session_spec(dense_dim: int, member_dim: int) -> CollectionSpec:
    """The ``sessions`` collection: dense ``session`` (store-default quantization), sparse ``templates``,
    multivector ``members`` (``member_dim``-d rows, MaxSim, int8)."""
    return CollectionSpec(name=SESSIONS, dense_dim=dense_dim, dense_name=DENSE, sparse_name=SPARSE,
                          multivector=MultiVectorSpec(name=MEMBERS, dim=member_dim))


def session_point_id(session_id: str) -> str:
    """The store id of a session: UUIDv5 of ``"session:" + session_id``."""
    return point_id("session:" + session_id)


def template_index(template_id: str) -> int:
    """Stable sparse index of a template id: the first 4 bytes of its blake2b hash (unsigned 32-bit)."""
    return int.from_bytes(hashlib.blake2b(template_id.encode("utf-8"), digest_size=4).digest(), "big")


def template_terms(bag: Mapping[str, int]) -> SparseTerms:
    """Sparse bag of templates: ``{template_index(id): sqrt(count)}``, colliding counts summed, indices ascending."""
    counts: dict[int, int] = {}
    for tid, n in bag.items():
        if n > 0:
            idx = template_index(tid)
            counts[idx] = counts.get(idx, 0) + int(n)
    indices = sorted(counts)
    return SparseTerms(indices=indices, values=[math.sqrt(counts[i]) for i in indices])


def session_point(session: Session, *, vector: np.ndarray, members: np.ndarray, score: float | None, alert: bool,
                  model_version: str, extra: dict[str, Any] | None = None) -> StorePoint:
    """The store point of a closed session.

    ``vector`` is the dense session vector, ``members`` the deduplicated event vectors
    (float32 ``[m, member_dim]``; zero or non-finite rows are dropped; with no rows left the point
    has no multivector and :func:`similar_sessions` never returns it; a wrong ``member_dim`` is
    left for the store to refuse). Payload: ``session_id``, ``key``,
    ``entity`` ``{type, id}``, ``start``/``end`` (RFC 3339) and ``start_epoch``/``end_epoch``
    (seconds), ``events``, ``duration_s``, ``templates`` (the 20 most frequent as
    ``{id, text, count}``), ``reason`` (why it closed), ``score``, ``alert``, ``model_version``,
    ``event_ids`` (the first 20), plus ``extra``, whose keys must not collide with these.
    """
    kind, ident = session.entity
    payload: dict[str, Any] = {
        "session_id": session.session_id, "key": session.key, "entity": {"type": kind, "id": ident},
        "start": iso_time(session.start), "end": iso_time(session.end),
        "start_epoch": float(session.start), "end_epoch": float(session.end),
        "events": int(session.events), "duration_s": round(float(session.end - session.start), 3),
        "templates": [{"id": tid, "text": session.templates.get(tid, ""), "count": int(n)}
                      for tid, n in session.bag.most_common(MAX_PAYLOAD_TEMPLATES)],
        "reason": session.reason, "score": None if score is None else float(score), "alert": bool(alert),
        "model_version": model_version, "event_ids": list(session.event_ids[:MAX_PAYLOAD_EVENT_IDS]),
    }
    if extra:
        clash = sorted(set(extra) & set(payload))
        if clash:
            raise StoreError(f"session {session.session_id!r}: extra payload keys {clash} would overwrite "
                             f"session fields; rename them")
        payload.update(extra)
    rows = np.asarray(members, dtype=np.float32)
    if rows.ndim == 2 and rows.size:  # a zero or non-finite row has no cosine: drop it rather than fail the batch
        rows = rows[np.isfinite(rows).all(axis=1) & rows.any(axis=1)]
    terms = template_terms(session.bag)
    return StorePoint(id=session_point_id(session.session_id), dense=np.asarray(vector, dtype=np.float32),
                      sparse=terms if terms.indices else None, payload=payload,
                      multi=rows if rows.size else None)


def similar_sessions(store: VectorStore, members: np.ndarray, limit: int, *,
                     exclude_session_ids: Sequence[str] = ()) -> list[Hit]:
    """Sessions best matching the query rows by MaxSim, best first.

    ``members`` is float32 ``[q, member_dim]`` (e.g. another session's ``member_matrix()``, or the
    vectors of a few events of interest). The score is MaxSim divided by ``q``: the mean, over the
    query rows, of the best cosine similarity with the session's members, in ``[-1, 1]`` (1.0 when
    every query row is one of the session's members), so scores compare across queries.
    """
    rows = np.asarray(members, dtype=np.float32)
    q = rows.shape[0] if rows.ndim == 2 else 0
    hits = store.search_multi(SESSIONS, rows, limit,
                              exclude_ids=[session_point_id(s) for s in exclude_session_ids])
    return [Hit(id=h.id, score=h.score / q, payload=h.payload) for h in hits]


def sessions_by_templates(store: VectorStore, bag: Mapping[str, int], limit: int) -> list[Hit]:
    """Sessions best matching a bag of template ids (``{id: count}``) by IDF-weighted sparse dot product, best first.

    Rare templates weigh most; an empty bag returns no hits.
    """
    return store.search_sparse(SESSIONS, template_terms(bag), limit)

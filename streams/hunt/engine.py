"""Hunting: hybrid dense + sparse search over the ``events`` and ``sessions`` collections, fused by RRF.

A hunt runs up to three ranked lists per collection and fuses them all with reciprocal rank
fusion (:func:`reciprocal_rank_fusion`), so one result list mixes events and sessions:

- ``dense``: the hybrid vector of a pseudo-event built from the text (:func:`pseudo_event`:
  ``field=value`` words of event fields, such as ``user=root``, fill those fields, the rest is the
  message), encoded by the worker's own encoder state. Events: cosine kNN; sessions: MaxSim against their member
  event vectors (sessions holding an event like the text). Hits below ``min_similarity`` (0.2) are
  dropped: the text embedding is per template, and a lone rare word matches no template (measured
  on the bundled sample: best cosine 0.075 for ``mimikatz``, 0.12 for ``rclone copy``, every hit
  an unrelated template, vs 0.22-0.46 for phrases such as ``Accepted publickey for root``), so
  such a list would only push noise into the fusion.
- ``like``: the stored vector(s) of ``--like``: an event, or the evidence events of an alert
  (collection ``alerts``, point id ``point_id(alert_id)``). Sessions: MaxSim of those rows.
- ``sparse``: events: the sparse terms of the whole text (WordPiece ids, plus the ``field=value``
  terms of its field words; IDF weighted by the store), or the liked events' stored terms when
  there is no text; sessions: the bag of template ids of the text (or of the liked events).

Equal scores within a list (events of one template have equal dense scores) share the mean of
their positions, so a large tie neither wins nor loses by the order the engine returned it in.

Words of the text (:func:`hunt_terms`: the text less its ``field=value`` words): WordPiece terms also
match events that share only a piece of a word (``mimikatz`` is ``mimi ##kat ##z``: any word ending in
``z`` shares a term). So the events whose message contains every word (case-insensitive) are looked
up too (:func:`_containing`: the sparse search restricted to messages holding the longest word), and
lead the sparse list; in the fused result they come first (:attr:`HuntResult.contained` true). When
no event contains them (``contained`` false), the sparse list of the text is dropped: its hits only
share word pieces; what is left is what the dense vector (by meaning) and ``--like`` found.

Filters (:class:`HuntFilters`, :mod:`streams.hunt.filters`) run inside the store's search
(payload indexes), not after it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.errors import InvalidEvent
from schemas.models import parse_event
from streams.hunt.filters import (
    ENTITY_TYPES,
    HuntError,
    HuntFilters,
    event_filter,
    session_entity_ok,
    session_filter,
)
from streams.store.session_points import template_terms
from streams.store import FieldContains, Hit, SparseTerms, StoreFilter, StorePoint, VectorStore, point_id

if TYPE_CHECKING:  # the encoder module brings torch; a hunt's argument errors should not wait for it
    from encoders.hybrid import HybridEncoder

__all__ = ["ALERTS", "ENTITY_TYPES", "HUNT_COLLECTIONS", "Fused", "HuntError", "HuntFilters", "HuntHit", "HuntResult",
           "contains_terms", "event_filter", "hunt", "hunt_terms", "pseudo_event", "reciprocal_rank_fusion",
           "session_entity_ok", "session_filter"]

EVENTS, SESSIONS, ALERTS = "events", "sessions", "alerts"
HUNT_COLLECTIONS: tuple[str, ...] = (EVENTS, SESSIONS)
#: event fields a ``field=value`` word of the hunt text fills in the pseudo-event
_TEXT_FIELDS = ("source", "event_type", "severity", "outcome", "host", "user", "process", "src_ip", "dst_ip",
                "protocol", "src_port", "dst_port")
_FIELD_WORD = re.compile(r"(?<!\S)([a-z_]+)=(\S+)")
#: stripped from both ends of a word of the text before it is looked for in messages
_EDGE_PUNCT = "\"'`.,;:!?()[]{}<>"


@dataclass(frozen=True)
class Fused:
    """One fused item: its key, RRF score and 1-based rank in each list that holds it (a tie's mean)."""

    key: Hashable
    score: float
    ranks: dict[str, float]


def _ranks(n: int, values: Sequence[float] | None, tol: float) -> list[float]:
    """1-based ranks of ``n`` ordered items; a run of scores within ``tol`` (relative) of the run's
    first one shares the mean of its positions (fractional ranking)."""
    if values is None:
        return [float(i) for i in range(1, n + 1)]
    out: list[float] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or not abs(values[i] - values[start]) <= tol * max(1.0, abs(values[start])):
            out += [(start + 1 + i) / 2.0] * (i - start)
            start = i
    return out


def reciprocal_rank_fusion(rankings: Mapping[str, Sequence[Hashable]], k: int = 60, *,
                           scores: Mapping[str, Sequence[float]] | None = None, tie_tol: float = 1e-6) -> list[Fused]:
    """Fuse ranked lists (name → keys, best first) by RRF: ``score = Σ 1 / (k + rank)``, rank 1-based.

    ``scores`` (name → that list's scores, same length) makes items whose scores differ by at most
    ``tie_tol`` (relative) share the mean of their positions: events of one template have equal
    dense scores, and their order within a tie says nothing; the mean keeps a large tie from
    outweighing a clear first place. A key repeated within one list counts at its first rank.
    Equal fused scores are ordered by the number of lists holding the key (more first), then
    its best rank, then first appearance (lists in order). ``k`` ≥ 0 damps the weight of top
    ranks (60 as in Cormack et al., 2009).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    ranks: dict[Hashable, dict[str, float]] = {}
    for name, keys in rankings.items():
        values = scores.get(name) if scores is not None else None
        if values is not None and len(values) != len(keys):
            raise ValueError(f"list {name!r} has {len(keys)} keys but {len(values)} scores")
        for key, rank in zip(keys, _ranks(len(keys), values, tie_tol)):
            ranks.setdefault(key, {}).setdefault(name, rank)
    order = {key: i for i, key in enumerate(ranks)}
    fused = [Fused(key, math.fsum(1.0 / (k + r) for r in by_list.values()), by_list) for key, by_list in ranks.items()]
    fused.sort(key=lambda f: (-f.score, -len(f.ranks), min(f.ranks.values()), order[f.key]))
    return fused


@dataclass(frozen=True)
class HuntHit:
    """A fused result: its collection, point id, RRF score, rank and raw score in each list, payload."""

    collection: str
    id: str
    score: float
    ranks: dict[str, float]
    scores: dict[str, float]
    payload: dict[str, Any]


@dataclass
class HuntResult:
    """Fused hits, best first, and the length of every list that was searched (``collection/list``).

    ``terms``: the words of the text looked for in messages (:func:`hunt_terms`); ``contained``: whether
    some event's message holds them all (its hits then come first), false when none does, None when
    not checked (no words, no sparse terms, or no messages stored in the events' payloads)."""

    hits: list[HuntHit]
    lists: dict[str, int] = field(default_factory=dict)
    terms: tuple[str, ...] = ()
    contained: bool | None = None


def hunt_terms(text: str) -> tuple[str, ...]:
    """The words of a hunt text as an event's message would hold them: the text less its ``field=value``
    words, split on white space, punctuation at either end removed, in lower case, each once."""
    message = _FIELD_WORD.sub(lambda m: "" if m[1] in _TEXT_FIELDS else m[0], text)
    words = (w.strip(_EDGE_PUNCT).lower() for w in message.split())
    return tuple(dict.fromkeys(w for w in words if w))


def contains_terms(payload: Mapping[str, Any], terms: Sequence[str]) -> bool:
    """Whether a stored event's message holds every term (case-insensitive substrings)."""
    message = payload.get("message")
    if not isinstance(message, str) or not terms:
        return False
    low = message.lower()
    return all(t in low for t in terms)


def pseudo_event(text: str, *, keep_fields_in_message: bool = False) -> dict[str, Any]:
    """The event a hunt text stands for: its ``field=value`` words (event fields only; ports as
    integers) fill those fields, the rest is the message (the whole text if ``keep_fields_in_message``).
    HuntError when a value is invalid (e.g. ``src_ip=x``)."""
    doc: dict[str, Any] = {"time": "1970-01-01T00:00:00Z"}
    for name, value in _FIELD_WORD.findall(text):
        if name in _TEXT_FIELDS:
            doc[name] = int(value) if name.endswith("_port") and value.isdigit() else value
    message = text if keep_fields_in_message else _FIELD_WORD.sub(
        lambda m: "" if m[1] in _TEXT_FIELDS else m[0], text)
    doc["message"] = " ".join(message.split())
    try:
        event = parse_event(doc).to_dict()
    except InvalidEvent as exc:
        raise HuntError(f"hunt text: {exc.detail}") from exc
    for key in ("time", "event_id"):  # a hunt has no time: absent, the time component stays out
        event.pop(key, None)
    if not event.get("message"):
        event.pop("message", None)
    return event


@dataclass
class _Query:
    text_vector: np.ndarray | None = None
    like_rows: np.ndarray | None = None
    terms: SparseTerms | None = None
    templates: dict[str, int] = field(default_factory=dict)


def _text_query(encoder: HybridEncoder, text: str, q: _Query) -> None:
    """Dense vector and template of the pseudo-event; sparse terms of the whole text (a ``user=root``
    in a PAM line is also a word of the message) plus the field terms."""
    event = pseudo_event(text)
    batch = encoder.encode([event, pseudo_event(text, keep_fields_in_message=True)])
    if batch.row_present[0]:
        q.text_vector = batch.dense[0]
    indices, values = batch.sparse[1]
    if len(indices):
        q.terms = SparseTerms(list(indices), list(values))
    if batch.template_ids[0] and event.get("message"):
        q.templates[batch.template_ids[0]] = 1


def _like_query(store: VectorStore, ref: str, q: _Query, has_events: bool, store_label: str) -> None:
    points: list[StorePoint] = store.retrieve_points(EVENTS, [point_id(ref)]) if has_events else []
    if not points:
        alert = store.retrieve(ALERTS, [point_id(ref)]) if store.attach(ALERTS) is not None else []
        if not alert:
            raise HuntError(f"event or alert {ref!r} not found; --like takes an event id or an alert id "
                            f"stored in {store_label}")
        ids = [str(e) for e in (alert[0].payload.get("evidence") or {}).get("event_ids") or []]
        points = store.retrieve_points(EVENTS, [point_id(e) for e in ids]) if has_events and ids else []
        if not points:
            raise HuntError(f"alert {ref!r} has no evidence events stored in {store_label} (event ids: {ids[:3]})")
    q.like_rows = np.stack([p.dense for p in points]).astype(np.float32)
    merged: dict[int, float] = {}
    for p in points:
        if p.sparse is not None:
            for i, v in zip(p.sparse.indices, p.sparse.values):
                merged[i] = merged.get(i, 0.0) + v
        tid = p.payload.get("template_id")
        if tid:
            q.templates[str(tid)] = q.templates.get(str(tid), 0) + 1
    if q.terms is None and merged:  # the text's terms, when given, say what to look for
        q.terms = SparseTerms(sorted(merged), [merged[i] for i in sorted(merged)])


def _containing(store: VectorStore, terms: SparseTerms, words: Sequence[str], typed: str, where: StoreFilter,
                limit: int) -> list[Hit]:
    """Up to ``limit`` events whose message holds every word, best sparse score first: the sparse search
    restricted (in the store) to messages holding the longest word, as typed, in lower case, upper case or
    capitalized (the store's substring match is case-sensitive), then checked for all words."""
    key = max(words, key=len)
    as_typed = next((w.strip(_EDGE_PUNCT) for w in typed.split() if w.strip(_EDGE_PUNCT).lower() == key), key)
    best: dict[str, Hit] = {}
    for variant in dict.fromkeys((as_typed, key, key.upper(), key.capitalize())):
        restricted = StoreFilter(must=(*where.must, FieldContains("message", variant)), should=where.should)
        for h in store.search_sparse(EVENTS, terms, limit, where=restricted):
            if contains_terms(h.payload, words) and (h.id not in best or h.score > best[h.id].score):
                best[h.id] = h
    return sorted(best.values(), key=lambda h: -h.score)[:limit]


def hunt(store: VectorStore, encoder: HybridEncoder, text: str = "", *, like: str | None = None,
         filters: HuntFilters | None = None, limit: int = 20, collections: Sequence[str] = HUNT_COLLECTIONS,
         k: int = 60, depth: int | None = None, min_similarity: float = 0.2,
         store_label: str = "the store") -> HuntResult:
    """Search ``collections`` for ``text`` and/or events like ``like`` (an event or alert id); fuse by RRF.

    ``encoder`` must be the worker's (its saved state restored) so that the query vector lives in the
    stored vectors' space. Each list fetches ``depth`` (default ``max(3 × limit, 30)``) hits before
    fusion; the best ``limit`` fused hits are returned. Hits of the text's dense vector below
    ``min_similarity`` (cosine; MaxSim per row for sessions) are dropped (see the module docstring). Raises :class:`HuntError` (one line) for a
    hunt that cannot run; store errors surface as ``StoreError``.
    """
    text, filters = text.strip(), filters or HuntFilters()
    if not text and not like:
        raise HuntError("a hunt needs a text, --like ID, or both")
    if limit < 1:
        raise HuntError(f"limit must be >= 1, got {limit}")
    unknown = sorted(set(collections) - set(HUNT_COLLECTIONS))
    if unknown:
        raise HuntError(f"cannot hunt in {unknown}; valid: {', '.join(HUNT_COLLECTIONS)}")
    specs = {name: store.attach(name) for name in collections}
    present = {name: spec for name, spec in specs.items() if spec is not None}
    if not present:
        raise HuntError(f"nothing to hunt in: no {' or '.join(collections)} collection in {store_label}")
    events_spec, sessions_spec = present.get(EVENTS), present.get(SESSIONS)
    mv = sessions_spec.multivector if sessions_spec is not None else None
    for what, dim in (("events", events_spec.dense_dim if events_spec else None), ("sessions", mv.dim if mv else None)):
        if dim is not None and dim != encoder.dim:
            raise HuntError(f"the {what} in {store_label} hold {dim}-d event vectors but the configured encoder "
                            f"makes {encoder.dim}-d ones (other weights or model than the worker's?)")
    q = _Query()
    if text:
        _text_query(encoder, text, q)
    if like:
        _like_query(store, like, q, store.attach(EVENTS) is not None, store_label)
    depth = depth or max(3 * limit, 30)
    lists: dict[str, list[Hit]] = {}
    words = hunt_terms(text) if text else ()
    contained: bool | None = None
    if events_spec is not None:
        where = event_filter(filters)
        if q.text_vector is not None:
            found = store.search_dense(EVENTS, q.text_vector, depth, where=where)
            lists["events/dense"] = [h for h in found if h.score >= min_similarity]
        if q.like_rows is not None:
            centre = q.like_rows.mean(axis=0)
            lists["events/like"] = store.search_dense(EVENTS, centre / np.linalg.norm(centre), depth, where=where)
        if q.terms is not None and events_spec.sparse_name is not None:
            found = store.search_sparse(EVENTS, q.terms, depth, where=where)
            exact = _containing(store, q.terms, words, text, where, depth) if words else []
            # with no message in the payloads (SECSTREAM_PAYLOAD_FIELDS) nothing can be said about the words
            checkable = bool(words) and (bool(exact) or not found or any("message" in h.payload for h in found))
            contained = bool(exact) if checkable else None
            if contained is not False:  # else its hits share only pieces of words with the text: left out
                ids = {h.id for h in exact}
                lists["events/sparse"] = exact + [h for h in found if h.id not in ids]
    if sessions_spec is not None and mv is not None:
        where = session_filter(filters)
        for name, rows in (("dense", None if q.text_vector is None else q.text_vector[None, :]),
                           ("like", q.like_rows)):
            if rows is not None:
                found = store.search_multi(SESSIONS, rows, depth, where=where)
                lists[f"sessions/{name}"] = [h for h in found if name != "dense" or h.score >= min_similarity]
        if q.templates and sessions_spec.sparse_name is not None:
            lists["sessions/sparse"] = store.search_sparse(SESSIONS, template_terms(q.templates), depth, where=where)
        for name in [n for n in lists if n.startswith("sessions/")]:
            lists[name] = [h for h in lists[name] if session_entity_ok(h.payload, filters.entity)]
    first = (lambda h: h.collection == EVENTS and contains_terms(h.payload, words)) if contained else None
    return HuntResult(hits=_fuse(lists, limit, k, first=first),
                      lists={name: len(found) for name, found in lists.items()}, terms=words, contained=contained)


def _fuse(lists: Mapping[str, list[Hit]], limit: int, k: int,
          first: Callable[[HuntHit], bool] | None = None) -> list[HuntHit]:
    """RRF over ``collection/list`` → hits; keys are ``(collection, point id)``. Hits for which ``first``
    holds come before the others (each part in fused order)."""
    payloads: dict[tuple[str, str], dict[str, Any]] = {}
    scores: dict[tuple[str, str], dict[str, float]] = {}
    rankings: dict[str, list[tuple[str, str]]] = {}
    for name, found in lists.items():
        collection, list_name = name.split("/")
        rankings[name] = [(collection, h.id) for h in found]
        for h in found:
            payloads.setdefault((collection, h.id), h.payload)
            scores.setdefault((collection, h.id), {}).setdefault(list_name, h.score)
    out = []
    list_scores = {name: [h.score for h in found] for name, found in lists.items()}
    fused = reciprocal_rank_fusion(rankings, k=k, scores=list_scores)
    for f in fused if first is not None else fused[:limit]:
        collection, pid = f.key  # type: ignore[misc]
        out.append(HuntHit(collection=collection, id=pid, score=f.score,
                           ranks={name.split("/")[1]: r for name, r in f.ranks.items()},
                           scores=scores[(collection, pid)], payload=payloads[(collection, pid)]))
    if first is not None:
        out = ([h for h in out if first(h)] + [h for h in out if not first(h)])[:limit]
    return out

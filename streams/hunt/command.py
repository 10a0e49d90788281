"""``secstream hunt``: its argument parsing, the store and encoder it opens, and its output.

The search itself is :func:`streams.hunt.engine.hunt`. The query is encoded by the worker's own encoder
state (``SECSTREAM_DATA_DIR/state``, as :class:`streams.worker.faust_app.Worker` saves it), so the query vector
lives in the space of the stored vectors; without it the encoder starts fresh (a note says so).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from detection.sessions import event_time
from streams.cli.terminal import table
from streams.hunt.engine import ENTITY_TYPES, HuntError, HuntFilters, HuntHit, hunt
from streams.config.settings import Settings

__all__ = ["format_table", "hit_json", "parse_entity", "parse_when", "run_hunt"]

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SUMMARY_CHARS = 72


def parse_when(text: str, now: float) -> float:
    """Epoch seconds of ``text``: RFC 3339 (no offset means UTC), a date (UTC midnight), ``now``,
    or an age before ``now`` (``90s``, ``30m``, ``2h``, ``7d``, ``1w``). ValueError names the forms."""
    t = text.strip()
    age = _AGE.match(t)
    if age:
        return now - float(age[1]) * _UNIT_S[age[2]]
    if t == "now":
        return now
    try:
        return event_time(t)  # RFC 3339, no offset = UTC, a date = its UTC midnight: as events' times
    except ValueError:
        raise ValueError(f"{text!r} is not a time; use RFC 3339 (2025-03-11T02:30:00Z), a date (2025-03-11), "
                         f"now, or an age before now (30m, 2h, 7d)") from None


def parse_entity(text: str) -> tuple[str | None, str]:
    """``(type, value)`` of ``type:value`` when type is one of :data:`ENTITY_TYPES`, else ``(None, text)``
    (so an IPv6 address stays a bare value). ValueError for an empty value or a misspelt type."""
    t = text.strip()
    kind, sep, value = t.partition(":")
    if sep and kind in ENTITY_TYPES:
        if not value:
            raise ValueError(f"entity {text!r} has no value after {kind + ':'!r}")
        return kind, value
    if sep and re.fullmatch(r"[a-z_]+", kind) and not re.fullmatch(r"[a-f]+", kind):  # a word, not hex
        raise ValueError(f"unknown entity type {kind!r}; valid: {', '.join(ENTITY_TYPES)} (or a bare value)")
    if not t:
        raise ValueError("entity is empty")
    return None, t


def _one_line(text: Any, width: int = _SUMMARY_CHARS) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _row(rank: int, hit: HuntHit) -> list[str]:
    p = hit.payload
    via = " ".join(f"{name}:{r:g}" for name, r in sorted(hit.ranks.items(), key=lambda kv: kv[1]))
    score = p.get("score")
    score_text = f"{score:.0f}" if isinstance(score, (int, float)) else "-"
    if hit.collection == "sessions":
        ent = p.get("entity") or {}
        entity = f"{ent.get('type', '?')}:{ent.get('id', '?')}"
        when = str(p.get("start", ""))[:19]
        what = (f"session {p.get('session_id', '?')}: {p.get('events', '?')} events in "
                f"{float(p.get('duration_s') or 0):.0f} s" + (", alerted" if p.get("alert") else ""))
        kind = "session"
    else:
        field = next((f for f in ENTITY_TYPES if p.get(f)), None)
        entity = f"{field}:{p[field]}" if field else "-"
        when = str(p.get("time", ""))[:19]
        what, kind = str(p.get("message", "")), "event"
    return [str(rank), kind, f"{hit.score:.4f}", via, when.replace("T", " "), entity, score_text, _one_line(what)]


def format_table(hits: list[HuntHit]) -> str:
    """The readable table of a hunt: rank, kind, RRF score, the lists a hit came from and its rank in
    each (``dense:15.5``: the mean position of a run of equal scores),
    time, entity, anomaly score (0-100) and a one-line summary."""
    return table([_row(i, h) for i, h in enumerate(hits, start=1)],
                 ["#", "kind", "rrf", "via", "time", "entity", "score", "summary"])


def hit_json(rank: int, hit: HuntHit) -> dict[str, Any]:
    """One ``--json`` line: rank, collection, point id, RRF score, per-list ranks and scores, payload."""
    return {"rank": rank, "collection": hit.collection, "id": hit.id, "rrf": round(hit.score, 6),
            "ranks": {k: int(r) if float(r).is_integer() else r for k, r in hit.ranks.items()}, "scores": {k: round(v, 6) for k, v in hit.scores.items()}, "payload": hit.payload}


def run_hunt(settings: Settings, text: str, *, like: str | None, filters: HuntFilters, limit: int,
             as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Open the configured store, check it can be read, load the worker's encoder, hunt and print.

    Raises :class:`HuntError` or ``StoreError`` (one line each) when the hunt cannot run.
    """
    # imported here: they bring the text model and torch, which argument errors should not wait for
    from streams.stages.factory import build_pipeline, build_store
    from streams.stages.snapshots import load_state

    out, err = out or sys.stdout, err or sys.stderr
    root = Path(settings.data_dir) / "qdrant"
    label = settings.qdrant_url or str(root)
    if not settings.qdrant_url and not root.is_dir():
        raise HuntError(f"no store at {label}: set SECSTREAM_DATA_DIR to a worker's data directory "
                        f"(or to a `secstream replay --store-dir` directory), or SECSTREAM_QDRANT_URL")
    store = build_store(settings)
    try:
        store.attach("events")  # fails now, before the model loads, if a worker holds the store
        pipeline = build_pipeline(settings, None)
        state_dir = Path(settings.data_dir) / "state"
        if not load_state(pipeline, state_dir):
            print(f"note: no saved worker state in {state_dir}; the query is encoded by a fresh encoder "
                  f"(templates and vocabularies not learned)", file=err)
        result = hunt(store, pipeline.encoder, text, like=like, filters=filters, limit=limit, store_label=label)
    finally:
        store.close()
    if as_json:
        for i, h in enumerate(result.hits, start=1):
            out.write(json.dumps(hit_json(i, h), ensure_ascii=False, separators=(",", ":")) + "\n")
    else:
        print(format_table(result.hits), file=out)
    searched = ", ".join(f"{name} {n}" for name, n in result.lists.items()) or "none"
    print(f"{len(result.hits)} hits (lists searched: {searched})", file=err)
    return 0

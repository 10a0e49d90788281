"""``secstream hunt``: its argument parsing, the store and encoder it opens, and its output.

The search itself is :func:`streams.hunt.engine.hunt`. The query is encoded by the worker's own encoder
state (``SECSTREAM_DATA_DIR/state``, as :class:`streams.worker.faust_app.Worker` saves it), so the query vector
lives in the space of the stored vectors; without it the encoder starts fresh (a note says so).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from streams.cli.terminal import table
from streams.hunt.args import ENTITY_TYPES
from streams.hunt.engine import HuntError, HuntFilters, HuntHit, HuntResult, hunt
from streams.config.settings import Settings

__all__ = ["format_table", "hit_json", "no_event_contains", "run_hunt"]

_SUMMARY_CHARS = 72


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


def no_event_contains(result: HuntResult) -> str:
    """``no event contains 'mimikatz'`` when the hunt found no event whose message holds the text's words
    (:attr:`HuntResult.contained` false), else ``""``."""
    if result.contained is not False:
        return ""
    if len(result.terms) == 1:
        return f"no event contains {result.terms[0]!r}"
    return f"no event contains all of {', '.join(repr(w) for w in result.terms)}"


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
    absent = no_event_contains(result)
    if as_json:
        if absent:  # stdout stays one JSON hit per line
            print(absent + ("; nearest by meaning:" if result.hits else ""), file=err)
        for i, h in enumerate(result.hits, start=1):
            out.write(json.dumps(hit_json(i, h), ensure_ascii=False, separators=(",", ":")) + "\n")
    elif absent:
        print(absent + ("; nearest by meaning:" if result.hits else ""), file=out)
        if result.hits:
            print(format_table(result.hits), file=out)
    else:
        print(format_table(result.hits), file=out)
    searched = ", ".join(f"{name} {n}" for name, n in result.lists.items()) or "none"
    print(f"{len(result.hits)} hits (lists searched: {searched})", file=err)
    return 0

"""`secstream replay`: offline, prequential scoring of a file through the same
`Pipeline.process` the worker runs (design.md, "replay output" contract).

Writes ``events.jsonl`` (one line per input record, in input order),
``sessions.jsonl`` (one line per session at end of input) and ``alerts.jsonl``
(the alerts exactly as they would be published).

Sessions: until the sessionizer lands, an event's session is its ``session_id``
field (HDFS block ids, producer-given ids); a session's score is the maximum of
its events' scores and it alerts when any of its events alerted.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.adapters import Record, read_records
from streams.console import Progress
from streams.pipeline import Accepted, Pipeline, Rejected
from streams.runtime import build_pipeline, build_store
from streams.settings import Settings


@dataclass
class SessionAcc:
    events: int = 0
    score: float = 0.0
    alert: bool = False


@dataclass
class ReplaySummary:
    records: int = 0
    events: int = 0
    errors: int = 0
    alerts: int = 0
    sessions: int = 0
    seconds: float = 0.0
    by_error: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def _batches(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


def replay_records(records: Iterator[Record], pipeline: Pipeline, out_dir: Path, *, batch_size: int = 2000,
                   progress: Progress | None = None) -> ReplaySummary:
    """Score ``records`` in order and write the three contract files under ``out_dir``."""
    import time

    out_dir.mkdir(parents=True, exist_ok=True)
    summary = ReplaySummary()
    sessions: dict[str, SessionAcc] = {}
    started = time.perf_counter()
    with open(out_dir / "events.jsonl", "w", encoding="utf-8") as ev_out, \
            open(out_dir / "alerts.jsonl", "w", encoding="utf-8") as al_out:
        for batch in _batches(records, batch_size):
            valid = [r for r in batch if r.value is not None]
            outcome = pipeline.process([r.value for r in valid if r.value is not None])
            by_pos = {id(valid[res.index]): res for res in outcome.results}
            for rec in batch:
                summary.records += 1
                res = by_pos.get(id(rec))
                if res is None:
                    summary.errors += 1
                    summary.by_error["adapter"] = summary.by_error.get("adapter", 0) + 1
                    ev_out.write(_line({"line": rec.line, "error": rec.error or "unreadable record"}))
                elif isinstance(res, Rejected):
                    summary.errors += 1
                    summary.by_error[res.reason] = summary.by_error.get(res.reason, 0) + 1
                    ev_out.write(_line({"line": rec.line, "error": f"{res.reason}: {res.detail}"}))
                else:
                    assert isinstance(res, Accepted)
                    summary.events += 1
                    ev_out.write(_line({"event_id": res.event_id, "session_id": res.session_id,
                                        "score": round(res.score, 3), "alert": res.alert}))
                    if res.session_id is not None:
                        acc = sessions.setdefault(res.session_id, SessionAcc())
                        acc.events += 1
                        acc.score = max(acc.score, res.score)
                        acc.alert = acc.alert or res.alert
            for alert in outcome.alerts:
                al_out.write(_line(alert))
            summary.alerts += len(outcome.alerts)
            if progress is not None:
                progress.advance(len(batch), alerts=summary.alerts)
    with open(out_dir / "sessions.jsonl", "w", encoding="utf-8") as s_out:
        for sid, acc in sessions.items():
            s_out.write(_line({"session_id": sid, "score": round(acc.score, 3), "alert": acc.alert,
                               "events": acc.events}))
    summary.sessions = len(sessions)
    summary.seconds = time.perf_counter() - started
    if progress is not None:
        progress.close(alerts=summary.alerts)
    return summary


def run_replay(path: Path, fmt: str, out_dir: Path, settings: Settings, *, keep_store: Path | None = None,
               year: int | None = None) -> ReplaySummary:
    """Replay a file with a fresh pipeline; the store lives in a temporary directory unless kept."""
    with tempfile.TemporaryDirectory(prefix="secstream-replay-") as tmp:
        root = keep_store or Path(tmp)
        store = build_store(settings.model_copy(update={"qdrant_url": ""}), data_dir=root)
        try:
            pipeline = build_pipeline(settings, store)
            progress = Progress(f"replay {path.name}")
            return replay_records(read_records(path, fmt, year=year), pipeline, out_dir,
                                  batch_size=settings.batch_size, progress=progress)
        finally:
            store.close()

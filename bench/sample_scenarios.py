"""Detection on the bundled sample stream, per injected scenario.

`python -m bench.sample_scenarios [--json]` (or `secstream bench sample`) scores the
bundled sample exactly as `secstream run` and `replay` do (the same `Pipeline`,
prequential, no labels), then joins each event's score with the scenario tag the
generator put in ``attributes.scenario`` — which the detector never reads — and
prints, per scenario: events, events that alerted, mean and max score. The
"normal" row is the false-alert side.

The same run feeds the session stage the worker runs (``build_session_stage``,
rolling early scores included) and prints, per scenario, the sessions that hold at
least one of its events and how many of them raised a ``session_anomaly`` alert
(at close or early, while still open). A session with no tagged event is "normal".

And the entity stage (``build_entity_stage``): per scenario, the events whose alert
was raised by an entity score (column "by entity", included in "alerted") and the
``entity_drift`` alerts whose evidence holds one of its events.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from typing import Any

from streams.cli.terminal import table


def run(batch_size: int = 500) -> dict[str, Any]:
    """Score the bundled sample; per-scenario statistics and throughput."""
    from streams.stages.entity_stage import entity_steps
    from streams.stages.pipeline import Accepted
    from streams.stages.factory import build_entity_stage, build_pipeline, build_session_stage
    from streams.sample import iter_sample
    from streams.config.settings import Settings

    values = list(iter_sample())
    scenarios = [json.loads(v).get("attributes", {}).get("scenario", "normal") for v in values]
    settings = Settings()
    pipeline = build_pipeline(settings, store=None)
    stage = build_session_stage(settings, pipeline, store=None)
    entities = build_entity_stage(settings, pipeline, store=None)
    tag_of = {json.loads(v).get("event_id"): tag for v, tag in zip(values, scenarios)}
    raised: set[str] = set()
    drift: list[dict[str, Any]] = []
    started = time.perf_counter()
    results = []
    alerts = 0
    session_tags: dict[str, set[str]] = defaultdict(set)
    session_alerted: set[str] = set()
    for i in range(0, len(values), batch_size):
        out = pipeline.process(values[i : i + batch_size])
        results.extend(out.results)
        alerts += len(out.alerts)
        acc = [r for r in out.results if isinstance(r, Accepted) and r.event is not None and r.row >= 0]
        if acc and out.vectors is not None:
            so = stage.observe([r.event for r in acc if r.event is not None], out.vectors[[r.row for r in acc]],
                               [r.template_id or "" for r in acc], [r.template or "" for r in acc],
                               [r.score for r in acc])
            for r, sid in zip(acc, so.session_ids):
                if sid is not None:
                    session_tags[sid].add(scenarios[i + r.index])
            session_alerted.update(a["evidence"]["session_id"] for a in so.alerts)
        if entities is not None:
            for a in entities.observe(*entity_steps(out, entities.types)).alerts:
                if a["kind"] == "entity_drift":
                    drift.append(a)
                else:
                    raised.add(a["evidence"]["event_ids"][0])
    session_alerted.update(a["evidence"]["session_id"] for a in stage.flush().alerts)
    if entities is not None:
        drift += [a for a in entities.flush().alerts if a["kind"] == "entity_drift"]
    seconds = time.perf_counter() - started
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"events": 0, "alerted": 0, "by_entity": 0,
                                                           "score_sum": 0.0, "score_max": 0.0, "drift": 0})
    for res, scenario in zip(results, scenarios):
        row = rows[scenario]
        row["events"] += 1
        score = getattr(res, "score", 0.0)
        by_entity = getattr(res, "event_id", None) in raised
        row["alerted"] += int(bool(getattr(res, "alert", False)) or by_entity)
        row["by_entity"] += int(by_entity)
        row["score_sum"] += score
        row["score_max"] = max(row["score_max"], score)
    for a in drift:
        for tag in {tag_of.get(e, "normal") for e in a["evidence"]["event_ids"]}:
            rows[tag]["drift"] += 1
    per = {name: {"events": r["events"], "alerted": r["alerted"], "by_entity": r["by_entity"],
                  "mean_score": round(r["score_sum"] / max(r["events"], 1), 1), "max_score": round(r["score_max"], 1),
                  "drift_alerts": r["drift"]} for name, r in sorted(rows.items())}
    sessions: dict[str, dict[str, int]] = defaultdict(lambda: {"sessions": 0, "alerted": 0})
    for sid, tags in session_tags.items():
        for tag in (tags - {"normal"}) or {"normal"}:
            sessions[tag]["sessions"] += 1
            sessions[tag]["alerted"] += int(sid in session_alerted)
    return {"events": len(values), "alerts": alerts, "seconds": round(seconds, 2),
            "events_per_s": round(len(values) / seconds, 1), "threshold": pipeline.threshold, "scenarios": per,
            "sessions": dict(sorted(sessions.items())), "session_alerts": len(session_alerted),
            "entity_alerts": len(raised), "drift_alerts": len(drift)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="secstream bench sample", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run()
    if args.json:
        print(json.dumps(result))
        return 0
    rows = [[name, r["events"], r["alerted"], r["by_entity"], f"{100 * r['alerted'] / max(r['events'], 1):.1f}%",
             r["mean_score"], r["max_score"], r["drift_alerts"]] for name, r in result["scenarios"].items()]
    print(table(rows, ["scenario", "events", "alerted", "by entity", "alerted %", "mean score", "max score",
                       "drift alerts"]))
    print(f"\n{result['events']} events, {result['alerts']} alerts (threshold {result['threshold']:.0f}), "
          f"{result['events_per_s']:,.0f} events/s scoring (model warm-up included)\n")
    srows = [[name, r["sessions"], r["alerted"]] for name, r in result["sessions"].items()]
    print(table(srows, ["scenario", "sessions", "session alerts"]))
    print(f"\n{sum(r['sessions'] for r in result['sessions'].values())} sessions, "
          f"{result['session_alerts']} with a session_anomaly alert (at close or while open)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Alert volume before and after dedup, on one pass of a stream and on the same stream replayed twice.

    python -m bench.alert_volume [--data DIR] [--batch-size N] [--json]      (or `secstream bench alerts`)

For each stream (the bundled sample; loghub ``OpenSSH_2k.log``, raw sshd), replays it through
:func:`streams.cli.replay.replay_records` exactly as ``secstream replay`` does (pipeline, session and
entity stages, dedup and rate limit), then replays the same records again into the same state,
as a producer that re-sends a day of logs would; its events carry the ids they had, which the
pipeline recognises (:mod:`detection.recent`: not learned, stored or alerted twice). A third
row replays the stream a second time into a fresh state with **new ids** on the second pass
(the same content under other ids: the events are judged again, against a stream that now
holds them once). Per pass: alerts the stages **raised** (the
baseline measured in the same run: what a SOC would read without dedup), alerts **published** as
new, **updates** of published alerts, and raised alerts **folded** into an open one. For the
second pass also: published alerts that duplicate an alert still open from the first pass (same
dedup group, kind + entity + template, and within the dedup window of its event-time span: "dup
open", must be 0) and those that share a group with any first-pass alert ("same group").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from streams.cli.terminal import table

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _pass(records: list[Any], parts: dict[str, Any], out: Path, batch_size: int) -> tuple[Any, list[dict[str, Any]]]:
    from streams.cli.replay import replay_records

    out.mkdir(parents=True, exist_ok=True)
    summary = replay_records(iter(records), parts["pipeline"], out, batch_size=batch_size, sessions=parts["sessions"],
                             entities=parts["entities"], dedup=parts["dedup"])
    docs = [json.loads(line) for line in (out / "alerts.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return summary, docs


def _renamed(records: list[Any]) -> list[Any]:
    """The records with ``#2`` appended to every event id (records that are not JSON events stay)."""
    from dataclasses import replace

    out = []
    for rec in records:
        try:
            doc = json.loads(rec.value) if rec.value is not None else None
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("event_id"):
            doc["event_id"] = f"{doc['event_id']}#2"
            rec = replace(rec, value=json.dumps(doc).encode("utf-8"))
        out.append(rec)
    return out


def run_stream(name: str, records: list[Any], batch_size: int, *, new_ids: bool = False) -> dict[str, Any]:
    """Two passes of ``records`` through one fresh set of stages (the second with new event ids when
    ``new_ids``); volumes per pass."""
    from detection.dedup import group_key
    from detection.times import event_time
    from streams.stages.factory import (
        build_deduper,
        build_entity_stage,
        build_pipeline,
        build_session_stage,
    )
    from streams.config.settings import Settings

    settings = Settings()
    pipeline = build_pipeline(settings, store=None)
    parts = {"pipeline": pipeline, "sessions": build_session_stage(settings, pipeline, store=None),
             "entities": build_entity_stage(settings, pipeline, store=None), "dedup": build_deduper(settings)}
    passes = []
    first_groups: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="secstream-bench-alerts-") as tmp:
        for n in (1, 2):
            dedup = parts["dedup"]  # groups still open when the pass starts, with their event-time spans
            open_before = {k: (g.first_t, g.last_t) for k, g in dedup.groups.items()}
            again = _renamed(records) if new_ids and n == 2 else records
            summary, docs = _pass(again, parts, Path(tmp) / f"pass{n}", batch_size)
            new = [d for d in docs if not d.get("update")]
            groups = [group_key(d) for d in new]
            row = {"stream": name, "pass": f"{n} (new ids)" if new_ids and n == 2 else n, "events": summary.events, "raised": summary.alerts,
                   "published": summary.published, "updates": summary.updates, "folded": summary.folded,
                   "seconds": round(summary.seconds, 2)}
            if n == 1:
                first_groups = set(groups)
            else:
                row["dup_open"] = sum(1 for d, g in zip(new, groups) if g in open_before
                                      and open_before[g][0] - dedup.window_s <= event_time(d["time"])
                                      <= open_before[g][1] + dedup.window_s)
                row["same_group"] = sum(1 for g in groups if g in first_groups)
            passes.append(row)
    return {"stream": name, "new_ids": new_ids, "passes": passes}


def load_streams(data: Path) -> dict[str, list[Any]]:
    from streams.adapters import read_records
    from streams.sample import sample_path

    out = {"sample": list(read_records(sample_path(), "jsonl"))}
    ssh = data / "loghub" / "OpenSSH_2k.log"
    if ssh.exists():
        out["openssh"] = list(read_records(ssh, "sshd"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="secstream bench alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data directory (loghub/)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = [run_stream(name, records, args.batch_size, new_ids=new_ids)
               for name, records in load_streams(args.data).items() for new_ids in (False, True)]
    if args.json:
        print(json.dumps({"batch_size": args.batch_size, "streams": results}))
        return 0
    rows = []
    for res in results:
        for p in res["passes"][1:] if res["new_ids"] else res["passes"]:  # pass 1 is the same run again
            ratio = f"{p['published'] / p['raised']:.2f}" if p["raised"] else "-"
            rows.append([p["stream"], p["pass"], p["events"], p["raised"], p["published"], ratio, p["updates"],
                         p["folded"], p.get("dup_open", "-"), p.get("same_group", "-")])
    print(table(rows, ["stream", "pass", "events", "raised", "published", "pub/raised", "updates", "folded",
                       "dup open", "same group"]))
    print("\nraised = alerts without dedup (the baseline, same run); published = new alerts a SOC reads")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Alert volume before and after dedup, on one pass of a stream and on the same stream replayed twice.

    python -m bench.alert_volume [--data DIR] [--batch-size N] [--json]      (or `secstream bench alerts`)

For each stream (the bundled sample; loghub ``OpenSSH_2k.log``, raw sshd), replays it through
:func:`streams.replay.replay_records` exactly as ``secstream replay`` does (pipeline, session and
entity stages, dedup and rate limit), then replays the same records again into the same state,
as a producer that re-sends a day of logs would. Per pass: alerts the stages **raised** (the
baseline measured in the same run: what a SOC would read without dedup), alerts **published** as
new, **updates** of published alerts, and raised alerts **folded** into an open one. For the
second pass also: published alerts that share a dedup group (kind + entity + template) with an
alert still open from the first pass ("dup open", must be 0) and those that share one with any
first-pass alert ("same group").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from streams.console import table

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _pass(records: list[Any], parts: dict[str, Any], out: Path, batch_size: int) -> tuple[Any, list[dict[str, Any]]]:
    from streams.replay import replay_records

    out.mkdir(parents=True, exist_ok=True)
    summary = replay_records(iter(records), parts["pipeline"], out, batch_size=batch_size, sessions=parts["sessions"],
                             entities=parts["entities"], dedup=parts["dedup"])
    docs = [json.loads(line) for line in (out / "alerts.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return summary, docs


def run_stream(name: str, records: list[Any], batch_size: int) -> dict[str, Any]:
    """Two passes of ``records`` through one fresh set of stages; volumes per pass."""
    from detection.dedup import group_key
    from streams.runtime import (
        build_deduper,
        build_entity_stage,
        build_pipeline,
        build_session_stage,
    )
    from streams.settings import Settings

    settings = Settings()
    pipeline = build_pipeline(settings, store=None)
    parts = {"pipeline": pipeline, "sessions": build_session_stage(settings, pipeline, store=None),
             "entities": build_entity_stage(settings, pipeline, store=None), "dedup": build_deduper(settings)}
    passes = []
    first_groups: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="secstream-bench-alerts-") as tmp:
        for n in (1, 2):
            open_before = set(parts["dedup"].groups)  # groups still open when the pass starts
            summary, docs = _pass(records, parts, Path(tmp) / f"pass{n}", batch_size)
            new = [d for d in docs if not d.get("update")]
            groups = [group_key(d) for d in new]
            row = {"stream": name, "pass": n, "events": summary.events, "raised": summary.alerts,
                   "published": summary.published, "updates": summary.updates, "folded": summary.folded,
                   "seconds": round(summary.seconds, 2)}
            if n == 1:
                first_groups = set(groups)
            else:
                row["dup_open"] = sum(1 for g in groups if g in open_before)
                row["same_group"] = sum(1 for g in groups if g in first_groups)
            passes.append(row)
    return {"stream": name, "passes": passes}


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
    results = [run_stream(name, records, args.batch_size) for name, records in load_streams(args.data).items()]
    if args.json:
        print(json.dumps({"batch_size": args.batch_size, "streams": results}))
        return 0
    rows = []
    for res in results:
        for p in res["passes"]:
            ratio = f"{p['published'] / p['raised']:.2f}" if p["raised"] else "-"
            rows.append([p["stream"], p["pass"], p["events"], p["raised"], p["published"], ratio, p["updates"],
                         p["folded"], p.get("dup_open", "-"), p.get("same_group", "-")])
    print(table(rows, ["stream", "pass", "events", "raised", "published", "pub/raised", "updates", "folded",
                       "dup open", "same group"]))
    print("\nraised = alerts without dedup (the baseline, same run); published = new alerts a SOC reads")
    return 0


if __name__ == "__main__":
    sys.exit(main())

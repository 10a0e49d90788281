"""Entity drift on an OpenSSH-derived scenario, through the full replay path.

The scenario (issue #5): 30 users, each with its own /24 and legitimate sessions
(Accepted password, session opened and closed, a rare typo) built from real
OpenSSH templates of Loghub's ``OpenSSH_2k.log``. ``user00`` turns abruptly at
window ``CHANGE_AT``: every login now comes from a new public subnet with
break-in warnings, failed passwords and too many failures. ``user01`` (12 logins a
window) reaches the same behaviour slowly, over ``SLOW_LEN`` windows. The other 28
users keep their behaviour.

`python -m bench.entity_scenario [--json]` (or `secstream bench entity-drift`)
publishes the scenario as a producer would (:func:`scenario_values`) and replays it
through the code the worker runs: :func:`streams.stages.factory.build_pipeline`,
:func:`streams.stages.factory.build_entity_stage` and :func:`streams.cli.replay.replay_records`.
Unlike the unit test (tests/unit/test_entities.py), which learns the encoder's
vocabulary before encoding, the encoder here learns online, as in production.
Its first batch is encoded before the encoder has learned anything (prequential),
so ``--batch-size`` matters. It then reads ``alerts.jsonl`` and prints, per group
(the changed user, the slow user, the stable users, hosts, source addresses): the
entities with a scored (steady) update, ``entity_drift`` alerts, the window of the
first one, the highest drift score of the group's scored updates, and the
``event_anomaly`` alerts raised by an entity score ("unlike its own behaviour").
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streams.cli.terminal import table

__all__ = ["CHANGED", "CHANGE_AT", "GROUPS", "OPENSSH", "SLOW", "SLOW_FROM", "SLOW_LEN", "SLOW_LOGINS", "T0",
           "WINDOWS", "WINDOW_S", "encode_scenario", "group_of", "main", "openssh_scenario", "run",
           "scenario_events", "scenario_values", "window_index"]

OPENSSH = Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub" / "OpenSSH_2k.log"
T0 = 1_765_000_200.0  # a window boundary for 300 s windows
WINDOW_S = 300.0  # the scenario's windows (the default SECSTREAM_ENTITY_WINDOW_S)
CHANGED, SLOW, CHANGE_AT, SLOW_FROM, SLOW_LEN, SLOW_LOGINS, WINDOWS = "user00", "user01", 14, 6, 30, 12, 40
USERS = 30
GROUPS = ("changed", "slow", "stable", "host", "src_ip")


def _iso(t: float) -> str:
    from detection.times import iso_time

    return iso_time(t)


def scenario_events(path: Path = OPENSSH) -> list[dict[str, Any]]:
    """The scenario's events (decoded event dicts, sorted by time), templates taken from ``path``.

    Deterministic (seed 5): the same events on every call.
    """
    from schemas.models import decode_event, parse_event
    from streams.adapters import read_records

    sample = [decode_event(r.value).to_dict() for r in read_records(path, "sshd") if r.value]

    def first(prefix: str) -> dict[str, Any]:
        return next(e for e in sample if e["message"].startswith(prefix))

    protos = {"accepted": first("Accepted password for"), "opened": first("pam_unix(sshd:session): session opened"),
              "closed": first("pam_unix(sshd:session): session closed"), "failed": first("Failed password for root"),
              "pam_more": first("PAM 5 more authentication failures"), "break_in": first("reverse mapping checking"),
              "too_many": first("Disconnecting: Too many authentication failures"),
              "conn_closed": first("Connection closed by")}

    def make(kind: str, user: str, ip: str, port: int, t: float, n: int) -> dict[str, Any]:
        e = copy.deepcopy(protos[kind])
        msg = e["message"]
        if e.get("user"):
            msg, e["user"] = msg.replace(e["user"], user), user
        if e.get("src_ip"):
            msg, e["src_ip"] = msg.replace(e["src_ip"], ip), ip
        if e.get("src_port"):
            msg, e["src_port"] = msg.replace(str(e["src_port"]), str(port)), port
        if kind == "pam_more":
            msg, e["attributes"]["rhost"] = msg.replace(e["attributes"]["rhost"], ip), ip
        e.update(message=msg, time=_iso(t), event_id=f"syn-{n}")
        return parse_event(e).to_dict()

    rng = np.random.default_rng(5)
    stream: list[dict[str, Any]] = []
    for w in range(WINDOWS):
        for ui in range(USERS):
            user = f"user{ui:02d}"
            logins = SLOW_LOGINS if user == SLOW else int(rng.integers(1, 4))
            turned = 0  # logins of the new kind in this window
            if user == CHANGED and w >= CHANGE_AT:
                turned = logins
            elif user == SLOW and w >= SLOW_FROM:
                turned = round(min(1.0, (w - SLOW_FROM + 1) / SLOW_LEN) * logins)
            for j in range(logins):
                t = T0 + WINDOW_S * w + rng.uniform(0, 290)
                ip, port = f"10.20.{ui}.{10 + int(rng.integers(0, 3))}", int(rng.integers(40000, 60000))
                if j < turned:
                    ip = f"203.0.113.{int(rng.integers(2, 250))}"
                    kinds = ["break_in", *["failed"] * 5, "pam_more", "too_many", "conn_closed"]
                else:
                    kinds = (["failed"] if rng.random() < 0.1 else []) + ["accepted", "opened", "closed"]
                for k, kind in enumerate(kinds):
                    stream.append(make(kind, user, ip, port, t + k * rng.uniform(0.5, 5), len(stream)))
    stream.sort(key=lambda e: e["time"])
    return stream


def encode_scenario(events: Sequence[dict[str, Any]], chunk: int = 2000) -> tuple[np.ndarray, dict[str, slice]]:
    """Dense vectors of ``events`` and the hybrid encoder's parts.

    The encoder learns the whole vocabulary first, so that it does not drift itself
    (what the unit test wants; the replay benchmark learns online instead).
    """
    from encoders.hybrid import build_default_encoder

    encoder = build_default_encoder()
    for a in range(0, len(events), chunk):
        encoder.update(list(events[a:a + chunk]))
    vectors = np.concatenate([encoder.encode(list(events[a:a + chunk])).dense for a in range(0, len(events), chunk)])
    return vectors, dict(encoder.parts)


def openssh_scenario(path: Path = OPENSSH) -> tuple[list[dict[str, Any]], np.ndarray, dict[str, slice]]:
    """The scenario's events, their vectors (vocabulary learned first) and the encoder's parts."""
    events = scenario_events(path)
    vectors, parts = encode_scenario(events)
    return events, vectors, parts


def scenario_values(events: Sequence[dict[str, Any]]) -> list[bytes]:
    """Each event as the compact JSON bytes a producer publishes (schemas/security_event.v1.json)."""
    from schemas.models import parse_event

    return [parse_event(e).to_json() for e in events]


def window_index(rfc3339_end: str) -> int:
    """The scenario window (0-based) that ends at ``rfc3339_end`` (an alert's ``last_seen``)."""
    from detection.times import event_time

    return int((event_time(rfc3339_end) - WINDOW_S - T0) // WINDOW_S)


def group_of(kind: str, ident: str) -> str:
    """The benchmark group of an entity: changed, slow, stable (other users), host or src_ip."""
    if kind == "unknown" and ":" in ident:  # an alert entity of a type the schema does not name
        kind, ident = ident.split(":", 1)
    if kind == "user":
        return "changed" if ident == CHANGED else "slow" if ident == SLOW else "stable"
    return kind


def run(path: Path = OPENSSH, batch_size: int = 500) -> dict[str, Any]:
    """Replay the scenario through the worker's stages; alerts and drift scores per group."""
    from streams.adapters import Record
    from streams.cli.replay import replay_records
    from streams.stages.factory import build_entity_stage, build_pipeline
    from streams.config.settings import Settings

    begun = time.perf_counter()
    events = scenario_events(path)
    records = [Record(line=i + 1, value=v) for i, v in enumerate(scenario_values(events))]
    settings = Settings()
    pipeline = build_pipeline(settings, store=None)
    stage = build_entity_stage(settings, pipeline, store=None)
    if stage is None:
        raise SystemExit("the entity stage is off (SECSTREAM_ENTITY_TYPES is empty)")
    drift: dict[tuple[str, str], dict[int, float]] = {}  # entity → window → drift score (scored updates)
    tracker = stage.tracker(0)  # the replay's one partition; record every scored update, then alert as usual
    alerting = tracker.on_commit

    def observe(report: Any) -> None:
        w = int((report.commit.window_start - T0) // WINDOW_S)
        for i in np.flatnonzero(report.drift.scored):
            drift.setdefault(report.commit.keys[i], {})[w] = round(float(report.drift.score[i]), 1)
        if alerting is not None:
            alerting(report)

    tracker.on_commit = observe
    with tempfile.TemporaryDirectory(prefix="secstream-entity-") as tmp:
        started = time.perf_counter()
        summary = replay_records(iter(records), pipeline, Path(tmp), batch_size=batch_size, entities=stage)
        seconds = time.perf_counter() - started
        alerts = [json.loads(x) for x in (Path(tmp) / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    groups: dict[str, dict[str, Any]] = {g: {"entities": 0, "drift_alerts": 0, "alerted": [], "first_window": None,
                                             "max_drift": 0.0, "entity_event_alerts": 0} for g in GROUPS}
    for key, scores in drift.items():
        row = groups.setdefault(group_of(*key), {"entities": 0, "drift_alerts": 0, "alerted": [],
                                                 "first_window": None, "max_drift": 0.0, "entity_event_alerts": 0})
        row["entities"] += 1
        row["max_drift"] = max(row["max_drift"], max(scores.values(), default=0.0))
    kinds: dict[str, int] = {}
    for a in alerts:
        kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
        ent = a.get("entity") or {}
        if not ent:
            continue
        row = groups.get(group_of(str(ent["type"]), str(ent["id"])))
        if row is None:
            continue
        if a["kind"] == "entity_drift":
            w = window_index(a["last_seen"])
            row["drift_alerts"] += 1
            row["alerted"].append([str(ent["id"]), w, a["score"]])
            row["first_window"] = w if row["first_window"] is None else min(row["first_window"], w)
        elif a["kind"] == "event_anomaly" and "unlike its own behaviour" in a["title"]:
            row["entity_event_alerts"] += 1
    for row in groups.values():
        row["alerted"].sort(key=lambda x: (x[1], x[0]))
    return {"events": len(records), "seconds": round(seconds, 2), "events_per_s": round(len(records) / seconds, 1),
            "wall_s": round(time.perf_counter() - begun, 2), "batch_size": batch_size,
            "change_at": CHANGE_AT, "windows": WINDOWS, "alerts_by_kind": dict(sorted(kinds.items())),
            "entity_versions": summary.entity_versions, "groups": groups,
            "drift_scores": {who: dict(sorted(drift.get(("user", who), {}).items())) for who in (CHANGED, SLOW)}}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; a table (default) or one JSON object (``--json``)."""
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(prog="secstream bench entity-drift", description=doc.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--data", type=Path, default=OPENSSH, help="Loghub OpenSSH_2k.log (templates)")
    parser.add_argument("--batch-size", type=int, default=500, help="replay batch size (default 500)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not args.data.is_file():
        print(f"needs {args.data} (Loghub's OpenSSH_2k.log)", file=sys.stderr)
        return 2
    result = run(args.data, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result))
        return 0
    labels = {"changed": f"changed ({CHANGED})", "slow": f"slow drift ({SLOW})", "stable": "stable users",
              "host": "host", "src_ip": "src_ip"}
    rows = [[labels.get(name, name), g["entities"], g["drift_alerts"],
             "-" if g["first_window"] is None else g["first_window"], g["max_drift"], g["entity_event_alerts"]]
            for name, g in result["groups"].items()]
    print(table(rows, ["group", "scored entities", "drift alerts", "first alert window", "max drift",
                       "unlike own behaviour"]))
    changed = result["groups"]["changed"]
    first = changed["first_window"]
    verdict = "no drift alert" if first is None else f"first drift alert in window {first} ({first - CHANGE_AT:+d})"
    print(f"\n{CHANGED} changes at window {CHANGE_AT}: {verdict}; drift scores from window {CHANGE_AT - 2}: "
          + ", ".join(f"{w}:{s:.0f}" for w, s in result["drift_scores"][CHANGED].items() if w >= CHANGE_AT - 2))
    others = [a for name in ("slow", "stable", "host", "src_ip") for a in result["groups"][name]["alerted"]]
    if others:
        print("other drift alerts (entity, window, score): " + ", ".join(f"{e}@{w}:{s:.0f}" for e, w, s in others))
    print(f"\n{result['events']} events, {result['windows']} windows, alerts {result['alerts_by_kind']}, "
          f"{result['entity_versions']} entity versions, batch size {result['batch_size']}; replay "
          f"{result['seconds']:.1f} s ({result['events_per_s']:,.0f} events/s, model warm-up included), "
          f"{result['wall_s']:.1f} s wall with scenario and pipeline set-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())

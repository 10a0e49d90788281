"""`secstream` command line. Bad arguments get one line naming what is valid.

Every command checks its arguments before it imports what does the work (numpy, torch, Faust, the
Qdrant and Kafka clients): `--help`, `config` and an argument error answer without them
(tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: the model ships in a package
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from schemas.errors import SecstreamError

FORMATS = ("jsonl", "sshd", "hdfs", "windows-json", "parquet", "auto")
#: benchmark name → module with ``main(argv) -> int``
BENCHES = {"encode": "bench.encode", "eval-hdfs": "bench.eval_hdfs", "sample": "bench.sample_scenarios",
           "store": "bench.store_compare", "quantization": "bench.quantization",
           "sessions-memory": "bench.session_memory", "sessions-store": "bench.session_store",
           "entity-update": "bench.entity_update",
           "entity-drift": "bench.entity_scenario", "alerts": "bench.alert_volume",
           "fuzz": "bench.fuzz", "e2e": "bench.e2e", "backpressure": "bench.backpressure",
           "restarts": "bench.restarts", "traffic": "bench.traffic"}
TRAINABLE = ("categorical", "sessions")
log = logging.getLogger("secstream")


class CliError(SecstreamError):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not a usage dump
        raise CliError(f"{self.prog}: {message}")


def _settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from streams.config.security import SecretFileError
    from streams.config.settings import load_settings
    from streams.config.unknown_env import warn_unknown_env

    warn_unknown_env()  # a misspelled SECSTREAM_* variable would be ignored without a word
    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a check across settings: its message names them
            raise CliError(f"invalid settings: {first['msg'].removeprefix('Value error, ')}") from exc
        raise CliError(f"invalid setting SECSTREAM_{str(first['loc'][0]).upper()}: {first['msg']}") from exc
    except SecretFileError as exc:
        raise CliError(f"invalid settings: {exc}") from exc


def _setup_logging(level: str, fmt: str = "text") -> None:
    import logging.config

    from streams.ops.logs import logging_config

    logging.config.dictConfig(logging_config(level, fmt))


def _existing_file(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"no such file: {path}")
    return p


def _check_format(path: Path, fmt: str) -> None:
    """Refuse at once a file whose bytes contradict ``--format`` (a Parquet file read as text, ...), or
    whose format ``auto`` cannot detect: one line naming the ``--format`` to use."""
    from streams.adapters import UnknownFormat, check_format, detect_format

    try:
        check_format(path, detect_format(path) if fmt == "auto" else fmt)
    except UnknownFormat as exc:  # FormatMismatch included
        raise CliError(str(exc)) from exc


def cmd_run(args: argparse.Namespace) -> int:
    from streams.worker.faust_app import Worker
    from streams.kafka.embedded_broker import EmbeddedBroker
    from streams.ops.health import Health
    from streams.ops.metrics import serve
    from streams.stages.factory import (
        build_entity_stage,
        build_pipeline,
        build_session_stage,
        build_store,
        settle_heap,
        stage_thresholds,
    )
    from streams.stages.snapshots import (
        load_feedback,
        load_session_state,
        load_state,
        load_thresholds,
    )

    settings = _settings(metrics_port=args.metrics_port)
    if settings.embedded_broker and settings.kafka_security_protocol != "PLAINTEXT":
        raise CliError(f"SECSTREAM_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
                       f"SECSTREAM_KAFKA_BOOTSTRAP: the embedded broker speaks PLAINTEXT on loopback only")
    _setup_logging(settings.log_level, settings.log_format)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: stacks to stderr
    broker = None
    sample = None
    data_dir = settings.data_dir
    if settings.embedded_broker:
        broker = EmbeddedBroker().start()
        bootstrap = broker.bootstrap
        if settings.sample and not args.no_sample:
            from streams.sample import iter_sample

            sample = iter_sample
            if "SECSTREAM_DATA_DIR" not in os.environ:
                # the demo replays the same stream each time into a fresh in-memory broker: start
                # from a clean state too, or the second run has already learned the attacks
                data_dir = Path(tempfile.mkdtemp(prefix="secstream-demo-"))
        print(f"embedded broker (Tansu) on {bootstrap}; stop with Ctrl-C", file=sys.stderr, flush=True)
    else:
        bootstrap = settings.kafka_bootstrap
    settings = settings.model_copy(update={"data_dir": data_dir})
    store = None
    try:
        health = Health(restart_after_s=settings.stall_restart_after_s)
        url = serve(settings.metrics_port, settings.metrics_host, health=health)
        if url:  # the address really bound: loopback by default, every interface only when asked
            where = " (every interface)" if settings.metrics_host in ("0.0.0.0", "::", "") else ""
            print(f"metrics on {url}/metrics{where} (probes: /healthz, /readyz)", file=sys.stderr, flush=True)
        store = build_store(settings, retry=True)
        pipeline = build_pipeline(settings, store)
        pipeline.encoder.preload()  # the model loads while the worker starts and joins its group
        load_state(pipeline, settings.data_dir / "state")
        load_feedback(pipeline.feedback, settings.data_dir / "state", pipeline.model_version)
        stage = build_session_stage(settings, pipeline, store)
        load_session_state(stage.scorer, settings.data_dir / "state", pipeline.model_version)
        entities = build_entity_stage(settings, pipeline, store)
        load_thresholds(settings.data_dir / "state", pipeline.model_version,
                        stage_thresholds(pipeline, stage, entities))
        settle_heap()
        if sample is not None:
            print("feeding the bundled sample stream; alerts follow as they are published", file=sys.stderr,
                  flush=True)
        worker = Worker(settings, bootstrap, pipeline, state_dir=settings.data_dir / "state", sessions=stage,
                        entities=entities, sample=sample, health=health)
        worker.run(settings.log_level)
    finally:
        if store is not None:
            store.close()
        if broker is not None:
            broker.stop()
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.kafka.embedded_broker import EmbeddedBroker

    with EmbeddedBroker(port=args.port) as broker:
        print(f"embedded broker (Tansu) on {broker.bootstrap}; stop with Ctrl-C", flush=True)
        stop = {"now": False}

        def _stop(*_: Any) -> None:
            stop["now"] = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)  # also where a background shell started it with SIGINT ignored
        try:
            while not stop["now"] and broker.running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0


def _bootstrap(settings: Any, flag: str | None) -> str:
    bootstrap = flag or settings.kafka_bootstrap
    if not bootstrap:
        raise CliError("no Kafka to talk to: pass --bootstrap HOST:PORT or set SECSTREAM_KAFKA_BOOTSTRAP "
                       "(`secstream broker` starts an embedded one)")
    return bootstrap


def cmd_produce(args: argparse.Namespace) -> int:
    settings = _settings()
    path = _existing_file(args.file)
    _check_format(path, args.format)
    bootstrap = _bootstrap(settings, args.bootstrap)
    from streams.cli.topic_commands import produce_file

    sent, skipped = produce_file(bootstrap, args.topic or settings.topic_events, path,
                                 args.format, rate=args.rate, year=args.year, security=settings)
    print(f"produced {sent} events to {args.topic or settings.topic_events}"
          + (f" ({skipped} unreadable records skipped)" if skipped else ""), file=sys.stderr)
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    settings = _settings()
    bootstrap = _bootstrap(settings, args.bootstrap)
    from streams.cli.topic_commands import print_alerts

    try:
        print_alerts(bootstrap, args.topic or settings.topic_alerts, follow=args.follow, as_json=args.json,
                     limit=args.limit, security=settings, full_ids=args.full_ids)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    """Publish a verdict on an alert the store holds (a whole id, or the short id `secstream alerts` shows);
    an id the store does not hold is refused; where the store cannot be opened (a running worker's
    embedded store is locked) the verdict goes out unverified, and says so (streams/cli/alert_lookup.py)."""
    from datetime import UTC, datetime

    from detection.vocabulary import VERDICTS  # numpy-free: a bad verdict answers at once
    from streams.cli.alert_lookup import AlertRefError, UnknownAlert, parse_alert_ref, resolve_alert

    verdict = {"fp": "false_positive", "tp": "true_positive"}.get(args.verdict, args.verdict)
    if verdict not in VERDICTS:
        raise CliError(f"--verdict {args.verdict!r}; valid: {', '.join(VERDICTS)} (or fp, tp)")
    try:
        ref, full = parse_alert_ref(args.alert_id)
    except AlertRefError as exc:
        raise CliError(str(exc)) from exc
    settings = _settings()
    bootstrap = _bootstrap(settings, args.bootstrap)
    from detection.feedback import parse_feedback
    from streams.cli.topic_commands import find_alert_ids, publish_feedback

    try:
        found = resolve_alert(settings, ref, full, topic_ids=lambda prefix: find_alert_ids(
            bootstrap, settings.topic_alerts, prefix, security=settings))
    except UnknownAlert as exc:
        raise CliError(str(exc)) from exc
    doc = parse_feedback({"alert_id": found.alert_id, "verdict": verdict, "note": args.note or "",
                          "analyst": args.analyst or os.environ.get("USER", ""),
                          "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")})
    topic = args.topic or settings.topic_feedback
    publish_feedback(bootstrap, topic, doc.to_dict(), security=settings)
    if found.verified:
        print(f"{verdict} on alert {found.alert_id} published to {topic}", file=sys.stderr)
    else:
        print(f"{verdict} on alert {found.alert_id} queued UNVERIFIED on {topic} ({found.note}); the worker applies "
              f"it only if it holds that alert", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    settings = _settings()
    path = _existing_file(args.input)
    _check_format(path, args.format)
    from streams.cli.replay import run_replay

    _setup_logging("warning")
    summary = run_replay(path, args.format, Path(args.out), settings,
                         keep_store=Path(args.store_dir) if args.store_dir else None, year=args.year)
    print(f"replayed {summary.records} records ({summary.events} events, {summary.errors} errors, "
          f"{summary.sessions} sessions) in {summary.seconds:.1f}s = {summary.events_per_s:,.0f} records/s; "
          f"{summary.alerts} alerts ({summary.session_alerts} session, {summary.entity_alerts} raised by an entity "
          f"score, {summary.drift_alerts} entity drift; {summary.entity_versions} entity versions) raised, "
          f"{summary.published} published after dedup (+{summary.updates} updates) -> {args.out}",
          file=sys.stderr)
    return 0


def cmd_hunt(args: argparse.Namespace) -> int:
    from streams.hunt.args import parse_entity, parse_when  # numpy-free: argument errors answer at once

    now = time.time()
    when: dict[str, float | None] = {}
    for flag in ("since", "until"):
        value = getattr(args, flag)
        try:
            when[flag] = parse_when(value, now) if value is not None else None
        except ValueError as exc:
            raise CliError(f"--{flag}: {exc}") from exc
    since, until = when["since"], when["until"]
    if since is not None and until is not None and since > until:
        raise CliError("--since is after --until")
    try:
        entity = parse_entity(args.entity) if args.entity is not None else None
    except ValueError as exc:
        raise CliError(f"--entity: {exc}") from exc
    if args.limit < 1:
        raise CliError(f"--limit must be >= 1, got {args.limit}")
    text = " ".join(args.text).strip()
    if not text and not args.like:
        raise CliError("hunt needs a TEXT, --like ID, or both")
    settings = _settings()
    from streams.hunt.command import run_hunt
    from streams.hunt.engine import HuntFilters

    _setup_logging("warning")
    return run_hunt(settings, text, like=args.like, filters=HuntFilters(entity=entity, since=since, until=until),
                    limit=args.limit, as_json=args.json)


def cmd_bench(args: argparse.Namespace) -> int:
    module = BENCHES.get(args.what)
    if module is None:
        raise CliError(f"unknown benchmark {args.what!r}; valid: {', '.join(BENCHES)}")
    main_of = importlib.import_module(module).main  # imported on demand: benches pull in heavy deps
    return int(main_of(args.rest) or 0)


def cmd_train(args: argparse.Namespace) -> int:
    from streams.cli.train import main as train_main

    return train_main([args.what, *args.rest])


def cmd_tune_weights(args: argparse.Namespace) -> int:
    from streams.tuning.weights import main as tune_main

    return tune_main(args.rest)


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings()
    masked = settings.masked()
    if args.json:
        print(json.dumps(masked, indent=2))
    else:
        width = max(len(k) for k in masked)
        for key, value in masked.items():
            print(f"SECSTREAM_{key.upper():<{width}}  {value}")
    return 0


def _version() -> str:
    """The installed distribution's version (metadata only: no heavy import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("secstream")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """``--version``: the package metadata is read when asked for, not by every command."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0,
                         help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"secstream {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="secstream", description="Streaming hybrid embeddings and anomaly alerts for security logs.")
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run a worker (embedded broker, store and sample unless configured)")
    run.add_argument("--no-sample", action="store_true", help="do not feed the bundled sample stream")
    run.add_argument("--metrics-port", type=int, default=None, help="port of /metrics (0 disables)")
    run.set_defaults(func=cmd_run)

    br = sub.add_parser("broker", help="run the embedded Kafka-compatible broker alone")
    br.add_argument("--port", type=int, default=None, help="loopback port (default: a free one)")
    br.set_defaults(func=cmd_broker)

    pr = sub.add_parser("produce", help="publish a file to the events topic")
    pr.add_argument("file")
    pr.add_argument("--format", choices=FORMATS, default="auto")
    pr.add_argument("--bootstrap", default=None)
    pr.add_argument("--topic", default=None)
    pr.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    pr.add_argument("--year", type=int, default=None, help="year for syslog timestamps that have none")
    pr.set_defaults(func=cmd_produce)

    al = sub.add_parser("alerts", help="print alerts from the alerts topic")
    al.add_argument("--follow", "-f", action="store_true", help="keep waiting for new alerts")
    al.add_argument("--json", action="store_true", help="one JSON alert per line")
    al.add_argument("--bootstrap", default=None)
    al.add_argument("--topic", default=None)
    al.add_argument("--limit", type=int, default=None)
    al.add_argument("--full-ids", action="store_true",
                    help="show whole alert ids (default: the first 8 characters, more where needed to tell them apart)")
    al.set_defaults(func=cmd_alerts)

    fb = sub.add_parser("feedback", help="publish an analyst verdict on an alert (false_positive, true_positive)")
    fb.add_argument("alert_id", metavar="ALERT_ID",
                    help="the alert's id, or its first characters as `secstream alerts` shows them")
    fb.add_argument("--verdict", required=True, help="false_positive (fp) or true_positive (tp)")
    fb.add_argument("--note", default=None, help="why (kept with the verdict, shown in alerts it affects)")
    fb.add_argument("--analyst", default=None, help="who (default: $USER)")
    fb.add_argument("--bootstrap", default=None)
    fb.add_argument("--topic", default=None)
    fb.set_defaults(func=cmd_feedback)

    rp = sub.add_parser("replay", help="score a file offline, prequentially, as the worker would")
    rp.add_argument("input")
    rp.add_argument("--format", choices=FORMATS, default="auto")
    rp.add_argument("--out", required=True, help="output directory (events.jsonl, sessions.jsonl, alerts.jsonl)")
    rp.add_argument("--store-dir", default=None, help="keep the vector store here (default: temporary)")
    rp.add_argument("--year", type=int, default=None, help="year for syslog timestamps that have none")
    rp.set_defaults(func=cmd_replay)

    hu = sub.add_parser("hunt", help="hybrid search (dense + sparse, RRF) over stored events and sessions")
    hu.add_argument("text", nargs="*", help="what to look for: words, a log line, field=value (e.g. user=root)")
    hu.add_argument("--like", metavar="EVENT_ID|ALERT_ID", default=None,
                    help="also rank by similarity to this stored event (or an alert's evidence events)")
    hu.add_argument("--entity", default=None, metavar="[TYPE:]VALUE",
                    help="only this entity; TYPE one of user, host, src_ip, dst_ip (default: any of them)")
    hu.add_argument("--since", default=None, help="RFC 3339, a date (UTC), or an age before now: 30m, 2h, 7d")
    hu.add_argument("--until", default=None, help="same forms as --since")
    hu.add_argument("--limit", type=int, default=20, help="number of hits (default 20)")
    hu.add_argument("--json", action="store_true", help="one JSON object per hit and line")
    hu.set_defaults(func=cmd_hunt)

    be = sub.add_parser("bench", help="benchmarks: " + ", ".join(BENCHES))
    be.add_argument("what", choices=list(BENCHES))
    be.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark")
    be.set_defaults(func=cmd_bench)

    tr = sub.add_parser("train", add_help=False, help="train models: " + ", ".join(TRAINABLE))
    tr.add_argument("what", choices=TRAINABLE)
    tr.add_argument("rest", nargs=argparse.REMAINDER, help="DATA [--format F] --out DIR [--epochs N] ...")
    tr.set_defaults(func=cmd_train)

    tw = sub.add_parser("tune-weights", add_help=False, help="rank hybrid weight sets on labelled sessions (grid, then refine)")
    tw.add_argument("rest", nargs=argparse.REMAINDER,
                    help="[DATA] [--labels PATH] [--holdout F] [--limit-sessions N] [--json] ...")
    tw.set_defaults(func=cmd_tune_weights)

    cf = sub.add_parser("config", help="print the effective settings (secrets masked)")
    cf.add_argument("--json", action="store_true")
    cf.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["tune-weights"]:  # all its options belong to the tool
            from streams.tuning.weights import main as tune_main  # argparse REMAINDER cannot start with an option

            return tune_main(argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SecstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

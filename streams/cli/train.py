"""``secstream train categorical|sessions DATA --format F --out DIR``: fit a model offline.

``categorical`` fits the categorical tables; ``sessions`` fits the session sequence
model (:func:`train_sessions`, below).

Reads DATA through :func:`streams.adapters.read_records`, decodes each record with
:func:`schemas.models.decode_event` (unreadable records are counted and skipped),
groups the events into sessions (:func:`encoders.training.sessionize`), trains
(:func:`encoders.training.train_categorical`) and writes ``DIR/categorical.safetensors``
+ ``DIR/categorical.json`` (:func:`encoders.categorical.write_artifact`).

``sessions``: reads and decodes DATA the same way, gives each event its template
id exactly as the pipeline does (a :class:`encoders.templates.TemplateStage` like
the default encoder's, batch by batch: ``analyze`` then ``learn``), groups the
events with :class:`detection.sessions.Sessionizer` (``--key-regex``: key on the
first match of a pattern in the message, e.g. ``blk_-?\\d+``; ``--gap``), fits
:class:`detection.sequence.SequenceModel` on the sessions' template sequences and
writes ``DIR/sequence.safetensors`` + ``DIR/sequence.json``
(:func:`detection.sequence.write_artifact`), for ``SECSTREAM_SESSION_MODEL``.

Usage: ``main(["categorical", DATA, "--out", DIR, ...])`` (the leading
``categorical`` is optional), ``main(["sessions", DATA, "--out", DIR, ...])``, or
``python -m streams.cli.train categorical|sessions ...``.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import time
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.errors import InvalidEvent, SecstreamError
from streams.adapters import FORMATS, FormatMismatch, check_format, detect_format, read_records

if TYPE_CHECKING:  # the trainers import numpy and torch when they run: bad arguments answer without them
    from detection.sessions import Sessionizer

__all__ = ["main"]


class _ArgError(Exception):
    """Bad arguments: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not a usage dump
        raise _ArgError(f"{self.prog}: {message}")


def _input_parser(what: str, description: str, artifact: str) -> _Parser:
    """A ``secstream train WHAT`` parser with the arguments every trainer takes: DATA, --format, --out."""
    p = _Parser(prog=f"secstream train {what}", description=description)
    p.add_argument("data", help="input file")
    p.add_argument("--format", choices=FORMATS, default="auto")
    p.add_argument("--out", required=True, help=f"artifact directory ({artifact}.safetensors, {artifact}.json)")
    return p


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``secstream train categorical``."""
    p = _input_parser("categorical", "Fit the categorical embedding tables self-supervised on a log file.",
                      "categorical")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--dim", type=int, default=8, help="embedding width per field")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--fields", default=None,
                   help="comma-separated fields (default: every categorical field of encoders.categorical)")
    p.add_argument("--min-count", type=int, default=2, help="rarer values train the unknown row")
    p.add_argument("--window", type=int, default=2, help="co-occurrence window, events")
    p.add_argument("--limit", type=int, default=None, help="read at most this many records")
    p.add_argument("--year", type=int, default=None, help="year for syslog timestamps that have none")
    return p


def _version() -> str:
    try:
        return importlib_metadata.version("secstream")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _read_events(path: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]], int, int]:
    """Decoded events of DATA (at most ``--limit`` records), records read, records rejected."""
    from schemas.models import decode_event

    if not path.is_file():
        raise _ArgError(f"no such file: {args.data}")
    records = read_records(path, args.format, year=args.year)
    if args.limit is not None:
        records = itertools.islice(records, args.limit)
    events: list[dict[str, Any]] = []
    n_records = rejected = 0
    for rec in records:
        n_records += 1
        if rec.value is None:
            rejected += 1
            continue
        try:
            events.append(decode_event(rec.value).to_dict())
        except InvalidEvent:
            rejected += 1
    return events, n_records, rejected


def train_file(args: argparse.Namespace) -> dict[str, Any]:
    """Read, train and write; returns the artifact metadata written."""
    from encoders.categorical import CATEGORICAL_FIELDS, write_artifact
    from encoders.training import TrainConfig, sessionize, train_categorical

    path = Path(args.data)
    fields = tuple(f.strip() for f in (args.fields or ",".join(CATEGORICAL_FIELDS)).split(",") if f.strip())
    cfg = TrainConfig(fields=fields, dim=args.dim, epochs=args.epochs, seed=args.seed,
                      min_count=args.min_count, window=args.window)
    events, n_records, rejected = _read_events(path, args)
    result = train_categorical(sessionize(events), cfg)
    meta = {
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "secstream_version": _version(),
        "training": {
            "data": str(path.resolve()), "format": args.format, "records": n_records, "rejected": rejected,
            "epochs": cfg.epochs, "loss_curve": result.loss_curve, "counts": result.counts,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
            **result.stats,
        },
    }
    art = write_artifact(args.out, result.fields, result.vocab, result.tables, meta)
    return {"version": art.version, **meta}


def build_sessions_parser() -> argparse.ArgumentParser:
    """Arguments of ``secstream train sessions``."""
    p = _input_parser("sessions", "Fit the session sequence model (next-template GRU) self-supervised on a log file.",
                      "sequence")
    p.add_argument("--key-regex", default=None,
                   help="session key = first match of this pattern in the message (e.g. 'blk_-?\\d+'); "
                        "default: session_id, user+host, src_ip, host")
    p.add_argument("--gap", type=float, default=1800.0, help="session inactivity gap, seconds of event time")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-vocab", type=int, default=1024, help="template slots; rarer templates are UNK")
    p.add_argument("--hidden", type=int, default=64, help="GRU width")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--batch-size", type=int, default=2000, help="events per template batch (as the worker's)")
    p.add_argument("--limit", type=int, default=None, help="read at most this many records")
    p.add_argument("--year", type=int, default=None, help="year for syslog timestamps that have none")
    return p


def session_sequences(events: list[dict[str, Any]], sessionizer: Sessionizer, batch_size: int) -> list[list[str]]:
    """Template-id sequences of the closed sessions, ids computed as the pipeline computes them."""
    import numpy as np

    from encoders.templates import TemplateStage

    stage = TemplateStage(max_clusters=20_000)  # the default encoder's stage (encoders.hybrid)
    out: list[list[str]] = []
    for i in range(0, len(events), batch_size):
        batch = events[i: i + batch_size]
        messages = ["" if e.get("message") is None else str(e["message"]) for e in batch]
        analyzed = stage.analyze(messages)
        obs = sessionizer.observe(batch, np.zeros((len(batch), 1), dtype=np.float32), analyzed.ids,
                                  analyzed.templates)
        stage.learn(messages)
        out.extend(s.sequence for s in obs.closed)
    out.extend(s.sequence for s in sessionizer.flush())
    return out


def train_sessions(args: argparse.Namespace) -> dict[str, Any]:
    """Read, sessionize, train and write the sequence model; returns the artifact metadata written."""
    from detection.sequence import SequenceModel
    from detection.sequence import write_artifact as write_sequence_artifact
    from detection.sessions import Sessionizer

    path = Path(args.data)
    started = time.perf_counter()
    events, n_records, rejected = _read_events(path, args)
    keys = ("regex",) if args.key_regex else ("session_id", "user+host", "src_ip", "host")
    sequences = session_sequences(events, Sessionizer(keys=keys, pattern=args.key_regex, gap_s=args.gap),
                                  args.batch_size)
    if not sequences:
        raise _ArgError(f"no sessions in {args.data} (no event has a session key)")
    model = SequenceModel(max_vocab=args.max_vocab, hidden=args.hidden, seed=args.seed)
    curve = model.fit(sequences, args.epochs)
    meta = {
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "secstream_version": _version(),
        "training": {
            "data": str(path.resolve()), "format": args.format, "records": n_records, "rejected": rejected,
            "events": len(events), "sessions": len(sequences), "vocab": len(model.vocab),
            "templates": len({t for s in sequences for t in s}), "epochs": args.epochs, "loss_curve": curve,
            "keys": list(keys), "key_regex": args.key_regex, "gap_s": args.gap,
            "seconds": round(time.perf_counter() - started, 3),
        },
    }
    art = write_sequence_artifact(args.out, model, meta)
    return {"version": art.version, **meta}


def _checked_input(args: argparse.Namespace) -> argparse.Namespace:
    """DATA exists and its bytes fit ``--format`` (a Parquet file is not read as text): checked before the
    trainer loads anything."""
    path = Path(args.data)
    if not path.is_file():
        raise _ArgError(f"no such file: {args.data}")
    try:
        check_format(path, detect_format(path) if args.format == "auto" else args.format)
    except FormatMismatch as exc:
        raise _ArgError(str(exc)) from exc
    return args


def _checked_sessions(args_list: list[str]) -> argparse.Namespace:
    args = build_sessions_parser().parse_args(args_list)
    if args.epochs < 1 or args.batch_size < 1 or args.gap <= 0:
        raise _ArgError("--epochs and --batch-size must be >= 1, --gap > 0")
    return _checked_input(args)


def _checked_categorical(args_list: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(args_list)
    if args.epochs < 1 or args.dim < 1 or args.min_count < 1 or args.window < 0:
        raise _ArgError("--epochs, --dim and --min-count must be >= 1, --window >= 0")
    return _checked_input(args)


def _summary_sessions(meta: dict[str, Any], out: str) -> str:
    t = meta["training"]
    return (f"{meta['version']}: {t['sessions']} sessions ({t['events']} events, {t['records']} records, "
            f"{t['rejected']} rejected), vocab {t['vocab']}, loss {t['loss_curve'][0]:.4f} -> "
            f"{t['loss_curve'][-1]:.4f}, {t['seconds']:.1f} s -> {out}")


def _summary_categorical(meta: dict[str, Any], out: str) -> str:
    t = meta["training"]
    return (f"{meta['version']}: {t['events']} events in {t['sessions']} sessions "
            f"({t['records']} records, {t['rejected']} rejected), loss {t['loss_curve'][0]:.4f} -> "
            f"{t['loss_curve'][-1]:.4f}, {t['seconds']:.1f} s -> {out}")


_TRAINERS = {"sessions": (_checked_sessions, train_sessions, _summary_sessions),
             "categorical": (_checked_categorical, train_file, _summary_categorical)}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad arguments or input).

    ``argv`` starts with what to train (``categorical``, the default when omitted, or ``sessions``).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    what = args_list[0] if args_list[:1] and args_list[0] in _TRAINERS else "categorical"
    if args_list[:1] == [what]:
        args_list = args_list[1:]
    check, train, summary = _TRAINERS[what]
    try:
        args = check(args_list)
        meta = train(args)
    except (_ArgError, SecstreamError, ValueError, OSError, re.error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(meta, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``secstream train categorical DATA --format F --out DIR``: fit the categorical tables.

Reads DATA through :func:`streams.adapters.read_records`, decodes each record with
:func:`schemas.models.decode_event` (unreadable records are counted and skipped),
groups the events into sessions (:func:`encoders.training.sessionize`), trains
(:func:`encoders.training.train_categorical`) and writes ``DIR/categorical.safetensors``
+ ``DIR/categorical.json`` (:func:`encoders.categorical.write_artifact`).

Usage: ``main(["categorical", DATA, "--out", DIR, ...])`` (the leading
``categorical`` is optional), or ``python -m streams.train categorical ...``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from encoders.categorical import CATEGORICAL_FIELDS, write_artifact
from encoders.training import TrainConfig, sessionize, train_categorical
from schemas.errors import InvalidEvent, SecstreamError
from schemas.models import decode_event
from streams.adapters import FORMATS, read_records

__all__ = ["main"]


class _ArgError(Exception):
    """Bad arguments: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not a usage dump
        raise _ArgError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``secstream train categorical``."""
    p = _Parser(prog="secstream train categorical",
                description="Fit the categorical embedding tables self-supervised on a log file.")
    p.add_argument("data", help="input file")
    p.add_argument("--format", choices=FORMATS, default="auto")
    p.add_argument("--out", required=True, help="artifact directory (categorical.safetensors, categorical.json)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--dim", type=int, default=8, help="embedding width per field")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--fields", default=",".join(CATEGORICAL_FIELDS), help="comma-separated fields")
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


def train_file(args: argparse.Namespace) -> dict[str, Any]:
    """Read, train and write; returns the artifact metadata written."""
    path = Path(args.data)
    if not path.is_file():
        raise _ArgError(f"no such file: {args.data}")
    fields = tuple(f.strip() for f in args.fields.split(",") if f.strip())
    cfg = TrainConfig(fields=fields, dim=args.dim, epochs=args.epochs, seed=args.seed,
                      min_count=args.min_count, window=args.window)
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


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad arguments or input)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["categorical"]:
        args_list = args_list[1:]
    try:
        args = build_parser().parse_args(args_list)
        if args.epochs < 1 or args.dim < 1 or args.min_count < 1 or args.window < 0:
            raise _ArgError("--epochs, --dim and --min-count must be >= 1, --window >= 0")
        meta = train_file(args)
    except (_ArgError, SecstreamError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t = meta["training"]
    print(f"{meta['version']}: {t['events']} events in {t['sessions']} sessions "
          f"({t['records']} records, {t['rejected']} rejected), loss {t['loss_curve'][0]:.4f} -> "
          f"{t['loss_curve'][-1]:.4f}, {t['seconds']:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The bundled synthetic sample stream (SecurityEvent v1 JSON lines, gzip).

``secstream run`` replays it into the worker when the broker is embedded. It is
generated, not recorded (see :mod:`streams.sample.generate` for its contents and
the injected scenarios); regenerate with::

    python -m streams.sample.generate --out streams/sample/sample_events.jsonl.gz --seed 7
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

SAMPLE_FILE = "sample_events.jsonl.gz"

__all__ = ["SAMPLE_FILE", "iter_sample", "sample_path"]


def sample_path() -> Path:
    """Path of the bundled ``sample_events.jsonl.gz`` (inside the installed package)."""
    return Path(__file__).resolve().parent / SAMPLE_FILE


def iter_sample(path: Path | None = None) -> Iterator[bytes]:
    """Yield each JSON line of the sample as bytes, without the trailing newline.

    ``path`` defaults to :func:`sample_path`; blank lines are skipped.
    """
    with gzip.open(path or sample_path(), "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line:
                yield line

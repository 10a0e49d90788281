"""Terminal helpers: a progress line on a TTY, silence when piped; readable tables."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO


class Progress:
    """A single self-overwriting status line on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._last = 0.0

    def advance(self, n: int = 1, **extra: object) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last >= 0.2:
            self._last = now
            self._draw(extra)

    def _draw(self, extra: dict[str, object]) -> None:
        rate = self.done / max(1e-9, time.monotonic() - self.started)
        of = f"/{self.total}" if self.total else ""
        more = "".join(f"  {k}={v}" for k, v in extra.items())
        self.stream.write(f"\r{self.label}: {self.done}{of}  {rate:,.0f}/s{more}   ")
        self.stream.flush()

    def close(self, **extra: object) -> None:
        if self.enabled:
            self._draw(extra)
            self.stream.write("\n")
            self.stream.flush()

    @property
    def rate(self) -> float:
        return self.done / max(1e-9, time.monotonic() - self.started)


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

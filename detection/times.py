"""Event times: RFC 3339 text and epoch seconds. Pure (stdlib only), so the command line can parse times
without loading numpy; :mod:`detection.sessions` re-exports both functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["event_time", "iso_time"]


def event_time(value: Any) -> float:
    """Epoch seconds of an event ``time`` (RFC 3339 string or epoch milliseconds)."""
    if isinstance(value, (int, float)):
        return float(value) / 1000.0
    text = str(value)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def iso_time(seconds: float) -> str:
    """RFC 3339 UTC string (``...Z``) of epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

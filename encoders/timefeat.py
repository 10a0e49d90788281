"""Time component: hour of day and day of week as points on circles (dim 4).

``[sin(2πh/24), cos(2πh/24), sin(2πd/7), cos(2πd/7)] / √2`` with ``h`` the UTC
hour including minutes and ``d`` the weekday (Monday = 0). Stateless. Not in
the default hybrid; add it with a weight (``build_default_encoder({"time": w, ...})``).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from encoders.base import ComponentBatch, ComponentEncoder, Event, Events, empty_batch, finish_rows

__all__ = ["TimeEncoder", "parse_time"]


def parse_time(value: object) -> datetime | None:
    """RFC 3339 string or epoch milliseconds → aware UTC datetime; ``None`` if invalid.

    A string without an offset is read as UTC.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                return None
            return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
        text = str(value).strip()
        if not text:
            return None
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "zZ" else text)
    except (ValueError, OverflowError, OSError):
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


class TimeEncoder(ComponentEncoder):
    """Cyclical hour-of-day and day-of-week of ``time`` (dim 4); absent if no valid time."""

    name = "time"
    version = "v1"

    @property
    def dim(self) -> int:
        """4: sin/cos of the hour, sin/cos of the weekday."""
        return 4

    def encode(self, events: Events) -> ComponentBatch:
        """One row per event; see the module docstring for the layout."""
        n = len(events)
        if n == 0:
            return empty_batch(self.dim)
        out = np.zeros((n, 4), dtype=np.float64)
        present = np.zeros(n, dtype=bool)
        for i, event in enumerate(events):
            when = _time(event)
            if when is None:
                continue
            hour = when.hour + when.minute / 60.0 + when.second / 3600.0
            day = when.weekday()
            out[i] = (
                math.sin(2 * math.pi * hour / 24),
                math.cos(2 * math.pi * hour / 24),
                math.sin(2 * math.pi * day / 7),
                math.cos(2 * math.pi * day / 7),
            )
            present[i] = True
        return finish_rows(out, present)


def _time(event: Event) -> datetime | None:
    return parse_time(event.get("time"))

"""What secstream's own messages look like on the wire: compact JSON (steps: streams/kafka/step_codec.py).

Shared by the events agent (alerts, DLQ records), the session and entity steps
(:mod:`streams.worker.session_agent`, :mod:`streams.stages.entity_stage`) and their agents.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from detection.plain import unb64

__all__ = ["dumps", "stack_newest", "vector_from"]

T = TypeVar("T")


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def vector_from(text: str) -> np.ndarray:
    """A vector from base64 of little-endian float32 (steps written before streams/kafka/step_codec.py framed
    them in binary)."""
    return unb64(text, "<f4", "<f4")


def stack_newest(items: Sequence[T], rows: Sequence[np.ndarray]) -> tuple[list[T], np.ndarray]:
    """``items`` and their vectors stacked; when widths differ (a model change mid-stream) only the rows of the
    newest width are kept, with their items. No rows: a ``(0, 0)`` array."""
    items, kept = list(items), list(rows)
    if len({r.shape[0] for r in kept}) > 1:
        keep = [i for i, r in enumerate(kept) if r.shape[0] == kept[-1].shape[0]]
        items, kept = [items[i] for i in keep], [kept[i] for i in keep]
    return items, (np.stack(kept) if kept else np.zeros((0, 0), dtype=np.float32))

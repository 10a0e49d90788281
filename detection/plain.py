"""Numpy arrays as compact plain data (base64 text in JSON), for snapshots and changelog records. Pure."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

__all__ = ["b64", "unb64"]


def b64(a: np.ndarray, dtype: str) -> str:
    """The array's values as ``dtype`` (e.g. ``"<f4"``), flattened, base64 text."""
    return base64.b64encode(np.ascontiguousarray(np.asarray(a), dtype=dtype).tobytes()).decode("ascii")


def unb64(text: str | Sequence[float], dtype: str, out: str = "<f8") -> np.ndarray:
    """Inverse of :func:`b64` (flat), converted to ``out``; a plain list of numbers is accepted too."""
    if not isinstance(text, str):
        return np.asarray(text, dtype=out)
    return np.frombuffer(base64.b64decode(text), dtype=dtype).astype(out)

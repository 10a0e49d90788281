"""The contract every component encoder honours, and small shared helpers.

A component encoder turns a batch of events (plain mappings with SecurityEvent
field names) into one fixed-width block of the hybrid vector. Rows are either
*present* (unit L2 norm) or *absent* (all zero): an event without IPs or ports
has no network component, and the hybrid renormalizes the weights of the
components that are present instead of comparing zeros.

Scoring is prequential: the pipeline calls ``encode`` (pure given the current
state), scores, and only then ``update`` (which may change the state).
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

Event = Mapping[str, Any]
Events = Sequence[Event]

#: Rows whose norm falls below this are treated as absent (never divide by ~0).
NORM_EPS = 1e-12


@dataclass(frozen=True)
class ComponentBatch:
    """Output of :meth:`ComponentEncoder.encode` for ``n`` events.

    Attributes:
        vectors: float32 array ``[n, dim]``; present rows have unit L2 norm,
            absent rows are all zero.
        present: bool array ``[n]``; ``False`` where the event carries nothing
            this component can encode.
    """

    vectors: np.ndarray
    present: np.ndarray


class ComponentEncoder(ABC):
    """Base class of the pure component encoders (text, categorical, ...).

    Subclasses implement :attr:`dim` and :meth:`encode`; stateful ones also
    override :meth:`update` and the ``_get_state``/``_set_state`` hooks used by
    :meth:`snapshot`/:meth:`restore`.
    """

    #: Short component name, also the key of its block in the hybrid.
    name: ClassVar[str] = "component"
    #: Layout/semantics version; a snapshot only restores into the same version.
    version: ClassVar[str] = "v1"

    @property
    @abstractmethod
    def dim(self) -> int:
        """Width of the vectors :meth:`encode` returns; constant for the instance."""

    @abstractmethod
    def encode(self, events: Events) -> ComponentBatch:
        """Encode a batch of events.

        Contract: returns ``ComponentBatch`` with ``vectors`` float32
        ``[len(events), dim]``, finite, each present row of unit L2 norm and
        each absent row all zero; ``present`` bool ``[len(events)]``. It must
        not mutate ``events`` nor the encoder's state: two calls with the same
        input and no ``update``/``restore`` in between return equal arrays.
        Optional fields may be missing from any event.
        """

    def update(self, events: Events) -> None:
        """Fold a batch that has already been scored into the state.

        Contract: called after :meth:`encode` of the same batch (prequential);
        the default does nothing (stateless encoder).
        """

    def snapshot(self) -> dict[str, Any]:
        """Return the state as JSON-serializable plain data (no pickle).

        Contract: ``restore(json.loads(json.dumps(snapshot())))`` on a fresh
        instance built with the same constructor arguments makes it encode
        exactly as this one does now.
        """
        return {"kind": self.name, "version": self.version, "state": self._get_state()}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a state produced by :meth:`snapshot` of the same kind and version.

        Raises:
            ValueError: the snapshot is of another kind or version.
        """
        kind, version = state.get("kind"), state.get("version")
        if kind != self.name or version != self.version:
            raise ValueError(
                f"snapshot is {kind!r}/{version!r}, this encoder expects "
                f"{self.name!r}/{self.version!r}"
            )
        self._set_state(state.get("state") or {})

    def _get_state(self) -> dict[str, Any]:
        """State hook for :meth:`snapshot`; stateless encoders keep the default."""
        return {}

    def _set_state(self, state: Mapping[str, Any]) -> None:
        """State hook for :meth:`restore`; stateless encoders keep the default."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


def finish_rows(mat: np.ndarray, present: np.ndarray) -> ComponentBatch:
    """Normalize present rows to unit norm, zero the rest, return a batch.

    A row marked present whose norm is ~0 (or not finite) becomes absent, so
    the unit-norm invariant always holds.
    """
    mat = np.asarray(mat, dtype=np.float64)
    present = np.asarray(present, dtype=bool).copy()
    if mat.shape[0] == 0:
        return ComponentBatch(mat.astype(np.float32), present)
    finite = np.isfinite(mat).all(axis=1)
    norms = np.linalg.norm(np.where(finite[:, None], mat, 0.0), axis=1)
    present &= finite & (norms > NORM_EPS)
    out = np.zeros(mat.shape, dtype=np.float32)
    if present.any():
        out[present] = (mat[present] / norms[present, None]).astype(np.float32)
    return ComponentBatch(out, present)


def empty_batch(dim: int) -> ComponentBatch:
    """A batch of zero events: vectors ``[0, dim]`` and present ``[0]``."""
    return ComponentBatch(np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=bool))


def stable_hash(text: str, digest_size: int = 8) -> int:
    """Process-independent hash of ``text`` (blake2b), never Python's ``hash()``."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=digest_size).digest()
    return int.from_bytes(digest, "big")


def get_str(event: Event, field: str) -> str | None:
    """The field as a stripped string, or ``None`` when missing/empty/null."""
    return str_value(event.get(field))


def str_value(value: Any) -> str | None:
    """:func:`get_str` of a raw field value."""
    if value is None:
        return None
    if type(value) is not str:
        if isinstance(value, (dict, list, tuple, set)):
            return None
        value = str(value)
    text = value.strip()
    return text or None


def get_float(event: Event, field: str) -> float | None:
    """The field as a finite float, or ``None`` when missing/invalid (bools excluded)."""
    return float_value(event.get(field))


def float_value(value: Any) -> float | None:
    """:func:`get_float` of a raw field value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int past float range (10**400)
        return None
    return number if math.isfinite(number) else None


# Column types whose values can be deduplicated by ``==`` without merging two
# values that a field function tells apart (1 == 1.0 == True, 0.0 == -0.0).
_DEDUP_SAFE = (frozenset({str, type(None), int}), frozenset({str, type(None), bool}))


def column(events: Events, field: str) -> list[Any]:
    """The raw values of ``field`` (``None`` where missing), one per event."""
    return [event.get(field) for event in events]


def distinct_values(values: list[Any]) -> list[Any] | None:
    """The distinct values in first-occurrence order, or ``None`` when the
    column holds types that ``==`` could merge wrongly (floats, mixed numbers,
    anything unusual): callers then take each value on its own."""
    types = set(map(type, values))
    if types <= _DEDUP_SAFE[0] or types <= _DEDUP_SAFE[1]:
        return list(dict.fromkeys(values))
    return None


def column_map(values: list[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """``[fn(v) for v in values]``, calling ``fn`` once per distinct value when that is safe."""
    distinct = distinct_values(values)
    if distinct is None or len(distinct) * 2 > len(values):
        return [fn(v) for v in values]
    table = {v: fn(v) for v in distinct}
    return list(map(table.__getitem__, values))

"""The hybrid encoder: weighted, masked concatenation of component vectors.

For an event with present components ``P`` the weights are renormalized over
``P`` (``w'_c = w_c / sum_{d in P} w_d``) and each present unit block is scaled
by ``sqrt(w'_c)``; absent blocks stay zero. The result has unit norm and, for
two events with the same present set,

    cos(a, b) = sum_c w'_c * cos_c(a, b)

exactly: **a weight is the share of the similarity that component controls.**
For any two rows, ``dot(a, b) = sum_c dot(a_c, b_c)``
(:func:`component_contributions`), which is how an alert explains a distance.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from encoders.base import ComponentEncoder, Events
from encoders.categorical import CategoricalEncoder
from encoders.network import NetworkEncoder
from encoders.numerical import NumericalEncoder
from encoders.sparse import SparseEncoder, SparseVector
from encoders.templates import TemplateStage
from encoders.text import TextEncoder
from encoders.timefeat import TimeEncoder

__all__ = [
    "DEFAULT_WEIGHTS",
    "OPTIONAL_COMPONENTS",
    "HybridBatch",
    "HybridEncoder",
    "build_default_encoder",
    "component_contributions",
    "component_similarity",
]

#: Weights of the default hybrid (the share of similarity each component controls).
DEFAULT_WEIGHTS: dict[str, float] = {"text": 0.50, "categorical": 0.20, "numerical": 0.15, "network": 0.15}
#: Components :func:`build_default_encoder` adds only when given a weight > 0.
OPTIONAL_COMPONENTS: tuple[str, ...] = ("time",)


@dataclass(frozen=True)
class HybridBatch:
    """Output of :meth:`HybridEncoder.encode` for ``n`` events and ``C`` components.

    Attributes:
        dense: float32 ``[n, D]``; unit norm, or all zero when no component is present.
        present: bool ``[n, C]``, columns in the order of ``parts``.
        parts: component name → slice of its block in ``dense``.
        templates: mined template per event (masked message with ``<*>`` where
            a token varies within its cluster; ``""`` for an empty message).
        template_ids: stable id of each event's template cluster (the
            :func:`encoders.masking.template_id` of the cluster's first line).
        sparse: per event ``(sorted unique indices, weights)``; empty lists
            when the hybrid has no sparse encoder.
    """

    dense: np.ndarray
    present: np.ndarray
    parts: dict[str, slice]
    templates: list[str]
    template_ids: list[str]
    sparse: list[SparseVector]

    def rows(self, index: Sequence[int]) -> HybridBatch:
        """The batch restricted to rows ``index`` (in that order)."""
        idx = list(index)
        return HybridBatch(self.dense[idx], self.present[idx], self.parts, [self.templates[i] for i in idx],
                           [self.template_ids[i] for i in idx], [self.sparse[i] for i in idx])

    @property
    def row_present(self) -> np.ndarray:
        """bool ``[n]``: at least one component present (the dense row is non-zero)."""
        return self.present.any(axis=1)


class HybridEncoder:
    """Compose component encoders into one dense vector, plus the sparse terms.

    Args:
        components: name → encoder. Components whose weight is 0 (or that
            ``weights`` omits) are kept out of the dense layout.
        weights: name → non-negative finite weight; normalized to sum 1.
        sparse: the sparse term encoder; ``None`` builds one from the text
            component's tokenizer when there is a :class:`TextEncoder`.

    Raises:
        ValueError: a weight names an unknown component, is negative or not
            finite, or all weights are zero; the message lists the valid names.
    """

    def __init__(
        self,
        components: Mapping[str, ComponentEncoder],
        weights: Mapping[str, float],
        sparse: SparseEncoder | None = None,
    ) -> None:
        valid = sorted(components)
        if not components:
            raise ValueError("components must not be empty")
        unknown = sorted(set(weights) - set(components))
        if unknown:
            raise ValueError(f"unknown component(s) {unknown} in weights; valid names: {valid}")
        clean: dict[str, float] = {}
        for name, weight in weights.items():
            try:
                clean[name] = float(weight)
            except (TypeError, ValueError):
                clean[name] = math.nan
            if not math.isfinite(clean[name]) or clean[name] < 0:
                raise ValueError(
                    f"weight of {name!r} must be a finite number >= 0, got {weight!r}; valid names: {valid}"
                )
        weights = clean
        total = float(sum(weights.values()))
        if total <= 0:
            raise ValueError(f"at least one weight must be > 0; valid names: {valid}")
        self._names = [name for name in components if weights.get(name, 0.0) > 0]
        self.components: dict[str, ComponentEncoder] = {name: components[name] for name in self._names}
        self._weights = {name: float(weights[name]) / total for name in self._names}
        self._w = np.array([self._weights[name] for name in self._names], dtype=np.float64)
        text = next((c for c in components.values() if isinstance(c, TextEncoder)), None)
        if sparse is None and text is not None:
            sparse = SparseEncoder(text.tokenizer_path)
        self.sparse = sparse
        self._text = next((c for c in self.components.values() if isinstance(c, TextEncoder)), None)
        #: masking + template mining (the text component's, or the hybrid's own)
        self.stage: TemplateStage = self._text.stage if self._text is not None else TemplateStage()
        self._parts: dict[str, slice] | None = None

    def preload(self) -> None:
        """Start loading the text model on a thread of its own (:meth:`TextEncoder.preload`); no-op without one."""
        if self._text is not None:
            self._text.preload()

    @property
    def weights(self) -> dict[str, float]:
        """Normalized weights (sum 1) of the components in the layout, in block order."""
        return dict(self._weights)

    @property
    def names(self) -> list[str]:
        """Component names in block order (the columns of ``HybridBatch.present``)."""
        return list(self._names)

    @property
    def parts(self) -> dict[str, slice]:
        """Component name → slice of its block in the dense vector."""
        if self._parts is None:
            parts, start = {}, 0
            for name in self._names:
                dim = self.components[name].dim
                parts[name] = slice(start, start + dim)
                start += dim
            self._parts = parts
        return dict(self._parts)

    @property
    def dim(self) -> int:
        """Total dense width ``D`` (sum of the component dims)."""
        return sum(s.stop - s.start for s in self.parts.values())

    @property
    def version(self) -> str:
        """``hybrid-v1-<hash>``; changes whenever the layout, a component version or a weight does."""
        layout: list[list[Any]] = []
        for name, block in self.parts.items():
            component = self.components[name]
            width = block.stop - block.start
            layout.append([name, type(component).__name__, component.version, width, round(self.weights[name], 9)])
        layout.append(["sparse", self.sparse.version if self.sparse is not None else None])
        digest = hashlib.blake2b(json.dumps(layout).encode(), digest_size=5).hexdigest()
        return f"hybrid-v1-{digest}"

    def encode(self, events: Events) -> HybridBatch:
        """Encode a batch (pure given the current state of every component)."""
        n = len(events)
        parts = self.parts
        analyzed = self.stage.analyze([_message(event) for event in events])
        templates, ids = analyzed.templates, analyzed.ids
        dense = np.zeros((n, self.dim), dtype=np.float32)
        present = np.zeros((n, len(self._names)), dtype=bool)
        blocks: list[np.ndarray] = []
        for j, name in enumerate(self._names):
            component = self.components[name]
            if component is self._text:
                batch = component.encode_analyzed(analyzed)
            else:
                batch = component.encode(events)
            blocks.append(batch.vectors)
            present[:, j] = batch.present
        if n:
            effective = present * self._w
            totals = effective.sum(axis=1, keepdims=True)
            share = np.divide(effective, totals, out=np.zeros_like(effective), where=totals > 0)
            scale = np.sqrt(share)
            for j, name in enumerate(self._names):
                dense[:, parts[name]] = blocks[j] * scale[:, j : j + 1].astype(np.float32)
            # rounding in float32; restore exact unit norm on non-empty rows
            norms = np.linalg.norm(dense, axis=1, keepdims=True)
            np.divide(dense, norms, out=dense, where=norms > 0)
        sparse = self.sparse.encode(events) if self.sparse is not None else [([], []) for _ in range(n)]
        return HybridBatch(dense, present, parts, templates, ids, sparse)

    def update(self, events: Events) -> None:
        """Fold a scored batch into every component's state (prequential)."""
        for component in self.components.values():
            component.update(events)
        if self._text is None:
            self.stage.learn([_message(event) for event in events])

    def arrays(self) -> dict[str, np.ndarray]:
        """State kept as arrays rather than JSON (the text embedding cache), keys
        prefixed by component name; save with safetensors next to :meth:`snapshot`."""
        if self._text is None:
            return {}
        return {f"text.{key}": value for key, value in self._text.arrays().items()}

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> int:
        """Load :meth:`arrays` (returns the number of cached templates loaded).

        Raises:
            ValueError: the arrays do not fit this encoder (another model or width).
        """
        if self._text is None:
            return 0
        prefix = "text."
        mine = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
        return self._text.load_arrays(mine) if mine else 0

    def snapshot(self) -> dict[str, Any]:
        """JSON-serializable state of every component, tagged with :attr:`version`."""
        state: dict[str, Any] = {
            "kind": "hybrid",
            "version": self.version,
            "components": {name: component.snapshot() for name, component in self.components.items()},
        }
        if self._text is None:
            state["templates"] = self.stage.snapshot()
        return state

    def restore(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`snapshot` of a hybrid with the same version.

        Raises:
            ValueError: another kind, version or set of components.
        """
        if state.get("kind") != "hybrid" or state.get("version") != self.version:
            raise ValueError(
                f"snapshot is {state.get('kind')!r}/{state.get('version')!r}, expected 'hybrid'/{self.version!r}"
            )
        saved = state.get("components") or {}
        if sorted(saved) != sorted(self._names):
            raise ValueError(f"snapshot components {sorted(saved)} != {sorted(self._names)}")
        for name, component in self.components.items():
            component.restore(saved[name])
        if self._text is None and "templates" in state:
            self.stage.restore(state["templates"])

    def __repr__(self) -> str:
        weights = ", ".join(f"{k}={v:.3g}" for k, v in self.weights.items())
        return f"HybridEncoder({weights})"


def _message(event: Mapping[str, Any]) -> str:
    value = event.get("message")
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _blocks(a_row: np.ndarray, b_rows: np.ndarray, parts: Mapping[str, slice]) -> list[tuple[np.ndarray, np.ndarray]]:
    a = np.asarray(a_row, dtype=np.float64).reshape(-1)
    b = np.asarray(b_rows, dtype=np.float64)
    if b.ndim == 1:
        b = b[None, :]
    return [(a[s], b[:, s]) for s in parts.values()]


def component_contributions(a_row: np.ndarray, b_rows: np.ndarray, parts: Mapping[str, slice]) -> np.ndarray:
    """``[m, C]`` block dot products; each row sums to ``dot(a_row, b_row)`` (the cosine).

    Columns follow ``parts`` order. This is the exact decomposition of the
    similarity into components, for any present sets.
    """
    blocks = _blocks(a_row, b_rows, parts)
    out = np.stack([b @ a for a, b in blocks], axis=1) if blocks else np.zeros((len(b_rows), 0))
    return out.astype(np.float64)


def component_similarity(a_row: np.ndarray, b_rows: np.ndarray, parts: Mapping[str, slice]) -> np.ndarray:
    """``[m, C]`` cosine between ``a_row`` and each of ``b_rows`` per component block.

    A block that is zero in either vector (component absent) gives 0. Columns
    follow ``parts`` order. With both present sets equal, ``sum_c w'_c * cos_c``
    equals the full cosine.
    """
    columns = []
    for a, b in _blocks(a_row, b_rows, parts):
        na = np.linalg.norm(a)
        nb = np.linalg.norm(b, axis=1)
        denom = na * nb
        columns.append(np.divide(b @ a, denom, out=np.zeros_like(nb), where=denom > 1e-12))
    if not columns:
        return np.zeros((np.asarray(b_rows).reshape(-1, 1).shape[0], 0))
    return np.stack(columns, axis=1)


def build_default_encoder(
    weights: Mapping[str, float] | None = None,
    model_path: str | None = None,
    cache_size: int = 50_000,
    seed: int = 7,
    *,
    params_dim: int = 32,
    params_share: float = 0.25,
    max_templates: int = 20_000,
    categorical_artifact: str | None = None,
) -> HybridEncoder:
    """The production hybrid: text, categorical, numerical, network (+ ``time`` if weighted).

    Args:
        weights: component weights; ``None`` = :data:`DEFAULT_WEIGHTS`. Names
            outside ``DEFAULT_WEIGHTS`` and ``OPTIONAL_COMPONENTS`` raise.
        model_path: sentence-transformers model directory (``None``: bundled MiniLM).
        cache_size: text template cache size.
        seed: seed of the categorical embedding tables.
        params_dim: width of the hashed parameter block inside the text component.
        params_share: share of the text component's squared norm given to it.
        max_templates: most template clusters the miner keeps (LRU).
        categorical_artifact: a `secstream train categorical` output (frozen, learned
            tables with a learned unknown row); ``None`` grows the vocabulary online.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    valid = sorted([*DEFAULT_WEIGHTS, *OPTIONAL_COMPONENTS])
    unknown = sorted(set(weights) - set(valid))
    if unknown:
        raise ValueError(f"unknown component(s) {unknown} in weights; valid names: {valid}")
    stage = TemplateStage(max_clusters=max_templates)
    text = TextEncoder(model_path=model_path, cache_size=cache_size, params_dim=params_dim,
                       params_share=params_share, stage=stage)
    components: dict[str, ComponentEncoder] = {
        "text": text,
        "categorical": CategoricalEncoder(seed=seed, artifact=categorical_artifact),
        "numerical": NumericalEncoder(),
        "network": NetworkEncoder(),
    }
    if "time" in weights:  # zero weight: built, then kept out of the layout
        components["time"] = TimeEncoder()
    return HybridEncoder(components, weights, sparse=SparseEncoder(text.tokenizer_path))

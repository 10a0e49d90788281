"""Categorical component: learned embedding tables for low-cardinality fields.

Each field (``event_type``, ``severity``, ``outcome``, ``source``) has a
``torch.nn.Embedding`` with ``vocab_cap`` rows for known values plus
``n_hash_buckets`` rows for everything else. A value gets its own row only in
:meth:`CategoricalEncoder.update` (prequential: the event that introduces a value is
scored with the hashed bucket), and only while the field's vocabulary has room.
Weights are seeded random for now; training them is a later concern.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from encoders.base import ComponentBatch, ComponentEncoder, Events, empty_batch, finish_rows, get_str, stable_hash

__all__ = ["CATEGORICAL_FIELDS", "CategoricalEncoder"]

CATEGORICAL_FIELDS: tuple[str, ...] = ("event_type", "severity", "outcome", "source")


class CategoricalEncoder(ComponentEncoder):
    """Concatenated per-field embeddings, L2-normalized (dim = fields x field_dim = 32).

    Args:
        fields: event fields to embed, in block order.
        field_dim: embedding width per field.
        vocab_cap: most values per field that get their own row.
        n_hash_buckets: rows shared by unknown / over-cap values (blake2b hash).
        seed: seed of the weight initialisation.

    A missing field leaves its block zero; the row is absent only when every
    field is missing. Values are compared case-insensitively.
    """

    name = "categorical"
    version = "v1"

    def __init__(
        self,
        fields: Sequence[str] = CATEGORICAL_FIELDS,
        field_dim: int = 8,
        vocab_cap: int = 1024,
        n_hash_buckets: int = 16,
        seed: int = 7,
    ) -> None:
        if not fields or len(set(fields)) != len(fields):
            raise ValueError(f"fields must be non-empty and unique, got {list(fields)}")
        for label, value in (("field_dim", field_dim), ("vocab_cap", vocab_cap), ("n_hash_buckets", n_hash_buckets)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        self.fields = tuple(fields)
        self.field_dim = field_dim
        self.vocab_cap = vocab_cap
        self.n_hash_buckets = n_hash_buckets
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        rows = vocab_cap + n_hash_buckets
        # from_pretrained skips nn.Embedding's reset_parameters, which would
        # draw from (and advance) torch's global RNG.
        self.tables = torch.nn.ModuleDict(
            {
                field: torch.nn.Embedding.from_pretrained(
                    torch.randn(rows, field_dim, generator=generator), freeze=False
                )
                for field in self.fields
            }
        )
        self.vocab: dict[str, dict[str, int]] = {field: {} for field in self.fields}

    @property
    def dim(self) -> int:
        """``len(fields) * field_dim`` (32 by default)."""
        return len(self.fields) * self.field_dim

    def bucket(self, field: str, value: str) -> int:
        """Row of ``value`` in ``field``'s table: its own row if known, else a hashed bucket."""
        key = value.lower()
        row = self.vocab[field].get(key)
        if row is not None:
            return row
        return self.vocab_cap + stable_hash(f"{field}\x1f{key}") % self.n_hash_buckets

    def encode(self, events: Events) -> ComponentBatch:
        """Look up each field's row and concatenate; see the class docstring."""
        n = len(events)
        if n == 0:
            return empty_batch(self.dim)
        out = np.zeros((n, self.dim), dtype=np.float64)
        present = np.zeros(n, dtype=bool)
        for j, field in enumerate(self.fields):
            rows = np.full(n, -1, dtype=np.int64)
            memo: dict[str, int] = {}
            for i, event in enumerate(events):
                value = get_str(event, field)
                if value is None:
                    continue
                row = memo.get(value)
                if row is None:
                    row = memo[value] = self.bucket(field, value)
                rows[i] = row
            has = rows >= 0
            if has.any():
                weight = self.tables[field].weight.detach().numpy()
                out[has, j * self.field_dim : (j + 1) * self.field_dim] = weight[rows[has]]
                present |= has
        return finish_rows(out, present)

    def update(self, events: Events) -> None:
        """Give unseen values their own row while the field's vocabulary has room."""
        for field in self.fields:
            vocab = self.vocab[field]
            for event in events:
                if len(vocab) >= self.vocab_cap:
                    break
                value = get_str(event, field)
                if value is not None:
                    vocab.setdefault(value.lower(), len(vocab))

    def _get_state(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "field_dim": self.field_dim,
            "vocab_cap": self.vocab_cap,
            "n_hash_buckets": self.n_hash_buckets,
            "vocab": {field: sorted(v, key=v.__getitem__) for field, v in self.vocab.items()},
            "weights": {field: self.tables[field].weight.detach().tolist() for field in self.fields},
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        layout = (list(self.fields), self.field_dim, self.vocab_cap, self.n_hash_buckets)
        given = (state.get("fields"), state.get("field_dim"), state.get("vocab_cap"), state.get("n_hash_buckets"))
        if list(given) != list(layout):
            raise ValueError(f"categorical snapshot layout {given} != encoder layout {layout}")
        with torch.no_grad():
            for field in self.fields:
                weight = torch.tensor(state["weights"][field], dtype=torch.float32)
                if tuple(weight.shape) != tuple(self.tables[field].weight.shape):
                    raise ValueError(f"weights of {field!r} have shape {tuple(weight.shape)}")
                self.tables[field].weight.copy_(weight)
        self.vocab = {field: {value: i for i, value in enumerate(state["vocab"][field])} for field in self.fields}

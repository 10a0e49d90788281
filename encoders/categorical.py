"""Categorical component: embedding tables for low-cardinality fields.

Each field (``event_type``, ``severity``, ``outcome``, ``source``, ``process``)
has a ``torch.nn.Embedding``; the concatenation of the field rows, L2-normalized,
is the component vector. Values are compared case-insensitively and ``process``
by its basename (``C:\\Windows\\System32\\cmd.exe`` → ``cmd.exe``), see
:func:`normalize_value`.

Two modes:

* **untrained** (no artifact): every value's vector is a seeded random draw keyed by
  the encoder seed, the field and the value itself, so a value encodes the same from
  its first sighting on (an earlier version gave a new value a shared hashed bucket
  first and its own row from the next batch: the first copy of an event and every
  later copy then differed by a third of the vector, so the copies of one anomaly
  looked like two anomalies, and analyst feedback on a first sighting missed its
  copies). :meth:`CategoricalEncoder.update` records values in a vocabulary (up to
  ``vocab_cap``) and writes their vectors into the table rows, for snapshots and
  tools; values beyond the cap still get their own vector.
* **trained** (``artifact=``, written by ``secstream train categorical``, see
  :mod:`encoders.training`): the tables and vocabularies are loaded as trained and
  stay frozen. Row 0 of every table is the field's *learned unknown* row: any value
  not in the artifact's vocabulary (never seen, or rarer than ``min_count`` in the
  training data) maps to it. ``update`` changes nothing, and :attr:`version` is the
  artifact's version, so a snapshot taken with another model is refused.

Artifact layout (never pickle): ``DIR/categorical.safetensors`` with one float32
tensor ``[1 + len(vocab[field]), dim]`` per field (row 0 = unknown, rows stored
unit-norm) and ``DIR/categorical.json`` with ``version``, ``fields``, ``dim``,
``vocab`` (values of rows 1.. per field) and free-form training metadata. The
version ``cat-v1-<hash>`` is a content hash of fields, dim, vocabularies and
tables, checked when the artifact is read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoders.base import (
    ComponentBatch,
    ComponentEncoder,
    Event,
    Events,
    column,
    column_map,
    distinct_values,
    empty_batch,
    finish_rows,
    get_str,
    stable_hash,
    str_value,
)

__all__ = [
    "ARTIFACT_JSON",
    "ARTIFACT_TENSORS",
    "CATEGORICAL_FIELDS",
    "CategoricalArtifact",
    "CategoricalEncoder",
    "artifact_version",
    "category_value",
    "normalize_value",
    "read_artifact",
    "write_artifact",
]

CATEGORICAL_FIELDS: tuple[str, ...] = ("event_type", "severity", "outcome", "source", "process")
ARTIFACT_TENSORS = "categorical.safetensors"
ARTIFACT_JSON = "categorical.json"
ARTIFACT_FORMAT = "secstream-categorical"
UNKNOWN_ROW = 0


def normalize_value(field_name: str, value: str) -> str | None:
    """The comparison key of a raw value: lower-cased; ``process`` reduced to its basename.

    Returns ``None`` when nothing is left (``"/"``, whitespace).
    """
    key = value.strip().lower()
    if field_name == "process":
        key = key.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].strip()
    return key or None


def category_value(event: Event, field_name: str) -> str | None:
    """The normalized value of ``field_name`` in ``event``, or ``None`` when absent."""
    value = get_str(event, field_name)
    return None if value is None else normalize_value(field_name, value)


# --------------------------------------------------------------------------- artifact


@dataclass(frozen=True)
class CategoricalArtifact:
    """A trained model: per-field tables whose row 0 is the learned unknown row.

    Attributes:
        version: ``cat-v1-<hash>`` (see :func:`artifact_version`).
        fields: embedded fields, in block order.
        dim: embedding width per field.
        vocab: per field, the values of rows ``1..`` (normalized, see :func:`normalize_value`).
        tables: per field, float32 ``[1 + len(vocab[field]), dim]``.
        metadata: everything else of the JSON file (training data, loss curve, ...).
    """

    version: str
    fields: tuple[str, ...]
    dim: int
    vocab: dict[str, list[str]]
    tables: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)


def artifact_version(
    fields: Sequence[str], dim: int, vocab: Mapping[str, Sequence[str]], tables: Mapping[str, np.ndarray]
) -> str:
    """``cat-v1-`` + 16 hex of sha256 over fields, dim, vocabularies and table bytes."""
    h = hashlib.sha256()
    head = {"fields": list(fields), "dim": dim, "vocab": {f: list(vocab[f]) for f in fields}}
    h.update(json.dumps(head, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    for f in fields:
        h.update(np.ascontiguousarray(tables[f], dtype="<f4").tobytes())
    return "cat-v1-" + h.hexdigest()[:16]


def _check_layout(fields: Sequence[str], dim: int, vocab: Mapping[str, Sequence[str]],
                  tables: Mapping[str, np.ndarray]) -> None:
    if not fields or len(set(fields)) != len(fields):
        raise ValueError(f"artifact fields must be non-empty and unique, got {list(fields)}")
    for f in fields:
        if f not in tables or f not in vocab:
            raise ValueError(f"artifact has no table or vocabulary for field {f!r}")
        shape = tuple(np.shape(tables[f]))
        if shape != (1 + len(vocab[f]), dim):
            raise ValueError(f"table of {f!r} has shape {shape}, expected {(1 + len(vocab[f]), dim)}")
        if len(set(vocab[f])) != len(vocab[f]):
            raise ValueError(f"vocabulary of {f!r} has duplicates")


def write_artifact(
    directory: str | Path,
    fields: Sequence[str],
    vocab: Mapping[str, Sequence[str]],
    tables: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any] | None = None,
) -> CategoricalArtifact:
    """Write ``categorical.safetensors`` + ``categorical.json`` into ``directory`` (created).

    Returns the artifact as it will be read back, with its version.
    """
    from safetensors.numpy import save_file

    fields = tuple(fields)
    arrays = {f: np.ascontiguousarray(tables[f], dtype=np.float32) for f in fields}
    dim = int(next(iter(arrays.values())).shape[1]) if arrays else 0
    vocab_lists = {f: [str(v) for v in vocab[f]] for f in fields}
    _check_layout(fields, dim, vocab_lists, arrays)
    version = artifact_version(fields, dim, vocab_lists, arrays)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(out / ARTIFACT_TENSORS), metadata={"format": ARTIFACT_FORMAT, "version": version})
    meta = dict(metadata or {})
    doc = {"format": ARTIFACT_FORMAT, "version": version, "fields": list(fields), "dim": dim,
           "unknown_row": UNKNOWN_ROW, "vocab": vocab_lists, **{k: v for k, v in meta.items() if k not in
                                                                 ("format", "version", "fields", "dim", "vocab")}}
    (out / ARTIFACT_JSON).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return CategoricalArtifact(version, fields, dim, vocab_lists, arrays, meta)


def read_artifact(path: str | Path) -> CategoricalArtifact:
    """Read an artifact from its directory (or either of its two files).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: not a categorical artifact, inconsistent layout, or the content
            does not match its version (edited or truncated files).
    """
    from safetensors.numpy import load_file

    p = Path(path)
    directory = p.parent if p.name in (ARTIFACT_JSON, ARTIFACT_TENSORS) else p
    meta = json.loads((directory / ARTIFACT_JSON).read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{directory / ARTIFACT_JSON} is not a {ARTIFACT_FORMAT} artifact")
    fields = tuple(meta["fields"])
    dim = int(meta["dim"])
    vocab = {f: list(meta["vocab"][f]) for f in fields}
    loaded = load_file(str(directory / ARTIFACT_TENSORS))
    tables = {f: np.asarray(loaded[f], dtype=np.float32) for f in fields if f in loaded}
    _check_layout(fields, dim, vocab, tables)
    version = artifact_version(fields, dim, vocab, tables)
    if version != meta.get("version"):
        raise ValueError(f"artifact content is {version}, its metadata says {meta.get('version')!r}")
    extra = {k: v for k, v in meta.items() if k not in ("format", "version", "fields", "dim", "vocab", "unknown_row")}
    return CategoricalArtifact(version, fields, dim, vocab, tables, extra)


# --------------------------------------------------------------------------- encoder


class CategoricalEncoder(ComponentEncoder):
    """Concatenated per-field embeddings, L2-normalized (dim = fields x field_dim = 40).

    Args:
        fields: event fields to embed, in block order (default
            :data:`CATEGORICAL_FIELDS`; with an artifact, the artifact's).
        field_dim: embedding width per field (default 8; with an artifact, the artifact's).
        vocab_cap: untrained mode: most values per field that get their own row.
        n_hash_buckets: untrained mode: rows shared by unknown / over-cap values.
        seed: untrained mode: seed of the weight initialisation.
        artifact: directory (or file) of a trained artifact, or a
            :class:`CategoricalArtifact`; see the module docstring. ``fields`` and
            ``field_dim``, if given, must match it.

    A missing field leaves its block zero; the row is absent only when every
    field is missing.
    """

    name = "categorical"
    version = "v3"

    def __init__(
        self,
        fields: Sequence[str] | None = None,
        field_dim: int | None = None,
        vocab_cap: int = 1024,
        n_hash_buckets: int = 16,
        seed: int = 7,
        artifact: str | Path | CategoricalArtifact | None = None,
    ) -> None:
        for label, value in (("vocab_cap", vocab_cap), ("n_hash_buckets", n_hash_buckets), ("field_dim", field_dim)):
            if value is not None and value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        self.artifact: CategoricalArtifact | None = None
        if artifact is not None:
            art = artifact if isinstance(artifact, CategoricalArtifact) else read_artifact(artifact)
            if fields is not None and tuple(fields) != art.fields:
                raise ValueError(f"fields {list(fields)} differ from the artifact's {list(art.fields)}")
            if field_dim is not None and field_dim != art.dim:
                raise ValueError(f"field_dim {field_dim} differs from the artifact's {art.dim}")
            self.artifact = art
            fields, field_dim = art.fields, art.dim
            # Instance attribute on purpose: the artifact decides the version.
            self.version = art.version  # type: ignore[misc]
        fields = tuple(CATEGORICAL_FIELDS if fields is None else fields)
        if not fields or len(set(fields)) != len(fields):
            raise ValueError(f"fields must be non-empty and unique, got {list(fields)}")
        self.fields = fields
        self.field_dim = 8 if field_dim is None else field_dim
        self.vocab_cap = vocab_cap
        self.n_hash_buckets = n_hash_buckets
        self.seed = seed
        if self.artifact is not None:
            self.tables = torch.nn.ModuleDict({
                f: torch.nn.Embedding.from_pretrained(torch.from_numpy(self.artifact.tables[f].copy()), freeze=True)
                for f in self.fields
            })
            self.vocab: dict[str, dict[str, int]] = {
                f: {v: i + 1 for i, v in enumerate(self.artifact.vocab[f])} for f in self.fields
            }
            return
        generator = torch.Generator().manual_seed(seed)
        rows = vocab_cap + n_hash_buckets
        # from_pretrained skips nn.Embedding's reset_parameters, which would
        # draw from (and advance) torch's global RNG.
        self.tables = torch.nn.ModuleDict({
            f: torch.nn.Embedding.from_pretrained(torch.randn(rows, self.field_dim, generator=generator), freeze=False)
            for f in self.fields
        })
        self.vocab = {f: {} for f in self.fields}
        self._seeded: dict[tuple[str, str], np.ndarray] = {}

    @classmethod
    def from_artifact(cls, path: str | Path | CategoricalArtifact) -> CategoricalEncoder:
        """A trained encoder: ``CategoricalEncoder(artifact=path)``."""
        return cls(artifact=path)

    @property
    def dim(self) -> int:
        """``len(fields) * field_dim`` (40 by default)."""
        return len(self.fields) * self.field_dim

    @property
    def trained(self) -> bool:
        """Whether the tables come from an artifact (frozen vocabulary, learned unknown row)."""
        return self.artifact is not None

    def bucket(self, field_name: str, value: str) -> int:
        """Row of ``value`` in ``field_name``'s table.

        Its own row if known; otherwise the learned unknown row 0 (trained) or a
        hashed bucket after the ``vocab_cap`` rows (untrained).
        """
        key = normalize_value(field_name, value) or ""
        row = self.vocab[field_name].get(key)
        if row is not None:
            return row
        if self.artifact is not None:
            return UNKNOWN_ROW
        return self.vocab_cap + stable_hash(f"{field_name}\x1f{key}") % self.n_hash_buckets

    def value_vector(self, field_name: str, key: str) -> np.ndarray:
        """Untrained mode: the vector of a normalized value (a draw seeded by seed, field and value)."""
        vec = self._seeded.get((field_name, key))
        if vec is None:
            rng = np.random.default_rng(stable_hash(f"{self.seed}\x1f{field_name}\x1f{key}"))
            vec = rng.standard_normal(self.field_dim)
            if len(self._seeded) >= 200_000:
                self._seeded.clear()
            self._seeded[(field_name, key)] = vec
        return vec

    def _key(self, field_name: str, raw: Any) -> str | None:
        value = str_value(raw)
        return None if value is None else normalize_value(field_name, value)

    def encode(self, events: Events) -> ComponentBatch:
        """Each field's vector, concatenated; see the class docstring."""
        n = len(events)
        if n == 0:
            return empty_batch(self.dim)
        out = np.zeros((n, self.dim), dtype=np.float64)
        present = np.zeros(n, dtype=bool)
        if self.artifact is None:
            for j, f in enumerate(self.fields):
                keys = column_map(column(events, f), lambda raw, f=f: self._key(f, raw))
                slot = {k: s for s, k in enumerate(dict.fromkeys(k for k in keys if k is not None))}
                if not slot:
                    continue
                rows = np.array([slot.get(k, -1) for k in keys], dtype=np.int64)  # None: absent
                has = rows >= 0  # one vector per distinct value, then one fancy-indexed copy per field
                table = np.stack([self.value_vector(f, k) for k in slot])
                out[has, j * self.field_dim : (j + 1) * self.field_dim] = table[rows[has]]
                present |= has
            return finish_rows(out, present)
        for j, f in enumerate(self.fields):
            rows = np.array(column_map(column(events, f), lambda raw, f=f: self._row(f, raw)), dtype=np.int64)
            has = rows >= 0
            if has.any():
                weight = self.tables[f].weight.detach().numpy()
                out[has, j * self.field_dim : (j + 1) * self.field_dim] = weight[rows[has]]
                present |= has
        return finish_rows(out, present)

    def update(self, events: Events) -> None:
        """Untrained: give unseen values their own row while there is room. Trained: nothing."""
        if self.artifact is not None:
            return
        for f in self.fields:
            vocab = self.vocab[f]
            if len(vocab) >= self.vocab_cap:
                continue
            values = column(events, f)
            # repeats of a value change nothing: the distinct values, in order, do the same
            for raw in distinct_values(values) or values:
                if len(vocab) >= self.vocab_cap:
                    break
                key = self._key(f, raw)
                if key is not None and key not in vocab:
                    row = vocab[key] = len(vocab)
                    with torch.no_grad():
                        self.tables[f].weight[row] = torch.from_numpy(self.value_vector(f, key)).float()

    def _row(self, field_name: str, raw: Any) -> int:
        """Row of a raw field value for :meth:`encode`; -1 when it names nothing."""
        value = str_value(raw)
        if value is None or normalize_value(field_name, value) is None:
            return -1
        return self.bucket(field_name, value)

    def _get_state(self) -> dict[str, Any]:
        if self.artifact is not None:  # frozen: the artifact is the state
            return {"fields": list(self.fields), "field_dim": self.field_dim, "artifact": self.artifact.version}
        return {
            "fields": list(self.fields),
            "field_dim": self.field_dim,
            "vocab_cap": self.vocab_cap,
            "n_hash_buckets": self.n_hash_buckets,
            "vocab": {f: sorted(v, key=v.__getitem__) for f, v in self.vocab.items()},
            "weights": {f: self.tables[f].weight.detach().tolist() for f in self.fields},
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        if self.artifact is not None:
            if state.get("artifact") != self.artifact.version:
                raise ValueError(f"snapshot of artifact {state.get('artifact')!r}, encoder has {self.artifact.version}")
            return
        layout = (list(self.fields), self.field_dim, self.vocab_cap, self.n_hash_buckets)
        given = (state.get("fields"), state.get("field_dim"), state.get("vocab_cap"), state.get("n_hash_buckets"))
        if list(given) != list(layout):
            raise ValueError(f"categorical snapshot layout {given} != encoder layout {layout}")
        with torch.no_grad():
            for f in self.fields:
                weight = torch.tensor(state["weights"][f], dtype=torch.float32)
                if tuple(weight.shape) != tuple(self.tables[f].weight.shape):
                    raise ValueError(f"weights of {f!r} have shape {tuple(weight.shape)}")
                self.tables[f].weight.copy_(weight)
        self.vocab = {f: {value: i for i, value in enumerate(state["vocab"][f])} for f in self.fields}

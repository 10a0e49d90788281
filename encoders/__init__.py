"""Pure embedding math for security events (numpy/torch; no Kafka, no Qdrant).

Public API::

    build_default_encoder(weights=None, model_path=None, cache_size=50_000, seed=7) -> HybridEncoder
    HybridEncoder(components, weights, sparse=None).encode(events) -> HybridBatch
    component encoders: TextEncoder, CategoricalEncoder, NumericalEncoder,
                        NetworkEncoder, TimeEncoder  (all ComponentEncoder)
    SparseEncoder(tokenizer_path).encode(events) -> [(indices, values)]
    mask(text) -> (template, params); template_id(template) -> "T" + 12 hex

Submodules are imported lazily so ``import encoders.masking`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ComponentBatch": "encoders.base",
    "ComponentEncoder": "encoders.base",
    "mask": "encoders.masking",
    "mask_many": "encoders.masking",
    "template_id": "encoders.masking",
    "TextEncoder": "encoders.text",
    "CategoricalEncoder": "encoders.categorical",
    "NumericalEncoder": "encoders.numerical",
    "NetworkEncoder": "encoders.network",
    "TimeEncoder": "encoders.timefeat",
    "SparseEncoder": "encoders.sparse",
    "SparseVector": "encoders.sparse",
    "DEFAULT_WEIGHTS": "encoders.hybrid",
    "HybridBatch": "encoders.hybrid",
    "HybridEncoder": "encoders.hybrid",
    "build_default_encoder": "encoders.hybrid",
    "component_contributions": "encoders.hybrid",
    "component_similarity": "encoders.hybrid",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'encoders' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""Wire contracts of secstream: JSON Schema files and the pydantic models that implement them.

Pure package: imports only the standard library, pydantic and jsonschema.
"""

from typing import Any

from schemas.errors import REASONS, InvalidEvent, SecstreamError

# the models load pydantic and jsonschema (about a second): imported on first use, so that a command
# that only needs the errors (the CLI reading its arguments) does not pay for them
_LAZY = {
    "Alert": "schemas.alert", "AlertEntity": "schemas.alert", "AlertEventSummary": "schemas.alert",
    "AlertEvidence": "schemas.alert", "AlertExplanation": "schemas.alert", "AlertNeighbour": "schemas.alert",
    "AlertTopTerm": "schemas.alert", "load_schema": "schemas.alert", "validate_alert": "schemas.alert",
    "ENTITY_TYPES": "schemas.models", "MAX_EVENT_BYTES": "schemas.models", "MAX_MESSAGE_BYTES": "schemas.models",
    "SecurityEvent": "schemas.models", "decode_event": "schemas.models", "format_time": "schemas.models",
    "parse_event": "schemas.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'schemas' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ENTITY_TYPES",
    "MAX_EVENT_BYTES",
    "MAX_MESSAGE_BYTES",
    "REASONS",
    "Alert",
    "AlertEntity",
    "AlertEventSummary",
    "AlertEvidence",
    "AlertExplanation",
    "AlertNeighbour",
    "AlertTopTerm",
    "InvalidEvent",
    "SecstreamError",
    "SecurityEvent",
    "decode_event",
    "format_time",
    "load_schema",
    "parse_event",
    "validate_alert",
]

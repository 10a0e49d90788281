"""Wire contracts of secstream: JSON Schema files and the pydantic models that implement them.

Pure package: imports only the standard library, pydantic and jsonschema.
"""

from schemas.errors import REASONS, InvalidEvent, SecstreamError
from schemas.models import (
    ENTITY_TYPES,
    MAX_EVENT_BYTES,
    MAX_MESSAGE_BYTES,
    Alert,
    AlertEntity,
    AlertEventSummary,
    AlertEvidence,
    AlertExplanation,
    AlertNeighbour,
    AlertTopTerm,
    SecurityEvent,
    decode_event,
    format_time,
    load_schema,
    parse_event,
    validate_alert,
)

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

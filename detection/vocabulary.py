"""Names the settings and the command line validate against, without numpy. Pure (stdlib only).

The detection modules that use these names (:mod:`detection.sessions`, :mod:`detection.entity_groups`,
:mod:`detection.entities`, :mod:`detection.feedback`) import them from here and keep exporting them,
so ``from detection.sessions import KEY_KINDS`` still works; the settings' validators and
``secstream config``/``feedback`` import this module instead, so that checking a setting or an
argument does not load numpy (tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DEFAULT_ENTITY_TYPES", "ENTITY_FIELDS", "FALSE_POSITIVE", "KEY_KINDS", "SLICE_CHOICES", "TRUE_POSITIVE",
           "VERDICTS", "validate_types"]

#: Session key kinds, in the order :class:`detection.sessions.Sessionizer` documents them.
KEY_KINDS: tuple[str, ...] = ("session_id", "user+host", "src_ip", "host", "user", "regex")

#: SecurityEvent fields that can name an entity.
ENTITY_FIELDS: tuple[str, ...] = ("user", "host", "src_ip", "dst_ip", "process", "source")
#: The entity types tracked by default.
DEFAULT_ENTITY_TYPES: tuple[str, ...] = ("user", "host", "src_ip")

#: Valid numbers of hour-of-day slices of an entity embedding (divisors of 24).
SLICE_CHOICES: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 24)

#: Analyst verdicts on an alert (``secstream feedback --verdict``).
FALSE_POSITIVE, TRUE_POSITIVE = "false_positive", "true_positive"
VERDICTS: tuple[str, ...] = (FALSE_POSITIVE, TRUE_POSITIVE)


def validate_types(types: Sequence[str]) -> tuple[str, ...]:
    """Entity types as a tuple; raises ValueError naming the valid fields."""
    bad = [t for t in types if t not in ENTITY_FIELDS]
    if bad or not types or len(set(types)) != len(types):
        raise ValueError(f"entity types must be distinct names from {', '.join(ENTITY_FIELDS)}; got {list(types)}")
    return tuple(types)

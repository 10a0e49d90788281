"""The project's exception root and the error raised for bad input events.

Every exception secstream raises on purpose derives from :class:`SecstreamError`,
so callers can catch the project's errors in one place and third-party errors
are wrapped at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["REASONS", "InvalidEvent", "SecstreamError"]

#: The fixed set of reason codes of :class:`InvalidEvent`. They are used as a
#: Prometheus label and in DLQ records, so the set must stay small and stable.
REASONS: Final[frozenset[str]] = frozenset(
    {
        "not_utf8",
        "not_json",
        "not_object",
        "too_large",
        "missing_field",
        "wrong_type",
        "invalid_value",
    }
)


class SecstreamError(Exception):
    """Root of every exception that secstream raises on purpose."""


class InvalidEvent(SecstreamError):
    """An input record that cannot become a :class:`schemas.models.SecurityEvent`.

    Attributes:
        reason: a short code from :data:`REASONS` (safe as a metrics label).
        detail: human-readable explanation, e.g. ``"src_port: 70000 is not in 0..65535"``.
    """

    reason: str
    detail: str

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown InvalidEvent reason {reason!r}; valid reasons: {sorted(REASONS)}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")

    def __reduce__(self) -> tuple[type[InvalidEvent], tuple[str, str]]:
        # Keep the exception picklable (multiprocessing, logging handlers).
        return (type(self), (self.reason, self.detail))

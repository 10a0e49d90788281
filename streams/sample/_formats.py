"""Time stamps and encodings the generated logs use (shared by the generator's modules)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

START = datetime(2025, 3, 11, 0, 0, 0, tzinfo=UTC)  # the sample's t = 0


def iso(t: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2025-03-11T01:52:03.123Z``."""
    dt = START + timedelta(milliseconds=round(t * 1000))
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _dt(t: float) -> datetime:
    return START + timedelta(milliseconds=round(t * 1000))


def syslog_ts(t: float) -> str:
    """BSD syslog timestamp (``Mar 11 01:52:03``)."""
    dt = _dt(t)
    return f"{dt:%b} {dt.day:2d} {dt:%H:%M:%S}"


def powershell_enc(script: str) -> str:
    """What ``powershell -EncodedCommand`` expects: base64 of UTF-16LE."""
    return base64.b64encode(script.encode("utf-16-le")).decode()

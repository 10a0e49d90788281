"""Helpers shared by the input adapters: opening files, small value cleaners."""

from __future__ import annotations

import gzip
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["AdapterError", "clean_ip", "clean_port", "digits_value", "encode", "iter_lines", "open_binary",
           "truncate_utf8"]

MAX_MESSAGE_BYTES = 65536


class AdapterError(ValueError):
    """A record an adapter cannot turn into an event; its text becomes ``Record.error``."""


def open_binary(path: Path) -> IO[bytes]:
    """Open a file for binary reading, transparently gunzipping ``.gz`` (or gzip-magic) files."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return path.open("rb")


def iter_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Yield the lines of a binary stream without their ``\\n``/``\\r\\n`` terminator.

    A final newline does not create an extra empty line; blank lines inside are kept.
    """
    for line in stream:
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        yield line


def encode(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON of an event dict (None values dropped)."""
    body = {k: v for k, v in event.items() if v is not None and v != {}}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def clean_ip(value: object) -> str | None:
    """A normalized IPv4/IPv6 string, or None for ``-``, empty or invalid values."""
    if not isinstance(value, str):
        return None
    s = value.strip().strip("[]")
    if not s or s == "-":
        return None
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        return None
    return str(addr)


def clean_port(value: object) -> int | None:
    """A port 0..65535 from an int or a decimal string, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isascii() or not value.isdigit() or len(value) > 5:
            return None
        value = int(value)
    if isinstance(value, int) and 0 <= value <= 65535:
        return value
    return None


def digits_value(text: str) -> int | str:
    """A run of ASCII digits from a log line (a pid, a count, a code) as an int, or as the text itself past
    18 digits: no real one is that long, and ``int()`` refuses more than 4,300 digits."""
    return int(text) if len(text) <= 18 else text


def truncate_utf8(text: str, limit: int = MAX_MESSAGE_BYTES) -> tuple[str, bool]:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes on a character boundary; returns (text, truncated)."""
    if len(text) * 4 <= limit:
        return text, False
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode("utf-8", "ignore"), True

"""Input adapters: turn log files into SecurityEvent JSON records, one :class:`Record` per input record.

>>> for rec in read_records("OpenSSH_2k.log", "sshd", year=2024):   # doctest: +SKIP
...     event = decode_event(rec.value) if rec.value is not None else None

Formats (:data:`FORMATS`):

* ``jsonl``: one SecurityEvent JSON object per line; ``value`` is the raw line
  (terminator removed, otherwise unmodified; blank lines give ``b""``), so that
  validation and the DLQ happen in the pipeline.
* ``sshd``: RFC 3164 syslog with OpenSSH messages (``year`` completes the date;
  default: the current UTC year).
* ``hdfs``: Loghub HDFS lines. ``parquet``: the LogLead HDFS parquet sample.
* ``windows-json``: OTRF Windows Security/Sysmon JSON lines, ``.zip`` or plain.
* ``auto``: detected by :func:`detect_format`.

Any text file may be gzip-compressed. For the non-jsonl formats ``value`` is compact
UTF-8 JSON built by the adapter; a record it cannot read gives ``error`` instead.

A file whose bytes say it is something else than the format asked for (a Parquet file read as
``hdfs`` text, a zip archive read as ``jsonl``, a text file read as ``parquet``) is refused at once by
:func:`check_format` (:class:`FormatMismatch`, naming the ``--format`` that reads it), instead of
giving one unreadable record per line of binary data.
"""

from __future__ import annotations

import gzip
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from schemas.errors import SecstreamError
from streams.adapters._common import AdapterError, encode, iter_lines, open_binary
from streams.adapters.hdfs import iter_parquet, parse_hdfs_line
from streams.adapters.sshd import SyslogClock, parse_sshd_line
from streams.adapters.windows import iter_windows_lines, parse_windows_line

__all__ = ["FORMATS", "FormatMismatch", "Record", "UnknownFormat", "check_format", "detect_format", "file_kind",
           "read_records"]

FORMATS: tuple[str, ...] = ("jsonl", "sshd", "hdfs", "windows-json", "parquet", "auto")

_SYSLOG = re.compile(rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +[0-9]{1,2} [0-9]{2}:[0-9]{2}:[0-9]{2} \S+ ")
_HDFS = re.compile(rb"[0-9]{6} [0-9]{6} [0-9]+ [A-Z]+ ")
_SNIFF_LINES = 50
_PARQUET_MAGIC = b"PAR1"  # the first and the last 4 bytes of a Parquet file
_GZIP_MAGIC = b"\x1f\x8b"
#: formats read as lines of text (gzip-compressed or not); windows-json also reads zip archives
_TEXT_FORMATS = ("jsonl", "sshd", "hdfs", "windows-json")
T = TypeVar("T")


class UnknownFormat(SecstreamError):
    """The input format is not one of :data:`FORMATS`, or ``auto`` could not detect it."""


class FormatMismatch(UnknownFormat):
    """The file's bytes say it is not in the format asked for (see :func:`check_format`)."""


def file_kind(path: str | Path) -> str:
    """What a file's magic bytes say it is: ``parquet`` (starts with ``PAR1``), ``parquet-truncated``
    (starts with ``PAR1`` but does not end with it), ``gzip`` (1f 8b), ``gzip-parquet`` (a gzip
    stream holding a Parquet file), ``zip``, else ``text``."""
    p = Path(path)
    with p.open("rb") as fh:
        head = fh.read(4)
        if head == _PARQUET_MAGIC:
            fh.seek(0, 2)
            size = fh.tell()
            if size < 12:
                return "parquet-truncated"
            fh.seek(size - 4)
            return "parquet" if fh.read(4) == _PARQUET_MAGIC else "parquet-truncated"
    if head[:2] == _GZIP_MAGIC:
        try:
            with gzip.open(p, "rb") as inner:
                return "gzip-parquet" if inner.read(4) == _PARQUET_MAGIC else "gzip"
        except (OSError, EOFError):  # a damaged gzip stream: the text reader reports it
            return "gzip"
    if head[:2] == b"PK" and zipfile.is_zipfile(p):
        return "zip"
    return "text"


def check_format(path: str | Path, fmt: str) -> None:
    """Refuse, before reading, a file whose magic bytes contradict ``fmt`` (one of :data:`FORMATS` but
    ``auto``): a Parquet file read as text, a zip archive read as text other than windows-json, a
    gzip-compressed Parquet file (Parquet is read uncompressed), a text file read as parquet.

    Raises:
        FormatMismatch: one line naming the file, what it is and the ``--format`` that reads it.
    """
    p = Path(path)
    kind = file_kind(p)
    if fmt in _TEXT_FORMATS:
        if kind in ("parquet", "parquet-truncated"):
            raise FormatMismatch(f"{p.name} is a Parquet file, not {fmt} text: read it with --format parquet "
                                 f"(or --format auto)")
        if kind == "gzip-parquet":
            raise FormatMismatch(f"{p.name} is a gzip-compressed Parquet file: gunzip it, then use --format parquet")
        if kind == "zip" and fmt != "windows-json":
            raise FormatMismatch(f"{p.name} is a zip archive, not {fmt} text: only --format windows-json reads zip "
                                 f"archives (unzip it for the other formats)")
    elif fmt == "parquet":
        if kind == "gzip-parquet":
            raise FormatMismatch(f"{p.name} is a gzip-compressed Parquet file: gunzip it, then use --format parquet")
        if kind == "parquet-truncated":
            raise FormatMismatch(f"{p.name} starts like a Parquet file but does not end with its PAR1 footer "
                                 f"(truncated?)")
        if kind != "parquet":
            what = {"gzip": "gzip-compressed text", "zip": "a zip archive"}.get(kind, "text")
            raise FormatMismatch(f"{p.name} is not a Parquet file (no PAR1 magic bytes; it is {what}): "
                                 f"pass its format with --format ({', '.join(_TEXT_FORMATS)}) or --format auto")


@dataclass(frozen=True)
class Record:
    """One input record.

    Attributes:
        line: 1-based input record number (line number; row number for parquet).
        value: JSON bytes of a SecurityEvent object (for jsonl: the raw line), or None on error.
        error: why this record could not be turned into an event (then ``value`` is None).
    """

    line: int
    value: bytes | None
    error: str | None = None


def _valid_formats() -> str:
    return ", ".join(FORMATS)


def detect_format(path: str | Path) -> str:
    """Guess the format of a file (never returns ``"auto"``).

    The magic bytes first (:func:`file_kind`): a zip archive → windows-json; ``PAR1`` (also inside
    gzip, which :func:`check_format` then refuses) → parquet; else the first non-empty lines decide
    (a file named ``.parquet`` without the magic too): ``{`` → jsonl, or windows-json when the object
    has ``EventID``; a syslog header → sshd; an HDFS ``yyMMdd HHmmss`` prefix → hdfs.

    Raises:
        UnknownFormat: nothing matched; the message names the valid formats.
    """
    p = Path(path)
    kind = file_kind(p)
    if kind == "zip":
        return "windows-json"
    if kind in ("parquet", "parquet-truncated", "gzip-parquet"):
        return "parquet"
    with open_binary(p) as fh:
        seen = 0
        for line in iter_lines(fh):
            line = line.strip()
            if not line:
                continue
            if line.startswith(b"{"):
                try:
                    obj = json.loads(line)
                except (ValueError, RecursionError):
                    obj = None
                has_id = "EventID" in obj if isinstance(obj, dict) else b'"EventID"' in line
                return "windows-json" if has_id else "jsonl"
            if _SYSLOG.match(line):
                return "sshd"
            if _HDFS.match(line):
                return "hdfs"
            seen += 1
            if seen >= _SNIFF_LINES:
                break
    raise UnknownFormat(f"cannot detect the format of {p.name}; pass one of: {_valid_formats()}")


def _from_dict_lines(lines: Iterator[T], parse: Callable[[T], dict[str, Any]], label: str) -> Iterator[Record]:
    for n, raw in enumerate(lines, start=1):
        try:
            yield Record(n, encode(parse(raw)), None)
        except AdapterError as exc:
            yield Record(n, None, str(exc))
        except (ValueError, TypeError) as exc:  # unexpected shapes must not stop a replay
            yield Record(n, None, f"{label}: {type(exc).__name__}: {exc}"[:300])


def _text_lines(path: Path) -> Iterator[str]:
    with open_binary(path) as fh:
        for raw in iter_lines(fh):
            yield raw.decode("utf-8", "replace")


def _jsonl(path: Path) -> Iterator[Record]:
    with open_binary(path) as fh:
        for n, raw in enumerate(iter_lines(fh), start=1):
            yield Record(n, raw, None)


def _parquet(path: Path) -> Iterator[Record]:
    try:
        rows = iter_parquet(path)
        for n, item in enumerate(rows, start=1):
            if isinstance(item, AdapterError):
                yield Record(n, None, str(item))
            else:
                yield Record(n, encode(item), None)
    except AdapterError as exc:
        raise UnknownFormat(f"{path.name}: {exc}") from exc


def read_records(path: str | Path, fmt: str = "auto", *, year: int | None = None) -> Iterator[Record]:
    """Read a log file as :class:`Record` objects, exactly one per input record, in input order.

    Args:
        path: the file (``.gz`` is opened transparently; ``.zip`` for windows-json).
        fmt: one of :data:`FORMATS`.
        year: the year of syslog (``sshd``) timestamps; default the current UTC year.
            The year advances when the month goes back (Dec → Jan).

    Raises:
        UnknownFormat: ``fmt`` is not a valid format, or ``auto`` cannot detect it.
        FormatMismatch: the file's magic bytes contradict ``fmt`` (:func:`check_format`), before any record.
        OSError: the file cannot be read.
    """
    if fmt not in FORMATS:
        raise UnknownFormat(f"unknown input format {fmt!r}; valid formats: {_valid_formats()}")
    p = Path(path)
    if fmt == "auto":
        fmt = detect_format(p)
    check_format(p, fmt)
    if fmt == "jsonl":
        return _jsonl(p)
    if fmt == "parquet":
        return _parquet(p)
    if fmt == "windows-json":
        return _from_dict_lines(iter_windows_lines(p), parse_windows_line, "windows-json")
    if fmt == "sshd":
        clock = SyslogClock(year)
        return _from_dict_lines(_text_lines(p), lambda line: parse_sshd_line(line, clock), "sshd")
    return _from_dict_lines(_text_lines(p), parse_hdfs_line, "hdfs")

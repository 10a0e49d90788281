"""HDFS (Loghub HDFS_v1) log lines and the LogLead parquet sample.

Line format: ``081109 203615 148 INFO dfs.DataNode$PacketResponder: message``
(date yyMMdd, time HHmmss, thread id, level, component). The logs carry no zone;
UTC is assumed. The session of an event is its block (``blk_...``, sign included).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schemas.models import MAX_FIELD_CHARS
from streams.adapters._common import AdapterError, clean_ip, clean_port, digits_value

__all__ = ["hdfs_event", "iter_parquet", "parse_hdfs_line"]

_LINE = re.compile(r"([0-9]{6}) ([0-9]{6}) ([0-9]+) ([A-Z]+) ([^\s:]+):? (.*)")
_BLOCK = re.compile(r"blk_-?[0-9]+")
_SRC_DEST = re.compile(r"src: /([0-9A-Fa-f.:]+?)(?::([0-9]+))? dest: /([0-9A-Fa-f.:]+?)(?::([0-9]+))?(?:\s|$)")
_SEVERITY = {"TRACE": "informational", "DEBUG": "informational", "INFO": "informational",
             "WARN": "medium", "WARNING": "medium", "ERROR": "high", "FATAL": "high"}
_EVENT_TYPES = {
    "dfs.FSNamesystem": "namesystem",
    "dfs.DataNode$PacketResponder": "packet_responder",
    "dfs.DataNode$DataXceiver": "data_transfer",
    "dfs.DataNode$DataTransfer": "data_transfer",
    "dfs.DataNode$BlockReceiver": "block_receiver",
    "dfs.FSDataset": "dataset",
    "dfs.DataBlockScanner": "block_scanner",
    "dfs.DataNode": "datanode",
}


def _event_type(component: str) -> str:
    known = _EVENT_TYPES.get(component)
    if known:
        return known
    tail = component.rsplit(".", 1)[-1].replace("$", "_")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", tail).lower() or "hdfs"


def hdfs_event(date: str, time: str, pid: str, level: str, component: str, message: str,
               session_id: str | None = None) -> dict[str, Any]:
    """Build a SecurityEvent dict from the fields of one HDFS log record.

    Raises:
        AdapterError: date/time are not ``yyMMdd``/``HHmmss``.
    """
    if len(date) != 6 or len(time) != 6 or not (date + time).isascii() or not (date + time).isdigit():
        raise AdapterError(f"hdfs: bad date/time {date!r} {time!r}")
    mo, d, h, mi, s = (int(x) for x in (date[2:4], date[4:6], time[0:2], time[2:4], time[4:6]))
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(2000 + int(date[0:2]), mo)[1] and h < 24
            and mi < 60 and s < 60):
        raise AdapterError(f"hdfs: bad date/time {date!r} {time!r}")
    component = component.rstrip(":")
    level = level.upper()
    ev: dict[str, Any] = {
        "time": f"20{date[0:2]}-{date[2:4]}-{date[4:6]}T{time[0:2]}:{time[2:4]}:{time[4:6]}Z",
        "message": message,
        "source": "hdfs",
        "event_type": _event_type(component),
        "severity": _SEVERITY.get(level, "unknown"),
        "process": component,
    }
    if session_id is None:
        blk = _BLOCK.search(message)
        session_id = blk[0] if blk else None
    if session_id:
        if len(session_id) > MAX_FIELD_CHARS:  # no real block id is this long: the line is garbage
            raise AdapterError(f"hdfs: block id of {len(session_id)} characters (at most {MAX_FIELD_CHARS})")
        ev["session_id"] = session_id
    if m := _SRC_DEST.search(message):
        for key, val in (("src_ip", clean_ip(m[1])), ("src_port", clean_port(m[2])),
                         ("dst_ip", clean_ip(m[3])), ("dst_port", clean_port(m[4]))):
            if val is not None:
                ev[key] = val
    attrs: dict[str, Any] = {"level": level}
    if pid.isascii() and pid.isdigit():
        attrs["pid"] = digits_value(pid)
    ev["attributes"] = attrs
    return ev


def parse_hdfs_line(line: str) -> dict[str, Any]:
    """Map one HDFS log line to a SecurityEvent dict.

    Raises:
        AdapterError: the line does not start with ``yyMMdd HHmmss pid LEVEL component:``.
    """
    m = _LINE.fullmatch(line)
    if m is None:
        raise AdapterError("hdfs: no 'yyMMdd HHmmss pid LEVEL component:' prefix")
    return hdfs_event(m[1], m[2], m[3], m[4], m[5], m[6])


_PARQUET_COLUMNS = ("date", "time", "id", "level", "component", "m_message", "seq_id")


def iter_parquet(path: Path, batch_size: int = 8192) -> Iterator[dict[str, Any] | AdapterError]:
    """Yield one event dict (or AdapterError) per row of an HDFS parquet file, in file order.

    Reads record batches, so memory stays bounded by ``batch_size`` rows.
    Expected columns: date, time, id, level, component, m_message, seq_id (the session).
    """
    import pyarrow.parquet as pq  # imported lazily: only parquet input needs it

    try:
        pf = pq.ParquetFile(path)
    except (ValueError, OSError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise AdapterError(f"parquet: cannot read {path.name}: {exc}") from exc
    missing = [c for c in _PARQUET_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise AdapterError(f"parquet: missing columns {missing}; expected {list(_PARQUET_COLUMNS)}")
    for batch in pf.iter_batches(batch_size=batch_size, columns=list(_PARQUET_COLUMNS)):
        cols = batch.to_pydict()
        for date, time, pid, level, comp, msg, seq in zip(*(cols[c] for c in _PARQUET_COLUMNS), strict=True):
            if None in (date, time, level, comp, msg):
                yield AdapterError("parquet: null in a required column")
                continue
            try:
                yield hdfs_event(date, time, pid or "", level, comp, msg, session_id=seq or None)
            except AdapterError as exc:
                yield exc

"""Data and labels for `secstream tune-weights`: where the files are, how labels are read
(parquet ``seq_id``/``session_id`` + ``anomaly``, or JSON lines), and events loaded in time order.

Split from :mod:`streams.tuning.weights`, which holds the tuning itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HDFS_EVENTS = Path("hdfs") / "hdfs_events_2percent.parquet"
HDFS_LABELS = Path("hdfs") / "hdfs_seqs_2percent.parquet"
OPTIMISM = ("weights tuned on these labels and evaluated on the same labels are optimistic; "
            "use --holdout 0.5 for an honest estimate")


# ----------------------------------------------------------------------------- loading

def resolve_paths(data: Path | None, labels: Path | None) -> tuple[Path, Path | None]:
    """Event file and label file (a data folder means its HDFS sample)."""
    data = DEFAULT_DATA if data is None else data
    if data.is_dir():
        events = data / HDFS_EVENTS
        return events, labels if labels is not None else data / HDFS_LABELS
    if labels is None and data.name == HDFS_EVENTS.name:
        cand = data.parent / HDFS_LABELS.name
        labels = cand if cand.exists() else None
    return data, labels


def read_labels(path: Path) -> dict[str, bool]:
    """Session key → anomalous, from parquet (``seq_id``/``session_id`` + ``anomaly``) or JSON lines."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        key = "session_id" if "session_id" in names else "seq_id"
        if key not in names or "anomaly" not in names:
            raise ValueError(f"{path}: need columns session_id (or seq_id) and anomaly, got {names}")
        t = pq.read_table(path, columns=[key, "anomaly"]).to_pydict()
        return {str(k): bool(v) for k, v in zip(t[key], t["anomaly"]) if k is not None and v is not None}
    out: dict[str, bool] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            sid = obj.get("session_id", obj.get("seq_id"))
            if sid is None or "anomaly" not in obj:
                raise ValueError(f"{path}:{n}: need session_id and anomaly")
            out[str(sid)] = bool(obj["anomaly"])
    return out


def load_events(path: Path, fmt: str = "auto", *, limit_sessions: int | None = None,
                key_of: Callable[[Mapping[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Decoded, valid events in chronological order (stable); optionally the first N session keys only."""
    from detection.times import event_time
    from schemas.errors import SecstreamError
    from schemas.models import decode_event
    from streams.adapters import read_records

    limited = limit_sessions is not None and key_of is not None
    keep: set[str] = set()
    docs: list[dict[str, Any]] = []
    for rec in read_records(path, fmt):
        if rec.value is None:
            continue
        if limited:  # cheap pre-filter on the raw JSON: decode only the kept sessions
            try:
                raw = json.loads(rec.value)
                found = key_of(raw) if isinstance(raw, dict) else None
            except (ValueError, TypeError):
                continue
            if found is None:
                continue
            if found[0] not in keep and len(keep) < (limit_sessions or 0):
                keep.add(found[0])
            if found[0] not in keep:
                continue
        try:
            docs.append(decode_event(rec.value).to_dict())
        except SecstreamError:
            continue
    t = np.array([event_time(d["time"]) for d in docs], dtype=np.float64)
    if t.size and not bool(np.all(np.diff(t) >= 0)):
        docs = [docs[i] for i in np.argsort(t, kind="stable")]
    return docs


# ----------------------------------------------------------------------------- encode once

"""Alert ids on the command line: the short ids `secstream alerts` shows, and which alert a
`secstream feedback` verdict is about.

`secstream alerts` shows the first :data:`SHORT_ID` characters of an alert id (more where two ids shown
share them: :func:`short_id_chars`, :class:`ShortIds`), or the whole id with ``--full-ids``.
`secstream feedback` takes either (:func:`parse_alert_ref`) and looks it up (:func:`resolve_alert`):

1. in the store's ``alerts`` collection, where the worker stores every alert it publishes
   (:mod:`streams.worker.alert_agent`; point id ``point_id(alert_id)``, payload the alert): a full id
   is retrieved, a short id is matched as a prefix of ``alert_id``. An id the store does not hold is
   refused (:class:`UnknownAlert`), as is a short id that several alerts share;
2. when the store cannot be opened (the embedded store of a running worker is locked by it, a Qdrant
   server is unreachable, there is no store at ``SECSTREAM_DATA_DIR``), a full id is published
   *unverified* (:attr:`Resolved.verified` false, :attr:`Resolved.note` says why), and a short id is
   completed from the keys of the alerts topic (every published alert is keyed by its id), or refused.

Nothing here imports the store or Kafka clients until a lookup needs them: an argument error answers at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import SecstreamError

__all__ = ["SHORT_ID", "AlertRefError", "Resolved", "ShortIds", "UnknownAlert", "parse_alert_ref", "resolve_alert",
           "short_id_chars", "store_matches"]

#: characters of an alert id `secstream alerts` shows (a UUID's first group)
SHORT_ID = 8
_UUID_FORM = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_HEX = frozenset("0123456789abcdef")
#: how to see the ids, for error messages
LIST_IDS = "list alert ids with `secstream alerts` (whole ids: `secstream alerts --full-ids`)"
ALERTS = "alerts"  # streams.store.collections.ALERTS (not imported: it would bring the store)


class AlertRefError(SecstreamError):
    """Text that is neither an alert id nor the start of one."""


class UnknownAlert(SecstreamError):
    """No alert, or more than one, answers to the id given."""


def parse_alert_ref(text: str) -> tuple[str, bool]:
    """``(id, full)``: a whole alert id (a UUID, in any form :class:`uuid.UUID` reads) in canonical
    form with ``full`` true, or the start of one (at least :data:`SHORT_ID` characters, as
    `secstream alerts` shows it) in lower case with ``full`` false. AlertRefError otherwise."""
    t = text.strip().lower()
    try:
        return str(uuid.UUID(t)), True
    except ValueError:
        pass
    if len(t) >= SHORT_ID and len(t) < len(_UUID_FORM) and all(
            (c == "-") if f == "-" else (c in _HEX) for c, f in zip(t, _UUID_FORM)):
        return t, False
    raise AlertRefError(f"ALERT_ID {text!r} is not an alert id (a UUID, as in an alert's alert_id, or its first "
                        f"{SHORT_ID}+ characters as `secstream alerts` shows them)")


def short_id_chars(ids: Iterable[str], minimum: int = SHORT_ID) -> int:
    """The fewest characters, at least ``minimum``, in which the distinct ``ids`` all differ."""
    distinct = set(ids)
    n = minimum
    while n < max((len(i) for i in distinct), default=0) and len({i[:n] for i in distinct}) < len(distinct):
        n += 1
    return n


class ShortIds:
    """Short ids for alerts printed one at a time (``secstream alerts --follow``): an id keeps the short
    form it was first shown with; a new id that shares it with an earlier one is shown longer."""

    def __init__(self, minimum: int = SHORT_ID) -> None:
        self.minimum = minimum
        self._shown: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, alert_id: str) -> str:
        short = self._shown.get(alert_id)
        if short is None:
            n = self.minimum
            while n < len(alert_id) and any(alert_id[:n] == other[:n] for other in self._shown):
                n += 1
            short = self._shown[alert_id] = alert_id[:n]
        return short


@dataclass(frozen=True)
class Resolved:
    """The alert a verdict is about: its whole id, and whether the store confirmed it exists."""

    alert_id: str
    verified: bool
    note: str = ""  # why it is unverified, or where a short id was completed


def store_matches(store: Any, ref: str, full: bool, limit: int = 5) -> list[str]:
    """Ids of the alerts in ``store`` (a :class:`streams.store.VectorStore`) that ``ref`` names: the
    alert itself (``full``), or up to ``limit`` alerts whose id starts with ``ref``. ``[]`` when the store
    holds no alerts collection."""
    import numpy as np

    from streams.store import FieldContains, StoreFilter, point_id

    spec = store.attach(ALERTS)
    if spec is None:
        return []
    if full:
        return [str(h.payload.get("alert_id", ref)) for h in store.retrieve(ALERTS, [point_id(ref)])]
    probe = np.full(spec.dense_dim, 1.0 / np.sqrt(spec.dense_dim), dtype=np.float32)  # any vector: the filter decides
    hits = store.search_dense(ALERTS, probe, limit, exact=True,
                              where=StoreFilter(must=(FieldContains("alert_id", ref, at_start=True),)))
    return sorted({str(h.payload["alert_id"]) for h in hits if str(h.payload.get("alert_id", "")).startswith(ref)})


def _open_store(settings: Any) -> tuple[Any, str]:
    """The configured store, opened read-only in effect (nothing is created), and its label; StoreError,
    or FileNotFoundError when the embedded store does not exist."""
    from streams.store import open_store

    if settings.qdrant_url:
        return open_store(url=settings.qdrant_url, api_key=settings.qdrant_api_key.get_secret_value(),
                          quantization=settings.store_quantization, ca_file=settings.qdrant_ssl_cafile), \
            settings.qdrant_url
    root = Path(settings.data_dir) / "qdrant"
    if not root.is_dir():
        raise FileNotFoundError(f"no store at {root} (SECSTREAM_DATA_DIR is {settings.data_dir})")
    return open_store(engine=settings.store_engine, path=root, quantization=settings.store_quantization), str(root)


def _one(ref: str, found: list[str], where: str) -> str:
    if not found:
        raise UnknownAlert(f"no alert {'with id' if len(ref) == len(_UUID_FORM) else 'id starts with'} {ref} in "
                           f"{where}; {LIST_IDS}")
    if len(found) > 1:
        raise UnknownAlert(f"{ref} is the start of several alert ids ({', '.join(found[:5])}"
                           f"{', ...' if len(found) > 5 else ''}); give more characters, or the whole id")
    return found[0]


def resolve_alert(settings: Any, ref: str, full: bool, *,
                  topic_ids: Callable[[str], list[str]] | None = None) -> Resolved:
    """The alert ``ref`` (from :func:`parse_alert_ref`) names; see the module docstring.

    ``topic_ids(prefix)`` lists the alert ids in the alerts topic that start with ``prefix`` (the
    fallback for a short id when the store cannot be opened); without it such an id is refused.
    Raises :class:`UnknownAlert` (one line) for an id no alert has, or a short id several alerts share.
    """
    from streams.store import StoreError

    try:
        store, label = _open_store(settings)
        try:
            found = store_matches(store, ref, full)
        finally:
            store.close()
    except (StoreError, FileNotFoundError) as exc:
        # the embedded store's lock message goes on to advise a Qdrant server: not this command's business
        reason = str(exc).split("; it cannot be shared")[0].rstrip(".")
    else:
        return Resolved(_one(ref, found, f"the alerts stored in {label}"), verified=True)
    if full:
        return Resolved(ref, verified=False, note=f"cannot open the store to check it: {reason}")
    if topic_ids is None:
        raise UnknownAlert(f"cannot complete the short id {ref}: cannot open the store ({reason}); give the whole "
                           f"id (`secstream alerts --full-ids`)")
    alert_id = _one(ref, topic_ids(ref), "the alerts topic")
    return Resolved(alert_id, verified=False, note=f"completed from the alerts topic; cannot open the store to "
                                                   f"check it: {reason}")

"""Trace Faust's consumer bookkeeping (seeks, rebalances, read offsets, dropped messages) to the log.

Diagnostic only, off by default: ``SECSTREAM_TRACE_CONSUMER=1`` makes the worker log, at WARNING on
the logger ``streams.kafka.consumer_trace``:

- every ``perform_seek`` (the committed offsets it seeks to, the read offsets before and after),
- every revocation and assignment,
- every write of a read offset that goes backwards or re-creates one a revocation removed,
- every run of fetched messages that Faust's read-offset check drops (``offset < read offset``);

and keeps, per partition, what became of its last :data:`KEPT` offsets handed to Faust's delivery loop
(:func:`history`: when, the read offset then, the app's flow and consumer generation), which the hole
repair (streams/worker/consumer_watch.py) logs for the offset it seeks back to.

This is what found the post-rebalance hole (docs/operations.md, "Restarts").
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from typing import Any

from faust.transport import consumer as faust_consumer

log = logging.getLogger(__name__)

#: offsets remembered per partition by :func:`history`
KEPT = 20_000
_installed = False
_handed: dict[Any, OrderedDict[int, list[str]]] = defaultdict(OrderedDict)


def history(tp: Any, offset: int) -> str | None:
    """What the delivery loop did with ``tp``'s ``offset`` (None when the trace is off)."""
    if not _installed:
        return None
    seen = _handed.get(tp, {}).get(offset)
    return "; ".join(seen) if seen else f"offset {offset} was never handed to the delivery loop (of the last {KEPT})"


def note(tp: Any, offset: int, what: str) -> None:
    """Remember ``what`` happened to ``tp``'s ``offset`` (a no-op while the trace is off)."""
    if _installed:
        _note(tp, offset, what)


def _note(tp: Any, offset: int, what: str) -> None:
    kept = _handed[tp]
    kept.setdefault(offset, []).append(f"{time.strftime('%H:%M:%S')} {what}")
    while len(kept) > KEPT:
        kept.popitem(last=False)


class _TracedOffsets(defaultdict):  # type: ignore[type-arg]
    """Faust's ``_read_offset`` mapping, logging the writes worth seeing."""

    def __setitem__(self, tp: Any, value: Any) -> None:
        old = self.get(tp, "absent")
        if old == "absent" or (isinstance(old, int) and isinstance(value, int) and value < old):
            log.warning("read offset %s/%s: %s -> %s", tp.topic, tp.partition, old, value)
        super().__setitem__(tp, value)


def install() -> None:
    """Patch :class:`faust.transport.consumer.Consumer` in this process (idempotent)."""
    global _installed
    cls = faust_consumer.Consumer
    if getattr(cls, "_secstream_traced", False):
        return
    _installed = True
    cls._secstream_traced = True
    init, seek, revoked, assigned, getmany = (cls.__init__, cls.perform_seek, cls.on_partitions_revoked,
                                              cls.on_partitions_assigned, cls.getmany)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        traced = _TracedOffsets(lambda: None)
        traced.update(self._read_offset)
        self._read_offset = traced

    async def perform_seek(self: Any) -> None:
        before = {f"{tp.topic}/{tp.partition}": v for tp, v in self._read_offset.items()}
        log.warning("perform_seek: start, read offsets %s", before)
        await seek(self)
        log.warning("perform_seek: done, committed %s read %s",
                    {f"{tp.topic}/{tp.partition}": v for tp, v in self._committed_offset.items()},
                    {f"{tp.topic}/{tp.partition}": v for tp, v in self._read_offset.items()})

    async def on_partitions_revoked(self: Any, tps: Any) -> None:
        log.warning("revoked %s", sorted(f"{tp.topic}/{tp.partition}" for tp in tps))
        await revoked(self, tps)

    async def on_partitions_assigned(self: Any, tps: Any, generation_id: int = 0) -> None:
        log.warning("assigned (generation %s) %s", generation_id, sorted(f"{tp.topic}/{tp.partition}" for tp in tps))
        await assigned(self, tps, generation_id)

    async def traced_getmany(self: Any, timeout: float) -> Any:
        dropped: dict[Any, list[int]] = {}
        async for tp, message in getmany(self, timeout):
            r_offset = self._read_offset.get(tp)
            if r_offset is not None and message.offset < r_offset:
                dropped.setdefault(tp, []).append(message.offset)
            app = self.app
            stream = app.topics.acks_enabled_for(message.topic)  # not the changelogs: their offsets are never committed
            if stream:
                _note(tp, message.offset, f"handed over (read offset {r_offset}, flow {app.flow_control.is_active()}, "
                                          f"generation {message.generation_id}/{app.consumer_generation_id})")
            yield tp, message
            if stream:
                _note(tp, message.offset, f"loop done (read offset {self._read_offset.get(tp)}, acked {message.acked})")
        for tp, offsets in dropped.items():
            log.warning("dropped %d fetched messages of %s/%s (offsets %d..%d) below the read offset %s",
                        len(offsets), tp.topic, tp.partition, min(offsets), max(offsets), self._read_offset.get(tp))

    cls.__init__ = __init__
    cls.perform_seek = perform_seek
    cls.on_partitions_revoked = on_partitions_revoked
    cls.on_partitions_assigned = on_partitions_assigned
    cls.getmany = traced_getmany

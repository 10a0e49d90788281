"""A store that waits out outages: retry transient failures with backoff, fail fast on the rest.

A worker must not lose events, nor dead-letter valid ones, because Qdrant restarted or
a disk filled for a minute. :class:`RetryingStore` wraps any :class:`VectorStore` and
retries a call whose failure is *transient* (:func:`transient`: the server is
unreachable, timed out, overloaded, answered 5xx or 429) with exponential backoff
until it succeeds. The batch waits on the pipeline thread, the agents stop taking
messages, and the backlog stays in Kafka as consumer lag: bounded memory instead of
an unbounded queue (design: backpressure). A *permanent* failure (a mismatched
collection, a malformed point: any other :class:`StoreError`) is raised at once, so
the pipeline can reject the one message that causes it.

:meth:`RetryingStore.abort` ends the waiting (a worker shutting down): a call that is
retrying, and any later call that fails, raises :class:`StoreUnavailable`; calls that
succeed are unaffected. ``secstream_store_up`` is 0 while a call is failing, and
``secstream_store_errors_total{op}`` counts the failed attempts.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from streams.ops import metrics
from streams.store.base import (
    CollectionInfo,
    CollectionSpec,
    Hit,
    SparseTerms,
    StoreError,
    StoreFilter,
    StorePoint,
    VectorStore,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_NAMES = frozenset({"ResponseHandlingException", "TransportError", "TimeoutException", "ConnectError",
                              "ReadTimeout", "WriteTimeout", "ConnectTimeout", "PoolTimeout", "RemoteProtocolError",
                              "ReadError", "WriteError", "NetworkError"})
_TRANSIENT_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})


class StoreUnavailable(StoreError):
    """The store kept failing and the wait was aborted (the worker is stopping)."""


def transient(exc: BaseException) -> bool:
    """Whether a store failure may go away by itself: judged on the exception and its causes.

    Transient: OS-level connection and timeout errors, the HTTP client's transport errors,
    a server status of 408, 429 or 5xx, gRPC UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED.
    Everything else (a validation error, a config mismatch, a 4xx) is permanent, and so is anything
    whose chain holds a certificate that does not verify or a refused API key (401/403).
    """
    chain = _chain(exc)
    if any(_permanent(e) for e in chain):
        return False
    for cur in chain:
        if isinstance(cur, StoreUnavailable | ConnectionError | TimeoutError):
            return True
        if isinstance(cur, OSError) and not isinstance(cur, FileNotFoundError | PermissionError):
            return True
        if type(cur).__name__ in _TRANSIENT_NAMES:
            return True
        status = getattr(cur, "status_code", None)
        if isinstance(status, int) and status in _TRANSIENT_STATUS:
            return True
        code = getattr(cur, "code", None)
        if callable(code):  # grpc.RpcError
            try:
                if getattr(code(), "name", "") in _TRANSIENT_GRPC:
                    return True
            except Exception:  # noqa: BLE001, S110 - not a gRPC error after all
                pass
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not e for e in out):
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _permanent(exc: BaseException) -> bool:
    """A failure no wait cures: a certificate that does not verify, credentials refused (401/403)."""
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return True
    return getattr(exc, "status_code", None) in (401, 403)


class RetryingStore(VectorStore):
    """Retry transient failures of ``inner`` with backoff; see the module docstring."""

    def __init__(self, inner: VectorStore, *, backoff_s: float = 0.2, backoff_max_s: float = 10.0,
                 give_up_s: float = 0.0, sleep: Callable[[float], object] | None = None) -> None:
        """``give_up_s``: raise :class:`StoreUnavailable` once a call has failed this long (0: never)."""
        self.inner = inner
        self.backoff_s, self.backoff_max_s, self.give_up_s = backoff_s, backoff_max_s, give_up_s
        self._aborted = threading.Event()
        self._sleep = sleep
        self.up = True  # False while a call is failing and being retried (secstream_store_up)
        metrics.STORE_UP.set(1)

    def abort(self) -> None:
        """Stop waiting: a call retrying now, and later failing calls, raise :class:`StoreUnavailable`."""
        self._aborted.set()

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        delay, first = self.backoff_s, 0.0
        while True:
            try:
                out = fn()
            except StoreError as exc:
                if not transient(exc):
                    raise
                metrics.STORE_ERRORS.labels(op).inc()
                self.up = False
                metrics.STORE_UP.set(0)
                now = time.monotonic()
                first = first or now
                if self._aborted.is_set():
                    raise StoreUnavailable(f"store {op} failed and the worker is stopping: {exc}") from exc
                if self.give_up_s and now - first >= self.give_up_s:
                    raise StoreUnavailable(f"store {op} kept failing for {now - first:.0f}s: {exc}") from exc
                if delay == self.backoff_s:
                    log.warning("store %s failed (%s); retrying until it answers, the backlog waits in Kafka",
                                op, exc)
                if self._sleep is not None:
                    self._sleep(delay)
                elif self._aborted.wait(delay):
                    continue  # aborted while waiting: one last try, then the abort above
                delay = min(delay * 2, self.backoff_max_s)
                continue
            if first:
                log.warning("store %s answers again after %.1fs of failures", op, time.monotonic() - first)
            self.up = True
            metrics.STORE_UP.set(1)
            return out

    # ------------------------------------------------------------------ VectorStore
    def ensure(self, spec: CollectionSpec) -> None:
        self._call("ensure", lambda: self.inner.ensure(spec))

    def upsert(self, collection: str, points: Sequence[StorePoint]) -> None:
        self._call("upsert", lambda: self.inner.upsert(collection, points))

    def count(self, collection: str) -> int:
        return self._call("count", lambda: self.inner.count(collection))

    def attach(self, collection: str) -> CollectionSpec | None:
        return self._call("attach", lambda: self.inner.attach(collection))

    def search_dense(self, collection: str, vector: np.ndarray, limit: int, *, exclude_ids: Sequence[str] = (),
                     rescore: bool | None = None, oversampling: float | None = None, exact: bool = False,
                     where: StoreFilter | None = None) -> list[Hit]:
        return self._call("search", lambda: self.inner.search_dense(
            collection, vector, limit, exclude_ids=exclude_ids, rescore=rescore, oversampling=oversampling,
            exact=exact, where=where))

    def search_sparse(self, collection: str, terms: SparseTerms, limit: int, *,
                      where: StoreFilter | None = None) -> list[Hit]:
        return self._call("search", lambda: self.inner.search_sparse(collection, terms, limit, where=where))

    def search_multi(self, collection: str, rows: np.ndarray, limit: int, *, exclude_ids: Sequence[str] = (),
                     rescore: bool | None = None, oversampling: float | None = None, exact: bool = False,
                     where: StoreFilter | None = None) -> list[Hit]:
        return self._call("search", lambda: self.inner.search_multi(
            collection, rows, limit, exclude_ids=exclude_ids, rescore=rescore, oversampling=oversampling,
            exact=exact, where=where))

    def retrieve(self, collection: str, ids: Sequence[str]) -> list[Hit]:
        return self._call("retrieve", lambda: self.inner.retrieve(collection, ids))

    def retrieve_points(self, collection: str, ids: Sequence[str]) -> list[StorePoint]:
        return self._call("retrieve", lambda: self.inner.retrieve_points(collection, ids))

    def flush(self) -> None:
        self._call("flush", self.inner.flush)

    def close(self) -> None:
        self.inner.close()

    def info(self, collection: str) -> CollectionInfo:
        return self._call("info", lambda: self.inner.info(collection))

    def optimize(self, collection: str | None = None) -> bool:
        return self._call("optimize", lambda: self.inner.optimize(collection))

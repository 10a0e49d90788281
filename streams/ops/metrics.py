"""Prometheus metrics of a worker (the only module importing prometheus_client).

Names follow Prometheus conventions: counters end in ``_total``, durations are
histograms in ``_seconds``. Label values come from small fixed sets (results,
DLQ reason codes, alert kinds and severities), never from event content.
"""

from __future__ import annotations

import threading
from typing import Any
from wsgiref.simple_server import make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

EVENTS = Counter("secstream_events_total", "Events consumed, by result (ok, invalid).", ["result"],
                 registry=REGISTRY)
EVENTS_REPEATED = Counter("secstream_events_repeated_total",
                          "Events whose id was learned before (a re-delivery or a re-sent event): scored, not "
                          "learned, stored or alerted again.", registry=REGISTRY)
DLQ = Counter("secstream_dlq_total", "Messages sent to the dead-letter topic, by reason.", ["reason"],
              registry=REGISTRY)
ALERTS = Counter("secstream_alerts_total", "Alerts published as new (after dedup and rate limit), by kind and severity.", ["kind", "severity"],
                 registry=REGISTRY)
ALERTS_RAISED = Counter("secstream_alerts_raised_total",
                        "Alerts raised by the event, session and entity stages, before dedup, by kind.", ["kind"],
                        registry=REGISTRY)
ALERT_UPDATES = Counter("secstream_alert_updates_total",
                        "Updates of published alerts (same alert_id, higher count) by kind.", ["kind"],
                        registry=REGISTRY)
ALERTS_FOLDED = Counter("secstream_alerts_folded_total",
                        "Raised alerts folded into an open alert instead of published as new, by why "
                        "(dedup: same kind, entity and template; rate_limit: the entity's overflow alert; "
                        "redelivered: already counted).", ["reason"], registry=REGISTRY)
ALERTS_SUPPRESSED = Counter("secstream_alerts_suppressed_total",
                            "Raised alerts not published because an analyst verdict covers them, by kind and "
                            "reason (feedback: like a false positive).", ["kind", "reason"], registry=REGISTRY)
ALERTS_UNSTORED = Counter("secstream_alerts_unstored_total",
                          "Published alerts left out of the store's alerts collection: no evidence vector found.",
                          registry=REGISTRY)
FEEDBACK = Counter("secstream_feedback_total",
                   "Analyst verdicts read from the feedback topic, by verdict and result (applied; known: "
                   "applied before; not_found: the alert is not in this worker's store; recorded: kept, but "
                   "the alert kind has no evidence vector; invalid).", ["verdict", "result"], registry=REGISTRY)
FEEDBACK_VERDICTS = Gauge("secstream_feedback_verdicts", "Analyst verdicts held by this worker, by verdict.",
                          ["verdict"], registry=REGISTRY)
ALERT_GROUPS_OPEN = Gauge("secstream_alert_groups_open", "Open dedup groups held by this worker.",
                          registry=REGISTRY)
BATCH_SIZE = Histogram("secstream_batch_events", "Events per processed batch.",
                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000), registry=REGISTRY)
STAGE_SECONDS = Histogram("secstream_stage_seconds", "Time per batch spent in each pipeline stage.", ["stage"],
                          buckets=_LATENCY_BUCKETS, registry=REGISTRY)
ENCODE_SECONDS = Histogram("secstream_encode_seconds", "Hybrid encoding time per batch.",
                           buckets=_LATENCY_BUCKETS, registry=REGISTRY)
UPSERT_SECONDS = Histogram("secstream_upsert_seconds", "Vector store upsert time per batch.",
                           buckets=_LATENCY_BUCKETS, registry=REGISTRY)
E2E_SECONDS = Histogram("secstream_end_to_end_seconds",
                        "From the Kafka message timestamp to the batch's results sent (alerts, DLQ).",
                        buckets=_LATENCY_BUCKETS, registry=REGISTRY)
CONSUMER_LAG = Gauge("secstream_consumer_lag_messages",
                     "Messages of the events topic the group has not finished: the end offset (the broker's "
                     "answer, corrected by the fetch position) minus the committed offset (streams/worker/stall.py).",
                     ["topic", "partition"], registry=REGISTRY)
CONSUMER_STALLS = Counter("secstream_consumer_stalls_total",
                          "Stalls found by the consumer watch: a partition with a backlog whose committed offset did "
                          "not move for SECSTREAM_STALL_TIMEOUT_S, by reason (hole, no_progress, recovery).",
                          ["topic", "reason"], registry=REGISTRY)
CONSUMER_HOLES_REPAIRED = Counter("secstream_consumer_holes_repaired_total",
                                  "Holes the consumer watch repaired by seeking back: a committed offset that waited "
                                  "for an offset nobody would finish while offsets above it were processed "
                                  "(streams/worker/consumer_watch.py).", ["topic"], registry=REGISTRY)
CONSUMER_STALL_RECOVERIES = Counter("secstream_consumer_stall_recoveries_total",
                                    "Recoveries the consumer watch started after a stall (the consumer rejoins "
                                    "the group).", registry=REGISTRY)
CONSUMER_STALLED = Gauge("secstream_consumer_stalled",
                         "1 while a stall is unresolved (recovery off or given up: /readyz is false), else 0.",
                         registry=REGISTRY)
CONSUMER_FETCH_WAIT = Gauge("secstream_consumer_fetch_wait_ms",
                            "The longest a fetch waits for data now: SECSTREAM_KAFKA_FETCH_MAX_WAIT_MS while caught "
                            "up, more while the broker starves a partition (streams/kafka/fetch_wait.py).",
                            registry=REGISTRY)
CONSUMER_STARVED_FETCHES = Counter("secstream_consumer_starved_fetches_total",
                                   "Fetches the broker answered with no records for a partition whose high-water mark "
                                   "is above the fetch position (the wait grows; streams/kafka/fetch_wait.py).",
                                   registry=REGISTRY)
STORE_POINTS = Gauge("secstream_store_points", "Points in a store collection.", ["collection"], registry=REGISTRY)
STORE_UP = Gauge("secstream_store_up", "1 while the vector store answers; 0 while a call is failing and being "
                 "retried (streams/store/retry.py: the batch waits, the backlog stays in Kafka).", registry=REGISTRY)
STORE_ERRORS = Counter("secstream_store_errors_total", "Transient vector store failures retried, by operation.",
                       ["op"], registry=REGISTRY)
BATCHES_WITHHELD = Counter("secstream_batches_withheld_total",
                           "Batches that could not finish (a failure, a stop while the store was down): their "
                           "offsets are kept out of every commit, so Kafka re-delivers them.", ["agent"],
                           registry=REGISTRY)
EVENTS_UNPUBLISHED = Gauge("secstream_events_unpublished",
                           "Events learned in a batch that could not be published, waiting for their re-delivery "
                           "to publish their first outcome (streams/stages/unpublished.py).", registry=REGISTRY)
BASELINE_EXEMPLARS = Gauge("secstream_baseline_exemplars", "Exemplars in the in-memory kNN baseline.",
                           registry=REGISTRY)
BASELINE_QUARANTINED = Gauge("secstream_baseline_quarantined",
                             "Pending exemplars in the quarantine of a kNN baseline (held anomalies waiting to "
                             "recur), by baseline (events, sessions).", ["baseline"], registry=REGISTRY)
BASELINE_HELD = Counter("secstream_baseline_held_total",
                        "Events or sessions scored at or above the admission level and held out of the kNN "
                        "baseline, by baseline.", ["baseline"], registry=REGISTRY)
BASELINE_PROMOTED = Counter("secstream_baseline_promoted_total",
                            "Pending exemplars promoted into the kNN baseline after recurring persistently, "
                            "by baseline.", ["baseline"], registry=REGISTRY)
BASELINE_EXPIRED = Counter("secstream_baseline_expired_total",
                           "Exemplars dropped by the TTL (not seen for SECSTREAM_BASELINE_TTL_S), by baseline.",
                           ["baseline"], registry=REGISTRY)
TEXT_CACHE = Counter("secstream_text_cache_total", "Text embedding cache lookups, by result (hit, miss).",
                     ["result"], registry=REGISTRY)
ALERT_THRESHOLD = Gauge("secstream_alert_threshold_score",
                        "Score (0-100) at or above which an item of a kind (event, session, entity) alerts now: "
                        "the floor SECSTREAM_ALERT_THRESHOLD when fixed, the learned target-rate threshold (never "
                        "below the floor) when adaptive.", ["kind"], registry=REGISTRY)
ALERT_THRESHOLD_ESTIMATE = Gauge("secstream_alert_threshold_estimate_score",
                                 "The score SECSTREAM_ALERT_RATE of a kind's recent scored items reach, clamped to "
                                 "[floor, 100]: the adaptive threshold, tracked in fixed mode too.", ["kind"],
                                 registry=REGISTRY)

SESSIONS_OPEN = Gauge("secstream_sessions_open", "Open sessions held by this worker (its session partitions).",
                      registry=REGISTRY)
SESSIONS_CLOSED = Counter("secstream_sessions_closed_total",
                          "Sessions closed and scored, by why they closed (gap, max_events, max_duration, flush).",
                          ["reason"], registry=REGISTRY)
SESSIONS_ROLLING = Counter("secstream_sessions_rolling_scores_total",
                           "Early (rolling) scores of long open sessions.", registry=REGISTRY)
SESSION_STEPS_REPEATED = Counter("secstream_session_steps_repeated_total",
                                 "Session steps skipped as re-deliveries (their event's source offset was already "
                                 "applied to the session's key): a restart's replay, not counted twice.",
                                 registry=REGISTRY)
SESSION_SCORE = Histogram("secstream_session_score", "Scores (0-100) of closed sessions after warm-up.",
                          buckets=(10, 25, 50, 75, 80, 85, 90, 95, 99, 100), registry=REGISTRY)
ENTITIES = Gauge("secstream_entities", "Entities with a committed embedding held by this worker (its entity "
                 "partitions).", registry=REGISTRY)
ENTITY_VERSIONS = Counter("secstream_entity_versions_total",
                          "Entity versions committed (one per entity per closed window).", registry=REGISTRY)
ENTITY_WINDOWS = Counter("secstream_entity_windows_total", "Entity windows closed (per entity partition).",
                         registry=REGISTRY)
ENTITY_CLOSED = Gauge("secstream_entity_closed_until_seconds",
                      "Event time (Unix seconds) up to which an entity partition's windows are closed and "
                      "committed: how far entity state has caught up with the stream.", ["partition"],
                      registry=REGISTRY)
ENTITY_LATE = Counter("secstream_entity_late_total",
                      "Entity steps too late for their window (beyond the lateness), left out of the update.",
                      registry=REGISTRY)

for _result in ("ok", "invalid"):
    EVENTS.labels(_result)
for _reason in ("not_utf8", "not_json", "not_object", "too_large", "missing_field", "wrong_type", "invalid_value",
                "processing_error"):
    DLQ.labels(_reason)
for _reason in ("dedup", "rate_limit", "redelivered"):
    ALERTS_FOLDED.labels(_reason)
for _verdict in ("false_positive", "true_positive"):
    FEEDBACK_VERDICTS.labels(_verdict)
    for _result in ("applied", "known", "not_found", "recorded"):
        FEEDBACK.labels(_verdict, _result)
for _reason in ("gap", "max_events", "max_duration", "flush"):
    SESSIONS_CLOSED.labels(_reason)
for _base in ("events", "sessions"):
    for _metric in (BASELINE_QUARANTINED, BASELINE_HELD, BASELINE_PROMOTED, BASELINE_EXPIRED):
        _metric.labels(_base)


def serve(port: int, host: str = "127.0.0.1", health: Any = None) -> str:
    """Serve /metrics on ``host:port`` in a daemon thread (port 0 disables); with ``health``
    (:class:`streams.ops.health.Health`) also ``/healthz`` (live) and ``/readyz`` (ready). Returns the
    base URL it serves, as a person reads it ("" when disabled)."""
    if not port:
        return ""
    if health is None:
        start_http_server(port, addr=host, registry=REGISTRY)
        return served_url(host, port)
    metrics_app = make_wsgi_app(REGISTRY)
    probes = {"/healthz": health.live, "/readyz": health.ready}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        probe = probes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics_app(environ, start_response)
        ok, why = probe()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
        return [(why + "\n").encode("utf-8")]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics-http").start()
    return served_url(host, port)


def served_url(host: str, port: int) -> str:
    """``http://HOST:PORT`` of the address bound (an IPv6 address in brackets)."""
    host = host or "0.0.0.0"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def observe_fetch_wait(wait_ms: int, starved: bool) -> None:
    """After each answered fetch (the consumer's thread): the wait the next fetch gets, and a starved fetch."""
    CONSUMER_FETCH_WAIT.set(wait_ms)
    if starved:
        CONSUMER_STARVED_FETCHES.inc()


def observe_threshold(kind: str, threshold: ThresholdLike) -> None:
    """Report a score kind's threshold (see detection.threshold.AlertThreshold) as it adapts."""
    ALERT_THRESHOLD.labels(kind).set(threshold.value)
    ALERT_THRESHOLD_ESTIMATE.labels(kind).set(threshold.estimate)


def observe_outcome(outcome: "BatchOutcomeLike") -> None:
    """Count a processed batch (see streams.stages.pipeline.BatchOutcome)."""
    rejected = outcome.rejected
    EVENTS.labels("ok").inc(len(outcome.results) - len(rejected))
    if rejected:
        EVENTS.labels("invalid").inc(len(rejected))
        for r in rejected:
            DLQ.labels(r.reason).inc()
    repeated = sum(1 for r in outcome.results if getattr(r, "repeated", False))
    if repeated:
        EVENTS_REPEATED.inc(repeated)
    BATCH_SIZE.observe(len(outcome.results))
    for stage, seconds in outcome.timings.items():
        STAGE_SECONDS.labels(stage).observe(seconds)
    ENCODE_SECONDS.observe(outcome.timings.get("encode", 0.0))
    UPSERT_SECONDS.observe(outcome.timings.get("upsert", 0.0))


_baseline_seen: dict[str, tuple[int, int, int]] = {}


def observe_baseline(name: str, baseline: GatedBaselineLike) -> None:
    """Quarantine size and the held / promoted / expired counts of a kNN baseline (``events``, ``sessions``);
    its counts are per process, so the counters move by what changed since the last call."""
    now = (baseline.held, baseline.promoted, baseline.expired)
    last = _baseline_seen.get(name, (0, 0, 0))
    for counter, a, b in zip((BASELINE_HELD, BASELINE_PROMOTED, BASELINE_EXPIRED), now, last):
        if a > b:
            counter.labels(name).inc(a - b)
    _baseline_seen[name] = now
    BASELINE_QUARANTINED.labels(name).set(baseline.pending())


class GatedBaselineLike:  # typing aid only; detection.admission.GatedBaseline satisfies it
    held: int
    promoted: int
    expired: int

    def pending(self) -> int: ...


class BatchOutcomeLike:  # typing aid only; the pipeline's BatchOutcome satisfies it
    results: list
    alerts: list
    timings: dict
    rejected: list


class ThresholdLike:  # typing aid only; detection.threshold.AlertThreshold satisfies it
    value: float
    estimate: float

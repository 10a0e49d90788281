"""Build the pieces of a worker from settings: the one place settings meet pure code."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from detection.dedup import AlertDeduper
from detection.detector import NoveltyDetector
from detection.entity_drift import DriftScorer
from detection.entity_tracker import EntityTracker
from detection.feedback import FeedbackMemory
from detection.sequence import OnlineSequenceScorer, load_artifact
from detection.session_score import SessionScorer
from detection.sessions import Sessionizer
from detection.threshold import AlertThreshold
from encoders.hybrid import build_default_encoder
from streams.stages.entity_stage import EntityStage
from streams.config.payload_fields import PayloadFields
from streams.stages.pipeline import Pipeline
from streams.stages.session_stage import SessionStage
from streams.config.settings import Settings
from streams.store import VectorStore, open_store
from streams.store.retry import RetryingStore

log = logging.getLogger(__name__)


def build_store(settings: Settings, data_dir: Path | None = None, *, retry: bool = False) -> VectorStore:
    """The configured vector store: a Qdrant server by URL, else the embedded engine.

    ``retry`` (the worker): transient failures are waited out (streams/store/retry.py) instead of
    raised; a command run by hand wants the error at once."""
    root = data_dir or settings.data_dir
    if settings.qdrant_url:
        store = open_store(url=settings.qdrant_url, api_key=settings.qdrant_api_key.get_secret_value(),
                           quantization=settings.store_quantization, ca_file=settings.qdrant_ssl_cafile)
    else:
        store = open_store(engine=settings.store_engine, path=root / "qdrant",
                           quantization=settings.store_quantization)
    if not retry:
        return store
    # a store outage holds the batch (backlog in Kafka), it does not dead-letter valid events
    return RetryingStore(store, backoff_max_s=settings.store_retry_max_backoff_s, give_up_s=settings.store_give_up_s)


def build_threshold(settings: Settings) -> AlertThreshold:
    """One score kind's alert threshold as configured (``SECSTREAM_ALERT_THRESHOLD*``, ``SECSTREAM_ALERT_RATE``)."""
    return AlertThreshold(settings.alert_threshold, mode=settings.alert_threshold_mode, rate=settings.alert_rate,
                          half_life=settings.alert_threshold_half_life)


def baseline_options(settings: Settings) -> dict[str, Any]:
    """The robust-baseline settings (``SECSTREAM_BASELINE_*``) as the event and session scorers take them."""
    return {"admit_below": settings.admission_level(), "ttl_s": settings.baseline_ttl_s,
            "quarantine": settings.baseline_quarantine, "promote_count": settings.baseline_promote_count,
            "promote_span_s": settings.baseline_promote_span_s, "promote_at": settings.baseline_promote_at}


def build_pipeline(settings: Settings, store: VectorStore | None) -> Pipeline:
    """Encoder + detector + store wired with the configured parameters."""
    encoder = build_default_encoder(
        weights=settings.weights(),
        model_path=settings.model_path or None,
        cache_size=settings.text_cache_size,
        seed=settings.seed,
        categorical_artifact=settings.categorical_artifact or None,
    )
    detector = NoveltyDetector(
        encoder.dim,
        k=settings.knn_k,
        capacity=settings.exemplar_capacity,
        warmup=settings.warmup_events,
        scale=settings.novelty_scale,
        decades=settings.tail_decades,
        **baseline_options(settings),
    )
    return Pipeline(
        encoder,
        detector,
        store,
        threshold=build_threshold(settings),
        max_message_bytes=settings.max_message_bytes,
        neighbours_in_alert=settings.neighbours_in_alert,
        recent_ids=settings.recent_event_ids,
        feedback=FeedbackMemory(suppress_at=settings.feedback_suppress_at, confirm_at=settings.feedback_confirm_at),
        payload_fields=None if (fields := PayloadFields.parse(settings.payload_fields)).keeps_everything else fields,
    )


def build_sessions(settings: Settings, dim: int, *, sequence: bool | None = None) -> tuple[Sessionizer, SessionScorer]:
    """Sessionizer and session scorer with the configured parameters (``sequence``: force the
    online sequence model on or off; None: on with ``SECSTREAM_SESSION_MODEL``, else off)."""
    sessionizer = Sessionizer(gap_s=settings.session_gap_s, max_events=settings.session_max_events,
                              max_duration_s=settings.session_max_duration_s)
    seq: bool | OnlineSequenceScorer = bool(sequence)
    if settings.session_model and sequence is not False:  # a trained sequence model, fine-tuned further on the stream
        seq = OnlineSequenceScorer(load_artifact(settings.session_model).model)
    scorer = SessionScorer(dim, k=settings.session_knn_k, warmup=settings.session_warmup, sequence=seq,
                           **baseline_options(settings))
    return sessionizer, scorer


def make_sessionizer(settings: Settings) -> Sessionizer:
    """A sessionizer with the configured keys, gap and limits (one per session partition)."""
    return Sessionizer(keys=settings.session_keys.split(","), pattern=settings.session_key_regex or None,
                       gap_s=settings.session_gap_s, max_events=settings.session_max_events,
                       max_duration_s=settings.session_max_duration_s)


def build_session_stage(settings: Settings, pipeline: Pipeline, store: VectorStore | None) -> SessionStage:
    """The session stage of a worker or a replay: sessionizers + scorer + the sessions collection."""
    _, scorer = build_sessions(settings, pipeline.encoder.dim)
    return SessionStage(scorer, lambda: make_sessionizer(settings), store=store,
                        threshold=build_threshold(settings), model_version=pipeline.model_version,
                        rolling_every=settings.session_rolling_every)


def build_entity_stage(settings: Settings, pipeline: Pipeline, store: VectorStore | None) -> EntityStage | None:
    """The entity stage of a worker or a replay (``None`` when ``SECSTREAM_ENTITY_TYPES`` is empty)."""
    if not settings.entity_types:
        return None
    types = tuple(settings.entity_types.split(","))
    dim, parts = pipeline.encoder.dim, dict(pipeline.encoder.parts)

    def make_tracker() -> EntityTracker:
        return EntityTracker(dim, types=types, window_s=settings.entity_window_s,
                             lateness_s=settings.entity_lateness_s, lr=settings.entity_lr,
                             slices=settings.entity_slices, max_entities=settings.entity_max, parts=parts,
                             decades=settings.tail_decades,
                             drift=DriftScorer(alert_at=settings.entity_drift_alert_at))

    return EntityStage(make_tracker, store=store, threshold=build_threshold(settings),
                       model_version=pipeline.model_version, min_versions=settings.entity_min_versions,
                       warmup=settings.entity_warmup, decades=settings.tail_decades, join_at=settings.entity_join_at,
                       join_types=tuple(t for t in settings.entity_join_types.split(",") if t))


def stage_thresholds(pipeline: Pipeline, sessions: SessionStage | None,
                     entities: EntityStage | None) -> dict[str, AlertThreshold]:
    """The alert threshold of each score kind a worker runs, by kind (``event``, ``session``, ``entity``)."""
    out = {"event": pipeline.alert_threshold}
    if sessions is not None:
        out["session"] = sessions.alert_threshold
    if entities is not None:
        out["entity"] = entities.alert_threshold
    return out


def build_deduper(settings: Settings) -> AlertDeduper:
    """Alert dedup and rate limit as configured (``SECSTREAM_DEDUP_*``, ``SECSTREAM_ALERT_RATE_LIMIT``)."""
    return AlertDeduper(window_s=settings.dedup_window_s, max_open_s=settings.dedup_max_open_s,
                        rate_limit=settings.alert_rate_limit)


def settle_heap() -> None:
    """After start-up (model loaded): move what exists to the permanent generation and
    collect young objects less often. Full collections over the model's and caches'
    objects cost 0.4-0.6 s each at ~100k events (measured); the stream's garbage is young."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)

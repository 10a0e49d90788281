"""Persist and recover pipeline state (detector and encoder snapshots, text embedding cache,
the score kinds' alert thresholds).

Arrays go to safetensors, everything else to JSON; never pickle. Writes are
atomic (temporary file, then rename), so a crash mid-write leaves the previous
snapshot intact. A snapshot whose model version differs from the running
encoder is ignored with a warning (the vectors would not be comparable).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from detection.threshold import AlertThreshold
from streams.stages.pipeline import Pipeline

log = logging.getLogger(__name__)

#: Array of the learned event ids (:class:`detection.recent.RecentIds`) in ``detector.safetensors``.
RECENT_IDS = "recent_event_ids"
#: File of :meth:`HybridEncoder.arrays` (the text embedding cache) next to ``state.json``.
ENCODER_ARRAYS = "encoder.safetensors"
#: The alert thresholds of the score kinds (:class:`detection.threshold.AlertThreshold` snapshots, JSON).
THRESHOLDS = "thresholds.json"
#: The analyst verdicts (:class:`detection.feedback.FeedbackMemory` snapshot, JSON).
FEEDBACK = "feedback.json"


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_snapshot(directory: Path, meta_name: str, arrays_name: str, meta: dict[str, Any],
                    arrays: dict[str, Any]) -> None:
    """Arrays to safetensors, then the JSON metadata (``model_version`` inside), each written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    _atomic_write(directory / arrays_name, lambda p: save_file(contiguous, str(p)))
    _write_json(directory, meta_name, str(meta["model_version"]), meta)


def _read_snapshot(directory: Path, meta_name: str, arrays_name: str, model_version: str,
                   what: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(meta, arrays) written by :func:`_write_snapshot`; None (with a warning when unusable) if there is none,
    it cannot be read, or it was written by another model version (its vectors would not be comparable)."""
    arrays_path = directory / arrays_name
    if not arrays_path.exists():
        return None
    meta = _read_json(directory, meta_name, model_version, what)
    if meta is None:
        return None
    try:
        return meta, load_file(str(arrays_path))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s in %s: %s", what, directory, exc)
        return None


def save_state(pipeline: Pipeline, directory: Path) -> None:
    """Write the pipeline's detector and encoder state under ``directory``."""
    det = pipeline.detector.snapshot()
    meta = {"model_version": pipeline.model_version, "detector": det["meta"], "encoder": pipeline.encoder.snapshot(),
            # learned, never published: a re-delivery after a restart publishes them (streams/stages/unpublished.py)
            "unpublished": pipeline.unpublished.to_meta()}
    arrays = {**det["arrays"], RECENT_IDS: pipeline.recent.to_array()}  # the event ids those states learned
    _write_snapshot(directory, "state.json", "detector.safetensors", meta, arrays)
    enc_arrays = {k: np.ascontiguousarray(v) for k, v in pipeline.encoder.arrays().items()}
    if enc_arrays:  # the text embedding cache: a restart does not re-embed known templates
        _atomic_write(directory / ENCODER_ARRAYS, lambda p: save_file(enc_arrays, str(p)))


def load_state(pipeline: Pipeline, directory: Path) -> bool:
    """Restore state saved by `save_state`; False when there is none (or it is unusable)."""
    found = _read_snapshot(directory, "state.json", "detector.safetensors", pipeline.model_version, "state")
    if found is None:
        return False
    meta, arrays = found
    try:
        recent = arrays.pop(RECENT_IDS, None)
        pipeline.detector.restore({"meta": meta["detector"], "arrays": arrays})
        pipeline.encoder.restore(meta["encoder"])
        if recent is not None:
            pipeline.recent.load_array(recent)
        pipeline.unpublished.load_meta(meta.get("unpublished") or [])
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable state in %s: %s", directory, exc)
        return False
    cache_path = directory / ENCODER_ARRAYS
    if cache_path.exists():
        try:  # optional: without it the text cache refills at one model call per template
            loaded = pipeline.encoder.load_arrays(load_file(str(cache_path)))
            log.info("restored %d cached template embeddings", loaded)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable encoder arrays in %s: %s", cache_path, exc)
    log.info("restored state: %d exemplars, %d events seen", len(pipeline.detector.baseline),
             pipeline.detector.baseline.seen)
    return True


def _write_json(directory: Path, name: str, model_version: str, body: dict[str, Any]) -> None:
    """``body`` plus the model version as ``directory/name``, written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"model_version": model_version, **body}
    _atomic_write(directory / name, lambda p: p.write_text(json.dumps(doc), encoding="utf-8"))


def _read_json(directory: Path, name: str, model_version: str, what: str) -> dict[str, Any] | None:
    """What :func:`_write_json` wrote; None (with a warning when unusable) if there is none, it cannot be
    read, or another model version wrote it."""
    path = directory / name
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s in %s: %s", what, path, exc)
        return None
    if not isinstance(doc, dict) or doc.get("model_version") != model_version:
        log.warning("ignoring %s in %s: model version %s, running %s", what, path,
                    doc.get("model_version") if isinstance(doc, dict) else None, model_version)
        return None
    return doc


def save_feedback(memory: Any, directory: Path, model_version: str) -> None:
    """Write the analyst verdicts held (:class:`detection.feedback.FeedbackMemory`) as JSON."""
    _write_json(directory, FEEDBACK, model_version, {"feedback": memory.snapshot()})


def load_feedback(memory: Any, directory: Path, model_version: str) -> bool:
    """Restore what :func:`save_feedback` wrote; False when there is none or it is unusable (the worker
    then re-applies every verdict from the feedback topic)."""
    doc = _read_json(directory, FEEDBACK, model_version, "feedback state")
    if doc is None:
        return False
    try:
        memory.restore(doc["feedback"])
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable feedback state in %s: %s", directory, exc)
        return False
    log.info("restored %d analyst verdicts", len(memory))
    return True


def save_session_state(scorer: Any, directory: Path, model_version: str) -> None:
    """Write the session scorer's learned state (past-session baseline, calibrators, models)."""
    snap = scorer.snapshot()
    _write_snapshot(directory, "sessions.json", "sessions.safetensors",
                    {"model_version": model_version, "scorer": snap["meta"]}, snap["arrays"])


def load_session_state(scorer: Any, directory: Path, model_version: str) -> bool:
    """Restore what :func:`save_session_state` wrote; False when there is none or it is unusable."""
    found = _read_snapshot(directory, "sessions.json", "sessions.safetensors", model_version, "session state")
    if found is None:
        return False
    meta, arrays = found
    try:
        scorer.restore({"meta": meta["scorer"], "arrays": arrays})
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable session state in %s: %s", directory, exc)
        return False
    log.info("restored session scorer state: %d sessions seen", scorer.seen)
    return True


def save_thresholds(directory: Path, model_version: str, thresholds: Mapping[str, AlertThreshold]) -> None:
    """Write the score kinds' alert thresholds (``{kind: threshold}``) to ``thresholds.json``, atomically."""
    _write_json(directory, THRESHOLDS, model_version, {"kinds": {k: th.snapshot() for k, th in thresholds.items()}})


def load_thresholds(directory: Path, model_version: str, thresholds: Mapping[str, AlertThreshold]) -> int:
    """Restore what :func:`save_thresholds` wrote into ``thresholds`` (by kind); returns how many kinds.

    A file of another model version is ignored (its scores came from other calibrators), and so is
    an unreadable kind: that threshold starts its warm-up again, at the floor.
    """
    doc = _read_json(directory, THRESHOLDS, model_version, "alert thresholds")
    try:
        kinds = dict(doc["kinds"]) if doc is not None else {}
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring unreadable alert thresholds in %s: %s", directory, exc)
        return 0
    restored = 0
    for kind, th in thresholds.items():
        if kind not in kinds:
            continue
        try:
            th.restore(kinds[kind])
            restored += 1
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable %s alert threshold in %s: %s", kind, directory, exc)
    return restored

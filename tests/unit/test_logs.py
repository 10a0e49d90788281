"""Log lines (streams/ops/logs.py): JSON objects with the ids a record carries, through the real logging config."""

from __future__ import annotations

import io
import json
import logging
import logging.config

from streams.ops.logs import JsonFormatter, logging_config


def test_json_lines_carry_level_logger_message_and_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("secstream.test.logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info("alert %s suppressed", "a-1", extra={"alert_id": "a-1", "event_id": "ev-ü"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "alert a-1 suppressed" and first["level"] == "info"
    assert first["logger"] == "secstream.test.logs" and first["alert_id"] == "a-1" and first["event_id"] == "ev-ü"
    assert first["time"].endswith("Z") and "session_id" not in first
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


def test_config_selects_the_format() -> None:
    json_cfg, text_cfg = logging_config("info", "json"), logging_config("warning")
    assert json_cfg["formatters"]["secstream"]["()"] is JsonFormatter
    assert "format" in text_cfg["formatters"]["secstream"] and text_cfg["root"]["level"] == "WARNING"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logging.config.dictConfig(json_cfg)
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])

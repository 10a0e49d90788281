"""Log output: plain text for a terminal, or one JSON object per line for a log pipeline.

``SECSTREAM_LOG_FORMAT=json`` writes every record (secstream's, Faust's, aiokafka's) to stderr
as ``{"time", "level", "logger", "message"}`` plus the ids a record carries as ``extra``
(:data:`CONTEXT_FIELDS`: event, alert, session ids, topic, partition) and ``exc`` with a
traceback. Secrets never reach a log line: settings hold them as ``SecretStr`` (``**********``
when printed) and no code logs payload values other than ids and summaries.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "OwnLevels", "logging_config"]

#: secstream's own logger namespaces (their level is ``SECSTREAM_LOG_LEVEL``)
OWN = ("streams", "encoders", "detection", "bench", "secstream")

#: ``extra`` fields a record may carry, copied into its JSON line
CONTEXT_FIELDS = ("event_id", "alert_id", "session_id", "topic", "partition", "verdict")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; see the module docstring."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, Any] = {"time": f"{stamp:%Y-%m-%dT%H:%M:%S}.{stamp.microsecond // 1000:03d}Z",
                               "level": record.levelname.lower(), "logger": record.name,
                               "message": record.getMessage()}
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class OwnLevels(logging.Filter):
    """Pass secstream's records from ``own`` up, everyone else's (Faust, aiokafka) from ``others`` up.

    Faust's worker sets its root handler to its own level (WARN unless debugging) to keep its
    chatter off a terminal, which also dropped secstream's INFO records; this filter on that
    handler keeps both choices."""

    def __init__(self, own: int, others: int) -> None:
        super().__init__()
        self.own, self.others = own, others

    def filter(self, record: logging.LogRecord) -> bool:
        mine = record.name.split(".", 1)[0] in OWN
        return record.levelno >= (self.own if mine else self.others)


def logging_config(level: str, fmt: str = "text") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` of the root logger at ``level`` writing ``fmt`` (text|json) to stderr."""
    formatter = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"secstream": formatter},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                    "formatter": "secstream"}},
            "root": {"level": level.upper(), "handlers": ["stderr"]}}

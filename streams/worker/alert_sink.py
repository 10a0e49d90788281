"""What an agent hands its alerts to: the alert agent (streams/worker/alert_agent.py), seen through this
interface so that the session and entity agents do not import it."""

from __future__ import annotations

from typing import Any, Protocol


class AlertSink(Protocol):
    async def send_alerts(self, alerts: list[dict[str, Any]], vectors: list[Any], space: str = "event") -> list[Any]:
        """Route each alert (with its vector, None where there is none) to deduplication; the send futures."""
        ...

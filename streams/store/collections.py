"""The names of the collections of events and of alerts (sessions and entities: their point modules)."""

from __future__ import annotations

EVENTS = "events"  # one point per valid event (streams/stages/pipeline.py)
ALERTS = "alerts"  # one point per alert group (streams/worker/alert_agent.py)

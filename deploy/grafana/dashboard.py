"""Writes deploy/grafana/dashboards/secstream.json, the Grafana dashboard of `docker compose up`.

    python deploy/grafana/dashboard.py           # rewrite the JSON
    python deploy/grafana/dashboard.py --check   # exit 1 if the committed JSON differs

The JSON is committed (Grafana provisions it as it is); this script only keeps its panels
uniform. Metric and label names are streams/ops/metrics.py's; tests/unit/test_grafana.py checks
every expression against streams.ops.metrics.REGISTRY and that this output equals the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "secstream.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
JOB = "secstream"  # the scrape job of deploy/prometheus/prometheus.yml
SEL = f'job="{JOB}", instance=~"$instance"'
RATE = "[$__rate_interval]"
QUANTILES = (0.5, 0.95, 0.99)

Panel = dict[str, Any]


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "refId": ref, "expr": expr, "legendFormat": legend, "range": True}


def _panel(kind: str, title: str, description: str, grid: tuple[int, int, int, int], unit: str,
           targets: list[tuple[str, str]], defaults: dict[str, Any] | None = None,
           options: dict[str, Any] | None = None) -> Panel:
    x, y, w, h = grid
    if options is None:
        options = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi", "sort": "desc"}}
    return {
        "type": kind,
        "title": title,
        "description": description,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit, **(defaults or {})}, "overrides": []},
        "options": options,
        "targets": [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
    }


def _quantiles(bucket: str, by: str = "", legend: str = "") -> list[tuple[str, str]]:
    """p50/p95/p99 of a histogram over all selected workers (``by``: extra labels kept apart)."""
    group = f"le, {by}" if by else "le"
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({bucket}{{{SEL}}}{RATE})))",
             f"{legend}p{round(q * 100)}") for q in QUANTILES]


def panels() -> list[Panel]:
    stat = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    lag_per_partition = f"max by (topic, partition) (secstream_consumer_lag_messages{{{SEL}}})"
    hits = f'sum(rate(secstream_text_cache_total{{{SEL}, result="hit"}}{RATE}))'
    lookups = f'sum(rate(secstream_text_cache_total{{{SEL}, result=~"hit|miss"}}{RATE}))'
    return [
        _panel("stat", "Workers up", f'Prometheus reaches the worker\'s /metrics (up{{job="{JOB}"}}): 1 up, 0 down.',
               (0, 0, 8, 4), "none", [(f"up{{{SEL}}}", "{{instance}}")],
               defaults={"mappings": [{"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                                                     "1": {"text": "up", "color": "green"}}}]},
               options=stat),
        _panel("stat", "Events consumed", "Events read from secstream.events per second, all selected workers.",
               (8, 0, 8, 4), "cps", [(f"sum(rate(secstream_events_total{{{SEL}}}{RATE}))", "events/s")], options=stat),
        _panel("stat", "Consumer lag", "Messages of secstream.events not yet finished (end offset minus committed offset), summed over partitions.",
               (16, 0, 8, 4), "short", [(f"sum({lag_per_partition})", "lag")], options=stat),
        _panel("timeseries", "Event throughput by result",
               "Events consumed per second: ok (scored) and invalid (sent to the DLQ).",
               (0, 4, 12, 8), "cps",
               [(f"sum by (result) (rate(secstream_events_total{{{SEL}}}{RATE}))", "{{result}}")]),
        _panel("timeseries", "Consumer lag by partition",
               "Messages of each events partition the group has not finished: the broker's end offset minus the "
               "committed offset (streams/worker/stall.py; the max over workers), and their sum.",
               (12, 4, 12, 8), "short",
               [(f"sum({lag_per_partition})", "total"), (lag_per_partition, "{{topic}}/{{partition}}")]),
        _panel("timeseries", "End-to-end latency",
               "From the Kafka message timestamp to the batch's alerts and DLQ records sent: p50, p95, p99.",
               (0, 12, 12, 8), "s", _quantiles("secstream_end_to_end_seconds_bucket")),
        _panel("timeseries", "Stage latency per batch",
               "Time per batch in each pipeline stage (decode, encode, score, explain, upsert, learn): p50, p95, p99.",
               (12, 12, 12, 8), "s", _quantiles("secstream_stage_seconds_bucket", "stage", "{{stage}} ")),
        _panel("timeseries", "DLQ rate by reason",
               "Messages sent to secstream.events.dlq per second, by reason code.",
               (0, 20, 12, 8), "cps",
               [(f"sum by (reason) (rate(secstream_dlq_total{{{SEL}}}{RATE}))", "{{reason}}")]),
        _panel("timeseries", "Alerts per minute by kind and severity",
               "Alerts published as new (after dedup and rate limit) per minute.",
               (12, 20, 12, 8), "short",
               [(f"sum by (kind, severity) (rate(secstream_alerts_total{{{SEL}}}{RATE})) * 60",
                 "{{kind}} {{severity}}")]),
        _panel("timeseries", "Text cache hit rate",
               "Share of text-embedding lookups answered by the cache: hit / (hit + miss).",
               (0, 28, 8, 8), "percentunit",
               [(f"{hits} / {lookups}", "hit rate")],
               defaults={"min": 0, "max": 1}),
        _panel("timeseries", "Store upsert latency per batch",
               "Time per batch to upsert the events' vectors into Qdrant: p50, p95, p99.",
               (8, 28, 8, 8), "s", _quantiles("secstream_upsert_seconds_bucket")),
        _panel("timeseries", "Store points",
               "Points in each Qdrant collection (every worker reports the shared collection: the max).",
               (16, 28, 8, 8), "short",
               [(f"max by (collection) (secstream_store_points{{{SEL}}})", "{{collection}}")]),
    ]


def dashboard() -> dict[str, Any]:
    instance = f'label_values(up{{job="{JOB}"}}, instance)'
    return {
        "uid": "secstream",
        "title": "secstream",
        "description": "secstream workers: throughput, lag, latency, DLQ, alerts, cache and store (streams/ops/metrics.py).",
        "tags": ["secstream"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": [{
            "name": "instance",
            "label": "worker",
            "type": "query",
            "datasource": DATASOURCE,
            "query": instance,
            "definition": instance,
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
            "sort": 1,
        }]},
        "panels": [{"id": i, **p} for i, p in enumerate(panels(), start=1)],
    }


def _format(value: Any, indent: int = 0, used: int = 0, width: int = 110) -> str:
    """JSON with two-space indentation that keeps an object or list on one line where it fits
    (``used``: characters already on the line before the value)."""
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, (dict, list)) or not value or max(indent, used) + len(flat) <= width:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            key = f"{pad}{json.dumps(k)}: "
            items.append(key + _format(v, indent + 2, len(key), width))
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _format(v, indent + 2, indent + 2, width) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def render() -> str:
    return _format(dashboard()) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        same = OUT.exists() and OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'differs from dashboard.py; rerun without --check'}")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

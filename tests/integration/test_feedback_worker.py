"""Analyst feedback end to end (issue 6): a worker process on the embedded Tansu broker and the embedded
Qdrant engine, verdicts published by the real CLI (`secstream feedback`).

- false positive: after the verdict is applied, re-sending the same evidence (new event ids, same content)
  publishes no alert: the detector has learned it as normal, and what it still raises the alerts stage
  suppresses (``secstream_alerts_suppressed_total``; the suppression itself: tests/unit/test_feedback.py);
- true positive: copies of a confirmed anomaly keep alerting (each copy is raised and folded into the
  confirmed alert's group; that a confirmed pattern alerts even once the baseline has promoted it is
  tests/unit/test_feedback.py);
- every published alert is stored in the ``alerts`` collection, which is what verdicts and
  ``secstream hunt --like ALERT_ID`` resolve.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka_helpers import WorkerProc, drain

from schemas.alert import validate_alert
from streams.kafka.embedded_broker import EmbeddedBroker, create_topic
from streams.store import open_store, point_id
from streams.cli.topic_commands import produce_values

pytestmark = pytest.mark.integration

FP_MESSAGE = "backup agent vssadmin list shadows /for=C:"
TP_MESSAGE = "mimikatz sekurlsa::logonpasswords"


def normal(i: int) -> bytes:
    return json.dumps({"event_id": f"n-{i}", "time": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                       "message": f"Accepted password for u{i % 3} from 10.0.0.{i % 5} port 22",
                       "source": "sshd", "event_type": "auth", "user": f"u{i % 3}",
                       "src_ip": f"10.0.0.{i % 5}"}).encode()


def odd(tag: str, i: int, message: str, process: str) -> bytes:
    return json.dumps({"event_id": f"{tag}-{i}", "time": f"2026-01-01T01:0{i // 60 % 10}:{i % 60:02d}Z",
                       "message": message, "source": "sysmon", "event_type": "process_start", "host": "ws-7",
                       "user": "u1", "process": process}).encode()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli.main", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def alerts_on(docs: list[dict], prefix: str) -> list[dict]:
    return [d for d in docs if any(e.startswith(prefix) for e in d["evidence"]["event_ids"])]


def send(bootstrap: str, values: list[bytes]) -> None:
    assert asyncio.run(produce_values(bootstrap, "secstream.events", values)) == len(values)


def test_verdicts_suppress_false_positives_and_keep_confirmed_patterns_alerting(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        bs = broker.bootstrap
        asyncio.run(create_topic(bs, "secstream.events", partitions=1))
        # JSON log lines (streams/ops/logs.py), at info: the applied verdicts are logged with their alert ids
        worker = WorkerProc(bs, data, tmp_path / "worker.log", SECSTREAM_WARMUP_EVENTS="50",
                            SECSTREAM_LOG_FORMAT="json", SECSTREAM_LOG_LEVEL="info",
                            SECSTREAM_ENTITY_TYPES="", SECSTREAM_ENTITY_JOIN_TYPES="",
                            SECSTREAM_BATCH_SIZE="100")
        try:
            n = 400
            send(bs, [normal(i) for i in range(n)] + [odd("fp", 0, FP_MESSAGE, "vssadmin.exe"),
                                                      odd("tp", 0, TP_MESSAGE, "mimikatz.exe")])
            n += 2
            worker.wait_processed(n)
            worker.wait_alerts_settled()
            docs = [json.loads(v) for _, v in asyncio.run(drain(bs, "secstream.alerts"))]
            fp_alert, tp_alert = alerts_on(docs, "fp-0"), alerts_on(docs, "tp-0")
            assert fp_alert and tp_alert, [d["title"] for d in docs]

            for alert, verdict in ((fp_alert[0], "fp"), (tp_alert[0], "true_positive")):
                done = cli("feedback", alert["alert_id"], "--verdict", verdict, "--note", "test",
                           "--bootstrap", bs)
                assert done.returncode == 0, done.stderr
            worker.wait_metric("secstream_feedback_total", 1, labels='result="applied",verdict="false_positive"')
            worker.wait_metric("secstream_feedback_total", 1, labels='result="applied",verdict="true_positive"')

            copies = 12
            send(bs, [odd("fp", i, FP_MESSAGE, "vssadmin.exe") for i in range(1, 4)]
                 + [odd("tp", i, TP_MESSAGE, "mimikatz.exe") for i in range(1, copies + 1)])
            n += 3 + copies
            worker.wait_processed(n)
            sums = worker.wait_alerts_settled()
            # every re-sent false positive was either not raised (its evidence is normal to the detector now)
            # or raised and suppressed; the first two and every confirmed copy were raised and kept
            kept = sums["secstream_alerts_raised_total"] - sums.get("secstream_alerts_suppressed_total", 0.0)
            assert kept == 2 + copies, sums
        finally:
            code = worker.stop()
        assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
        docs = [json.loads(v) for _, v in asyncio.run(drain(bs, "secstream.alerts"))]

    for doc in docs:
        validate_alert(doc)
    lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()
             if line.startswith("{")]
    applied = [r for r in lines if r["message"].startswith("feedback applied")]
    assert {r["alert_id"] for r in applied} == {fp_alert[0]["alert_id"], tp_alert[0]["alert_id"]}, applied
    assert all({"time", "level", "logger", "message"} <= set(r) for r in lines)
    fp_ids = {d["alert_id"] for d in alerts_on(docs, "fp-")}
    assert fp_ids == {fp_alert[0]["alert_id"]}, "a re-sent false positive was published"
    assert all(d["count"] == 1 for d in alerts_on(docs, "fp-")), "a re-sent false positive was folded in"
    tp_final = [d for d in docs if d["alert_id"] == tp_alert[0]["alert_id"]][-1]
    assert tp_final["count"] == 1 + copies, (tp_final["count"], tp_final["evidence"])

    store = open_store(engine="edge", path=data / "qdrant")
    try:
        assert store.attach("alerts") is not None
        stored = store.retrieve("alerts", [point_id(fp_alert[0]["alert_id"]), point_id(tp_alert[0]["alert_id"])])
        assert {h.payload["alert_id"] for h in stored} == {fp_alert[0]["alert_id"], tp_alert[0]["alert_id"]}
        assert [h.payload["count"] for h in stored if h.payload["alert_id"] == tp_alert[0]["alert_id"]] == [
            1 + copies]  # updates re-stored
    finally:
        store.close()
    hunt = subprocess.run([sys.executable, "-m", "streams.cli.main", "hunt", "--like", tp_alert[0]["alert_id"], "--json",
                           "--limit", "3"], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "SECSTREAM_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"})
    assert hunt.returncode == 0, hunt.stderr
    hits = [json.loads(line) for line in hunt.stdout.splitlines() if line.strip()]
    assert hits and any(h.get("id", "").startswith("tp-") or "mimikatz" in json.dumps(h) for h in hits), hits

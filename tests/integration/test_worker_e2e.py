"""End to end on real components: the embedded Tansu broker over loopback, the worker
as its own process (`secstream run`), the real Qdrant edge engine on disk.

Produces the OpenSSH sample plus malformed messages and checks: schema-valid
alerts on the alerts topic, every malformed message on the DLQ with its reason,
exactly one store point per valid event, and that producing the same events
again (after a worker restart) adds no points.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from kafka_helpers import INJECTED, INJECTED_IDS, SAMPLE_YEAR, WorkerProc, drain, stored_points

from schemas.errors import InvalidEvent
from schemas.models import decode_event
from schemas.alert import validate_alert
from streams.adapters import read_records
from streams.kafka.embedded_broker import EmbeddedBroker, create_topic
from streams.cli.topic_commands import produce_values

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
OPENSSH = DATA / "loghub" / "OpenSSH_2k.log"

MALFORMED: dict[bytes, str] = {
    b"this is not json": "not_json",
    b'{"message": "no time here"}': "missing_field",
    b'{"time": "2026-01-01T00:00:00Z"}': "missing_field",
    b'{"time": "2026-01-01T00:00:00Z", "message": 42}': "wrong_type",
    b'{"time": "2026-01-01T00:00:00Z", "message": "x", "src_ip": "999.1.1.1"}': "invalid_value",
    b'{"time": "2026-01-01T00:00:00Z", "message": "x", "dst_port": 70000}': "invalid_value",
    b'["an", "array"]': "not_object",
    b"\xff\xfe\x00garbage\x80\x81": "not_utf8",
    b'{"time": "2026-01-01T00:00:00Z", "message": "' + b"A" * (10 * 1024 * 1024) + b'"}': "too_large",
}




@pytest.mark.skipif(not OPENSSH.exists(), reason=f"sample data not found at {OPENSSH} (needs ../shared/data)")
def test_worker_end_to_end(tmp_path: Path) -> None:
    valid = [r.value for r in read_records(OPENSSH, "sshd", year=SAMPLE_YEAR) if r.value is not None]
    assert len(valid) == 2000
    distinct_ids = {decode_event(v).event_id for v in valid + INJECTED}
    for raw, reason in MALFORMED.items():
        with pytest.raises(InvalidEvent) as err:
            decode_event(raw)
        assert err.value.reason == reason
    messages = valid[:1000] + list(MALFORMED) + valid[1000:] + INJECTED
    data_dir = tmp_path / "data"

    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        asyncio.run(create_topic(broker.bootstrap, "secstream.events", partitions=1))
        worker = WorkerProc(broker.bootstrap, data_dir, tmp_path / "worker.log")
        try:
            sent = asyncio.run(produce_values(broker.bootstrap, "secstream.events", messages))
            assert sent == len(messages)
            worker.wait_processed(len(messages))
            worker.wait_alerts_settled()
            for probe in ("healthz", "readyz"):  # live, and holding its partition (streams/ops/health.py)
                with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/{probe}", timeout=5) as resp:
                    assert resp.status == 200 and resp.read() == b"ok\n"
        finally:
            code = worker.stop()
        assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]

        alerts = [json.loads(v) for _, v in asyncio.run(drain(broker.bootstrap, "secstream.alerts"))]
        assert alerts, "no alerts from the OpenSSH sample"
        for alert in alerts:
            validate_alert(alert)
            assert alert["explanation"]["neighbours"], "alert without neighbours"
            assert abs(sum(alert["explanation"]["components"].values()) - 1.0) < 1e-3
        # one new alert per id; a group that grows afterwards is re-published as an update of the same id
        # (count and last seen changed: docs/detection.md, dedup), after its first publication
        new = [a for a in alerts if not a.get("update")]
        assert len({a["alert_id"] for a in new}) == len(new)
        first = {a["alert_id"]: i for i, a in reversed(list(enumerate(alerts)))}
        for i, a in enumerate(alerts):
            if a.get("update"):
                assert a["alert_id"] in first and first[a["alert_id"]] < i and not alerts[first[a["alert_id"]]].get("update")
        alerted = {a["evidence"]["event_ids"][0] for a in alerts}
        assert INJECTED_IDS <= alerted, f"injected attack events not alerted: {INJECTED_IDS - alerted}"

        dlq = [json.loads(v) for _, v in asyncio.run(drain(broker.bootstrap, "secstream.events.dlq"))]
        assert len(dlq) == len(MALFORMED)
        got = {d["raw_bytes"]: d["reason"] for d in dlq}
        for raw, reason in MALFORMED.items():
            assert got.get(len(raw)) == reason, f"{raw[:40]!r}: DLQ says {got.get(len(raw))}, want {reason}"
            assert all(d["detail"] for d in dlq)

        assert stored_points(data_dir) == len(distinct_ids)

        # the same events again, through a restarted worker: no new points
        worker = WorkerProc(broker.bootstrap, data_dir, tmp_path / "worker2.log")
        try:
            asyncio.run(produce_values(broker.bootstrap, "secstream.events", valid + INJECTED))
            worker.wait_processed(len(valid) + len(INJECTED))
        finally:
            assert worker.stop() == 0
        assert stored_points(data_dir) == len(distinct_ids)

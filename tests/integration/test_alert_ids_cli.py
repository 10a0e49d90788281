"""`secstream alerts` and `secstream feedback` on the embedded broker (issue 16): the table shows each alert's
id and count, ``--json`` is unchanged, and a verdict takes the id as shown: checked in the store where it
opens, completed from the alerts topic and marked unverified where it does not, refused when unknown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from kafka_helpers import drain

from detection.alerts import event_alert
from detection.dedup import AlertDeduper
from streams.cli.main import main
from streams.kafka.embedded_broker import EmbeddedBroker
from streams.store import CollectionSpec, EdgeStore, StorePoint, point_id

pytestmark = pytest.mark.integration


def _alert(i: int, user: str) -> dict[str, Any]:
    event = {"event_id": f"{user}-{i}", "time": f"2026-01-01T00:00:{i:02d}Z", "source": "sshd", "event_type": "auth",
             "user": user, "message": f"Failed password for {user}"}
    return event_alert(event=event, entity=("user", user), score=96.0, confidence=0.9, warmup=False,
                       components={"text": 0.5}, neighbours=[], terms=[], template="t <*>", template_id="tpl-1",
                       model_version="m1")


def _published() -> list[dict[str, Any]]:
    """What the alert stage publishes for two entities: a new alert, an update of it (count 5), another alert."""
    d = AlertDeduper()
    first = d.process([_alert(0, "alice")]).published
    update = d.process([_alert(i, "alice") for i in range(1, 5)]).published
    other = d.process([_alert(0, "bob")]).published
    return first + update + other


async def _publish(bootstrap: str, docs: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for doc in docs:  # as streams/worker/alert_agent.py: keyed by the alert id
            await producer.send_and_wait("secstream.alerts", value=json.dumps(doc).encode(),
                                         key=str(doc["alert_id"]).encode())
    finally:
        await producer.stop()


def test_alert_ids_from_the_table_to_a_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    docs = _published()
    alice, bob = docs[0]["alert_id"], docs[2]["alert_id"]
    assert docs[1]["alert_id"] == alice and docs[1]["count"] == 5
    monkeypatch.delenv("SECSTREAM_QDRANT_URL", raising=False)
    monkeypatch.setenv("SECSTREAM_DATA_DIR", str(tmp_path / "no-store"))
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        bs = broker.bootstrap
        asyncio.run(_publish(bs, docs))

        assert main(["alerts", "--bootstrap", bs]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[:5] == ["id", "time", "severity", "score", "count"]
        rows = [line.split() for line in lines[2:]]
        assert [(r[0], r[4]) for r in rows] == [(alice[:8], "1"), (alice[:8], "5"), (bob[:8], "1")]
        assert "(update)" in lines[3]
        assert main(["alerts", "--bootstrap", bs, "--full-ids"]) == 0
        assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]] == [alice, alice, bob]
        assert main(["alerts", "--bootstrap", bs, "--json"]) == 0
        assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == docs  # unchanged

        # no store to check in: the short id is completed from the alerts topic, and the verdict says unverified
        assert main(["feedback", alice[:8], "--verdict", "fp", "--bootstrap", bs]) == 0
        err = capsys.readouterr().err
        assert f"false_positive on alert {alice} queued UNVERIFIED on secstream.feedback" in err
        assert "completed from the alerts topic" in err and "no store at" in err and err.count("\n") == 1
        assert main(["feedback", "deadbeef", "--verdict", "fp", "--bootstrap", bs]) == 2
        err = capsys.readouterr().err
        assert "no alert id starts with deadbeef in the alerts topic" in err and "secstream alerts" in err

        # the store holds the alerts: a verdict on one is checked there
        store = EdgeStore(tmp_path / "data" / "qdrant")
        try:
            store.ensure(CollectionSpec(name="alerts", dense_dim=4, sparse_name=None))
            store.upsert("alerts", [StorePoint(id=point_id(d["alert_id"]), dense=np.ones(4, dtype=np.float32),
                                               payload=d) for d in (docs[1], docs[2])])
        finally:
            store.close()
        monkeypatch.setenv("SECSTREAM_DATA_DIR", str(tmp_path / "data"))
        assert main(["feedback", bob[:8], "--verdict", "tp", "--bootstrap", bs]) == 0
        assert capsys.readouterr().err.strip() == f"true_positive on alert {bob} published to secstream.feedback"
        verdicts = [json.loads(v) for _, v in asyncio.run(drain(bs, "secstream.feedback"))]
    assert [(v["alert_id"], v["verdict"]) for v in verdicts] == [(alice, "false_positive"), (bob, "true_positive")]

"""Alerts as OCSF Detection Findings (detection/ocsf.py) and the worker's alert line for them."""

from __future__ import annotations

from detection.dedup import AlertDeduper
from detection.ocsf import to_ocsf
from streams.cli.alert_lines import format_alert_line
from test_dedup import _alert


def test_new_alert_is_a_create_finding_with_its_facts() -> None:
    alert = _alert(0, score=97.4)
    f = to_ocsf(alert, product_version="0.1")
    assert (f["class_uid"], f["category_uid"], f["activity_id"], f["type_uid"]) == (2004, 2, 1, 200401)
    assert f["finding_info"]["uid"] == alert["alert_id"] == f["metadata"]["uid"]
    assert f["finding_info"]["types"] == ["event_anomaly"] and f["count"] == 1
    assert f["risk_score"] == 97 and f["severity_id"] == 3 and f["severity"] == "Medium"
    assert f["confidence_score"] == 90 and f["actor"] == {"user": {"name": alert["entity"]["id"]}}
    assert f["finding_info"]["related_events"] == [{"uid": "copy-0"}]
    assert f["evidences"][0]["data"]["event_id"] == "copy-0" and f["evidences"][0]["data"]["message"]
    assert f["unmapped"]["secstream"]["explanation"] == alert["explanation"]
    assert f["finding_info"]["first_seen_time"] == f["time"]


def test_dedup_update_is_an_update_finding_with_the_count() -> None:
    d = AlertDeduper()
    d.process([_alert(0)])
    update = d.process([_alert(i) for i in range(1, 50)]).published[0]
    f = to_ocsf(update)
    assert (f["activity_id"], f["type_uid"], f["count"]) == (2, 200402, 50)
    assert f["finding_info"]["last_seen_time"] - f["finding_info"]["first_seen_time"] == 49 * 200  # 0.2 s apart
    line = format_alert_line(f)
    assert "x50 (update)" in line and update["title"] in line
    assert line == format_alert_line(update)  # the terminal shows either format alike

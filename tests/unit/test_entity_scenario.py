"""The OpenSSH entity-drift scenario through the full replay path (bench/entity_scenario.py).

The worker's stages (``build_pipeline``, ``build_entity_stage``, ``replay_records``,
500-event batches), the encoder learning online. The issue's target: the changed user
gets an ``entity_drift`` alert within two windows of its change (window ``CHANGE_AT``
or ``CHANGE_AT + 1``); the 28 stable users and the slowly drifting user get none.

This held only once the entity stage left out the steps of events scored in the
detector's warm-up (the first batch, encoded before the encoders had learned
anything): with them, user00 scored 77 at window 14 and nothing alerted.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.entity_scenario import CHANGE_AT, CHANGED, OPENSSH, run


@pytest.fixture(scope="module")
def replayed() -> dict[str, Any]:
    if not OPENSSH.is_file():
        pytest.skip(f"needs {OPENSSH} (the shared sample data lives beside the project, not in a clone)")
    return run(OPENSSH, batch_size=500)


def test_full_path_replays_every_event_and_reports_every_group(replayed: dict[str, Any]) -> None:
    groups = replayed["groups"]
    assert set(groups) == {"changed", "slow", "stable", "host", "src_ip"}
    assert groups["changed"]["entities"] == 1 and groups["slow"]["entities"] == 1
    assert groups["stable"]["entities"] == 28
    assert replayed["entity_versions"] > 0 and replayed["drift_scores"][CHANGED]


def test_full_path_stable_and_slow_users_raise_no_drift_alert(replayed: dict[str, Any]) -> None:
    groups = replayed["groups"]
    assert groups["stable"]["alerted"] == [] and groups["slow"]["alerted"] == [], (
        groups["stable"]["alerted"], groups["slow"]["alerted"])


def test_full_path_changed_user_alerts_within_two_windows(replayed: dict[str, Any]) -> None:
    groups = replayed["groups"]
    assert [who for who, _, _ in groups["changed"]["alerted"]] == [CHANGED], replayed["drift_scores"][CHANGED]
    assert CHANGE_AT <= groups["changed"]["first_window"] <= CHANGE_AT + 1, groups["changed"]["alerted"]
    assert groups["stable"]["alerted"] == [] and groups["slow"]["alerted"] == []

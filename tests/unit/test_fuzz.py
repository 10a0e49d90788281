"""Bad input (issue 7, point 5): every malformed message of every family is rejected with a reason (a DLQ
record), none crashes the pipeline, and the valid events between them are all scored. The 100k campaign is
`secstream bench fuzz`; this is a 2,000-message slice of it through the real pipeline."""

from __future__ import annotations

from bench.fuzz import FAMILIES, campaign, run


def test_campaign_covers_every_family_and_is_reproducible() -> None:
    a, b = campaign(400, seed=3), campaign(400, seed=3)
    assert a == b
    assert {family for family, _ in a} == set(FAMILIES) | {"valid"}


def test_every_malformed_message_is_rejected_with_a_reason_and_valid_neighbours_pass() -> None:
    res = run(2_000, batch_size=250, seed=11)
    assert res["crashes"] == 0, res["families"]
    assert res["malformed"] > 1_500 and res["malformed_rejected"] == res["malformed"], res["families"]
    assert res["valid"] > 100 and res["valid_accepted"] == res["valid"], res["families"]
    for family in FAMILIES:
        reasons = res["families"][family]["reasons"]
        assert reasons and "processing_error" not in reasons, (family, reasons)

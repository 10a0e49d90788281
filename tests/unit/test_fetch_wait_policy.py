"""The fetch wait's rule (streams/kafka/fetch_wait.py): doubled while the broker starves a partition, short again
once caught up."""

from __future__ import annotations

from streams.kafka.fetch_wait import STARVED_WAIT_CAP_MS, next_wait_ms


def test_a_starved_fetch_doubles_the_wait_up_to_the_cap() -> None:
    waits = [50]
    for _ in range(8):
        waits.append(next_wait_ms(waits[-1], 50, starved=True, behind=True))
    assert waits[:6] == [50, 100, 200, 400, 800, 1600]
    assert waits[-1] == STARVED_WAIT_CAP_MS


def test_the_wait_holds_while_behind_and_drops_once_caught_up() -> None:
    assert next_wait_ms(800, 50, starved=False, behind=True) == 800  # records flow at this wait: keep it
    assert next_wait_ms(800, 50, starved=False, behind=False) == 50  # caught up: latency matters again
    assert next_wait_ms(50, 50, starved=False, behind=False) == 50


def test_a_base_above_the_cap_is_kept() -> None:
    assert next_wait_ms(5000, 5000, starved=True, behind=True) == 5000

"""Consumer lag and stall detection (streams/worker/stall.py): pure, no broker."""

from __future__ import annotations

import pytest

from streams.worker.stall import PartitionState, StallDetector, end_offset, lag


def part(committed: int | None, *, listed: int | None = 100, highwater: int | None = None,
         position: int | None = None, acked_above: int = 0, partition: int = 0) -> PartitionState:
    return PartitionState("secstream.events", partition, listed, highwater, position, committed, acked_above)


def test_end_offset_takes_the_largest_answer_so_a_short_broker_answer_is_corrected() -> None:
    # Tansu lists the last batch's base offset + 1: 91 for a batch of 10 at 90; the consumer fetched it all
    assert end_offset(part(80, listed=91, highwater=91, position=100)) == 100
    assert lag(part(80, listed=91, highwater=91, position=100)) == 20
    # paused: the last fetch's high-water mark is stale, the broker's answer is not
    assert lag(part(50, listed=300, highwater=120, position=120)) == 250
    assert end_offset(part(None, listed=None)) is None and lag(part(None, listed=None)) is None
    assert lag(part(None, listed=40)) == 40  # nothing committed yet: everything from the start is behind
    assert lag(part(120, listed=100)) == 0  # committed past a short answer: no negative lag


def test_a_partition_whose_commit_moves_never_stalls_and_an_idle_one_neither() -> None:
    d = StallDetector(timeout_s=10)
    for t in range(0, 100, 5):
        assert d.observe(t, [part(t, listed=t + 50)]) == []  # behind, but the committed offset moves
    for t in range(100, 200, 5):
        assert d.observe(t, [part(500, listed=500, partition=1)]) == []  # caught up: nothing to do


def test_a_backlog_with_a_frozen_commit_is_a_stall_after_the_timeout_and_its_kind_says_where() -> None:
    d = StallDetector(timeout_s=10)
    assert d.observe(0, [part(40, listed=100, position=40)]) == []
    assert d.observe(9.9, [part(40, listed=100, position=40)]) == []
    (stall,) = d.observe(10, [part(40, listed=100, position=40)])
    assert (stall.reason, stall.partition, stall.seconds) == ("no_progress", 0, 10)
    assert "committed 40" in stall.describe() and "lag 60" in stall.describe()

    d = StallDetector(timeout_s=10)  # fetched to the end, processed above the commit: a hole below
    d.observe(0, [part(40, listed=100, position=100, acked_above=55)])
    (stall,) = d.observe(12, [part(40, listed=100, position=100, acked_above=55)])
    assert stall.reason == "hole"
    d = StallDetector(timeout_s=10)  # fetched to the end, nothing acked above (dropped as duplicates)
    d.observe(0, [part(40, listed=100, position=100)])
    assert d.observe(12, [part(40, listed=100, position=100)])[0].reason == "hole"


def test_recovery_and_a_long_batch_are_not_stalls_but_a_recovery_that_never_moves_is() -> None:
    d = StallDetector(timeout_s=10)
    d.observe(0, [part(40)])
    for t in range(1, 60):  # a long table recovery that reads on: positions move
        assert d.observe(t, [part(40)], recovering=True, recovery_progress=(1, t)) == []
    assert d.observe(60, [part(40)]) == []  # back to streaming: the clock starts again
    for t in range(61, 120):  # a batch held by a failing store: backpressure
        assert d.observe(t, [part(40)], busy=True) == []
    assert d.observe(125, [part(40)]) == []
    assert d.observe(136, [part(40)])[0].reason == "no_progress"

    d = StallDetector(timeout_s=10)
    assert d.observe(0, [], recovering=True, recovery_progress=(3, 7)) == []
    (stall,) = d.observe(11, [], recovering=True, recovery_progress=(3, 7))
    assert stall.reason == "recovery" and "table recovery" in stall.describe()


def test_reset_gives_a_recovery_the_whole_timeout_and_revoked_partitions_are_forgotten() -> None:
    d = StallDetector(timeout_s=10)
    d.observe(0, [part(40), part(7, partition=1)])
    assert len(d.observe(10, [part(40), part(7, partition=1)])) == 2
    d.reset(10)
    assert d.observe(19, [part(40)]) == []  # partition 1 was revoked
    assert [s.partition for s in d.observe(20, [part(40)])] == [0]
    assert d.observe(21, [part(7, partition=1)]) == []  # assigned again: a fresh clock


def test_restart_gives_one_repaired_partition_the_whole_timeout() -> None:
    d = StallDetector(timeout_s=10)
    d.observe(0, [part(40), part(7, partition=1)])
    d.restart("secstream.events", 0, 8)  # the hole repair sought partition 0 back at 8 s
    assert [s.partition for s in d.observe(10, [part(40), part(7, partition=1)])] == [1]
    assert [s.partition for s in d.observe(18, [part(40), part(7, partition=1)])] == [0, 1]
    d.restart("secstream.events", 5, 18)  # not watched: nothing to restart
    assert len(d.observe(19, [part(40), part(7, partition=1)])) == 2


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        StallDetector(0)

"""Backpressure: memory stays flat and the lag grows when the worker cannot keep up.

    python -m bench.backpressure [--overload 3] [--overload-seconds 60] [--json]   (or `secstream bench backpressure`)

A short rate probe (1,000 and 2,000 events/s, 10 s each) finds the highest rate the worker sustains;
then ``--stall-seconds`` (30) at ``--overload`` times that rate with the store failing (the worker
processes nothing: the store falls behind completely), then ``--overload-seconds`` (60) at that rate
with the store back, the worker's RSS sampled every second. The worker runs with small caches and baselines (``--small-state``: they fill during the
probe), so RSS that still grows during the overload would be buffering, not state reaching its caps:
the table reports RSS at the start, middle and end of the overload and its slope over the second half.
See :mod:`bench.e2e` for the rig (embedded broker, worker process, canaries).
"""

from __future__ import annotations

import sys

from bench.e2e import main as e2e_main


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return e2e_main(["--rates", "1000,2000", "--seconds", "10", "--overload", "3", "--small-state",
                     "--stall-seconds", "30", *args])


if __name__ == "__main__":
    sys.exit(main())

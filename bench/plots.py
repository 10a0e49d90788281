"""Plots written by the benchmarks (matplotlib, headless ``Agg`` backend).

The only module that imports matplotlib; it is imported lazily by the benches
that plot, so nothing else depends on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pr_curve_png(path: Path, precision: np.ndarray, recall: np.ndarray, *, title: str,
                 operating_point: tuple[float, float] | None = None, label: str = "",
                 baseline: float | None = None) -> Path:
    """Write a precision–recall curve as PNG; ``operating_point`` = (precision, recall) at the system's threshold.

    ``baseline`` is the share of positives (the precision of a random ranking), drawn dashed.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    try:
        ax.step(np.asarray(recall), np.asarray(precision), where="post", lw=1.8, label=label or "PR curve")
        if operating_point is not None:
            p, r = operating_point
            ax.plot([r], [p], "o", ms=8, color="tab:red", label=f"system threshold: P={p:.3f} R={r:.3f}")
        if baseline is not None:
            ax.axhline(baseline, ls="--", lw=1, color="grey", label=f"random ranking ({baseline:.3f})")
        ax.set_xlim(0, 1.01)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path

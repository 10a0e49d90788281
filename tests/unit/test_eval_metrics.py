"""The evaluation's metrics (detection/ranking_metrics.py) on cases small enough to check by hand,
and the PR curve PNG (bench/plots.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from detection.ranking_metrics import pr_auc, pr_curve, prf, roc_auc


def test_roc_auc_perfect_reversed_and_ties() -> None:
    y = np.array([0, 0, 1, 1], dtype=bool)
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5  # ties count half
    # one inversion out of four positive/negative pairs
    assert roc_auc(y, np.array([0.1, 0.85, 0.8, 0.9])) == pytest.approx(0.75)


def test_pr_curve_and_average_precision_by_hand() -> None:
    y = np.array([1, 0, 1, 0], dtype=bool)
    s = np.array([0.9, 0.8, 0.7, 0.1])
    prec, rec, thr = pr_curve(y, s)
    assert list(thr) == [0.9, 0.8, 0.7, 0.1]
    assert np.allclose(prec, [1.0, 0.5, 2 / 3, 0.5]) and np.allclose(rec, [0.5, 0.5, 1.0, 1.0])
    assert pr_auc(y, s) == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))


def test_prf_at_a_threshold() -> None:
    y = np.array([1, 1, 0, 0, 1], dtype=bool)
    pred = np.array([1, 0, 1, 0, 1], dtype=bool)
    p, r, f = prf(y, pred)
    assert (p, r) == pytest.approx((2 / 3, 2 / 3)) and f == pytest.approx(2 / 3)
    assert prf(y, np.zeros(5, dtype=bool)) == (0.0, 0.0, 0.0)


def test_pr_curve_png_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench.plots import pr_curve_png

    y = np.r_[np.ones(20, dtype=bool), np.zeros(200, dtype=bool)]
    s = np.r_[np.linspace(0.5, 1.0, 20), np.linspace(0.0, 0.7, 200)]
    prec, rec, _ = pr_curve(y, s)
    out = pr_curve_png(tmp_path / "pr" / "curve.png", prec, rec, title="t", operating_point=(0.8, 0.6),
                       baseline=float(y.mean()))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 200

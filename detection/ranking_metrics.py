"""Ranking and classification metrics of scores against labels: ROC-AUC, precision-recall, F1 (pure numpy)."""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC by the rank statistic, ties averaged."""
    y = y.astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    _, inv, cnt = np.unique(s, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    ranks = (first + (cnt + 1) / 2.0)[inv]
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def pr_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and threshold at each distinct score (descending)."""
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order].astype(bool), s[order]
    tp = np.cumsum(ys)
    last = np.r_[np.flatnonzero(np.diff(ss)), ys.size - 1]  # last index of each tie group
    tp, k = tp[last], last + 1
    return tp / k, tp / max(int(y.sum()), 1), ss[last]


def pr_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision (area under the step PR curve)."""
    prec, rec, _ = pr_curve(y, s)
    return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))


def prf(y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    tp = int((y & pred).sum())
    p = tp / max(int(pred.sum()), 1)
    r = tp / max(int(y.sum()), 1)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)

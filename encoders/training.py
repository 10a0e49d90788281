"""Self-supervised training of the categorical embedding tables (pure: no I/O).

Input: sessions, each a time-ordered list of events (SecurityEvent dicts). Every
present categorical field of an event is a token ``field=value`` (value
normalized as the encoder does, :func:`encoders.categorical.normalize_value`).
All fields share one embedding space (tied input/output embeddings), row 0 of
each field being its *unknown* token. Two objectives, both with negative sampling:

* **co-occurrence** (skip-gram): tokens of the same event, and tokens of events at
  most ``window`` apart in the same session, should have a high dot product;
  ``negatives`` tokens drawn from the unigram^0.75 distribution a low one. Tokens
  that occur together end up near each other, tokens that occur in the same
  contexts too; tokens that never meet are pushed apart.
* **next event type**: a linear map of the current event's concatenated field
  embeddings predicts the embedding of the next event's ``event_type`` (against
  ``negatives`` sampled event types).

Unknown bucket: values rarer than ``min_count`` (or beyond ``vocab_cap``) are the
unknown token, and during training each token is replaced by its field's unknown
token with probability ``unk_rate``, so the unknown row is *trained* (it means "a
value we cannot vouch for"), rather than random.

Examples are aggregated (unique pairs with counts) and sampled per step with a
seeded numpy generator, so an epoch (as many sampled pairs as the data has) costs
the same however the pairs repeat; results are deterministic on CPU for a seed.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import torch

from encoders.base import Event, get_str
from encoders.categorical import CATEGORICAL_FIELDS, category_value

__all__ = [
    "TrainConfig",
    "TrainResult",
    "adjacency_relations",
    "mean_pair_cosine",
    "sessionize",
    "train_categorical",
]

#: Window of the host fallback sessions, seconds.
HOST_WINDOW_S = 30 * 60


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_categorical` (defaults fit the samples in seconds)."""

    fields: tuple[str, ...] = CATEGORICAL_FIELDS
    dim: int = 8
    epochs: int = 5
    window: int = 2
    negatives: int = 5
    unk_rate: float = 0.05
    min_count: int = 2
    vocab_cap: int = 1024
    batch_size: int = 4096
    max_steps_per_epoch: int = 400
    lr: float = 0.03
    next_weight: float = 1.0
    noise_power: float = 0.75
    seed: int = 7

    def __post_init__(self) -> None:
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise ValueError(f"fields must be non-empty and unique, got {list(self.fields)}")
        for label in ("dim", "epochs", "negatives", "min_count", "vocab_cap", "batch_size", "max_steps_per_epoch"):
            if getattr(self, label) < 1:
                raise ValueError(f"{label} must be >= 1, got {getattr(self, label)}")
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")
        if not 0.0 <= self.unk_rate < 1.0:
            raise ValueError(f"unk_rate must be in [0, 1), got {self.unk_rate}")


@dataclass(frozen=True)
class TrainResult:
    """Trained tables (row 0 = unknown; rows unit-norm) and what the training saw.

    ``initial_tables`` are the random starting tables (unit rows), kept so that a
    caller can compare before and after.
    """

    fields: tuple[str, ...]
    dim: int
    vocab: dict[str, list[str]]
    counts: dict[str, list[int]]
    tables: dict[str, np.ndarray]
    initial_tables: dict[str, np.ndarray]
    loss_curve: list[float]
    stats: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- sessions


def _epoch_s(value: Any) -> float:
    """Seconds since the epoch of an event time (RFC 3339 string, datetime, epoch ms); 0 if unreadable."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000.0
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def session_key(event: Event) -> tuple[Any, ...]:
    """The session of an event: ``session_id``; else (host, ``attributes.pid``); else host per 30 min."""
    sid = get_str(event, "session_id")
    if sid is not None:
        return ("sid", sid)
    host = get_str(event, "host") or ""
    attrs = event.get("attributes")
    pid = attrs.get("pid") if isinstance(attrs, Mapping) else None
    if pid is not None and not isinstance(pid, bool):
        return ("pid", host, str(pid))
    return ("host", host, int(_epoch_s(event.get("time")) // HOST_WINDOW_S))


def sessionize(events: Iterable[Event]) -> list[list[Event]]:
    """Group events into sessions (:func:`session_key`), each sorted by time (stable).

    Sessions come in the order of their first event.
    """
    groups: dict[tuple[Any, ...], list[tuple[float, Event]]] = defaultdict(list)
    for event in events:
        groups[session_key(event)].append((_epoch_s(event.get("time")), event))
    return [[e for _, e in sorted(items, key=lambda te: te[0])] for items in groups.values()]


# --------------------------------------------------------------------------- data


@dataclass
class _Data:
    vocab: dict[str, list[str]]
    counts: dict[str, list[int]]
    offsets: list[int]
    n_tokens: int
    unk_of: np.ndarray  # token -> its field's unknown token
    ctx: np.ndarray  # [P, 2] unique (center, context) pairs
    ctx_w: np.ndarray  # [P] counts
    nxt: np.ndarray  # [Q, F + 1] unique (event tokens or -1, next event_type token)
    nxt_w: np.ndarray
    token_freq: np.ndarray  # [T] counts after unknown replacement
    n_events: int


def _prepare(sessions: Sequence[Sequence[Event]], cfg: TrainConfig) -> _Data:
    fields = cfg.fields
    values: list[list[str | None]] = []
    sess_ids: list[int] = []
    for s, session in enumerate(sessions):
        for event in session:
            values.append([category_value(event, f) for f in fields])
            sess_ids.append(s)
    n = len(values)
    counters = [Counter(row[j] for row in values if row[j] is not None) for j in range(len(fields))]
    vocab: dict[str, list[str]] = {}
    counts: dict[str, list[int]] = {}
    offsets: list[int] = []
    index: list[dict[str, int]] = []
    total = 0
    for j, f in enumerate(fields):
        kept = sorted((kv for kv in counters[j].items() if kv[1] >= cfg.min_count), key=lambda kv: (-kv[1], kv[0]))
        kept = kept[: cfg.vocab_cap]
        vocab[f] = [v for v, _ in kept]
        rare = sum(counters[j].values()) - sum(c for _, c in kept)
        counts[f] = [rare] + [c for _, c in kept]
        offsets.append(total)
        index.append({v: total + 1 + i for i, v in enumerate(vocab[f])})
        total += 1 + len(kept)
    unk_of = np.zeros(total, dtype=np.int64)
    for j, f in enumerate(fields):
        unk_of[offsets[j] : offsets[j] + 1 + len(vocab[f])] = offsets[j]
    x = np.full((n, len(fields)), -1, dtype=np.int64)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            if v is not None:
                x[i, j] = index[j].get(v, offsets[j])
    sess = np.asarray(sess_ids, dtype=np.int64)

    a_parts: list[np.ndarray] = []
    b_parts: list[np.ndarray] = []
    for k in range(cfg.window + 1):
        i = np.arange(n) if k == 0 else np.nonzero(sess[:-k] == sess[k:])[0]
        for fa, fb in itertools.product(range(len(fields)), repeat=2):
            if k == 0 and fa >= fb:
                continue
            a, b = x[i, fa], x[i + k, fb]
            keep = (a >= 0) & (b >= 0) & (a != b)
            a_parts += [a[keep], b[keep]]  # both directions
            b_parts += [b[keep], a[keep]]
    keys = np.concatenate(a_parts) * total + np.concatenate(b_parts) if a_parts else np.zeros(0, np.int64)
    uniq, ctx_w = np.unique(keys, return_counts=True)
    ctx = np.stack([uniq // max(total, 1), uniq % max(total, 1)], axis=1)

    if "event_type" in fields and n > 1:
        et = fields.index("event_type")
        i = np.nonzero((sess[:-1] == sess[1:]) & (x[1:, et] >= 0))[0]
        rows = np.concatenate([x[i], x[i + 1, et][:, None]], axis=1)
        nxt, nxt_w = np.unique(rows, axis=0, return_counts=True) if len(rows) else (rows, np.zeros(0, np.int64))
    else:
        nxt, nxt_w = np.zeros((0, len(fields) + 1), np.int64), np.zeros(0, np.int64)

    freq = np.zeros(total, dtype=np.float64)
    for j, f in enumerate(fields):
        c = np.asarray(counts[f], dtype=np.float64)
        block = c * (1.0 - cfg.unk_rate)
        block[0] = c[0] + cfg.unk_rate * c.sum()
        freq[offsets[j] : offsets[j] + len(c)] = block
    return _Data(vocab, counts, offsets, total, unk_of, ctx, ctx_w, nxt, nxt_w, freq, n)


# --------------------------------------------------------------------------- training


def _unit_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.where(norms > 1e-12, norms, 1.0)).astype(np.float32)


def _split(emb: np.ndarray, data: _Data, fields: Sequence[str]) -> dict[str, np.ndarray]:
    return {f: _unit_rows(emb[data.offsets[j] : data.offsets[j] + 1 + len(data.vocab[f])])
            for j, f in enumerate(fields)}


def _noise(freq: np.ndarray, power: float) -> np.ndarray:
    p = np.where(freq > 0, np.power(np.maximum(freq, 1e-12), power), 0.0)
    s = p.sum()
    return p / s if s > 0 else np.full(len(p), 1.0 / max(len(p), 1))


class _Sampler:
    """Draws indices with probability proportional to ``weights`` (inverse CDF, seeded generator)."""

    def __init__(self, weights: np.ndarray, rng: np.random.Generator) -> None:
        cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
        self.cdf = cdf / cdf[-1]
        self.rng = rng

    def draw(self, size: int | tuple[int, ...]) -> np.ndarray:
        idx = np.searchsorted(self.cdf, self.rng.random(size), side="right")
        return np.minimum(idx, len(self.cdf) - 1).astype(np.int64)


def train_categorical(sessions: Sequence[Sequence[Event]], config: TrainConfig | None = None) -> TrainResult:
    """Learn the categorical tables from ``sessions`` (see the module docstring).

    Raises:
        ValueError: no event has any of the configured fields.
    """
    cfg = config or TrainConfig()
    threads = torch.get_num_threads()
    # Tiny tensors: one thread is several times faster than two here, and deterministic.
    torch.set_num_threads(1)
    try:
        return _train(sessions, cfg)
    finally:
        torch.set_num_threads(threads)


def _train(sessions: Sequence[Sequence[Event]], cfg: TrainConfig) -> TrainResult:
    started = time.perf_counter()
    data = _prepare(sessions, cfg)
    if data.n_events == 0 or all(len(v) == 0 and data.counts[f][0] == 0 for f, v in data.vocab.items()):
        raise ValueError(f"no event carries any of the fields {list(cfg.fields)}")
    n_fields, d, k_neg = len(cfg.fields), cfg.dim, cfg.negatives
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    emb = torch.nn.Parameter(torch.randn(data.n_tokens, d, generator=gen) * 0.1)
    proj = torch.nn.Parameter(torch.randn(n_fields * d, d, generator=gen) / math.sqrt(n_fields * d))
    initial = emb.detach().numpy().copy()
    n_pairs = int(data.ctx_w.sum()) + int(data.nxt_w.sum())
    steps = max(1, min(cfg.max_steps_per_epoch, math.ceil(n_pairs / cfg.batch_size)))
    opt = torch.optim.Adam([emb, proj], lr=cfg.lr)
    total_steps = cfg.epochs * steps
    # word2vec-style linear decay: the last steps average the noise out.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: max(0.02, 1.0 - t / total_steps))

    noise = _Sampler(_noise(data.token_freq, cfg.noise_power), rng)
    ctx_s = _Sampler(data.ctx_w, rng) if len(data.ctx_w) else None
    nxt_s = _Sampler(data.nxt_w, rng) if len(data.nxt_w) and cfg.next_weight > 0 else None
    et_tokens = np.zeros(1, np.int64)
    et_s = None
    if nxt_s is not None:
        j = cfg.fields.index("event_type")
        et_tokens = np.arange(data.offsets[j], data.offsets[j] + 1 + len(data.vocab["event_type"]))
        et_s = _Sampler(_noise(data.token_freq[et_tokens], cfg.noise_power), rng)
    b_ctx = cfg.batch_size
    b_nxt = max(1, round(cfg.batch_size * float(data.nxt_w.sum()) / max(float(data.ctx_w.sum()), 1.0)))
    pad = torch.zeros(1, d)
    embed, logsig = torch.nn.functional.embedding, torch.nn.functional.logsigmoid

    def unk(tokens: np.ndarray) -> torch.Tensor:
        hit = (tokens >= 0) & (rng.random(tokens.shape) < cfg.unk_rate)
        return torch.from_numpy(np.where(hit, data.unk_of[np.maximum(tokens, 0)], tokens))

    def sgns(center: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        pos = logsig((center * target).sum(-1))
        neg = logsig(-torch.bmm(negatives, center.unsqueeze(-1)).squeeze(-1)).sum(-1)
        return -(pos + neg).mean()

    curve: list[float] = []
    for _ in range(cfg.epochs):
        total = 0.0
        for _ in range(steps):
            loss = torch.zeros(())
            if ctx_s is not None:
                pick = data.ctx[ctx_s.draw(b_ctx)]
                neg = torch.from_numpy(noise.draw((b_ctx, k_neg)))
                loss = loss + sgns(embed(unk(pick[:, 0]), emb), embed(unk(pick[:, 1]), emb), embed(neg, emb))
            if nxt_s is not None and et_s is not None:
                pick = unk(data.nxt[nxt_s.draw(b_nxt)])
                inputs = torch.where(pick[:, :-1] >= 0, pick[:, :-1], data.n_tokens)
                h = embed(inputs, torch.cat([emb, pad])).reshape(len(pick), n_fields * d) @ proj
                neg = torch.from_numpy(et_tokens[et_s.draw((len(pick), k_neg))])
                loss = loss + cfg.next_weight * sgns(h, embed(pick[:, -1], emb), embed(neg, emb))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        curve.append(round(total / steps, 6))

    final = emb.detach().numpy()
    stats = {"sessions": len(sessions), "events": data.n_events, "context_pairs": int(data.ctx_w.sum()),
             "next_pairs": int(data.nxt_w.sum()), "steps_per_epoch": steps,
             "seconds": round(time.perf_counter() - started, 3)}
    return TrainResult(cfg.fields, d, data.vocab, data.counts, _split(final, data, cfg.fields),
                       _split(initial, data, cfg.fields), curve, stats)


# --------------------------------------------------------------------------- evaluation


def adjacency_relations(
    sessions: Sequence[Sequence[Event]], field_name: str, window: int = 2, min_count: int = 2, min_adjacent: int = 5
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Related and unrelated value pairs of one field, defined from the data alone.

    Related: two distinct values that are consecutive events of a session at least
    ``min_adjacent`` times. Unrelated: two values that never occur within
    ``window`` events of each other in any session. Both values must occur at least
    ``min_count`` times; pairs in between are neither.
    """
    counts: Counter[str] = Counter()
    adjacent: Counter[frozenset[str]] = Counter()
    near: set[frozenset[str]] = set()
    for session in sessions:
        vals = [category_value(e, field_name) for e in session]
        counts.update(v for v in vals if v is not None)
        for i, v in enumerate(vals):
            if v is None:
                continue
            for k in range(1, window + 1):
                w = vals[i + k] if i + k < len(vals) else None
                if w is None or w == v:
                    continue
                near.add(frozenset((v, w)))
                if k == 1:
                    adjacent[frozenset((v, w))] += 1
    common = sorted(v for v, c in counts.items() if c >= min_count)
    related, unrelated = [], []
    for a, b in itertools.combinations(common, 2):
        key = frozenset((a, b))
        if adjacent[key] >= min_adjacent:
            related.append((a, b))
        elif key not in near:
            unrelated.append((a, b))
    return related, unrelated


def mean_pair_cosine(table: np.ndarray, vocab: Sequence[str], pairs: Sequence[tuple[str, str]]) -> float:
    """Mean cosine of the rows of ``pairs`` (values of ``vocab``, row = index + 1); NaN if none."""
    row = {v: i + 1 for i, v in enumerate(vocab)}
    unit = _unit_rows(np.asarray(table, dtype=np.float64))
    cos = [float(unit[row[a]] @ unit[row[b]]) for a, b in pairs if a in row and b in row]
    return float(np.mean(cos)) if cos else float("nan")

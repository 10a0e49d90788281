"""Sequence model over session template sequences (issue #4, 3b). Pure: torch + numpy.

:class:`SequenceModel` is a small GRU (embedding → GRU → linear) trained
self-supervised on next-template prediction: the input ``START t1 … tn`` predicts
``t1 … tn END``. Its vocabulary has four reserved ids (PAD, UNK, START, END) and
at most ``max_vocab`` template ids. Slots are given at :meth:`SequenceModel.fit`
to templates seen at least ``min_count`` times (most frequent first) and kept for
good, so a refit only adds; templates that get no slot (rare, or after the
vocabulary filled up) are UNK, and the model learns how often UNK comes.

The surprise of a session (:class:`SequenceSurprise`) is, over its steps, the max
and mean −ln p of the template that came, the worst step ``(from, to, p)`` and
the DeepLog-style count of steps whose template was not in the model's ``top_g``
predictions. Sequences longer than ``max_len`` are cut (and their END step dropped).

:class:`OnlineSequenceScorer` learns from the unlabelled stream: it keeps a
bounded buffer of the latest closed sessions, fits the model once
``min_sessions`` were learned and refits (a few epochs, at most ``max_steps``
gradient steps) every ``refit_every`` sessions after that, on the sessions since
the last fit plus as many older ones drawn from the buffer (rehearsal, so a
burst of a new pattern is learned soon without forgetting the rest). Before the first fit
it is not :attr:`~OnlineSequenceScorer.ready` and :meth:`~OnlineSequenceScorer.surprise`
returns ``None``, so a session score does not use it.

Determinism: all randomness (initial weights, shuffling) comes from ``seed``
through a forked torch RNG and a numpy generator; the global torch RNG and the
thread count are left alone. State is plain data plus float32 arrays
(:meth:`SequenceModel.snapshot`); the artifact is ``sequence.safetensors`` +
``sequence.json`` with a content-hash version ``seq-v1-<hash>``, checked on load.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ARTIFACT_JSON", "ARTIFACT_TENSORS", "END", "START", "OnlineSequenceScorer", "SequenceArtifact",
           "SequenceModel", "SequenceSurprise", "load_artifact", "write_artifact"]

START, END = "^", "$"  # how the start and end of a session are named in worst steps
PAD, UNK, BOS, EOS = 0, 1, 2, 3
RESERVED = 4
ARTIFACT_TENSORS = "sequence.safetensors"
ARTIFACT_JSON = "sequence.json"
ARTIFACT_FORMAT = "secstream-sequence-v1"
_FIRST_SLOTS = 28  # template rows the layers start with; they double as the vocabulary grows
_CONFIG_KEYS = ("max_vocab", "emb_dim", "hidden", "max_len", "min_count", "top_g", "lr", "batch_size", "seed")


@dataclass(frozen=True)
class SequenceSurprise:
    """Surprise of one session under the model (natural log).

    Attributes:
        max_nll: largest per-step −ln p.
        mean_nll: mean per-step −ln p.
        worst: the step of ``max_nll``: ``(from, to, p)``, with START/END as ``^``/``$``.
        misses: steps whose template was not among the ``top_g`` most likely.
        steps: number of scored steps (templates + END unless cut).
    """

    max_nll: float
    mean_nll: float
    worst: tuple[str, str, float]
    misses: int
    steps: int


class _Net(nn.Module):
    def __init__(self, vocab: int, emb_dim: int, hidden: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, emb_dim, padding_idx=PAD)
        self.gru = nn.GRU(emb_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def grow(self, vocab: int) -> None:
        """Widen the embedding and output to ``vocab`` rows, keeping the trained rows."""
        old = self.emb.weight.shape[0]
        emb, out = nn.Embedding(vocab, self.emb.embedding_dim, padding_idx=PAD), nn.Linear(self.out.in_features, vocab)
        with torch.no_grad():
            emb.weight[:old] = self.emb.weight
            out.weight[:old] = self.out.weight
            out.bias[:old] = self.out.bias
        self.emb, self.out = emb, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.emb(x))
        return self.out(h)


def _check(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")


class SequenceModel:
    """Next-template GRU over session sequences; see the module docstring.

    Args:
        max_vocab: template slots (besides PAD/UNK/START/END), 8..65536.
        emb_dim: embedding width, 2..1024.
        hidden: GRU width, 2..1024.
        max_len: templates per sequence considered (longer ones are cut), 2..100000.
        min_count: times a template must be seen in a fit's data to get a slot, >= 1.
        top_g: a step "misses" when its template is not among the top_g predictions, 1..max_vocab.
        lr: Adam learning rate, (0, 1].
        batch_size: sequences per gradient step, 1..4096.
        seed: seeds the initial weights and the shuffling.

    Raises:
        ValueError: an argument outside its range (the message names the range).
    """

    def __init__(self, *, max_vocab: int = 1024, emb_dim: int = 32, hidden: int = 64, max_len: int = 512,
                 min_count: int = 2, top_g: int = 5, lr: float = 3e-3, batch_size: int = 64, seed: int = 7) -> None:
        _check("max_vocab", max_vocab, 8, 65536)
        _check("emb_dim", emb_dim, 2, 1024)
        _check("hidden", hidden, 2, 1024)
        _check("max_len", max_len, 2, 100_000)
        _check("min_count", min_count, 1, 1e12)
        _check("top_g", top_g, 1, max_vocab)
        _check("batch_size", batch_size, 1, 4096)
        if not (0.0 < lr <= 1.0):
            raise ValueError(f"lr must be in (0, 1], got {lr!r}")
        self.max_vocab, self.emb_dim, self.hidden = int(max_vocab), int(emb_dim), int(hidden)
        self.max_len, self.min_count, self.top_g = int(max_len), int(min_count), int(top_g)
        self.lr, self.batch_size, self.seed = float(lr), int(batch_size), int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = _Net(RESERVED + min(_FIRST_SLOTS, self.max_vocab), self.emb_dim, self.hidden)
        self.net.eval()
        self.vocab: dict[str, int] = {}  # template id → index (>= RESERVED)
        self.fits = 0
        self.loss_curve: list[float] = []
        self._np: dict[str, np.ndarray] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (plain data)."""
        return {k: getattr(self, k) for k in _CONFIG_KEYS}

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` ran at least once (or a fitted state was restored)."""
        return self.fits > 0

    def _grow_vocab(self, sequences: Sequence[Sequence[str]]) -> None:
        room = self.max_vocab - len(self.vocab)
        if room <= 0:
            return
        counts = Counter(t for s in sequences for t in s[: self.max_len] if t not in self.vocab)
        new = sorted((t for t, n in counts.items() if n >= self.min_count), key=lambda t: (-counts[t], t))
        for t in new[:room]:
            self.vocab[t] = RESERVED + len(self.vocab)
        slots = self.net.emb.weight.shape[0] - RESERVED
        if len(self.vocab) > slots:
            while slots < len(self.vocab):
                slots = min(2 * slots, self.max_vocab)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * 100_003 + slots)
                self.net.grow(RESERVED + slots)

    def _encode(self, seq: Sequence[str]) -> tuple[list[int], bool]:
        """Index list ``START t1 … tn [END]`` and whether END is included (not cut)."""
        whole = len(seq) <= self.max_len
        ids = [BOS] + [self.vocab.get(t, UNK) for t in seq[: self.max_len]]
        return (ids + [EOS], True) if whole else (ids, False)

    @staticmethod
    def _pad(rows: Sequence[list[int]]) -> torch.Tensor:
        width = max(len(r) for r in rows)
        out = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return torch.from_numpy(out)

    def _batches(self, encoded: list[list[int]], rng: np.random.Generator) -> list[list[int]]:
        """Shuffled batches of similar lengths (less padding): shuffle, sort within chunks, shuffle batches."""
        order = rng.permutation(len(encoded))
        chunk = self.batch_size * 16
        batches: list[list[int]] = []
        for c in range(0, len(order), chunk):
            part = sorted(order[c: c + chunk].tolist(), key=lambda i: len(encoded[i]))
            batches.extend(part[b: b + self.batch_size] for b in range(0, len(part), self.batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def fit(self, sequences: Sequence[Sequence[str]], epochs: int = 3, *, max_steps: int | None = None) -> list[float]:
        """Train on next-template prediction (self-supervised); returns the mean loss per epoch.

        Grows the vocabulary first (see the module docstring). ``max_steps`` bounds
        the gradient steps of this call (and so its time). Deterministic given the
        seed, the number of earlier fits and the data.

        Raises:
            ValueError: ``epochs`` < 1, ``max_steps`` < 1, or no sequences.
        """
        if epochs < 1 or (max_steps is not None and max_steps < 1):
            raise ValueError(f"epochs and max_steps must be >= 1, got {epochs}, {max_steps}")
        if not sequences:
            raise ValueError("fit needs at least one sequence")
        self._grow_vocab(sequences)
        encoded = [self._encode(s)[0] for s in sequences]
        rng = np.random.default_rng([self.seed, self.fits])
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
        curve: list[float] = []
        steps = 0
        self.net.train()
        try:
            for _ in range(epochs):
                total, n = 0.0, 0
                for batch in self._batches(encoded, rng):
                    x = self._pad([encoded[i] for i in batch])
                    logits = self.net(x[:, :-1])
                    loss = loss_fn(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
                    opt.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                    opt.step()
                    total, n, steps = total + loss.item(), n + 1, steps + 1
                    if max_steps is not None and steps >= max_steps:
                        break
                curve.append(total / max(n, 1))
                if max_steps is not None and steps >= max_steps:
                    break
        finally:
            self.net.eval()
            self._np = None
        self.fits += 1
        self.loss_curve = curve
        return curve

    def _weights(self) -> dict[str, np.ndarray]:
        """float64 copies of the weights for inference (cached until the next fit or restore)."""
        if self._np is None:
            self._np = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in self.net.state_dict().items()}
        return self._np

    def log_probs(self, ids: Sequence[int]) -> np.ndarray:
        """``[len(ids), vocab]`` log-probabilities of the next index after each prefix of ``ids``.

        The GRU forward in numpy (float64): the same function as the torch module,
        without torch's thread pool, which costs more than the work for one
        short sequence on a busy machine.
        """
        w = self._weights()
        h = np.zeros(self.hidden)
        gi = w["emb.weight"][np.asarray(ids, dtype=np.int64)] @ w["gru.weight_ih_l0"].T + w["gru.bias_ih_l0"]
        w_hh, b_hh, hid = w["gru.weight_hh_l0"].T, w["gru.bias_hh_l0"], self.hidden
        states = np.empty((len(ids), hid))
        for t in range(len(ids)):
            gh = h @ w_hh + b_hh
            r = 1.0 / (1.0 + np.exp(-(gi[t, :hid] + gh[:hid])))
            z = 1.0 / (1.0 + np.exp(-(gi[t, hid: 2 * hid] + gh[hid: 2 * hid])))
            n = np.tanh(gi[t, 2 * hid:] + r * gh[2 * hid:])
            h = (1.0 - z) * n + z * h
            states[t] = h
        logits = states @ w["out.weight"].T + w["out.bias"]
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def surprise(self, sequences: Sequence[Sequence[str]]) -> list[SequenceSurprise]:
        """Per-session surprise (see :class:`SequenceSurprise`); changes no state."""
        out: list[SequenceSurprise] = []
        for seq in sequences:
            ids, whole = self._encode(seq)
            n = len(ids) - 1
            if n <= 0:
                out.append(SequenceSurprise(0.0, 0.0, (START, END, 1.0), 0, 0))
                continue
            logp = self.log_probs(ids[:-1])
            target = np.asarray(ids[1:], dtype=np.int64)
            tgt = logp[np.arange(n), target]
            nll = -tgt
            misses = int(((logp > tgt[:, None]).sum(axis=1) >= self.top_g).sum())
            j = int(np.argmax(nll))
            names = [START, *seq[: self.max_len]] + ([END] if whole else [])
            out.append(SequenceSurprise(float(nll[j]), float(nll.mean()),
                                        (names[j], names[j + 1], float(math.exp(-nll[j]))), misses, n))
        return out

    def snapshot(self) -> dict[str, Any]:
        """``{"meta": plain data, "arrays": {name: float32 array}}`` (no pickle)."""
        arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.net.state_dict().items()}
        vocab = sorted(self.vocab, key=self.vocab.__getitem__)
        return {"meta": {"config": self.config, "vocab": vocab, "fits": self.fits,
                         "loss_curve": list(self.loss_curve)}, "arrays": arrays}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot` of a model with the same config.

        Raises:
            ValueError: another config, or arrays that do not fit.
        """
        meta = state["meta"]
        if dict(meta["config"]) != self.config:
            raise ValueError(f"sequence snapshot config {meta['config']} != {self.config}")
        vocab = [str(t) for t in meta["vocab"]]
        if len(vocab) > self.max_vocab or len(set(vocab)) != len(vocab):
            raise ValueError("sequence snapshot vocabulary is too large or has duplicates")
        arrays = state["arrays"]
        rows = int(np.shape(arrays.get("emb.weight", np.zeros((0, 0))))[0])
        if not RESERVED + len(vocab) <= rows <= RESERVED + self.max_vocab:
            raise ValueError(f"sequence snapshot has {rows} embedding rows for {len(vocab)} templates")
        if rows != self.net.emb.weight.shape[0]:
            self.net = _Net(rows, self.emb_dim, self.hidden)  # every weight is overwritten below
        own = self.net.state_dict()
        if set(arrays) != set(own) or any(tuple(np.shape(arrays[k])) != tuple(own[k].shape) for k in own):
            raise ValueError("sequence snapshot arrays do not fit the model")
        self.net.load_state_dict({k: torch.from_numpy(np.array(arrays[k], dtype=np.float32)) for k in own})
        self.net.eval()
        self._np = None
        self.vocab = {t: RESERVED + i for i, t in enumerate(vocab)}
        self.fits = int(meta["fits"])
        self.loss_curve = [float(x) for x in meta.get("loss_curve", [])]

    @classmethod
    def from_snapshot(cls, state: Mapping[str, Any]) -> SequenceModel:
        """A model built with the snapshot's config and restored from it."""
        model = cls(**dict(state["meta"]["config"]))
        model.restore(state)
        return model


# --------------------------------------------------------------------------- online use


class OnlineSequenceScorer:
    """Prequential wrapper that fits the model on the stream's own closed sessions.

    Args:
        model: the model (e.g. from :func:`load_artifact`); ``None`` builds one from ``model_args``.
        buffer: most recent sessions kept for (re)fits, >= 1.
        min_sessions: sessions learned before the first fit, >= 1 (ignored when the model is fitted).
        refit_every: sessions learned between refits; 0 = never refit (frozen model).
        first_epochs: epochs of the first fit; ``epochs``: of each refit (>= 1).
        max_steps: gradient steps per fit at most (bounds the time of one fit), >= 1.

    Raises:
        ValueError: an argument outside its range.
    """

    def __init__(self, model: SequenceModel | None = None, *, buffer: int = 4000, min_sessions: int = 500,
                 refit_every: int = 250, first_epochs: int = 5, epochs: int = 2, max_steps: int = 200,
                 **model_args: Any) -> None:
        _check("buffer", buffer, 1, 10_000_000)
        _check("min_sessions", min_sessions, 1, 10_000_000)
        _check("refit_every", refit_every, 0, 10_000_000)
        _check("first_epochs", first_epochs, 1, 1000)
        _check("epochs", epochs, 1, 1000)
        _check("max_steps", max_steps, 1, 10_000_000)
        self.model = model if model is not None else SequenceModel(**model_args)
        self.buffer: deque[list[str]] = deque(maxlen=int(buffer))
        self.min_sessions, self.refit_every = int(min_sessions), int(refit_every)
        self.first_epochs, self.epochs, self.max_steps = int(first_epochs), int(epochs), int(max_steps)
        self.learned = 0
        self.since_fit = 0

    @property
    def ready(self) -> bool:
        """Whether the model has been fitted (before that, :meth:`surprise` is ``None``)."""
        return self.model.fitted

    def surprise(self, sequence: Sequence[str]) -> SequenceSurprise | None:
        """The session's surprise, or ``None`` when not :attr:`ready`. No state change."""
        return self.model.surprise([sequence])[0] if self.ready else None

    def learn(self, sequence: Sequence[str]) -> bool:
        """Buffer a scored session; fit when due. Returns whether a fit ran."""
        self.buffer.append(list(sequence[: self.model.max_len]))
        self.learned += 1
        self.since_fit += 1
        if not self.ready:
            due = self.learned >= self.min_sessions
        else:
            due = self.refit_every > 0 and self.since_fit >= self.refit_every
        if not due:
            return False
        if not self.ready:
            data, epochs = list(self.buffer), self.first_epochs
        else:  # the sessions since the last fit plus as many older ones from the buffer (rehearsal)
            items = list(self.buffer)
            cut = max(len(items) - self.since_fit, 0)
            recent, older = items[cut:], items[:cut]
            rng = np.random.default_rng([self.model.seed, self.learned])
            pick = rng.choice(len(older), size=min(len(older), len(recent)), replace=False) if older else []
            data, epochs = recent + [older[i] for i in sorted(pick)], self.epochs
        self.model.fit(data, epochs, max_steps=self.max_steps)
        self.since_fit = 0
        return True

    def snapshot(self) -> dict[str, Any]:
        """``{"meta": plain data, "arrays": float32 arrays}``: the model plus buffer and counters."""
        snap = self.model.snapshot()
        return {"meta": {"model": snap["meta"], "buffer": [list(s) for s in self.buffer], "learned": self.learned,
                         "since_fit": self.since_fit}, "arrays": snap["arrays"]}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot` (the model's config must match)."""
        meta = state["meta"]
        self.model.restore({"meta": meta["model"], "arrays": state["arrays"]})
        self.buffer = deque(([str(t) for t in s] for s in meta["buffer"]), maxlen=self.buffer.maxlen)
        self.learned, self.since_fit = int(meta["learned"]), int(meta["since_fit"])


# --------------------------------------------------------------------------- artifact


@dataclass
class SequenceArtifact:
    """A trained sequence model as read from (or written to) its directory."""

    version: str
    model: SequenceModel
    metadata: dict[str, Any] = field(default_factory=dict)


def artifact_version(config: Mapping[str, Any], vocab: Iterable[str], arrays: Mapping[str, np.ndarray]) -> str:
    """``seq-v1-`` + 16 hex of sha256 over config, vocabulary and the arrays (sorted by name)."""
    h = hashlib.sha256()
    h.update(json.dumps({"config": dict(config), "vocab": list(vocab)}, sort_keys=True).encode("utf-8"))
    for name in sorted(arrays):
        h.update(name.encode("utf-8"))
        h.update(np.ascontiguousarray(arrays[name], dtype="<f4").tobytes())
    return "seq-v1-" + h.hexdigest()[:16]


def write_artifact(directory: str | Path, model: SequenceModel,
                   metadata: Mapping[str, Any] | None = None) -> SequenceArtifact:
    """Write ``sequence.safetensors`` + ``sequence.json`` into ``directory`` (created).

    Raises:
        ValueError: the model was never fitted.
    """
    from safetensors.numpy import save_file

    if not model.fitted:
        raise ValueError("the sequence model was never fitted; nothing to write")
    snap = model.snapshot()
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in snap["arrays"].items()}
    version = artifact_version(snap["meta"]["config"], snap["meta"]["vocab"], arrays)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(out / ARTIFACT_TENSORS), metadata={"format": ARTIFACT_FORMAT, "version": version})
    meta = {k: v for k, v in dict(metadata or {}).items() if k not in ("format", "version", "model")}
    doc = {"format": ARTIFACT_FORMAT, "version": version, "model": snap["meta"], **meta}
    (out / ARTIFACT_JSON).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return SequenceArtifact(version, model, meta)


def load_artifact(directory: str | Path) -> SequenceArtifact:
    """Read an artifact written by :func:`write_artifact` (directory or either file).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: not a sequence artifact, or its content does not match its version.
    """
    from safetensors.numpy import load_file

    p = Path(directory)
    d = p.parent if p.name in (ARTIFACT_JSON, ARTIFACT_TENSORS) else p
    doc = json.loads((d / ARTIFACT_JSON).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{d / ARTIFACT_JSON} is not a {ARTIFACT_FORMAT} artifact")
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in load_file(str(d / ARTIFACT_TENSORS)).items()}
    meta = doc["model"]
    version = artifact_version(meta["config"], meta["vocab"], arrays)
    if version != doc.get("version"):
        raise ValueError(f"artifact content is {version}, its metadata says {doc.get('version')!r}")
    model = SequenceModel.from_snapshot({"meta": meta, "arrays": arrays})
    extra = {k: v for k, v in doc.items() if k not in ("format", "version", "model")}
    return SequenceArtifact(version, model, extra)

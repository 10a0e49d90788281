"""Sparse component: interpretable term weights for hybrid search and alert text.

Terms are the WordPiece ids of the raw message (the model's own fast
tokenizer, no special tokens, no pure-punctuation pieces) plus one
``field=value`` term per structured field, hashed to ids at or above the
vocabulary size. Weights are BM25-style saturated term frequencies
``tf * (k1 + 1) / (tf + k1)``, so a field term (tf 1) weighs exactly 1.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Iterable
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from encoders.base import Event, Events, get_str, stable_hash, str_value

__all__ = ["SPARSE_FIELDS", "SparseEncoder", "SparseVector", "sparse_dot"]

#: (sorted unique indices, weights)
SparseVector = tuple[list[int], list[float]]

SPARSE_FIELDS: tuple[str, ...] = (
    "source",
    "event_type",
    "severity",
    "outcome",
    "host",
    "user",
    "process",
    "src_ip",
    "dst_ip",
    "dst_port",
    "protocol",
)
_SPECIAL = ("[CLS]", "[SEP]", "[PAD]", "[MASK]")
# value types for which equal tuples of field values give equal field terms
_DEDUP_TYPES = frozenset({str, int, type(None)})


class SparseEncoder:
    """WordPiece + ``field=value`` sparse vectors.

    Args:
        tokenizer_path: a ``tokenizer.json`` file or a model directory holding one.
        k1: term-frequency saturation.
        hash_space: field terms map to ``vocab_size + blake2b(term) % hash_space``.
        max_chars: the message is cut to this many characters before tokenizing.
        describe_size: field terms remembered for :meth:`describe` (LRU).
        word_cache_size: distinct digit-free words whose WordPiece ids are
            cached (the cache is cleared when full).
    """

    version = "v1"
    #: characters per tokenizer call when tokenizing new words
    _chunk_chars = 1_000_000

    def __init__(
        self,
        tokenizer_path: str,
        k1: float = 1.2,
        hash_space: int = 2**22,
        max_chars: int = 8192,
        describe_size: int = 100_000,
        word_cache_size: int = 200_000,
    ) -> None:
        from tokenizers import Tokenizer

        path = Path(tokenizer_path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise ValueError(f"tokenizer_path {tokenizer_path!r}: no tokenizer.json there")
        if not k1 > 0 or hash_space < 1 or max_chars < 1 or describe_size < 1:
            raise ValueError("k1 must be > 0; hash_space, max_chars and describe_size >= 1")
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.k1 = float(k1)
        self.hash_space = hash_space
        self.max_chars = max_chars
        self.describe_size = describe_size
        vocab = self.tokenizer.get_vocab()
        self.vocab_size = self.tokenizer.get_vocab_size()
        self._drop = frozenset(i for token, i in vocab.items() if token in _SPECIAL or _is_punct(token))
        self.word_cache_size = word_cache_size
        self._saturation = [tf * (self.k1 + 1.0) / (tf + self.k1) for tf in range(64)]
        self._words: dict[str, tuple[int, ...]] = {}
        self._runs: dict[str, tuple[int, ...]] = {}
        self._terms: OrderedDict[int, str] = OrderedDict()
        self._lock = threading.Lock()
        self._field_index = lru_cache(maxsize=65_536)(self._hash_term)

    def _hash_term(self, term: str) -> int:
        return self.vocab_size + stable_hash(term) % self.hash_space

    def field_term(self, field: str, value: str) -> str:
        """The text of a field term, e.g. ``user=root`` (value lower-cased)."""
        return f"{field}={value.lower()}"

    def encode(self, events: Events) -> list[SparseVector]:
        """One sparse vector per event: sorted unique indices and their weights."""
        n = len(events)
        if n == 0:
            return []
        top = self.vocab_size + self.hash_space  # every index is below this
        if n * top >= 2**62:  # pragma: no cover - absurd hash_space; keys would overflow
            return self._encode_slow(events)
        max_chars = self.max_chars
        # one flat list of words and a count per event: no list per event
        # outlives this loop (fewer objects for the garbage collector to track)
        flat: list[str] = []
        extend = flat.extend
        word_counts = np.empty(n, dtype=np.int64)
        for i, event in enumerate(events):
            words = _words(_message(event)[:max_chars])
            extend(words)
            word_counts[i] = len(words)
        pieces = self._word_pieces(dict.fromkeys(flat))
        piece_lists = list(map(pieces.__getitem__, flat))
        # ids of the message terms and the event each belongs to, in numpy
        ids = np.fromiter(chain.from_iterable(piece_lists), dtype=np.int64)
        ends = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, piece_lists), dtype=np.int64, count=len(flat)), out=ends[1:])
        word_ends = np.cumsum(word_counts)
        per_event = np.diff(ends[word_ends], prepend=0)
        keys = [np.repeat(np.arange(n, dtype=np.int64) * top, per_event) + ids]
        # field=value terms: worked out once per distinct combination of field values
        rows = [tuple(map(event.get, SPARSE_FIELDS)) for event in events]
        combos: Iterable[tuple[Any, ...]] = rows
        if set(map(type, chain.from_iterable(rows))) <= _DEDUP_TYPES:
            combos = dict.fromkeys(rows)  # == cannot merge values that print differently
        seen_terms: dict[int, str] = {}
        field_index: dict[tuple[str, str], int] = {}
        terms_of: dict[tuple[Any, ...], tuple[int, ...]] = {}
        field_lists: list[tuple[int, ...]] = []
        for combo in combos:
            found: list[int] = []
            for field, raw in zip(SPARSE_FIELDS, combo):
                value = str_value(raw)
                if value is None:
                    continue
                index = field_index.get((field, value))
                if index is None:
                    term = self.field_term(field, value)
                    index = field_index[(field, value)] = self._field_index(term)
                    seen_terms[index] = term
                found.append(index)
            if combos is rows:
                field_lists.append(tuple(found))
            else:
                terms_of[combo] = tuple(found)
        if combos is not rows:
            field_lists = list(map(terms_of.__getitem__, rows))
        del rows
        field_ids = np.fromiter(chain.from_iterable(field_lists), dtype=np.int64)
        field_counts = np.fromiter(map(len, field_lists), dtype=np.int64, count=n)
        keys.append(np.repeat(np.arange(n, dtype=np.int64) * top, field_counts) + field_ids)
        uniq, counts = np.unique(np.concatenate(keys), return_counts=True)
        event_of = uniq // top
        bounds = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(event_of, minlength=n), out=bounds[1:])
        k1 = self.k1
        weights = (counts * (k1 + 1.0) / (counts + k1)).tolist()
        indices = (uniq - event_of * top).tolist()
        b = bounds.tolist()
        out = [(indices[b[i] : b[i + 1]], weights[b[i] : b[i + 1]]) for i in range(n)]
        self._remember(seen_terms)
        return out

    def _encode_slow(self, events: Events) -> list[SparseVector]:
        """Reference implementation (one Counter per event)."""
        words_per_event = [_words(_message(event)[: self.max_chars]) for event in events]
        pieces = self._word_pieces(dict.fromkeys(chain.from_iterable(words_per_event)))
        k1 = self.k1
        sat = self._saturation
        seen_terms: dict[int, str] = {}
        field_index: dict[tuple[str, str], int] = {}
        out: list[SparseVector] = []
        for event, words in zip(events, words_per_event):
            counts = Counter(chain.from_iterable(map(pieces.__getitem__, words)))
            for field in SPARSE_FIELDS:
                value = get_str(event, field)
                if value is None:
                    continue
                index = field_index.get((field, value))
                if index is None:
                    term = self.field_term(field, value)
                    index = field_index[(field, value)] = self._field_index(term)
                    seen_terms[index] = term
                counts[index] += 1
            indices = sorted(counts)
            tfs = map(counts.__getitem__, indices)
            out.append((indices, [sat[c] if c < 64 else c * (k1 + 1.0) / (c + k1) for c in tfs]))
        self._remember(seen_terms)
        return out

    def _word_pieces(self, distinct_words: Iterable[str]) -> dict[str, tuple[int, ...]]:
        """WordPiece ids (punctuation and specials dropped) of every distinct word.

        BERT pre-tokenization splits on whitespace before anything else, so
        tokenizing word by word gives the ids of the whole line; log lines
        repeat their words, so a bounded word cache skips most of the work.
        """
        cache = self._words
        found, missing = _lookup(cache, distinct_words, self.word_cache_size)
        if missing:
            slow: list[str] = []
            split: list[tuple[str, list[str]]] = []
            for word in missing:
                if _DIGIT.search(word) is not None and word.isascii() and word.isprintable():
                    split.append((word, _ALNUM_RUN.findall(word)))
                else:
                    slow.append(word)
            for word, ids in zip(slow, self._tokenize_words(slow)):
                found[word] = ids
                cache[word] = ids
            if split:
                run_ids = self._run_pieces([r for _, runs in split for r in runs])
                for word, runs in split:
                    found[word] = tuple(chain.from_iterable(map(run_ids.__getitem__, runs)))
        return found

    def _run_pieces(self, runs: list[str]) -> dict[str, tuple[int, ...]]:
        """Ids of ASCII alphanumeric runs, through a bounded run cache.

        Words with digits (addresses, ports, ids) rarely repeat whole, but the
        BERT pre-tokenizer splits them at every ASCII punctuation character
        (whose pieces are dropped anyway), and their runs (octets, ports,
        ``blk``) repeat: tokenizing run by run gives the ids of the word.
        """
        cache = self._runs
        out, todo = _lookup(cache, runs, self.word_cache_size)
        if todo:
            for run, ids in zip(todo, self._tokenize_words(todo)):
                out[run] = cache[run] = ids
        return out

    def _tokenize_words(self, words: list[str]) -> list[tuple[int, ...]]:
        """Ids of each whitespace-free word, from one tokenizer call per chunk.

        The words are joined by spaces and tokenized once; each token is sent
        back to its word by its character offset (one call per word would cost
        the tokenizer's per-item overhead, the bulk of the time).
        """
        drop = self._drop
        out: list[list[int]] = [[] for _ in words]
        chunk: list[str] = []
        first = 0
        size = 0
        for k, word in enumerate(words + [""]):
            if word and size + len(word) < self._chunk_chars:
                chunk.append(word)
                size += len(word) + 1
                continue
            if chunk:
                starts: list[int] = []
                pos = 0
                for w in chunk:
                    starts.append(pos)
                    pos += len(w) + 1
                encoding = self.tokenizer.encode(" ".join(chunk), add_special_tokens=False)
                for token, (start, _end) in zip(encoding.ids, encoding.offsets):
                    if token not in drop:
                        out[first + bisect_right(starts, start) - 1].append(token)
            chunk, first, size = ([word], k, len(word) + 1) if word else ([], k, 0)
        return [tuple(ids) for ids in out]

    def _remember(self, seen: dict[int, str]) -> None:
        with self._lock:
            terms = self._terms
            for index, term in seen.items():
                if index in terms:
                    terms.move_to_end(index)
                else:
                    terms[index] = term
            while len(terms) > self.describe_size:
                terms.popitem(last=False)

    def describe(self, index: int) -> str:
        """Text of a term index: the WordPiece token, or the ``field=value`` seen
        recently (``<term:N>`` once it has left the LRU)."""
        if 0 <= index < self.vocab_size:
            token = self.tokenizer.id_to_token(index)
            return token if token is not None else f"<term:{index}>"
        with self._lock:
            return self._terms.get(index, f"<term:{index}>")

    def top_terms(self, vector: SparseVector, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` heaviest terms of a vector as ``(text, weight)``, heaviest first."""
        indices, values = vector
        order = sorted(range(len(indices)), key=lambda j: (-values[j], indices[j]))[:k]
        return [(self.describe(indices[j]), values[j]) for j in order]


# Control characters that str.split() treats as whitespace but BERT's
# normalizer deletes ("x\x1cy" is one word "xy" to the tokenizer).
_SPLIT_ONLY_WS = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
_DIGIT = re.compile(r"\d")
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")


def _lookup(cache: dict[str, tuple[int, ...]], keys: Iterable[str],
            size: int) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """Cached ids of each distinct key (``()`` for a miss) and the misses in first-seen
    order; the bounded cache is cleared when the misses would not fit."""
    found: dict[str, tuple[int, ...]] = {}
    missing: list[str] = []
    for key in keys:
        if key in found:
            continue
        hit = cache.get(key)
        if hit is None:
            found[key] = ()
            missing.append(key)
        else:
            found[key] = hit
    if missing and len(cache) + len(missing) > size:
        cache.clear()
    return found, missing


def _words(text: str) -> list[str]:
    if not text.isascii() or not text.isprintable():
        text = _SPLIT_ONLY_WS.sub("", text)
    return text.split()


def _is_punct(token: str) -> bool:
    body = token[2:] if token.startswith("##") else token
    return bool(body) and not any(ch.isalnum() for ch in body)


def _message(event: Event) -> str:
    value = event.get("message")
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def sparse_dot(a: SparseVector, b: SparseVector) -> float:
    """Dot product of two sparse vectors (indices sorted)."""
    weights = dict(zip(*b))
    return float(sum(v * weights.get(i, 0.0) for i, v in zip(*a)))


"""Streaming Drain-style template mining over regex-masked log lines.

:class:`TemplateMiner` is a bounded online Drain (He et al., 2017): a line is
split on whitespace, routed by its token count and first ``depth`` tokens to a
leaf, and joins the leaf's most similar cluster when at least ``sim_threshold``
of its tokens equal the cluster template's; positions that differ become
``<*>``. A cluster's id is fixed at creation (:func:`encoders.masking.template_id`
of its first line), so ids do not change when a token turns into ``<*>``.

Bounds: at most ``max_clusters`` clusters (least recently used evicted), at
most ``max_leaf_clusters`` per leaf (a leaf is scanned linearly, so this bounds
the cost of a miss), an LRU cache of ``cache_size`` exact lines → cluster id in
front of the tree (a repeated line costs one dict lookup), and lines cut to
``max_chars``. Empty tree nodes are pruned on eviction. ``match`` is read-only:
it gives the template a line *would* have after ``add``, so encoders can stay
pure in ``encode`` and learn in ``update``. :meth:`snapshot`/:meth:`restore` use plain JSON data.
"""

from __future__ import annotations

import hashlib
import operator
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from encoders.masking import mask_words, template_id

__all__ = ["WILDCARD", "Cluster", "TemplateBatch", "TemplateMiner", "TemplateStage", "meaningful"]

#: The token that replaces a position that varies within a cluster.
WILDCARD = "<*>"
_DIGITS = frozenset("0123456789")
_KEY_CHARS = 256  # cache keys longer than this are stored as a digest


@dataclass
class Cluster:
    """One template: its stable id, current tokens, tree path and line count."""

    cid: str
    tokens: list[str]
    path: tuple[str, ...]
    size: int = 1
    wild: int = 0
    template: str = ""
    #: the tree leaf holding the cluster (set by the miner; not part of equality)
    leaf: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.set_tokens(self.tokens)

    def set_tokens(self, tokens: list[str]) -> None:
        """Replace the tokens; keeps :attr:`template` (tokens joined by a space) and :attr:`wild` in step."""
        self.tokens = tokens
        self.template = " ".join(tokens)
        self.wild = tokens.count(WILDCARD)


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    clusters: OrderedDict[str, Cluster] = field(default_factory=OrderedDict)


def _route_key(token: str) -> str:
    return WILDCARD if not _DIGITS.isdisjoint(token) else token


def _cache_key(text: str) -> str:
    if len(text) <= _KEY_CHARS:
        return text
    return "#" + hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def merge_tokens(template: Sequence[str], tokens: Sequence[str]) -> list[str]:
    """``template`` with every position where ``tokens`` differs set to ``<*>``."""
    return [a if a == b else WILDCARD for a, b in zip(template, tokens)]


class TemplateMiner:
    """Bounded online Drain over masked lines (see the module docstring).

    Args:
        sim_threshold: least share of equal tokens to join a cluster (0 < x <= 1).
        depth: number of leading tokens that route a line in the tree (>= 0).
        max_children: most children of a tree node; beyond, lines go to ``<*>``.
        max_clusters: most clusters kept (LRU eviction).
        max_leaf_clusters: most clusters per leaf (LRU eviction within the leaf).
        cache_size: most exact lines remembered (LRU).
        max_chars: lines are cut to this many characters before mining.
    """

    def __init__(
        self,
        sim_threshold: float = 0.5,
        depth: int = 2,
        max_children: int = 100,
        max_clusters: int = 20_000,
        max_leaf_clusters: int = 128,
        cache_size: int = 50_000,
        max_chars: int = 2048,
    ) -> None:
        if not 0 < sim_threshold <= 1:
            raise ValueError(f"sim_threshold must be in (0, 1], got {sim_threshold}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        for label, value in (("max_children", max_children), ("max_clusters", max_clusters),
                             ("max_leaf_clusters", max_leaf_clusters), ("cache_size", cache_size)):
            if value < 2:
                raise ValueError(f"{label} must be >= 2, got {value}")
        if max_chars < 16:
            raise ValueError(f"max_chars must be >= 16, got {max_chars}")
        self.sim_threshold = float(sim_threshold)
        self.depth = depth
        self.max_children = max_children
        self.max_clusters = max_clusters
        self.max_leaf_clusters = max_leaf_clusters
        self.cache_size = cache_size
        self.max_chars = max_chars
        self._root = _Node()
        self._clusters: OrderedDict[str, Cluster] = OrderedDict()
        self._cache: OrderedDict[str, str] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._clusters)

    @property
    def cache_len(self) -> int:
        """Number of exact lines in the front cache."""
        return len(self._cache)

    def cluster(self, cid: str) -> Cluster | None:
        """The cluster with id ``cid`` (``None`` once evicted)."""
        return self._clusters.get(cid)

    def clusters(self) -> list[Cluster]:
        """All clusters, least recently used first."""
        return list(self._clusters.values())

    def lookup(self, text: str) -> Cluster | None:
        """Cluster of a line seen before (front cache only, read-only)."""
        cid = self._cache.get(_cache_key(text[: self.max_chars]))
        return None if cid is None else self._clusters.get(cid)

    def match(self, text: str) -> tuple[str, str] | None:
        """``(cluster id, template)`` the line would get from :meth:`add`; ``None``
        when it would found a new cluster. Read-only."""
        text = text[: self.max_chars]
        cid = self._cache.get(_cache_key(text))
        if cid is not None:
            cluster = self._clusters.get(cid)
            if cluster is not None:
                return cluster.cid, cluster.template
        tokens = text.split()
        if not tokens:
            return None
        cluster = self._search(tokens)
        if cluster is None:
            return None
        merged = merge_tokens(cluster.tokens, tokens)
        return cluster.cid, " ".join(merged)

    def add(self, text: str) -> Cluster | None:
        """Learn one masked line; returns its cluster (``None`` for a blank line)."""
        text = text[: self.max_chars]
        key = _cache_key(text)
        cache = self._cache
        cid = cache.get(key)
        if cid is not None:
            cluster = self._clusters.get(cid)
            if cluster is not None:
                cache.move_to_end(key)
                self._touch(cluster)
                cluster.size += 1
                return cluster
        tokens = text.split()
        if not tokens:
            return None
        cluster = self._search(tokens)
        if cluster is None:
            cluster = self._create(template_id(text), tokens)
        else:
            if cluster.wild < len(tokens):
                merged = merge_tokens(cluster.tokens, tokens)
                if merged != cluster.tokens:
                    cluster.set_tokens(merged)
            cluster.size += 1
            self._touch(cluster)
        cache[key] = cluster.cid
        if len(cache) > self.cache_size:
            cache.popitem(last=False)
        return cluster

    def _search(self, tokens: list[str]) -> Cluster | None:
        node = self._root.children.get(str(len(tokens)))
        if node is None:
            return None
        for token in tokens[: self.depth]:
            child = node.children.get(_route_key(token))
            if child is None:
                child = node.children.get(WILDCARD)
                if child is None:
                    return None
            node = child
        best: Cluster | None = None
        best_key = (-1.0, -1)
        n = len(tokens)
        eq = operator.eq
        for cluster in node.clusters.values():
            same = sum(map(eq, cluster.tokens, tokens))
            key = (same / n, cluster.wild)
            if key > best_key:
                best, best_key = cluster, key
        if best is None or best_key[0] < self.sim_threshold:
            return None
        return best

    def _path_for(self, tokens: list[str]) -> tuple[str, ...]:
        path = [str(len(tokens))]
        node = self._root.children.get(path[0])
        for token in tokens[: self.depth]:
            key = _route_key(token)
            if node is not None and key not in node.children and len(node.children) >= self.max_children - 1:
                key = WILDCARD
            path.append(key)
            node = node.children.get(key) if node is not None else None
        return tuple(path)

    def _leaf(self, path: Sequence[str]) -> _Node:
        node = self._root
        for key in path:
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = _Node()
            node = child
        return node

    def _create(self, cid: str, tokens: list[str], path: tuple[str, ...] | None = None, size: int = 1) -> Cluster:
        old = self._clusters.get(cid)
        if old is not None:  # same first line again after an eviction left a stale id
            self._remove(old)
        cluster = Cluster(cid, list(tokens), path or self._path_for(tokens), size)
        leaf = self._leaf(cluster.path)
        cluster.leaf = leaf
        leaf.clusters[cid] = cluster
        self._clusters[cid] = cluster
        if len(leaf.clusters) > self.max_leaf_clusters:
            self._remove(next(iter(leaf.clusters.values())))
        while len(self._clusters) > self.max_clusters:
            self._remove(next(iter(self._clusters.values())))
        return cluster

    def _touch(self, cluster: Cluster) -> None:
        self._clusters.move_to_end(cluster.cid)
        leaf = cluster.leaf if cluster.leaf is not None else self._leaf_of(cluster)
        if leaf is not None:
            leaf.clusters.move_to_end(cluster.cid)

    def _leaf_of(self, cluster: Cluster) -> _Node | None:
        node: _Node | None = self._root
        for key in cluster.path:
            node = node.children.get(key) if node is not None else None
        return node

    def _remove(self, cluster: Cluster) -> None:
        """Drop a cluster and prune the tree nodes it leaves empty."""
        self._clusters.pop(cluster.cid, None)
        self.evicted += 1
        trail: list[tuple[_Node, str]] = []
        node = self._root
        for key in cluster.path:
            child = node.children.get(key)
            if child is None:
                return
            trail.append((node, key))
            node = child
        node.clusters.pop(cluster.cid, None)
        for parent, key in reversed(trail):
            child = parent.children[key]
            if child.children or child.clusters:
                break
            del parent.children[key]

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON data: settings, clusters (LRU order) and the front cache."""
        return {
            "params": [self.sim_threshold, self.depth, self.max_children, self.max_clusters,
                       self.max_leaf_clusters, self.cache_size, self.max_chars],
            "clusters": [[c.cid, c.tokens, list(c.path), c.size] for c in self._clusters.values()],
            "cache": [[k, v] for k, v in self._cache.items()],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot`; the tree is rebuilt from the clusters' paths.

        Raises:
            ValueError: the snapshot is malformed.
        """
        try:
            clusters = [(str(c[0]), [str(t) for t in c[1]], tuple(str(p) for p in c[2]), int(c[3]))
                        for c in state.get("clusters", [])]
            cache = [(str(k), str(v)) for k, v in state.get("cache", [])]
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"malformed template miner snapshot: {exc}") from exc
        self._root = _Node()
        self._clusters = OrderedDict()
        self._cache = OrderedDict()
        for cid, tokens, path, size in clusters:
            self._create(cid, tokens, path, size)
        for key, cid in cache[-self.cache_size :]:
            if cid in self._clusters:
                self._cache[key] = cid


@dataclass(frozen=True)
class TemplateBatch:
    """Templates of a batch of messages (see :meth:`TemplateStage.analyze`).

    Attributes:
        templates: per message the template text (``""`` for an empty message).
        ids: per message the stable template id.
        params: per message the meaningful parameter words (user names, path
            basenames, word-like ``<*>`` values), lower-cased, in order.
    """

    templates: list[str]
    ids: list[str]
    params: list[tuple[str, ...]]


_EMPTY_ID = template_id("")
_EDGE_PUNCT = "\"'()[]{}<>,;:=.!?`\\"


def meaningful(word: str) -> str | None:
    """``word`` lower-cased and trimmed when it can name something (a user, a
    host, a file), else ``None``: no letter, a placeholder, a block id, mostly
    digits, or longer than 64 characters."""
    if "<" in word:
        return None
    word = word.strip(_EDGE_PUNCT)
    if not word or len(word) > 64:
        return None
    digits = sum(ch.isdigit() for ch in word)
    if digits * 2 > len(word) or digits == len(word) or not any(ch.isalpha() for ch in word):
        return None
    low = word.lower()
    if low.startswith("blk_"):
        return None
    return low


class TemplateStage:
    """Masking plus mining with a pure :meth:`analyze` and a learning :meth:`learn`.

    ``analyze`` gives each message the template it would get if the batch were
    learned: lines the miner matches get the merged template of their cluster,
    the others are mined by a throw-away miner over the batch alone (so a new
    template's lines share one template and one embedding from the first
    batch on). ``learn`` then folds the batch into the real miner, reusing the
    masking of the last ``analyze`` when it saw the same messages.
    """

    def __init__(self, miner: TemplateMiner | None = None, **miner_args: Any) -> None:
        self.miner = miner if miner is not None else TemplateMiner(**miner_args)
        self._last: tuple[list[str], list[str]] | None = None

    def _fresh(self) -> TemplateMiner:
        m = self.miner
        return TemplateMiner(m.sim_threshold, m.depth, m.max_children, m.max_clusters,
                             m.max_leaf_clusters, m.cache_size, m.max_chars)

    def analyze(self, messages: Sequence[str]) -> TemplateBatch:
        """Templates, ids and meaningful parameters of ``messages`` (no state change)."""
        messages = list(messages)
        # distinct lines only (first-occurrence order): masking is the costly part
        masked_of: dict[str, str] = {}
        words_of: dict[str, list[str]] = {}  # only lines with words
        for msg in dict.fromkeys(messages):
            if msg:
                masked_of[msg], words = mask_words(msg)
                if words:
                    words_of[msg] = words
            else:
                masked_of[msg] = ""
        masked = list(map(masked_of.__getitem__, messages))
        self._last = (messages, masked)
        miner = self.miner
        found: dict[str, tuple[str, str]] = {"": (_EMPTY_ID, "")}
        unmatched: list[str] = []
        for text in dict.fromkeys(masked_of.values()):
            if text in found:
                continue
            got = miner.match(text)
            if got is None:
                if not text.split():
                    found[text] = (_EMPTY_ID, "")
                    continue
                found[text] = ("", "")
                unmatched.append(text)
            else:
                found[text] = got
        if unmatched:
            local = self._fresh()
            for text in unmatched:
                local.add(text)
            for text in unmatched:
                cluster = local.lookup(text)
                if cluster is not None:
                    found[text] = (cluster.cid, cluster.template)
        wild_words: dict[str, tuple[str, ...]] = {}
        for text, (_cid, template) in found.items():
            if WILDCARD in template:
                tokens = text[: self.miner.max_chars].split()
                words = (meaningful(tok) for tok, t in zip(tokens, template.split(" ")) if t == WILDCARD)
                wild_words[text] = tuple(w for w in words if w)
        params_of: dict[str, tuple[str, ...]] = {}
        empty: tuple[str, ...] = ()
        for msg, text in masked_of.items():
            own = words_of.get(msg)
            if own:
                kept = (meaningful(w) for w in own)
                params_of[msg] = tuple(w for w in kept if w) + wild_words.get(text, empty)
            else:
                params_of[msg] = wild_words.get(text, empty)
        pair = list(map(found.__getitem__, masked))
        ids = [p[0] for p in pair]
        templates = [p[1] for p in pair]
        params = list(map(params_of.__getitem__, messages))
        return TemplateBatch(templates, ids, params)

    def learn(self, messages: Sequence[str]) -> None:
        """Fold ``messages`` into the miner, in order."""
        last = self._last
        if last is not None and len(last[0]) == len(messages) and last[0] == list(messages):
            masked = last[1]
        else:
            masked = [mask_words(m)[0] if m else "" for m in messages]
        self._last = None
        add = self.miner.add
        for text in masked:
            if text:
                add(text)

    def snapshot(self) -> dict[str, Any]:
        """The miner's :meth:`TemplateMiner.snapshot`."""
        return self.miner.snapshot()

    def restore(self, state: Mapping[str, Any]) -> None:
        """Restore the miner; forgets the masking kept for :meth:`learn`."""
        self.miner.restore(state)
        self._last = None

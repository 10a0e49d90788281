"""One contract suite run against every component encoder and the hybrid (river style)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from encoders.base import ComponentBatch, ComponentEncoder
from encoders.categorical import CategoricalEncoder
from encoders.hybrid import HybridBatch, HybridEncoder, build_default_encoder
from encoders.network import NetworkEncoder
from encoders.numerical import NumericalEncoder
from encoders.text import TextEncoder
from encoders.timefeat import TimeEncoder

EVENTS: list[dict[str, Any]] = [
    {  # sshd login
        "time": "2024-05-01T10:15:30.123Z",
        "message": "Accepted password for root from 10.0.0.5 port 52144 ssh2",
        "source": "sshd",
        "event_type": "authentication",
        "severity": "informational",
        "outcome": "success",
        "host": "bastion-1",
        "user": "root",
        "process": "sshd",
        "src_ip": "10.0.0.5",
        "src_port": 52144,
        "dst_port": 22,
        "protocol": "tcp",
        "session_id": "s-1",
        "attributes": {"pid": 4242},
    },
    {  # windows process start, no IPs or ports
        "time": "2024-05-04T23:59:59.000Z",
        "message": "A new process has been created: C:\\Windows\\System32\\cmd.exe by CORP\\alice",
        "source": "windows-security",
        "event_type": "process_start",
        "severity": "low",
        "host": "WS-042",
        "user": "CORP\\alice",
        "process": "cmd.exe",
        "attributes": {"EventID": 4688, "elevated": True},
    },
    {  # network connection, IPv6 + ports + volumes
        "time": "2024-05-02T03:00:00.000Z",
        "message": "connection from [2001:db8::7]:50123 to 2001:db8::1 port 443 established",
        "source": "zeek",
        "event_type": "network_connection",
        "outcome": "success",
        "src_ip": "2001:db8::7",
        "dst_ip": "2001:db8::1",
        "src_port": 50123,
        "dst_port": 443,
        "protocol": "tcp",
        "bytes_in": 5120,
        "bytes_out": 734003,
        "packets": 612,
        "duration_ms": 1830.5,
    },
    {  # hdfs line
        "time": "2008-11-09T20:35:18.000Z",
        "message": "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010",
        "source": "hdfs",
        "event_type": "block_receive",
        "severity": "informational",
        "src_ip": "10.250.19.102",
        "dst_ip": "10.250.19.102",
        "src_port": 54106,
        "dst_port": 50010,
        "bytes_in": 67108864,
    },
    {  # empty message, only a time
        "time": "2024-05-01T00:00:00.000Z",
        "message": "",
    },
    {  # 64 KiB message
        "time": "2024-05-01T12:00:00.000Z",
        "message": ("GET /api/v1/items?id=12345&token=deadbeefcafe0042 HTTP/1.1 " * 1100)[: 64 * 1024],
        "source": "nginx",
        "event_type": "http_request",
        "outcome": "failure",
        "src_ip": "198.51.100.23",
        "dst_port": 80,
        "bytes_out": 0,
    },
    {  # unicode / non-ascii
        "time": "2024-05-03T08:30:00.000+02:00",
        "message": "Échec de connexion pour l'utilisateur 東京 depuis 192.0.2.44 — 🚨 ошибка",
        "source": "sshd",
        "event_type": "authentication",
        "severity": "medium",
        "outcome": "failure",
        "user": "東京",
        "src_ip": "192.0.2.44",
        "duration_ms": 12,
    },
]

Factory = Callable[[], Any]


def _trained_categorical() -> CategoricalEncoder:
    """A categorical encoder from a tiny artifact trained on EVENTS (cached: training is seeded)."""
    global _ARTIFACT
    if _ARTIFACT is None:
        from encoders.categorical import artifact_version, CategoricalArtifact
        from encoders.training import TrainConfig, sessionize, train_categorical

        res = train_categorical(sessionize(EVENTS * 3), TrainConfig(epochs=1, max_steps_per_epoch=5, min_count=2))
        _ARTIFACT = CategoricalArtifact(artifact_version(res.fields, res.dim, res.vocab, res.tables),
                                        res.fields, res.dim, res.vocab, res.tables)
    return CategoricalEncoder(artifact=_ARTIFACT)


_ARTIFACT: Any = None

FACTORIES: dict[str, Factory] = {
    "text": lambda: TextEncoder(),
    "categorical": lambda: CategoricalEncoder(seed=7),
    "categorical-trained": _trained_categorical,
    "numerical": lambda: NumericalEncoder(),
    "network": lambda: NetworkEncoder(),
    "time": lambda: TimeEncoder(),
    "hybrid": lambda: build_default_encoder(seed=7),
    "hybrid+time": lambda: build_default_encoder(
        {"text": 0.4, "categorical": 0.2, "numerical": 0.15, "network": 0.15, "time": 0.1}, seed=7
    ),
}


def _arrays(out: ComponentBatch | HybridBatch) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, row-present) of either kind of output."""
    if isinstance(out, HybridBatch):
        return out.dense, out.row_present
    return out.vectors, out.present


def _dim(encoder: ComponentEncoder | HybridEncoder) -> int:
    return encoder.dim


@pytest.fixture(params=sorted(FACTORIES), ids=sorted(FACTORIES))
def factory(request: pytest.FixtureRequest) -> Factory:
    return FACTORIES[request.param]


def test_shape_dtype_finite_norms(factory: Factory) -> None:
    encoder = factory()
    vectors, present = _arrays(encoder.encode(EVENTS))
    assert vectors.shape == (len(EVENTS), _dim(encoder))
    assert vectors.dtype == np.float32
    assert present.dtype == bool and present.shape == (len(EVENTS),)
    assert np.isfinite(vectors).all()
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms[present], 1.0, atol=1e-5)
    assert not vectors[~present].any()


@pytest.mark.parametrize("name", [n for n in sorted(FACTORIES) if n.startswith("hybrid")])
def test_hybrid_extra_fields(name: str) -> None:
    out = FACTORIES[name]().encode(EVENTS)
    assert isinstance(out, HybridBatch)
    n = len(EVENTS)
    assert out.present.shape == (n, len(out.parts))
    assert len(out.templates) == len(out.template_ids) == len(out.sparse) == n
    for indices, values in out.sparse:
        assert indices == sorted(set(indices)) and len(values) == len(indices)


def test_input_not_mutated(factory: Factory) -> None:
    events = copy.deepcopy(EVENTS)
    encoder = factory()
    encoder.encode(events)
    encoder.update(events)
    encoder.encode(events)
    assert events == EVENTS


def _without_counters(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _without_counters(v) for k, v in state.items() if k not in ("cache_hits", "cache_misses")}
    return state


def test_encode_is_pure_given_state(factory: Factory) -> None:
    encoder = factory()
    first, _ = _arrays(encoder.encode(EVENTS))
    before = _without_counters(encoder.snapshot())
    second, _ = _arrays(encoder.encode(EVENTS))
    np.testing.assert_array_equal(first, second)
    assert _without_counters(encoder.snapshot()) == before


def test_seeded_determinism(factory: Factory) -> None:
    a, b = factory(), factory()
    for encoder in (a, b):
        encoder.encode(EVENTS[:3])
        encoder.update(EVENTS[:3])
    va, pa = _arrays(a.encode(EVENTS))
    vb, pb = _arrays(b.encode(EVENTS))
    np.testing.assert_array_equal(va, vb)
    np.testing.assert_array_equal(pa, pb)


def test_snapshot_restore_round_trip(factory: Factory) -> None:
    original = factory()
    original.encode(EVENTS)
    original.update(EVENTS)
    original.update(EVENTS[2:4])
    snap = original.snapshot()
    wire = json.dumps(snap)  # plain data only
    restored = factory()
    restored.restore(json.loads(wire))
    vo, po = _arrays(original.encode(EVENTS))
    vr, pr = _arrays(restored.encode(EVENTS))
    np.testing.assert_array_equal(vr, vo)
    np.testing.assert_array_equal(pr, po)


def test_restore_rejects_other_kind(factory: Factory) -> None:
    encoder = factory()
    with pytest.raises(ValueError):
        encoder.restore({"kind": "something-else", "version": "v0", "state": {}})


def test_empty_batch(factory: Factory) -> None:
    encoder = factory()
    vectors, present = _arrays(encoder.encode([]))
    assert vectors.shape == (0, _dim(encoder))
    assert vectors.dtype == np.float32
    assert present.shape == (0,)

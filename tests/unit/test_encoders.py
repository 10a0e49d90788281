"""Behaviour tests of the encoders (real MiniLM model, loaded once per process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encoders.categorical import CategoricalEncoder
from encoders.hybrid import (
    HybridEncoder,
    build_default_encoder,
    component_contributions,
    component_similarity,
)
from encoders.masking import mask, template_id
from encoders.network import NetworkEncoder
from encoders.numerical import NumericalEncoder
from encoders.sparse import SparseEncoder
from encoders.text import TextEncoder


def _ssh(user: str, ip: str, port: int, **extra: object) -> dict[str, object]:
    event: dict[str, object] = {
        "time": "2024-05-01T10:00:00.000Z",
        "message": f"Accepted password for {user} from {ip} port {port} ssh2",
        "source": "sshd",
        "event_type": "authentication",
        "severity": "informational",
        "outcome": "success",
        "user": user,
        "src_ip": ip,
        "src_port": port,
        "dst_port": 22,
    }
    event.update(extra)
    return event


@pytest.fixture(scope="module")
def hybrid() -> HybridEncoder:
    return build_default_encoder(seed=7)


@pytest.mark.parametrize(
    ("line", "template", "params"),
    [
        (
            "Accepted password for root from 10.0.0.5 port 52144 ssh2",
            "Accepted password for <USER> from <IP> port <NUM> ssh2",
            ["root", "10.0.0.5", "52144"],
        ),
        (
            "Failed password for invalid user admin from 203.0.113.9 port 4242 ssh2",
            "Failed password for invalid user <USER> from <IP> port <NUM> ssh2",
            ["admin", "203.0.113.9", "4242"],
        ),
        (
            "Receiving block blk_-160899 src: /10.250.19.102:54106 dest: /10.250.19.102:50010",
            "Receiving block <BLK> src: /<IP> dest: /<IP>",
            ["blk_-160899", "10.250.19.102:54106", "10.250.19.102:50010"],
        ),
        ("conn [2001:db8::1]:443 via fe80::1 at 12:34:56", "conn <IP> via <IP> at <NUM>:<NUM>:<NUM>", None),
        ("pid 0x1F3A id deadbeef01 wrote /var/log/auth.log", "pid <HEX> id <HEX> wrote <PATH>", None),
        ("job 123e4567-e89b-12d3-a456-426614174000 done", "job <UUID> done", None),
        ("session opened for user alice by (uid=0)", "session opened for user <USER> by (uid=<NUM>)", None),
        ("plain text with no variables", "plain text with no variables", []),
        ("Waiting for connection on socket", "Waiting for connection on socket", []),
        ("Accepted publickey for svc-backup from ::1 port 22", "Accepted publickey for <USER> from <IP> port <NUM>", None),
    ],
)
def test_masking_examples(line: str, template: str, params: list[str] | None) -> None:
    got_template, got_params = mask(line)
    assert got_template == template
    if params is not None:
        assert got_params == params


def test_template_id_is_short_and_stable() -> None:
    tid = template_id("Accepted password for <USER> from <IP> port <NUM> ssh2")
    assert tid == template_id("Accepted password for <USER> from <IP> port <NUM> ssh2")
    assert tid.startswith("T") and len(tid) == 13
    assert tid != template_id("Failed password for <USER> from <IP> port <NUM> ssh2")


def test_same_template_shares_text_embedding() -> None:
    text = TextEncoder()
    first = text.encode([_ssh("root", "10.0.0.5", 52144)])
    assert (text.cache_hits, text.cache_misses) == (0, 1)
    second = text.encode([_ssh("bob", "192.168.1.9", 2222), _ssh("eve", "10.1.1.1", 1)])
    assert (text.cache_hits, text.cache_misses) == (2, 1)
    d = text.model_dim  # the template part is shared; the user makes the params part differ
    np.testing.assert_array_equal(first.vectors[0, :d], second.vectors[0, :d])
    np.testing.assert_array_equal(second.vectors[0, :d], second.vectors[1, :d])
    assert not np.array_equal(second.vectors[0, d:], second.vectors[1, d:])


def _process_start(image: str, user: str = "alice", host: str = "WS-FRA-042") -> dict[str, object]:
    return {
        "time": "2024-05-01T10:00:00.000Z",
        "message": (
            f"Mar 12 10:00:00 {host} Microsoft-Windows-Sysmon[3120]: 1: Process Create: RuleName: - "
            f"UtcTime: 2024-03-12 10:00:00.123 ProcessGuid: {{4d1b2c3a-1111-2222-3333-444455556666}} "
            f"ProcessId: 4242 Image: C:\\Users\\{user}\\Downloads\\{image} User: CORP\\{user}"
        ),
        "source": "windows-sysmon",
        "event_type": "process_start",
        "host": host,
        "user": user,
    }


def test_params_block_separates_processes_of_one_template(hybrid: HybridEncoder) -> None:
    events = [_process_start("mimikatz.exe"), _process_start("chrome.exe"), _process_start("mimikatz.exe")]
    out = hybrid.encode(events)
    assert out.template_ids[0] == out.template_ids[1] == out.template_ids[2]
    assert out.templates[0] == out.templates[1]
    block = out.dense[:, out.parts["text"]]
    assert not np.array_equal(block[0], block[1])
    np.testing.assert_array_equal(block[0], block[2])
    cos = float(block[0].astype(np.float64) @ block[1].astype(np.float64)) / float(block[0] @ block[0])
    assert 0.7 < cos < 0.9999  # same template (share 0.75), different process


def test_params_share_is_the_params_blocks_squared_norm() -> None:
    text = TextEncoder(params_dim=32, params_share=0.25)
    out = text.encode([_ssh("root", "10.0.0.5", 1), {"message": "disk full"}])
    d = text.model_dim
    assert float(out.vectors[0, d:] @ out.vectors[0, d:]) == pytest.approx(0.25, abs=1e-5)
    assert not out.vectors[1, d:].any()  # no parameter: template part only, unit norm
    assert float(out.vectors[1] @ out.vectors[1]) == pytest.approx(1.0, abs=1e-5)


def test_the_declared_width_is_the_loaded_models(tmp_path: Path) -> None:
    """The width comes from the model directory (no model load while a worker starts, encoders/text.py), and it is
    what the loaded model reports; a directory with a layer that could change the width is not trusted."""
    import json
    import shutil

    from encoders.text import _declared_dim, default_model_path

    model = TextEncoder().model
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    assert _declared_dim(default_model_path()) == getter() == 384
    odd = tmp_path / "odd"
    shutil.copytree(default_model_path(), odd, ignore=shutil.ignore_patterns("*.safetensors"))
    modules = json.loads((odd / "modules.json").read_text())
    (odd / "modules.json").write_text(json.dumps(modules + [{"idx": 3, "name": "3", "path": "3_Dense",
                                                             "type": "sentence_transformers.models.Dense"}]))
    assert _declared_dim(str(odd)) is None


def test_text_cache_arrays_round_trip() -> None:
    first = TextEncoder()
    events = [_ssh("root", "10.0.0.5", 1), {"message": "disk full on /dev/sda1"}]
    before = first.encode(events)
    arrays = first.arrays()
    assert arrays["cache_vectors"].shape == (2, first.model_dim) and arrays["cache_keys"].dtype == np.uint8
    second = TextEncoder()
    assert second.load_arrays(arrays) == 2
    after = second.encode(events)
    assert (second.cache_hits, second.cache_misses) == (2, 0)
    np.testing.assert_array_equal(before.vectors, after.vectors)
    with pytest.raises(ValueError):
        second.load_arrays({"cache_vectors": arrays["cache_vectors"][:, :3], "cache_keys": arrays["cache_keys"]})


def test_text_cache_is_bounded_lru() -> None:
    text = TextEncoder(cache_size=2)
    text.encode([{"message": "alpha one"}, {"message": "beta two"}, {"message": "gamma three"}])
    assert text.cache_len == 2


def test_cosine_decomposes_into_weighted_components(hybrid: HybridEncoder) -> None:
    a = _ssh("root", "10.0.0.5", 52144, bytes_in=100, bytes_out=2000, packets=10, duration_ms=30)
    b = {
        "time": "2024-05-01T11:00:00.000Z",
        "message": "Failed password for invalid user admin from 203.0.113.9 port 4242 ssh2",
        "source": "sshd",
        "event_type": "authentication",
        "severity": "medium",
        "outcome": "failure",
        "src_ip": "203.0.113.9",
        "src_port": 4242,
        "dst_port": 22,
        "bytes_in": 10,
        "bytes_out": 5,
        "packets": 2,
        "duration_ms": 900,
    }
    hybrid.update([a, b])
    out = hybrid.encode([a, b])
    assert out.present.all()
    cos = component_similarity(out.dense[0], out.dense[1:], out.parts)[0]
    weights = np.array([hybrid.weights[name] for name in out.parts])
    total = float(out.dense[0].astype(np.float64) @ out.dense[1].astype(np.float64))
    assert total == pytest.approx(float(weights @ cos), abs=1e-5)
    contrib = component_contributions(out.dense[0], out.dense[1:], out.parts)[0]
    assert contrib.sum() == pytest.approx(total, abs=1e-6)
    np.testing.assert_allclose(contrib, weights * cos, atol=1e-5)


def test_missing_network_renormalizes(hybrid: HybridEncoder) -> None:
    event = {
        "time": "2024-05-01T10:00:00.000Z",
        "message": "A new process has been created: cmd.exe",
        "source": "windows-security",
        "event_type": "process_start",
        "bytes_in": 1,
    }
    out = hybrid.encode([event])
    names = list(out.parts)
    assert not out.present[0, names.index("network")]
    assert not out.dense[0, out.parts["network"]].any()
    assert np.linalg.norm(out.dense[0]) == pytest.approx(1.0, abs=1e-5)
    present_w = sum(hybrid.weights[n] for n in names if n != "network")
    text_block = out.dense[0, out.parts["text"]]
    assert float(text_block @ text_block) == pytest.approx(hybrid.weights["text"] / present_w, abs=1e-5)


def test_numerical_welford_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    enc = NumericalEncoder()
    seen: list[np.ndarray] = []
    for size in (1, 7, 50, 3, 200):
        values = rng.lognormal(5, 2, size=(size, 4))
        events = [dict(zip(enc.fields, row.tolist())) for row in values]
        if size == 7:  # some missing values in one batch
            for event in events[:3]:
                del event["packets"]
        enc.update(events)
        seen.extend(np.log1p(np.array([e.get(f, np.nan) for f in enc.fields], dtype=float)) for e in events)
    data = np.vstack(seen)
    for j in range(4):
        column = data[:, j][~np.isnan(data[:, j])]
        assert enc.count[j] == len(column)
        assert enc.mean[j] == pytest.approx(column.mean(), rel=1e-10)
        assert enc.var[j] == pytest.approx(column.var(), rel=1e-9)


def test_numerical_uses_stats_before_batch_and_flags_missing() -> None:
    enc = NumericalEncoder()
    out = enc.encode([{"bytes_in": 100}])  # no stats yet: std 1, mean 0
    k = len(enc.fields)
    assert out.present[0]
    raw = out.vectors[0] / out.vectors[0][-1]  # undo normalization via the bias dim
    assert raw[0] == pytest.approx(min(np.log1p(100), 5.0), rel=1e-5)
    np.testing.assert_allclose(raw[k : 2 * k], [0, 1, 1, 1])
    assert not enc.encode([{"message": "no numbers"}]).present[0]


def test_a_categorical_value_encodes_the_same_from_its_first_sighting() -> None:
    """Untrained: a value's vector is seeded by (seed, field, value), so learning the value changes nothing;
    the first copy of an event and its later copies are one point (issue 6: feedback, dedup)."""
    a, b = CategoricalEncoder(seed=3), CategoricalEncoder(seed=3)
    event = {"event_type": "never_seen", "process": "C:\\Tools\\Mimikatz.EXE"}
    before = a.encode([event]).vectors
    np.testing.assert_array_equal(before, b.encode([{"event_type": "Never_Seen", "process": "mimikatz.exe"}]).vectors)
    a.update([event])
    assert a.bucket("event_type", "never_seen") == 0  # in the vocabulary now
    np.testing.assert_allclose(a.encode([event]).vectors, before, atol=1e-6)
    other = CategoricalEncoder(seed=4).encode([event]).vectors
    assert not np.allclose(other, before)  # the seed decides the draw
    distinct = a.encode([{"event_type": "another_value"}]).vectors
    assert abs(float(distinct[0] @ a.encode([{"event_type": "never_seen"}]).vectors[0])) < 0.99


def test_categorical_vocab_cap() -> None:
    enc = CategoricalEncoder(vocab_cap=2, n_hash_buckets=4)
    enc.update([{"source": s} for s in ("a", "b", "c")])
    assert enc.vocab["source"] == {"a": 0, "b": 1}
    assert enc.bucket("source", "c") >= 2
    vecs = enc.encode([{"source": s} for s in ("a", "b", "c")]).vectors  # past the cap: still its own vector
    assert abs(float(vecs[2] @ vecs[0])) < 0.99 and abs(float(vecs[2] @ vecs[1])) < 0.99


def test_network_ipv6_and_services() -> None:
    enc = NetworkEncoder()
    out = enc.encode([{"src_ip": "2001:db8::7", "dst_port": 3389}, {"src_ip": "not-an-ip"}, {}])
    assert out.present.tolist() == [True, False, False]


def test_sparse_unique_sorted_and_describe(hybrid: HybridEncoder) -> None:
    sparse = hybrid.sparse
    assert isinstance(sparse, SparseEncoder)
    event = _ssh("root", "10.0.0.5", 52144, message="failed failed failed login for root!!")
    (indices, values), = sparse.encode([event])
    assert indices == sorted(set(indices))
    terms = {sparse.describe(i): v for i, v in zip(indices, values)}
    assert terms["failed"] == pytest.approx(3 * 2.2 / (3 + 1.2))
    assert terms["user=root"] == pytest.approx(1.0)
    assert "src_ip=10.0.0.5" in terms and "dst_port=22" in terms
    assert "!" not in terms
    assert all(i >= sparse.vocab_size for i in indices if "=" in sparse.describe(i))


@pytest.mark.parametrize(
    ("weights", "needle"),
    [
        ({"text": 1.0, "bogus": 1.0}, "bogus"),
        ({"text": -0.1, "network": 1.0}, "text"),
        ({"text": 0.0, "network": 0.0}, "at least one"),
        ({"text": float("nan")}, "text"),
    ],
)
def test_invalid_weights_raise(hybrid: HybridEncoder, weights: dict[str, float], needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as info:
        HybridEncoder(hybrid.components, weights)
    assert "valid names" in str(info.value) and "categorical" in str(info.value)


def test_build_default_encoder_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="valid names: .*time"):
        build_default_encoder({"txt": 1.0})


def test_version_changes_with_weights(hybrid: HybridEncoder) -> None:
    other = HybridEncoder(hybrid.components, {"text": 0.9, "network": 0.1})
    assert other.version != hybrid.version and other.version.startswith("hybrid-v1-")
    assert hybrid.components["text"].dim == 384 + 32  # MiniLM + params block
    assert hybrid.dim == sum(c.dim for c in hybrid.components.values())
    assert other.dim == 384 + 32 + 41


def test_network_ipv4_fast_path_matches_ipaddress() -> None:
    from encoders.network import _ip_slow, ip_features

    rng = np.random.default_rng(1)
    special = ["192.0.0.1", "192.0.0.8", "192.0.0.170", "255.255.255.255", "100.64.1.1", "127.0.0.1",
               "169.254.3.4", "224.0.0.251", "0.0.0.0", "172.31.255.255", "172.32.0.1", "010.1.1.1"]
    randoms = [".".join(str(int(x)) for x in rng.integers(0, 256, 4)) for _ in range(2000)]
    for ip in special + randoms:
        assert ip_features(ip) == _ip_slow(ip), ip


def test_encoders_package_is_pure() -> None:
    import subprocess
    import sys

    code = (
        "import sys, encoders, encoders.hybrid\n"
        "h = encoders.build_default_encoder()\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "bad = roots & {'faust', 'aiokafka', 'qdrant_client', 'qdrant_edge', 'prometheus_client', 'streams',"
        " 'sentence_transformers'}\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_time_encoder_is_cyclical() -> None:
    from encoders.timefeat import TimeEncoder, parse_time

    enc = TimeEncoder()
    out = enc.encode(
        [{"time": "2024-05-06T23:59:00.000Z"}, {"time": "2024-05-06T00:01:00Z"}, {"time": 1714953600000}, {}]
    )
    assert out.present.tolist() == [True, True, True, False]
    assert float(out.vectors[0] @ out.vectors[1]) > 0.99
    assert parse_time("2024-05-01T12:00:00+02:00").hour == 10  # type: ignore[union-attr]
    assert parse_time("not a time") is None


def test_component_similarity_absent_block_is_zero(hybrid: HybridEncoder) -> None:
    with_net = _ssh("root", "10.0.0.5", 52144)
    without = {k: v for k, v in with_net.items() if k not in ("src_ip", "src_port", "dst_port")}
    out = hybrid.encode([with_net, without])
    cos = component_similarity(out.dense[0], out.dense[1:], out.parts)
    assert cos.shape == (1, len(out.parts))
    assert cos[0, list(out.parts).index("network")] == 0.0
    assert cos[0, list(out.parts).index("text")] == pytest.approx(1.0, abs=1e-5)
    assert out.template_ids[0] == out.template_ids[1]


def test_hybrid_optional_time_component() -> None:
    enc = build_default_encoder({"text": 0.5, "network": 0.3, "time": 0.2})
    assert list(enc.parts) == ["text", "network", "time"]
    assert enc.dim == (384 + 32) + 41 + 4
    out = enc.encode([_ssh("root", "10.0.0.5", 52144)])
    assert out.present.all()


# ---------------------------------------------------------------- fast paths = reference

_OPENSSH = Path(__file__).resolve().parents[3] / "shared" / "data" / "loghub" / "OpenSSH_2k.log"
_ODD_EVENTS: list[dict[str, object]] = [
    {"message": ""},
    {"message": "   "},
    {"message": "x" * 70_000, "user": "Root"},
    {"message": "a\x1cb c:\\Program Files\\x y\\z.exe for user bob from 1.2.3.4 port 22", "user": " root "},
    {"message": "::1 [fe80::1%eth0]:22 0xdeadbeef 12345678-1234-1234-1234-123456789abc blk_-12 /a/b/c"},
    {"message": "Failed password for invalid user admin from 10.0.0.7 port 4242 ssh2", "dst_port": 22},
    {"message": "ünïcode wörds 42 ١٢٣", "dst_port": 22.0, "bytes_in": -0.0},
    {"message": "same", "dst_port": True, "bytes_in": 0.0, "src_port": 1},
    {"message": "same", "dst_port": "22", "bytes_in": 1, "src_port": 1.0, "src_ip": "10.0.0.1"},
    {"message": 12345, "severity": 3, "outcome": ["x"], "process": "C:\\Windows\\cmd.exe", "dst_ip": "::1"},
]


def _reference_events(limit: int = 1500) -> list[dict[str, object]]:
    from schemas.models import decode_event
    from streams.sample import iter_sample

    events: list[dict[str, object]] = []
    for raw in iter_sample():
        events.append(decode_event(raw).to_dict())
        if len(events) >= limit:
            break
    if _OPENSSH.is_file():
        from bench.encode import load_events

        events += load_events(_OPENSSH, "sshd", 500)
    return events + _ODD_EVENTS * 3


def test_sparse_fast_path_matches_reference(hybrid: HybridEncoder) -> None:
    path = hybrid.components["text"].tokenizer_path  # type: ignore[attr-defined]
    fast, slow = SparseEncoder(path, describe_size=300), SparseEncoder(path, describe_size=300)
    events = _reference_events()
    for start, size in ((0, 700), (700, 1), (701, 5000)):
        batch = events[start : start + size]
        assert fast.encode(batch) == slow._encode_slow(batch)
    assert list(fast._terms.items()) == list(slow._terms.items())


def test_guarded_mask_pattern_matches_plain_alternation() -> None:
    import re

    from encoders import masking

    lines = [str(e.get("message")) for e in _reference_events()]
    lines += ["x[::1]:22 y", "abc[2001:db8::1] 1.2.3.4:80", "for alice from 1.1.1.1", "User=bob USERNAME: eve"]
    plain: dict[int, re.Pattern[str]] = {}
    for line in lines:
        bits = masking._bits_for(line)
        if not bits:
            continue
        if bits not in plain:
            plain[bits] = re.compile("|".join(p for name, p in masking._PARTS if bits & masking._BIT[name]))
        want = [(m.span(), m.lastgroup, m.groupdict()) for m in plain[bits].finditer(line)]
        got = [(m.span(), m.lastgroup, m.groupdict()) for m in masking._compile(bits).finditer(line)]
        assert got == want, line


def test_batch_encoding_equals_one_event_at_a_time() -> None:
    """Column-wise lookups deduplicate values; 22, 22.0, True and "22" must stay apart."""
    events = _ODD_EVENTS + [dict(e, message="m") for e in _ODD_EVENTS]
    for encoder in (CategoricalEncoder(), NetworkEncoder(), NumericalEncoder()):
        batch = encoder.encode(events)
        single = [encoder.encode([e]) for e in events]
        assert batch.vectors.tobytes() == np.concatenate([b.vectors for b in single]).tobytes()
        assert batch.present.tolist() == [bool(b.present[0]) for b in single]
    numerical = NumericalEncoder()
    numerical.update(events)
    one = NumericalEncoder()
    for e in events:
        one.update([e])
    assert np.allclose(numerical.mean, one.mean) and np.array_equal(numerical.count, one.count)
    categorical = CategoricalEncoder(vocab_cap=4)
    categorical.update(events)
    one_cat = CategoricalEncoder(vocab_cap=4)
    for e in events:
        one_cat.update([e])
    assert categorical.vocab == one_cat.vocab

"""Masking and streaming template mining (encoders.masking, encoders.templates)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from encoders.masking import mask, mask_ex
from encoders.templates import WILDCARD, TemplateMiner, TemplateStage, meaningful

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.parametrize(
    ("line", "template"),
    [
        ("conn from 10.0.0.5 to 192.168.1.20:8443 ok", "conn from <IP> to <IP> ok"),
        ("peer [2001:db8::7]:50123 and fe80::1%eth0 up", "peer <IP> and <IP> up"),
        ("listening on port 8080", "listening on port <NUM>"),
        ("handle 0x7ffde4a1 token deadbeef42", "handle <HEX> token <HEX>"),
        ("Receiving block blk_-1608999687919862906 now", "Receiving block <BLK> now"),
        ("took 12.5 ms for 3 items", "took <NUM> ms for <NUM> items"),
        ("open /var/log/auth.log failed", "open <PATH> failed"),
        ("Image: C:\\Program Files\\Windows Defender\\MsMpEng.exe started", "Image: <PATH> started"),
        ("Failed password for invalid user oracle from 1.2.3.4 port 22 ssh2",
         "Failed password for invalid user <USER> from <IP> port <NUM> ssh2"),
        ("session opened for user alice by (uid=0)", "session opened for user <USER> by (uid=<NUM>)"),
        ("Account Name: nwilliams Account Domain: CORP", "Account Name: <USER> Account Domain: CORP"),
        ("request 123e4567-e89b-12d3-a456-426614174000 done", "request <UUID> done"),
    ],
)
def test_masking_examples(line: str, template: str) -> None:
    assert mask(line)[0] == template


def test_mask_ex_keeps_meaningful_words_only() -> None:
    text, params, words = mask_ex("Image: C:\\Users\\bob\\mimikatz.exe for user bob from 10.0.0.1 port 4444")
    assert "<PATH>" in text and "10.0.0.1" in params
    assert words == ["mimikatz.exe", "bob"]
    assert meaningful("12345") is None and meaningful("blk_-12") is None and meaningful("<IP>") is None
    assert meaningful("WS-FRA-042,") == "ws-fra-042"


def test_mining_merges_variable_tokens_and_keeps_the_id() -> None:
    miner = TemplateMiner()
    first = miner.add("Connection closed by host alpha [preauth]")
    assert first is not None
    cid = first.cid
    second = miner.add("Connection closed by host beta [preauth]")
    assert second is first and second.cid == cid
    assert first.template == f"Connection closed by host {WILDCARD} [preauth]"
    assert miner.add("Connection closed by host gamma [preauth]").cid == cid  # type: ignore[union-attr]
    assert len(miner) == 1
    other = miner.add("Disk quota exceeded on volume data")
    assert other is not None and other.cid != cid and len(miner) == 2


def test_match_is_read_only_and_predicts_add() -> None:
    miner = TemplateMiner()
    miner.add("session opened for alpha on console")
    before = json.dumps(miner.snapshot())
    got = miner.match("session opened for beta on console")
    assert got is not None and got[1] == f"session opened for {WILDCARD} on console"
    assert json.dumps(miner.snapshot()) == before
    assert miner.match("something completely different here now") is None


def test_stage_analyze_is_pure_and_mines_new_templates_within_the_batch() -> None:
    stage = TemplateStage()
    lines = [f"Accepted publickey for svc from 10.0.0.{i} port {1000 + i} ssh2 host h{i}x" for i in range(5)]
    out = stage.analyze(lines)
    assert len(set(out.ids)) == 1 and WILDCARD in out.templates[0]
    assert len(stage.miner) == 0  # nothing learned yet
    assert out.params[0] != out.params[1]
    stage.learn(lines)
    assert len(stage.miner) == 1
    assert stage.analyze(lines).ids == out.ids


def test_template_explosion_is_bounded() -> None:
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    miner = TemplateMiner(max_clusters=2_000, cache_size=5_000, max_leaf_clusters=32)
    for _ in range(100_000):
        n = rng.randint(1, 12)
        miner.add(" ".join("".join(rng.choices(alphabet, k=rng.randint(3, 8))) for _ in range(n)))
    assert len(miner) <= 2_000
    assert miner.cache_len <= 5_000
    assert miner.evicted > 0


def test_empty_and_huge_messages() -> None:
    stage = TemplateStage()
    huge = ("GET /api/v1/items?id=12345 HTTP/1.1 " * 2000)[: 64 * 1024]
    out = stage.analyze(["", "   ", huge, "bad \udcff bytes \x00 here"])
    assert out.templates[0] == "" and out.templates[1] == ""
    assert out.templates[2] and len(out.templates[2]) <= stage.miner.max_chars
    stage.learn(["", "   ", huge, "bad \udcff bytes \x00 here"])
    assert len(stage.miner) == 2


def test_snapshot_restore_round_trip_gives_same_ids() -> None:
    miner = TemplateMiner()
    lines = [f"job {w} finished with status {s}" for w in ("alpha", "beta", "gamma") for s in ("ok", "failed")]
    lines += ["Disk quota exceeded on volume data", "Disk quota exceeded on volume logs"]
    ids = [miner.add(line).cid for line in lines]  # type: ignore[union-attr]
    restored = TemplateMiner()
    restored.restore(json.loads(json.dumps(miner.snapshot())))
    assert [restored.add(line).cid for line in lines] == ids  # type: ignore[union-attr]
    assert [c.template for c in restored.clusters()] == [c.template for c in miner.clusters()]
    with pytest.raises(ValueError):
        restored.restore({"clusters": [["x"]]})


def _mine(lines: list[str]) -> int:
    stage = TemplateStage()
    for i in range(0, len(lines), 4096):
        stage.analyze(lines[i : i + 4096])
        stage.learn(lines[i : i + 4096])
    return len(stage.miner)


@pytest.mark.skipif(not (DATA / "hdfs" / "hdfs_events_2percent.parquet").is_file(),
                    reason="shared HDFS sample not present")
def test_hdfs_template_count() -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(DATA / "hdfs" / "hdfs_events_2percent.parquet", columns=["m_message"])
    lines = [str(m) for m in table.column(0).to_pylist()[:50_000]]
    assert 10 <= _mine(lines) <= 60  # HDFS_v1 has 46 templates overall


@pytest.mark.skipif(not (DATA / "loghub" / "OpenSSH_2k.log").is_file(), reason="shared OpenSSH sample not present")
def test_openssh_template_count() -> None:
    raw = (DATA / "loghub" / "OpenSSH_2k.log").read_text(encoding="utf-8", errors="replace").splitlines()
    lines = [line.split("]: ", 1)[1] if "]: " in line else line for line in raw]
    assert 15 <= _mine(lines) <= 45


def test_bundled_sample_collapses_to_few_templates() -> None:
    from streams.sample import iter_sample

    lines = [json.loads(raw)["message"] for raw in iter_sample()]
    assert _mine(lines) < 120  # 817 distinct regex-masked texts

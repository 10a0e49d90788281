"""`secstream hunt` of a word: events whose message holds the word come first, and a word no event holds
says so instead of listing events that only share a WordPiece with it (``mimikatz`` = ``mimi ##kat ##z``).

A real pipeline (the bundled text model) fills a real embedded store with a few events; no mocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.cli.main import main
from streams.cli.replay import replay_records
from streams.adapters import Record
from streams.config.settings import Settings
from streams.hunt.engine import contains_terms, hunt, hunt_terms
from streams.stages.factory import build_pipeline, build_store
from streams.stages.snapshots import save_state
from streams.store import VectorStore

# words that share WordPiece terms with "mimikatz" (mimi, ##kat, ##z) without containing it
LOOKALIKES = ["session opened for user mimi by (uid=0)", "tomkat service restarted by systemd",
              "cron wrote archive backup.tgz to /var/backups"]


def _events(extra: list[str]) -> list[bytes]:
    msgs = [f"Accepted password for u{i % 4} from 10.0.0.{i % 7} port {40000 + i} ssh2" for i in range(40)]
    msgs += LOOKALIKES + extra
    return [json.dumps({"event_id": f"e-{i}", "time": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "message": m,
                        "source": "sshd", "user": f"u{i % 4}", "host": "h1"}).encode() for i, m in enumerate(msgs)]


@dataclass
class Filled:
    data_dir: Path
    settings: Settings
    pipeline: object


def _fill(data_dir: Path, extra: list[str]) -> Filled:
    settings = Settings(data_dir=data_dir, entity_types="", entity_join_types="")
    store = build_store(settings)
    try:
        pipeline = build_pipeline(settings, store)
        records = [Record(i + 1, v) for i, v in enumerate(_events(extra))]
        replay_records(iter(records), pipeline, data_dir / "out")
        save_state(pipeline, data_dir / "state")
    finally:
        store.close()
    return Filled(data_dir, settings, pipeline)


@pytest.fixture(scope="module")
def without(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    return _fill(tmp_path_factory.mktemp("hunt-without"), [])


@pytest.fixture(scope="module")
def with_word(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    return _fill(tmp_path_factory.mktemp("hunt-with"),
                 [r"Process Create: C:\Tools\Mimikatz.exe sekurlsa::logonpasswords"])


def _store(filled: Filled) -> Iterator[VectorStore]:
    s = build_store(filled.settings)
    yield s
    s.close()


def test_hunt_terms_are_the_words_without_field_words() -> None:
    assert hunt_terms("Mimikatz.exe user=root  [preauth] host=h1") == ("mimikatz.exe", "preauth")
    assert hunt_terms("user=root") == ()
    assert contains_terms({"message": "C:\\Tools\\Mimikatz.exe"}, ("mimikatz",))
    assert not contains_terms({"message": "user mimi"}, ("mimikatz",))


def test_a_word_no_event_holds_gives_no_word_piece_hits(without: Filled) -> None:
    for store in _store(without):
        result = hunt(store, without.pipeline.encoder, "mimikatz", limit=20)  # type: ignore[attr-defined]
        assert result.contained is False and result.terms == ("mimikatz",)
        # before: the sub-word hits (mimi, tomkat, backup.tgz) came back as the answer
        assert not [h for h in result.hits if h.collection == "events" and set(h.ranks) == {"sparse"}]
        assert "events/sparse" not in result.lists


def test_cli_says_in_one_line_that_no_event_contains_the_word(without: Filled, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SECSTREAM_DATA_DIR", str(without.data_dir))
    monkeypatch.delenv("SECSTREAM_QDRANT_URL", raising=False)
    assert main(["hunt", "mimikatz"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("no event contains 'mimikatz'")
    if "0 hits" in err:
        assert out.strip() == "no event contains 'mimikatz'"
    else:  # what the dense vector found, under its heading
        assert out.splitlines()[0] == "no event contains 'mimikatz'; nearest by meaning:"
    assert "mimi by" not in out and "tomkat" not in out and "backup.tgz" not in out


def test_events_holding_the_word_come_first_whatever_its_case(with_word: Filled) -> None:
    for store in _store(with_word):
        result = hunt(store, with_word.pipeline.encoder, "mimikatz", limit=10)  # type: ignore[attr-defined]
        assert result.contained is True
        assert result.hits[0].payload["message"].startswith("Process Create: C:\\Tools\\Mimikatz.exe")
        assert not any(contains_terms(h.payload, ("mimikatz",)) for h in result.hits[1:])

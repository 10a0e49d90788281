"""CLI: bad arguments give one line that names what is valid, never a traceback."""

from __future__ import annotations

import json

import pytest

from streams.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["replay", "x.log", "--format", "csv", "--out", "o"], "jsonl"),
        (["bench", "nope"], "store"),
        (["frobnicate"], "run"),
        (["replay", "/no/such/file.log", "--out", "o"], "no such file"),
        (["produce", "/no/such/file.log"], "no such file"),
    ],
)
def test_bad_arguments_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert expect in err and "Traceback" not in err


def test_produce_without_kafka_names_the_fix(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SECSTREAM_KAFKA_BOOTSTRAP", raising=False)
    f = tmp_path / "e.jsonl"
    f.write_text('{"time": "2026-01-01T00:00:00Z", "message": "x"}\n')
    code, _, err = run(capsys, "produce", str(f))
    assert code == 2 and "SECSTREAM_KAFKA_BOOTSTRAP" in err


def test_invalid_setting_is_one_line(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SECSTREAM_ALERT_THRESHOLD", "300")
    code, _, err = run(capsys, "config")
    assert code == 2 and "SECSTREAM_ALERT_THRESHOLD" in err and len(err.strip().splitlines()) == 1


def test_config_masks_secrets(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SECSTREAM_QDRANT_API_KEY", "s3cret-value")
    code, out, _ = run(capsys, "config", "--json")
    assert code == 0
    cfg = json.loads(out)
    assert cfg["qdrant_api_key"] == "********" and "s3cret-value" not in out
    assert cfg["topic_events"] == "secstream.events"


def test_version_answers_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"secstream {version('secstream')}"

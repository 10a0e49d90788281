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


# ------------------------------------------------------------------ a file read as the wrong format (issue 16)
def _hdfs_parquet(path):
    """A small Parquet file with the columns of the HDFS sample (streams/adapters/hdfs.py)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 50
    table = pa.table({"date": ["081109"] * rows, "time": [f"2035{i:02d}" for i in range(rows)],
                      "id": [str(143 + i) for i in range(rows)], "level": ["INFO"] * rows,
                      "component": ["dfs.DataNode$PacketResponder"] * rows,
                      "m_message": [f"PacketResponder 1 for block blk_{i} terminating" for i in range(rows)],
                      "seq_id": [f"blk_{i}" for i in range(rows)]})
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("command", [
    ["replay", "{file}", "--format", "hdfs", "--out", "{out}"],
    ["produce", "{file}", "--format", "hdfs", "--bootstrap", "127.0.0.1:9"],
    ["produce", "{file}", "--format", "jsonl", "--bootstrap", "127.0.0.1:9"],
    ["train", "categorical", "{file}", "--format", "sshd", "--out", "{out}"],
    ["train", "sessions", "{file}", "--format", "hdfs", "--out", "{out}"],
])
def test_parquet_read_as_text_is_refused_at_once(capsys, tmp_path, command: list[str]) -> None:
    data = _hdfs_parquet(tmp_path / "events.parquet")
    argv = [a.format(file=data, out=tmp_path / "out") for a in command]
    code, _, err = run(capsys, *argv)
    # before: replay read the binary file as text and wrote one error line per "line" of it, exit 0
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "is a Parquet file" in err and "--format parquet" in err
    assert not (tmp_path / "out" / "events.jsonl").exists()


def test_a_real_hdfs_parquet_sample_read_as_hdfs_is_refused(capsys, tmp_path) -> None:
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hdfs" / "hdfs_events_2percent.parquet"
    if not sample.is_file():
        pytest.skip(f"no shared sample data at {sample}")
    code, _, err = run(capsys, "replay", str(sample), "--format", "hdfs", "--out", str(tmp_path / "out"))
    assert code == 2 and "--format parquet" in err and len(err.strip().splitlines()) == 1


def test_gzip_text_is_read_and_gzip_parquet_or_text_as_parquet_are_refused(capsys, tmp_path) -> None:
    import gzip

    from streams.adapters import read_records

    lines = [b"081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 "
             b"terminating"] * 3
    text = tmp_path / "hdfs.log.gz"
    text.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    assert [r.error for r in read_records(text, "hdfs")] == [None, None, None]  # gzip is read, not refused
    packed = tmp_path / "events.parquet.gz"
    packed.write_bytes(gzip.compress(_hdfs_parquet(tmp_path / "e.parquet").read_bytes()))
    code, _, err = run(capsys, "replay", str(packed), "--format", "hdfs", "--out", str(tmp_path / "o"))
    assert code == 2 and "gzip-compressed Parquet file" in err and "--format parquet" in err
    code, _, err = run(capsys, "replay", str(text), "--format", "parquet", "--out", str(tmp_path / "o"))
    assert code == 2 and "is not a Parquet file" in err and len(err.strip().splitlines()) == 1

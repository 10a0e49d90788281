"""Input adapters on the real sample files in ../shared/data (skipped when absent)."""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas import SecurityEvent, decode_event
from streams.adapters import FORMATS, Record, UnknownFormat, detect_format, read_records

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SSHD = DATA / "loghub" / "OpenSSH_2k.log"
HDFS = DATA / "loghub" / "HDFS_2k.log"
PARQUET = DATA / "hdfs" / "hdfs_events_2percent.parquet"
OTRF = DATA / "otrf"
RECORDINGS = ("cmd_sam_copy_esentutl.zip", "empire_mimikatz_logonpasswords.zip", "sh_arp_cache.zip")


@pytest.fixture(autouse=True)
def _need_data(request: pytest.FixtureRequest) -> None:
    if not getattr(request.function, "needs_data", True):
        return
    if not DATA.is_dir():
        pytest.skip(f"sample data folder {DATA} is absent (it lives beside the project, not in a clone)")


def _events(records: Iterator[Record]) -> list[tuple[Record, SecurityEvent]]:
    out = []
    for rec in records:
        assert rec.error is None, f"line {rec.line}: {rec.error}"
        assert rec.value is not None
        out.append((rec, decode_event(rec.value)))
    return out


def _by_message(events: list[tuple[Record, SecurityEvent]], needle: str) -> SecurityEvent:
    return next(ev for _, ev in events if needle in ev.message)


# ------------------------------------------------------------------ sshd


def test_sshd_counts_and_all_values_decode() -> None:
    events = _events(read_records(SSHD, "sshd", year=2024))
    assert len(events) == 2000
    assert [r.line for r, _ in events] == list(range(1, 2001))
    assert all(ev.source == "sshd" and ev.host == "LabSZ" and ev.process == "sshd" for _, ev in events)
    assert all(ev.time.year == 2024 and ev.time.month == 12 for _, ev in events)
    assert all(isinstance(ev.attributes.get("pid"), int) for _, ev in events)


def test_sshd_field_extraction() -> None:
    events = _events(read_records(SSHD, "sshd", year=2024))
    ok = _by_message(events, "Accepted password for fztu")
    assert (ok.outcome, ok.user, ok.src_ip, ok.src_port, ok.event_type) == (
        "success", "fztu", "119.137.62.142", 49116, "authentication")
    assert ok.dst_port is None  # sshd does not log the server port
    bad = _by_message(events, "Failed password for invalid user test9")
    assert (bad.outcome, bad.user, bad.src_ip, bad.src_port) == ("failure", "test9", "52.80.34.196", 36060)
    assert bad.attributes["invalid_user"] is True and bad.severity == "medium"
    root = _by_message(events, "Failed password for root from")
    assert root.user == "root" and root.outcome == "failure" and root.severity == "low"
    brk = _by_message(events, "POSSIBLE BREAK-IN ATTEMPT")
    assert brk.severity == "medium" and brk.src_ip == "173.234.31.186"
    pam = _by_message(events, "user=root")
    assert pam.user == "root" and pam.event_type == "authentication" and pam.outcome == "failure"
    rep = _by_message(events, "message repeated 5 times")
    assert rep.attributes["repeat_count"] == 5 and rep.user == "root" and rep.src_port is not None
    bye = _by_message(events, "Bye Bye")
    assert bye.event_type == "connection" and bye.attributes["preauth"] is True and bye.src_ip
    closed = _by_message(events, "Connection closed by 212.47.254.145")
    assert closed.src_ip == "212.47.254.145"
    session = _by_message(events, "session opened for user fztu")
    assert session.event_type == "session" and session.user == "fztu"


def test_sshd_year_rolls_over_and_bad_lines_are_errors(tmp_path: Path) -> None:
    f = tmp_path / "auth.log"
    f.write_text(
        "Dec 31 23:59:59 h sshd[1]: Connection closed by 10.0.0.1 [preauth]\n"
        "no header here\n"
        "\n"
        "Jan  1 00:00:01 h sshd[2]: Invalid user bob from 2001:db8::7\n"
    )
    recs = list(read_records(f, "sshd", year=2023))
    assert [r.line for r in recs] == [1, 2, 3, 4]
    assert recs[1].error == "sshd: no syslog timestamp" and recs[1].value is None
    assert recs[2].error is not None
    last = decode_event(recs[3].value or b"")
    assert last.time.year == 2024 and last.src_ip == "2001:db8::7" and last.user == "bob"


# ------------------------------------------------------------------ hdfs lines and parquet


def test_hdfs_lines() -> None:
    events = _events(read_records(HDFS, "hdfs"))
    assert len(events) == 2000
    assert all(ev.source == "hdfs" and ev.session_id and ev.session_id.startswith("blk_") for _, ev in events)
    first = events[0][1]
    assert first.session_id == "blk_38865049064139660"
    assert first.process == "dfs.DataNode$PacketResponder" and first.severity == "informational"
    assert first.to_dict()["time"] == "2008-11-09T20:36:15.000Z"
    neg = next(ev for _, ev in events if "blk_-" in ev.message)
    assert neg.session_id is not None and neg.session_id.startswith("blk_-")
    recv = _by_message(events, "Receiving block")
    assert recv.src_ip and recv.dst_ip and recv.src_port and recv.dst_port == 50010
    assert {ev.severity for _, ev in events} == {"informational", "medium"}  # INFO and WARN


def test_parquet_count_and_prefix() -> None:
    import pyarrow.parquet as pq

    assert pq.ParquetFile(PARQUET).metadata.num_rows == 222_579
    assert detect_format(PARQUET) == "parquet"
    assert sum(1 for _ in read_records(PARQUET, "parquet")) == 222_579  # ~4 s on 2 cores
    prefix = _events(itertools.islice(read_records(PARQUET), 5000))
    assert [r.line for r, _ in prefix] == list(range(1, 5001))
    first = prefix[0][1]
    assert first.session_id == "blk_4394112519745907149" and first.source == "hdfs"
    assert first.src_ip == "10.250.18.114" and first.dst_port == 50010
    assert all(ev.session_id and ev.session_id.startswith("blk_") for _, ev in prefix)


# ------------------------------------------------------------------ windows-json


@pytest.mark.parametrize("name", RECORDINGS)
def test_windows_recordings_decode(name: str) -> None:
    path = OTRF / name
    assert detect_format(path) == "windows-json"
    events = _events(read_records(path))
    assert len(events) == {"cmd_sam_copy_esentutl.zip": 915, "empire_mimikatz_logonpasswords.zip": 6026,
                           "sh_arp_cache.zip": 12}[name]


def test_windows_field_mapping() -> None:
    events = [ev for _, ev in _events(read_records(OTRF / "empire_mimikatz_logonpasswords.zip", "windows-json"))]
    logons = [ev for ev in events if ev.attributes.get("EventID") == 4624]
    assert logons and all(ev.event_type == "authentication" and ev.outcome == "success" for ev in logons)
    assert all(ev.host and ev.user and ev.source == "windows-security" for ev in logons)
    assert any(ev.src_ip for ev in logons) and any(ev.session_id for ev in logons)
    net = [ev for ev in events if ev.source == "sysmon" and ev.attributes.get("EventID") == 3]
    assert net and all(ev.event_type == "network_connection" and ev.dst_ip and ev.dst_port for ev in net)
    assert all(ev.protocol == "tcp" or ev.protocol == "udp" for ev in net)
    proc = [ev for ev in events if ev.event_type == "process_start"]
    assert proc and all(ev.process and ev.process.lower().endswith(".exe") for ev in proc)
    assert all("\\" not in (ev.user or "") for ev in events)  # DOMAIN\user split into attributes


def test_windows_plain_jsonl_and_missing_fields(tmp_path: Path) -> None:
    f = tmp_path / "events.json"
    lines = [
        {"EventID": 4625, "Channel": "Security", "SourceName": "Microsoft-Windows-Security-Auditing",
         "Hostname": "DC1", "TimeCreated": "2021-05-01 10:00:00.123", "TargetUserName": "eve",
         "IpAddress": "-", "IpPort": "-"},
        {"EventID": 1, "Hostname": "H"},
        "not json",
    ]
    f.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    assert detect_format(f) == "windows-json"
    recs = list(read_records(f, "windows-json"))
    assert len(recs) == 3
    failed = decode_event(recs[0].value or b"")
    assert (failed.outcome, failed.user, failed.src_ip, failed.event_type) == ("failure", "eve", None, "authentication")
    assert failed.message.startswith("EventID 4625")
    assert recs[1].error is not None and "time" in recs[1].error
    assert recs[2].error is not None and recs[2].value is None


# ------------------------------------------------------------------ jsonl, gzip, auto, errors


def test_jsonl_is_raw_lines_including_blank_and_invalid(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl.gz"
    body = b'{"time": 0, "message": "a"}\n\nnot json\r\n{"time": 1, "message": "b"}'
    with gzip.open(f, "wb") as fh:
        fh.write(body)
    assert detect_format(f) == "jsonl"
    recs = list(read_records(f))
    assert [r.value for r in recs] == [b'{"time": 0, "message": "a"}', b"", b"not json", b'{"time": 1, "message": "b"}']
    assert [r.line for r in recs] == [1, 2, 3, 4] and all(r.error is None for r in recs)


def test_auto_detection_of_sample_files() -> None:
    assert detect_format(SSHD) == "sshd"
    assert detect_format(HDFS) == "hdfs"
    assert detect_format(OTRF / RECORDINGS[0]) == "windows-json"


def test_unknown_format_names_valid_formats(tmp_path: Path) -> None:
    with pytest.raises(UnknownFormat) as info:
        read_records(tmp_path / "x.log", "csv")
    for fmt in FORMATS:
        assert fmt in str(info.value)
    f = tmp_path / "mystery.txt"
    f.write_text("hello world\n")
    with pytest.raises(UnknownFormat) as info2:
        detect_format(f)
    assert "sshd" in str(info2.value) and "windows-json" in str(info2.value)


test_unknown_format_names_valid_formats.needs_data = False  # type: ignore[attr-defined]

"""Property-based tests of the log-line adapters (issue 7, point 5), with hypothesis.

Their contract: a line parser returns an event dict or raises :class:`AdapterError` (nothing else), and
:func:`read_records` gives exactly one record per input line, in order, each a value or an error, never
raising for what a line holds. Lines are arbitrary text or bytes, or follow each format's grammar with
every number drawn from its whole digit range (day 99, a 5,000-digit pid: ``int()`` refuses over 4,300
digits) and fields from the strategies of ``test_properties.py``. A line the sshd or HDFS parser turns
into an event must decode as a SecurityEvent; Windows lines are checked against the contract only (their
time is passed through for the pipeline to validate).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from schemas.models import MAX_MESSAGE_BYTES, decode_event
from streams.adapters import read_records
from streams.adapters._common import AdapterError, encode
from streams.adapters.hdfs import hdfs_event, parse_hdfs_line
from streams.adapters.sshd import SyslogClock, parse_sshd_line
from streams.adapters.windows import parse_windows_line
from tests.unit.strategies import chars, ips, text

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def props(n: int) -> settings:
    return settings(max_examples=n, database=None, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def num(lo: int, hi: int, width: int) -> st.SearchStrategy[str]:
    """A ``width``-digit number, from its valid range ``lo..hi`` or from all ``width`` digits."""
    return st.one_of(st.integers(lo, hi), st.integers(0, 10**width - 1)).map(lambda n: f"{n:0{width}d}")


#: a run of digits as a log writes it: small, or past int()'s 4,300-digit limit
digits = st.one_of(st.integers(0, 99_999).map(str), st.integers(4_290, 5_000).map(lambda n: "9" * n))
words = st.text(chars.filter(lambda c: not c.isspace()), min_size=1, max_size=10)
addresses = st.one_of(ips, words)


@st.composite
def sshd_messages(draw: st.DrawFn) -> str:
    user, ip, port, n, code = draw(text), draw(addresses), draw(digits), draw(digits), draw(digits)
    msg = draw(st.sampled_from([
        f"Accepted password for {user} from {ip} port {port} ssh2",
        f"Failed password for invalid user {user} from {ip} port {port} ssh2",
        f"Invalid user {user} from {ip} port {port}",
        f"PAM {n} more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={user}",
        f"PAM service(sshd) ignoring max retries; {n} > 3",
        f"pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}",
        f"Received disconnect from {ip} port {port}:{code}: {user}",
        f"error: Received disconnect from {ip}: {code}: {user}",
        f"reverse mapping checking getaddrinfo for {user} [{ip}] failed - POSSIBLE BREAK-IN ATTEMPT!",
        f"Connection closed by {ip} port {port}",
        f"pam_unix(sshd:session): session opened for user {user} by (uid=0)",
        user,
    ]))
    msg += draw(st.sampled_from(["", " [preauth]"]))
    nesting = draw(st.sampled_from([0, 0, 1, 2]) | st.integers(0, 1_500))  # syslog may wrap repeats in repeats
    return f"message repeated {draw(digits)} times: [ " * nesting + msg + "]" * nesting


NESTED = "Jan  1 00:00:00 host sshd[1]: " + "message repeated 2 times: [ " * 1500 + "x" + "]" * 1500


@st.composite
def syslog_lines(draw: st.DrawFn) -> str:
    mon = draw(st.sampled_from([*MONTHS, "Foo"]))
    day = draw(st.integers(1, 31) | st.integers(0, 99))
    clock = ":".join(draw(num(0, hi, 2)) for hi in (23, 59, 59))
    proc = draw(st.sampled_from(["sshd", "sshd(pam_unix)", "CRON", "su"]))
    pid = draw(st.one_of(st.just(""), digits.map(lambda d: f"[{d}]")))
    return f"{mon} {day:>2} {clock} {draw(words)} {proc}{pid}: {draw(sshd_messages())}"


@st.composite
def hdfs_lines(draw: st.DrawFn) -> str:
    date = draw(num(0, 99, 2)) + draw(num(1, 12, 2)) + draw(num(1, 31, 2))
    clock = "".join(draw(num(0, hi, 2)) for hi in (23, 59, 59))
    level = draw(st.sampled_from(["INFO", "WARN", "ERROR", "FATAL", "DEBUG", "X"]))
    component = draw(st.sampled_from(["dfs.DataNode$PacketResponder", "dfs.FSNamesystem", "a.B$C"]) | words)
    block = f"blk_{draw(st.sampled_from(['', '-']))}{draw(digits)}"
    message = draw(st.sampled_from([
        f"Receiving block {block} src: /{draw(addresses)}:{draw(digits)} dest: /{draw(addresses)}:{draw(digits)}",
        f"PacketResponder 1 for block {block} terminating", draw(text),
    ]))
    return f"{date} {clock} {draw(digits)} {level} {component}: {message}"


def _decodes(ev: dict[str, Any]) -> None:
    """An adapter's event (with a message under the limit) is a valid SecurityEvent."""
    if len(str(ev.get("message", "")).encode("utf-8")) <= MAX_MESSAGE_BYTES:
        decode_event(encode(ev), max_bytes=10 * MAX_MESSAGE_BYTES)


@props(300)
@given(st.one_of(syslog_lines(), st.text(max_size=200)))
@example(NESTED)
@example("Jan  1 00:00:00 host sshd[" + "9" * 5000 + "]: Connection closed by 1.2.3.4 port 22")
@example("Jan  1 00:00:00 host sshd[1]: PAM " + "9" * 5000 + " more authentication failures; rhost=1.2.3.4")
def test_sshd_parser_returns_a_valid_event_or_raises_adapter_error(line: str) -> None:
    try:
        ev = parse_sshd_line(line, SyslogClock(2024))
    except AdapterError:
        return
    _decodes(ev)


@props(300)
@given(st.one_of(hdfs_lines(), st.text(max_size=200)))
@example("080231 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating")
@example("081109 203615 " + "1" * 5000 + " INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating")
def test_hdfs_parser_returns_a_valid_event_or_raises_adapter_error(line: str) -> None:
    try:
        ev = parse_hdfs_line(line)
    except AdapterError:
        return
    _decodes(ev)


@props(100)
@given(st.tuples(*(st.one_of(st.text(max_size=8), num(0, 99, 2)) for _ in range(2)),
                 st.one_of(st.text(max_size=8), digits), st.text(max_size=6), st.text(max_size=12), text))
@example(("081109", "203615", "²", "INFO", "dfs.DataNode", "m"))
def test_hdfs_event_from_parquet_columns_raises_only_adapter_error(columns: tuple[str, ...]) -> None:
    try:
        ev = hdfs_event(*columns)
    except AdapterError:
        return
    _decodes(ev)


_WINDOWS_KEYS = ("EventID", "Channel", "SourceName", "@timestamp", "TimeCreated", "EventTime", "UtcTime", "Hostname",
                 "Computer", "TargetUserName", "SubjectUserName", "User", "SubjectDomainName", "Image", "NewProcessName",
                 "IpAddress", "IpPort", "DestAddress", "DestPort", "SourcePort", "Protocol", "TargetLogonId",
                 "SubjectLogonId", "Direction", "Message", "EventType", "CommandLine", "ProcessId", "RecordNumber")
_windows_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), digits, ips, words,
    st.sampled_from(["4624", "²", "٣", "１２", "-", "", "2020-01-01T00:00:00Z", "2020-01-01 00:00:00.1234567",
                     "Microsoft-Windows-Sysmon/Operational", "Security", "AUDIT_FAILURE", "%%14592", "0x3e7"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def windows_lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "json", "audit", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "audit":
        rest = draw(st.sampled_from(["", "success=yes exe=\"/bin/x\" ses=4 pid=7", "arch=c000003e"]))
        return f"type={draw(words)} msg=audit({draw(digits)}.{draw(num(0, 999, 3))}:{draw(digits)}): {rest}".encode()
    obj = draw(st.dictionaries(st.sampled_from(_WINDOWS_KEYS), _windows_values, max_size=12))
    if draw(st.booleans()):  # most events have a time the adapter reads; the rest of the object varies
        obj[draw(st.sampled_from(["@timestamp", "TimeCreated", "UtcTime"]))] = draw(st.sampled_from(
            ["2020-01-01T00:00:00.123Z", "2020-01-01 00:00:00.1234567", "2020-01-01T00:00:00+02:00"]))
    return json.dumps(obj).encode()


@props(300)
@given(windows_lines())
@example(b'{"EventID": "\\u00b2", "@timestamp": "2020-01-01T00:00:00Z"}')
@example(b'{"EventID": "' + b"9" * 5000 + b'", "@timestamp": "2020-01-01T00:00:00Z"}')
@example(b"type=SYSCALL msg=audit(" + b"9" * 5000 + b".123:1): success=yes")
def test_windows_parser_raises_only_adapter_error(line: bytes) -> None:
    try:
        parse_windows_line(line)
    except AdapterError:
        pass


@props(60)
@given(st.sampled_from(["jsonl", "sshd", "hdfs", "windows-json"]),
       st.lists(st.one_of(st.binary(max_size=120), syslog_lines().map(str.encode), hdfs_lines().map(str.encode),
                          windows_lines()).map(lambda b: b.replace(b"\n", b"")), max_size=12))
@example("sshd", [b"", NESTED.encode(), b"Jan  1 00:00:00 h sshd[1]: x"])
def test_read_records_gives_one_record_per_line_and_never_raises(fmt: str, lines: list[bytes]) -> None:
    content = b"\n".join(lines)
    assume(not content.startswith(b"\x1f\x8b"))  # gzip magic: the file would be read as gzip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.log"
        path.write_bytes(content)
        records = list(read_records(path, fmt, year=2024))
    *ended, last = content.split(b"\n")  # a line ended by \r\n loses both; a last line without \n is kept
    raw_lines = [line.removesuffix(b"\r") for line in ended] + ([last] if last else [])
    assert [r.line for r in records] == list(range(1, len(raw_lines) + 1))
    for rec, raw in zip(records, raw_lines, strict=True):
        assert (rec.value is None) != (rec.error is None), rec
        if fmt == "jsonl":
            assert rec.value == raw

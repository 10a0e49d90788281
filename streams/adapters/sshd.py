"""Syslog (RFC 3164) lines, with OpenSSH ``sshd`` messages mapped field by field.

Only what a message says is filled: ``sshd`` logs the client's address and port,
never the server's, so ``dst_port`` stays empty. A line with a syslog header but
an unrecognised message still becomes an event (``event_type`` ``"sshd"`` or, for
another daemon, ``"syslog"``); a line without a syslog header is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from streams.adapters._common import AdapterError, clean_ip, clean_port, digits_value

__all__ = ["SyslogClock", "parse_sshd_line"]

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_HEADER = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) +(?P<day>[0-9]{1,2}) (?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2}) "
    r"(?P<host>\S+) (?P<proc>[^\s\[:]+)(?:\[(?P<pid>[0-9]+)\])?: ?(?P<msg>.*)"
)
_LOOSE_HEADER = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) +(?P<day>[0-9]{1,2}) (?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2}) (?P<host>\S+) +(?P<msg>.*)"
)
_KV = re.compile(r"(\w+)=(\S*)")
_IP = r"(?P<ip>[0-9A-Fa-f.:]+)"


class SyslogClock:
    """Turns year-less syslog timestamps into datetimes, rolling the year over at Dec → Jan."""

    def __init__(self, year: int | None = None) -> None:
        self.year = year
        self._last_month = 0

    def at(self, month: int, day: int, h: int, m: int, s: int) -> datetime:
        """The UTC datetime of a syslog timestamp (syslog carries no zone; UTC is assumed).

        Without an explicit year, the first line takes the most recent year in which
        its date is not in the future (a log read in January that starts in December
        is last year's), as syslog readers commonly do.
        """
        if self.year is None:
            now = datetime.now(UTC)
            self.year = now.year
            if (month, day) > (now.month, now.day + 1):
                self.year -= 1
        if self._last_month and month < self._last_month - 6:
            self.year += 1
        self._last_month = month
        return datetime(self.year, month, day, h, m, s, tzinfo=UTC)


def _auth(outcome: str, severity: str, **extra: Any) -> dict[str, Any]:
    return {"event_type": "authentication", "outcome": outcome, "severity": severity, **extra}


def _client(ev: dict[str, Any], addr: str | None, port: str | None = None) -> None:
    ip = clean_ip(addr)
    if ip is not None:
        ev["src_ip"] = ip
    elif addr:
        ev.setdefault("attributes", {})["rhost"] = addr
    p = clean_port(port)
    if p is not None:
        ev["src_port"] = p


def _pam_kv(ev: dict[str, Any], text: str) -> None:
    kv = dict(_KV.findall(text))
    _client(ev, kv.get("rhost") or None)
    if kv.get("user"):
        ev["user"] = kv["user"]


def _failed_or_accepted(m: re.Match[str]) -> dict[str, Any]:
    ok = m["verb"] == "Accepted"
    invalid = bool(m["invalid"])
    ev = _auth("success" if ok else "failure",
               "informational" if ok else ("medium" if invalid else "low"),
               user=m["user"].strip(), attributes={"auth_method": m["method"]})
    if invalid:
        ev["attributes"]["invalid_user"] = True
    if m["proto"]:
        ev["protocol"] = m["proto"]
    _client(ev, m["ip"], m["port"])
    return ev


def _disconnect(m: re.Match[str]) -> dict[str, Any]:
    reason = m["reason"]
    err = bool(m["error"])
    ev: dict[str, Any] = {"event_type": "connection", "outcome": "unknown",
                          "severity": "low" if err else "informational",
                          "attributes": {"disconnect_code": digits_value(m["code"]), "disconnect_reason": reason}}
    _client(ev, m["ip"], m["port"])
    return ev


def _simple(**fields: Any) -> Callable[[re.Match[str]], dict[str, Any]]:
    def build(m: re.Match[str]) -> dict[str, Any]:
        ev: dict[str, Any] = dict(fields)
        ev["attributes"] = dict(fields.get("attributes", {}))
        groups = m.groupdict()
        if groups.get("user"):
            ev["user"] = groups["user"].strip()
        if "ip" in groups:
            _client(ev, groups["ip"], groups.get("port"))
        if groups.get("rdns"):
            ev["attributes"]["rdns_host"] = groups["rdns"]
        if groups.get("n"):
            ev["attributes"]["count"] = digits_value(groups["n"])
        if groups.get("kv"):
            _pam_kv(ev, groups["kv"])
        return ev

    return build


# (pattern, builder); the first full match wins. "[preauth]" is stripped first.
_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], dict[str, Any]]]] = [
    (re.compile(r"(?P<verb>Accepted|Failed) (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>.*?) "
                rf"from {_IP} port (?P<port>[0-9]+)(?: (?P<proto>ssh[0-9]?))?"), _failed_or_accepted),
    (re.compile(rf"Invalid user (?P<user>.*?) from {_IP}(?: port (?P<port>[0-9]+))?"),
     _simple(**_auth("failure", "medium", attributes={"invalid_user": True}))),
    (re.compile(r"input_userauth_request: invalid user (?P<user>.*)"),
     _simple(**_auth("failure", "low", attributes={"invalid_user": True}))),
    (re.compile(r"(?:pam_unix\(sshd:auth\): )?authentication failure;(?P<kv>.*)"), _simple(**_auth("failure", "low"))),
    (re.compile(r"(?:pam_unix\(sshd:auth\): )?check pass; user unknown"),
     _simple(**_auth("failure", "low", attributes={"pam_user_unknown": True}))),
    (re.compile(r"PAM (?P<n>[0-9]+) more authentication failures?;(?P<kv>.*)"), _simple(**_auth("failure", "low"))),
    (re.compile(r"PAM service\(sshd\) ignoring max retries; (?P<n>[0-9]+) > [0-9]+"),
     _simple(**_auth("failure", "low"))),
    (re.compile(r"Disconnecting: Too many authentication failures for (?P<user>.*)"),
     _simple(**_auth("failure", "medium"))),
    (re.compile(r"(?:pam_unix\(sshd:session\): )?session opened for user (?P<user>\S+)(?: by .*)?"),
     _simple(event_type="session", outcome="success", severity="informational",
             attributes={"session_action": "opened"})),
    (re.compile(r"(?:pam_unix\(sshd:session\): )?session closed for user (?P<user>\S+)"),
     _simple(event_type="session", outcome="success", severity="informational",
             attributes={"session_action": "closed"})),
    (re.compile(rf"reverse mapping checking getaddrinfo for (?P<rdns>\S+) \[{_IP}\] failed - POSSIBLE BREAK-IN ATTEMPT!"),
     _simple(event_type="connection", outcome="unknown", severity="medium",
             attributes={"possible_break_in": True})),
    (re.compile(rf"(?P<error>error: )?Received disconnect from {_IP}(?: port (?P<port>[0-9]+))?: "
                r"(?P<code>[0-9]+): (?P<reason>.*)"), _disconnect),
    (re.compile(rf"Connection closed by {_IP}(?: port (?P<port>[0-9]+))?"),
     _simple(event_type="connection", outcome="unknown", severity="informational")),
    (re.compile(rf"Did not receive identification string from {_IP}(?: port (?P<port>[0-9]+))?"),
     _simple(event_type="connection", outcome="failure", severity="low")),
    (re.compile(r"fatal: (?P<what>.*)"), _simple(event_type="connection", outcome="failure", severity="low")),
]
_REPEATED = re.compile(r"message repeated (?P<n>[0-9]+) times: \[ ?(?P<inner>.*)\]")


def _sshd_fields(msg: str) -> dict[str, Any]:
    repeats: str | None = None
    while m := _REPEATED.fullmatch(msg):  # unwrapped in a loop: a line may nest them past the recursion limit
        repeats = repeats or m["n"]  # the outermost count
        msg = m["inner"]
    body = msg
    preauth = body.endswith(" [preauth]")
    if preauth:
        body = body[: -len(" [preauth]")]
    for pattern, build in _RULES:
        if mm := pattern.fullmatch(body):
            ev = build(mm)
            break
    else:
        ev = {"event_type": "sshd", "severity": "informational"}
    if preauth:
        ev.setdefault("attributes", {})["preauth"] = True
    if repeats is not None:
        ev.setdefault("attributes", {})["repeat_count"] = digits_value(repeats)
    return ev


def parse_sshd_line(line: str, clock: SyslogClock) -> dict[str, Any]:
    """Map one syslog line to a SecurityEvent dict.

    Raises:
        AdapterError: the line has no syslog header (``"sshd: no syslog timestamp"``).
    """
    h = _HEADER.fullmatch(line) or _LOOSE_HEADER.fullmatch(line)
    if h is None or h["mon"] not in _MONTHS:
        raise AdapterError("sshd: no syslog timestamp")
    try:
        when = clock.at(_MONTHS[h["mon"]], int(h["day"]), int(h["h"]), int(h["m"]), int(h["s"]))
    except ValueError as exc:
        raise AdapterError(f"sshd: invalid syslog timestamp ({exc})") from exc
    msg = h["msg"]
    groups = h.groupdict()
    proc = groups.get("proc")
    is_sshd = proc is not None and (proc == "sshd" or proc.startswith("sshd("))
    fields = _sshd_fields(msg) if is_sshd else {"event_type": "syslog"}
    attrs: dict[str, Any] = fields.pop("attributes", {})
    if groups.get("pid"):
        attrs["pid"] = digits_value(groups["pid"])
    return {
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "message": msg,
        "source": "sshd" if is_sshd else "syslog",
        "host": h["host"],
        "process": proc,
        **fields,
        "attributes": attrs,
    }

"""Windows event logs as JSON lines (OTRF Security-Datasets: Security, Sysmon, PowerShell).

Accepts the recordings' ``.zip`` directly (every member's lines, in name order) or a
plain ``.json``/``.jsonl`` file. Time is taken from ``@timestamp`` (UTC), else
``TimeCreated``, ``EventTime``, ``UtcTime``; timestamps without a zone are taken as
UTC (the recordings do not say which zone ``TimeCreated`` is in). A Linux auditd
line (``type=... msg=audit(...)``), as in the ``sh_arp_cache`` recording, becomes a
``linux-audit`` event; any other non-JSON line is an error record.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streams.adapters._common import (
    AdapterError,
    clean_ip,
    clean_port,
    digits_value,
    iter_lines,
    open_binary,
    truncate_utf8,
)

__all__ = ["iter_windows_lines", "parse_windows_line", "windows_event"]

_SECURITY_TYPES = {
    4624: "authentication", 4625: "authentication", 4648: "authentication", 4768: "authentication",
    4769: "authentication", 4771: "authentication", 4776: "authentication",
    4634: "logoff", 4647: "logoff", 4672: "privilege_assignment",
    4688: "process_start", 4689: "process_end", 4656: "object_access", 4663: "object_access",
    5140: "share_access", 5145: "share_access", 5156: "network_connection", 5158: "network_bind",
    4798: "group_enumeration", 4799: "group_enumeration", 1102: "log_cleared",
    4720: "account_created", 4732: "group_member_added", 4658: "object_access", 4690: "object_access",
    4703: "privilege_adjustment", 4673: "privilege_use", 4627: "authentication",
}
_SYSMON_TYPES = {
    1: "process_start", 2: "file_time_change", 3: "network_connection", 5: "process_end",
    6: "driver_load", 7: "image_load", 8: "remote_thread", 9: "raw_access_read", 10: "process_access", 11: "file_create", 12: "registry_event",
    13: "registry_event", 14: "registry_event", 15: "file_stream", 17: "pipe_event", 18: "pipe_event",
    22: "dns_query", 23: "file_delete",
}
_POWERSHELL_TYPES = {4103: "powershell_pipeline", 800: "powershell_pipeline", 4104: "script_block",
                     400: "powershell_engine", 403: "powershell_engine", 600: "powershell_provider"}
_SEVERITY = {4625: "low", 4771: "low", 4776: "low", 1102: "high", 4720: "low", 4732: "low"}
# Event ids whose TargetUserName is the account acted on (else it may be a group).
_TARGET_USER_IDS = {4624, 4625, 4634, 4647, 4648, 4672, 4720, 4722, 4723, 4724, 4725, 4726, 4738,
                    4740, 4767, 4768, 4769, 4771, 4776}
_PROTOCOLS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp"}
_DIRECTIONS = {"%%14592": "inbound", "%%14593": "outbound"}
_ATTRIBUTE_FIELDS = (
    "EventType", "Task", "LogonType", "LogonProcessName", "AuthenticationPackageName", "Status",
    "SubStatus", "FailureReason", "WorkstationName", "ProcessId", "ParentImage", "ParentProcessName",
    "CommandLine", "ParentCommandLine", "TargetImage", "GrantedAccess", "ObjectName", "ObjectType",
    "AccessMask", "TargetObject", "ImageLoaded", "TargetFilename", "Signed", "IntegrityLevel",
    "ElevatedToken", "TargetDomainName", "SubjectDomainName", "DestinationHostname", "QueryName",
    "PipeName", "ServiceName", "ShareName", "RelativeTargetName", "RecordNumber",
)
_MAX_ATTRIBUTE_CHARS = 1024
_NAIVE_TIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[ T]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?")
_TZ_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9:.]+([Zz]|[+-][0-9]{2}:[0-9]{2})")
_AUDIT = re.compile(r"type=(?P<type>\w+) msg=audit\((?P<sec>[0-9]+)\.(?P<ms>[0-9]{1,3})[0-9]*:(?P<serial>[0-9]+)\):\s*(?P<rest>.*)")
_AUDIT_KV = re.compile(r'(\w+)=("[^"]*"|\S+)')


def _present(value: object) -> str | None:
    if isinstance(value, str):
        v = value.strip()
        return v if v and v != "-" else None
    return None


def _time(obj: dict[str, Any]) -> str:
    for key in ("@timestamp", "TimeCreated", "EventTime", "UtcTime"):
        value = obj.get(key)
        if not isinstance(value, str):
            continue
        if _TZ_TIME.fullmatch(value.strip()):
            return value.strip()
        if m := _NAIVE_TIME.fullmatch(value.strip()):
            return f"{m[1]}T{m[2]}{(m[3] or '')[:7]}Z"
    raise AdapterError("windows-json: no parseable time (@timestamp, TimeCreated, EventTime, UtcTime)")


def _source(channel: str, provider: str) -> str:
    if "sysmon" in channel.lower() or "sysmon" in provider.lower():
        return "sysmon"
    base = channel.split("/", 1)[0].removeprefix("Microsoft-Windows-").strip()
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
    if not slug:
        return "windows"
    return slug if slug.startswith("windows") else f"windows-{slug}"


def _user(obj: dict[str, Any], event_id: int | None) -> tuple[str | None, str | None]:
    order = ("TargetUserName", "SubjectUserName") if event_id in _TARGET_USER_IDS else ("SubjectUserName",)
    for key in (*order, "User"):
        if name := _present(obj.get(key)):
            domain_key = key.replace("UserName", "DomainName")
            domain = _present(obj.get(domain_key)) if domain_key != key else None
            if "\\" in name:
                domain, name = name.split("\\", 1)
            return name, domain
    return None, None


def windows_event(obj: dict[str, Any]) -> dict[str, Any]:
    """Map one Windows event (as exported to JSON by nxlog/winlogbeat/OTRF) to a SecurityEvent dict.

    Raises:
        AdapterError: no usable time field.
    """
    raw_id = obj.get("EventID")
    event_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else (
        int(raw_id) if isinstance(raw_id, str) and raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 18
        else None)
    channel = _present(obj.get("Channel")) or ""
    source = _source(channel, _present(obj.get("SourceName")) or "")
    table = _SYSMON_TYPES if source == "sysmon" else (
        _SECURITY_TYPES if source == "windows-security" else _POWERSHELL_TYPES if "powershell" in source else {})
    ev: dict[str, Any] = {
        "time": _time(obj),
        "source": source,
        "event_type": table.get(event_id or -1, f"windows_event_{event_id if event_id is not None else 'unknown'}"),
        "severity": _SEVERITY.get(event_id or -1, "informational") if source == "windows-security" else "informational",
        "host": _present(obj.get("Hostname")) or _present(obj.get("Computer")),
    }
    audit = _present(obj.get("EventType"))
    if event_id == 4625 or audit == "AUDIT_FAILURE":
        ev["outcome"] = "failure"
    elif event_id == 4624 or audit == "AUDIT_SUCCESS":
        ev["outcome"] = "success"
    user, domain = _user(obj, event_id)
    ev["user"] = user
    for key in ("Image", "NewProcessName", "ProcessName", "Application", "SourceImage", "CallerProcessName"):
        if proc := _present(obj.get(key)):
            ev["process"] = proc
            break
    for field, keys in (("src_ip", ("IpAddress", "SourceAddress", "SourceIp")),
                        ("dst_ip", ("DestAddress", "DestinationIp")),
                        ("src_port", ("IpPort", "SourcePort")),
                        ("dst_port", ("DestPort", "DestinationPort"))):
        clean = clean_ip if field.endswith("ip") else clean_port
        for key in keys:
            if (val := clean(obj.get(key))) is not None:
                ev[field] = val
                break
    if proto := _present(obj.get("Protocol")):
        ev["protocol"] = _PROTOCOLS.get(proto, proto.lower())
    logon = _present(obj.get("TargetLogonId")) if event_id == 4624 else None
    logon = logon or _present(obj.get("SubjectLogonId")) or _present(obj.get("LogonId"))
    if logon and logon.lower() != "0x0" and ev["host"]:
        ev["session_id"] = f"{ev['host']}:{logon.lower()}"

    attrs: dict[str, Any] = {"EventID": event_id if event_id is not None else str(raw_id), "Channel": channel}
    if domain:
        attrs["user_domain"] = domain
    if direction := _present(obj.get("Direction")):
        attrs["Direction"] = _DIRECTIONS.get(direction, direction)
    for key in _ATTRIBUTE_FIELDS:
        val = obj.get(key)
        if isinstance(val, str):
            val = val.strip()
            if val and val != "-":
                attrs[key] = val[:_MAX_ATTRIBUTE_CHARS]
        elif isinstance(val, int | float) and not isinstance(val, bool) and abs(val) < 2**53:
            attrs[key] = val
    message = obj.get("Message")
    if not isinstance(message, str) or not message.strip():
        parts = [f"{k}={obj[k]}" for k in ("Channel", "Hostname", "TargetUserName", "SubjectUserName", "Image")
                 if isinstance(obj.get(k), str)]
        message = f"EventID {event_id if event_id is not None else raw_id}: " + " ".join(parts)
    message, cut = truncate_utf8(message)
    if cut:
        attrs["message_truncated"] = True
    ev["message"] = message
    ev["attributes"] = attrs
    return ev


def _audit_event(m: re.Match[str], line: str) -> dict[str, Any]:
    if len(m["sec"]) > 18:
        raise AdapterError("windows-json: audit time out of range")
    kv = {k: v.strip('"') for k, v in _AUDIT_KV.findall(m["rest"])}
    ev: dict[str, Any] = {
        "time": int(m["sec"]) * 1000 + int(m["ms"].ljust(3, "0")),
        "message": truncate_utf8(line)[0],
        "source": "linux-audit",
        "event_type": f"audit_{m['type'].lower()}",
        "severity": "informational",
        "attributes": {"audit_serial": digits_value(m["serial"])},
    }
    if kv.get("success") in ("yes", "no"):
        ev["outcome"] = "success" if kv["success"] == "yes" else "failure"
    if exe := kv.get("exe"):
        ev["process"] = exe
    if kv.get("ses", "").isdigit():
        ev["session_id"] = f"audit-ses-{kv['ses']}"
    for key in ("syscall", "auid", "uid", "pid", "ppid", "comm", "cwd", "name"):
        if key in kv and kv[key] != "(null)":
            ev["attributes"][key] = kv[key][:_MAX_ATTRIBUTE_CHARS]
    return ev


def parse_windows_line(line: bytes) -> dict[str, Any]:
    """Map one JSON line of a Windows event recording (or one auditd line) to a SecurityEvent dict.

    Raises:
        AdapterError: not UTF-8, not a JSON object (and not auditd), or no usable time.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdapterError("windows-json: line is not UTF-8") from exc
    stripped = text.strip()
    if not stripped:
        raise AdapterError("windows-json: blank line")
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except (ValueError, RecursionError) as exc:
            raise AdapterError("windows-json: invalid JSON") from exc
        if isinstance(obj, dict):
            return windows_event(obj)
    if m := _AUDIT.fullmatch(stripped):
        return _audit_event(m, stripped)
    raise AdapterError("windows-json: line is not a JSON object")


def iter_windows_lines(path: Path) -> Iterator[bytes]:
    """Yield the raw lines of a recording: every member of a ``.zip`` (name order), or a plain file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for name in sorted(i.filename for i in zf.infolist() if not i.is_dir()):
                with zf.open(name) as member:
                    yield from iter_lines(member)
        return
    with open_binary(path) as fh:
        yield from iter_lines(fh)

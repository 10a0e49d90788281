"""Hypothesis strategies for SecurityEvent wire messages, valid and malformed (``test_properties.py``).

A :class:`Case` is one message and what :func:`schemas.models.decode_event` must say about it: ``None``
for a valid event, else the set of reasons it may be rejected with (empty: anything, for random bytes).
Malformed cases are valid events broken one way: per dict field (:func:`broken_docs`) or per byte
(truncation, invalid UTF-8, non-finite numbers, deep nesting: :func:`malformed_cases`).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from hypothesis import strategies as st

from schemas.models import (
    MAX_EVENT_BYTES,
    MAX_MESSAGE_BYTES,
    Outcome,
    SecurityEvent,
    Severity,
)

MAX_MS = 7_289_654_399_999  # 2200-12-31T23:59:59.999Z, the schema's maximum
KNOWN = frozenset(SecurityEvent.model_fields)
TEXT_FIELDS = ("source", "event_type", "host", "user", "process", "protocol", "session_id")
PORTS = ("src_port", "dst_port")
COUNTERS = ("bytes_in", "bytes_out", "packets")
MARK = "__prop_mark_7f3a__"
_DELETE = object()

#: every code point but the surrogates (they cannot be UTF-8); edge cases mixed in by :data:`text`
chars = st.characters(codec="utf-8")
EDGE = ("\u202e", "\u200f", "\u200b", "\u200d", "\ufeff", "\x00", "\x07", "\t\n", "e\u0301\u0301", "😀",
        "משתמש התחבר", "\U0010ffff", "\ufffd", "\u2028", "漢字のログイン", "𝔘𝔫𝔦")
text = st.lists(st.one_of(st.text(chars, max_size=12), st.sampled_from(EDGE)), max_size=4).map("".join)


@dataclass(frozen=True)
class Case:
    family: str
    raw: bytes
    #: None: a valid event; else the reasons it may be rejected with (empty: any reason)
    reasons: frozenset[str] | None


def case_of(raw: bytes, valid: bool = False) -> Case:
    return Case("valid" if valid else "random_bytes", raw, None if valid else frozenset())


def serialised(doc: dict[str, Any], ascii_only: bool, compact: bool = False) -> bytes:
    """JSON bytes of ``doc``; ``ascii_only`` escapes every non-ASCII character (astral ones as surrogate
    pairs), unless that takes a valid event over the wire limit (a 64 KiB emoji message escapes to 196 KB)."""
    seps = (",", ":") if compact else (", ", ": ")
    raw = json.dumps(doc, ensure_ascii=ascii_only, separators=seps).encode("utf-8")
    if ascii_only and len(raw) > MAX_EVENT_BYTES and isinstance(doc.get("message"), str) \
            and len(doc["message"]) * 4 >= MAX_MESSAGE_BYTES // 2:
        return json.dumps(doc, ensure_ascii=False, separators=seps).encode("utf-8")
    return raw


# --------------------------------------------------------------------------- valid events


@st.composite
def rfc3339(draw: st.DrawFn, years: tuple[int, int] = (1970, 2200)) -> str:
    """An RFC 3339 time whose UTC instant lies in ``years`` (inclusive), with an offset of up to ±23:59."""
    lo = datetime(years[0], 1, 1, tzinfo=UTC) + timedelta(days=1)
    hi = datetime(years[1], 12, 31, tzinfo=UTC) - timedelta(days=1)
    instant = draw(st.datetimes(min_value=lo.replace(tzinfo=None), max_value=hi.replace(tzinfo=None)))
    offset = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    local = instant + timedelta(minutes=offset)
    digits = draw(st.sampled_from([0, 1, 3, 6, 9]))
    frac = ("." + (f"{local.microsecond:06d}" + "123")[:digits]) if digits else ""
    if offset == 0:
        tz = draw(st.sampled_from(["Z", "z", "+00:00", "-00:00"]))
    else:
        tz = f"{'+' if offset > 0 else '-'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    return f"{local:%Y-%m-%d}{draw(st.sampled_from('Tt'))}{local:%H:%M:%S}{frac}{tz}"


times = st.one_of(rfc3339(), st.integers(0, MAX_MS), st.floats(0, MAX_MS))
ips = st.one_of(st.ip_addresses(v=4).map(str),
                st.ip_addresses(v=6).flatmap(lambda a: st.sampled_from([str(a), a.exploded, a.exploded.upper()])))
ports = st.integers(0, 65535).flatmap(lambda p: st.sampled_from([p, float(p)]))
counters = st.one_of(st.integers(0, 2**64), st.integers(0, 400).map(lambda n: 10**n))
scalars = st.one_of(text, st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans())
extra_names = st.text(chars, min_size=1, max_size=12).filter(lambda k: k not in KNOWN and MARK not in k)
nested = st.recursive(scalars | st.none(),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(chars, max_size=5), inner,
                                                                                   max_size=3),
                      max_leaves=8)
boundary_messages = st.integers(MAX_MESSAGE_BYTES - 8, MAX_MESSAGE_BYTES).flatmap(
    lambda n: st.sampled_from(["A" * n, "é" * (n // 2), "😀" * (n // 4)]))
OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.text(chars, min_size=1, max_size=64),
    **{name: text for name in TEXT_FIELDS},
    "severity": st.sampled_from(get_args(Severity)), "outcome": st.sampled_from(get_args(Outcome)),
    "src_ip": ips, "dst_ip": ips, "src_port": ports, "dst_port": ports,
    **{name: counters for name in COUNTERS},
    "duration_ms": st.one_of(st.integers(0, 10**12), st.floats(0, 1e15)),
    "attributes": st.dictionaries(st.text(chars, max_size=12), scalars, max_size=4),
}


@st.composite
def valid_docs(draw: st.DrawFn, long_messages: bool = True) -> dict[str, Any]:
    """A SecurityEvent object as a producer may send it: optional fields present, absent or null, and
    unknown top-level fields (scalars or nested JSON)."""
    message = st.one_of(text, boundary_messages) if long_messages else text
    doc: dict[str, Any] = {"time": draw(times), "message": draw(message)}
    doc.update(draw(st.fixed_dictionaries({}, optional={k: v | st.none() for k, v in OPTIONAL.items()})))
    doc.update(draw(st.dictionaries(extra_names, nested, max_size=3)))
    return doc


def valid_cases(long_messages: bool = True) -> st.SearchStrategy[Case]:
    return st.builds(lambda d, a: Case("valid", serialised(d, a), None), valid_docs(long_messages), st.booleans())


def extra_fields() -> st.SearchStrategy[dict[str, Any]]:
    """Unknown top-level fields with valid values (what adding them must not change)."""
    return st.dictionaries(extra_names, scalars, min_size=1, max_size=3)


# --------------------------------------------------------------------------- broken per field


def _not_ip(s: str) -> bool:
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        return True
    return isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None


_non_str = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                     st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_containers = st.one_of(st.booleans(), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_not_integer = st.one_of(st.text(max_size=6), st.booleans(), st.lists(st.integers(), max_size=2),
                         st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()))
_surrogate = st.integers(0xD800, 0xDFFF).map(chr)
_with_surrogate = st.tuples(text, _surrogate, text).map("".join)
_bad_times = st.one_of(
    st.integers(max_value=-1), st.integers(min_value=MAX_MS + 1, max_value=10**300),
    st.floats(max_value=-1e-300, allow_infinity=False), st.floats(min_value=MAX_MS + 1, allow_infinity=False),
    rfc3339((1, 1968)), rfc3339((2202, 9999)),
    st.sampled_from(["", "yesterday", "2024-03-01 12:00:00Z", "2024-03-01T12:00:00", "2023-02-29T00:00:00Z",
                     "2024-03-01T24:00:00Z", "2024-03-01T12:60:00Z", "2024-03-01T12:00:60Z", "2024-13-01T00:00:00Z",
                     "2024-03-00T00:00:00Z", "2024-03-01T12:00:00+24:00", "2024-03-01T12:00:00+01:60",
                     "2024-03-01T12:00:00.Z", "２０２４-03-01T12:00:00Z", "2024-03-01T12:00:00+0100"]),
)
#: family → (field, value, reasons) patches; field None = an unknown top-level field
_PATCHES: dict[str, st.SearchStrategy[tuple[str, Any, frozenset[str]]]] = {
    "missing_required": st.tuples(st.sampled_from(["time", "message"]), st.just(_DELETE),
                                  st.just(frozenset({"missing_field"}))),
    "null_required": st.tuples(st.sampled_from(["time", "message"]), st.none(), st.just(frozenset({"missing_field"}))),
    "wrong_type": st.one_of(
        st.tuples(st.just("time"), _containers),
        st.tuples(st.sampled_from(["message", "event_id", "severity", "outcome", "src_ip", "dst_ip", *TEXT_FIELDS]),
                  _non_str),
        st.tuples(st.sampled_from([*PORTS, *COUNTERS]), _not_integer),
        st.tuples(st.just("duration_ms"), st.one_of(st.text(max_size=6), _containers)),
        st.tuples(st.just("attributes"), st.one_of(st.lists(st.integers(), max_size=2), st.text(max_size=4),
                                                    st.integers(), st.booleans())),
        st.tuples(st.just("attributes"), st.dictionaries(st.text(chars, max_size=4),
                                                         st.none() | st.lists(st.integers(), max_size=2) | st.dictionaries(
                                                             st.text(max_size=3), st.integers(), max_size=2),
                                                         min_size=1, max_size=2)),
    ).map(lambda fv: (*fv, frozenset({"wrong_type"}))),
    "out_of_range": st.one_of(
        st.tuples(st.sampled_from(PORTS), st.one_of(st.integers(max_value=-1), st.integers(65536, 10**300),
                                                    st.integers(65536, 10**300).map(float))),
        st.tuples(st.sampled_from(COUNTERS), st.integers(max_value=-1)),
        st.tuples(st.just("duration_ms"), st.one_of(st.integers(max_value=-1),
                                                   st.floats(max_value=-1e-300, allow_infinity=False))),
        st.tuples(st.just("event_id"), st.one_of(st.just(""), st.integers(257, 5000).map(lambda n: "e" * n))),
        st.tuples(st.sampled_from(["severity", "outcome"]), text.filter(lambda s: s not in ("unknown", "success"))
                  .filter(lambda s: s not in get_args(Severity) + get_args(Outcome))),
    ).map(lambda fv: (*fv, frozenset({"invalid_value"}))),
    "bad_ip": st.tuples(st.sampled_from(["src_ip", "dst_ip"]),
                        st.one_of(st.text(chars, max_size=40), st.sampled_from(
                            ["999.1.1.1", "10.0.0", "::g", "1.2.3.4/24", "fe80::1%eth0", "01.2.3.4", " 1.2.3.4",
                             "1.2.3.4\n", "", "::ffff:1.2.3.4.5", "1:2:3:4:5:6:7:8:9"])).filter(_not_ip),
                        st.just(frozenset({"invalid_value"}))),
    "extreme_time": st.tuples(st.just("time"), _bad_times, st.just(frozenset({"invalid_value"}))),
    "non_finite": st.tuples(st.sampled_from(["time", "duration_ms", "src_port", "bytes_in", "zz_extra"]),
                            st.sampled_from([float("nan"), float("inf"), float("-inf")]),
                            st.just(frozenset({"not_json"}))),
    "too_large": st.one_of(
        st.tuples(st.just("message"), st.one_of(st.integers(MAX_MESSAGE_BYTES + 1, 3 * MAX_EVENT_BYTES).map(lambda n: "A" * n),
                                                st.integers(MAX_MESSAGE_BYTES // 2 + 1, MAX_EVENT_BYTES).map(lambda n: "é" * n))),
        st.tuples(st.sampled_from([*TEXT_FIELDS, "zz_extra"]),
                  st.integers(MAX_EVENT_BYTES, 3 * MAX_EVENT_BYTES).map(lambda n: "x" * n)),
    ).map(lambda fv: (*fv, frozenset({"too_large"}))),
    "surrogate": st.one_of(
        st.tuples(st.sampled_from(["message", "event_id", "severity", "src_ip", *TEXT_FIELDS, "zz_extra"]),
                  _with_surrogate),
        st.tuples(st.just("attributes"), st.one_of(st.dictionaries(_with_surrogate, st.integers(), min_size=1, max_size=1),
                                                   st.dictionaries(text, _with_surrogate, min_size=1, max_size=1))),
    ).map(lambda fv: (*fv, frozenset({"invalid_value"}))),
}


@st.composite
def broken_docs(draw: st.DrawFn, family: str | None = None) -> tuple[str, dict[str, Any], frozenset[str]]:
    """(family, a valid event with one field broken, the reasons it may be rejected with)."""
    family = family or draw(st.sampled_from(sorted(_PATCHES)))
    field, value, reasons = draw(_PATCHES[family])
    doc = draw(valid_docs(long_messages=False))
    if value is _DELETE:
        doc.pop(field, None)
    else:
        doc[field] = value
    return family, doc, reasons


# --------------------------------------------------------------------------- broken per byte


_INVALID_UTF8 = (b"\xff", b"\xfe", b"\xc0\xaf", b"\xc1\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
                 b"\xf5\x80\x80\x80", b"\x80", b"\xbf")


@st.composite
def malformed_cases(draw: st.DrawFn) -> Case:
    """A malformed message of one family (see the module docstring)."""
    kind = draw(st.sampled_from([*sorted(_PATCHES), "truncated", "invalid_utf8", "overflow", "deep", "not_object"]))
    if kind in _PATCHES:
        family, doc, reasons = draw(broken_docs(kind))
        return Case(family, serialised(doc, family == "surrogate" or draw(st.booleans())), reasons)
    doc = draw(valid_docs(long_messages=False))
    if kind == "truncated":
        raw = serialised(doc, draw(st.booleans()), compact=True)
        return Case(kind, raw[: draw(st.integers(0, len(raw) - 1))], frozenset({"not_json", "not_utf8"}))
    if kind == "invalid_utf8":
        raw = serialised(doc, draw(st.booleans()))
        at = draw(st.integers(0, len(raw)))
        return Case(kind, raw[:at] + draw(st.sampled_from(_INVALID_UTF8)) + raw[at:], frozenset({"not_utf8"}))
    if kind == "not_object":
        top = draw(st.one_of(st.lists(st.just(doc), max_size=2), st.integers(), st.floats(allow_nan=False),
                             text, st.booleans(), st.none()))
        return Case(kind, json.dumps(top).encode(), frozenset({"not_object"}))
    field = draw(st.sampled_from(["time", "duration_ms", "src_port", "bytes_in", "attributes", "user", "zz_extra"]))
    doc[field] = MARK
    raw = serialised(doc, draw(st.booleans()))
    if kind == "overflow":  # JSON numbers past float range read as ±inf
        number = draw(st.sampled_from([b"1e400", b"-1e400", b"1E999"]))
        reason = "invalid_value" if field in ("time", "duration_ms", "zz_extra") else "wrong_type"
        return Case(kind, raw.replace(f'"{MARK}"'.encode(), number), frozenset({reason}))
    depth = draw(st.integers(1, 30_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    inner = opener * depth + "1" + closer * depth
    if field == "attributes":
        inner = '{"k": ' + inner + "}"
    # An unknown field's nesting is kept as JSON text while the parser's recursion limit allows (1,000 in a
    # worker, about 3,000 under hypothesis): any verdict but a crash below 3,000 levels, rejected above.
    reasons = {"wrong_type", "not_json", "too_large"} if field != "zz_extra" else set() if depth < 3000 else {
        "not_json", "too_large"}
    return Case(f"deep_{field}", raw.replace(f'"{MARK}"'.encode(), inner.encode()), frozenset(reasons))


@st.composite
def random_bytes(draw: st.DrawFn) -> bytes:
    prefix = draw(st.sampled_from([b"", b"{", b'{"time": 0, "message": ', b"[", b'"', b"\xef\xbb\xbf{"]))
    return prefix + draw(st.binary(max_size=400))


@st.composite
def time_strings(draw: st.DrawFn) -> str:
    """RFC 3339-shaped strings, each number drawn from its valid range or from all its digits (hour 99,
    offset +99:99)."""
    def num(lo: int, hi: int, width: int) -> str:
        return f"{draw(st.one_of(st.integers(lo, hi), st.integers(0, 10**width - 1))):0{width}d}"

    date = f"{num(1970, 2200, 4)}-{num(1, 12, 2)}-{num(1, 28, 2)}"
    clock = f"{num(0, 23, 2)}:{num(0, 59, 2)}:{num(0, 59, 2)}{draw(st.sampled_from(['', '.5', '.123456789']))}"
    tz = draw(st.sampled_from(["Z", "z", "", "+", "-"]))
    if tz in ("+", "-"):
        tz += f"{num(0, 23, 2)}:{num(0, 59, 2)}"
    return f"{date}{draw(st.sampled_from('TTt '))}{clock}{tz}"

"""Network component: addresses and ports as a small fixed feature vector (dim 41).

Layout::

    src_ip  [11]: 4 address dims, is_ipv4, is_ipv6, private, loopback,
                  multicast, link_local, global
    dst_ip  [11]: same
    src_port [3]: class one-hot (well-known < 1024, registered < 49152, ephemeral)
    dst_port [16]: class one-hot [3] + service one-hot [13] (see SERVICES)

IPv4 address dims are the octets / 255; IPv6 folds its 16 bytes into 4 dims
(mean of each 4-byte group / 255). A missing or unparsable part stays zero; the
row is absent when no IP and no port is usable. Stateless.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

import numpy as np

from encoders.base import (
    ComponentBatch,
    ComponentEncoder,
    Event,
    Events,
    column,
    column_map,
    empty_batch,
    finish_rows,
    float_value,
    str_value,
)

__all__ = ["SERVICES", "NetworkEncoder"]

#: Service one-hot of dst_port, in block order; anything else is "other".
SERVICES: tuple[tuple[str, frozenset[int]], ...] = (
    ("ssh", frozenset({22})),
    ("telnet", frozenset({23})),
    ("smtp", frozenset({25})),
    ("dns", frozenset({53})),
    ("http", frozenset({80})),
    ("kerberos", frozenset({88})),
    ("rpc", frozenset({135})),
    ("smb", frozenset({139, 445})),
    ("ldap", frozenset({389, 636})),
    ("https", frozenset({443})),
    ("rdp", frozenset({3389})),
    ("winrm", frozenset({5985, 5986})),
)
_SERVICE_INDEX = {port: i for i, (_, ports) in enumerate(SERVICES) for port in ports}
_N_SERVICE = len(SERVICES) + 1  # + other

IP_DIM = 11
PORT_CLASS_DIM = 3
_SRC_IP, _DST_IP = 0, IP_DIM
_SRC_PORT = 2 * IP_DIM
_DST_PORT = _SRC_PORT + PORT_CLASS_DIM
DIM = _DST_PORT + PORT_CLASS_DIM + _N_SERVICE


def ip_features(text: str) -> tuple[float, ...] | None:
    """The 11 features of one address, or ``None`` when ``text`` is not an IP.

    Dotted-quad IPv4 takes a fast path: its flags are those ``ipaddress``
    gives the address's /24 (cached per /24), except in the two /24s where the
    stdlib's special-purpose table has finer entries, which are looked up per
    address. Everything else goes through ``ipaddress``.
    """
    parts = text.split(".")
    if len(parts) == 4 and all(_plain_octet(p) for p in parts):
        a, b, c, d = (int(p) for p in parts)
        if max(a, b, c, d) <= 255:
            flags = _v4_flags(text) if (a, b, c) in _FINE_V4_24 else _v4_flags_24(a, b, c)
            return (a / 255.0, b / 255.0, c / 255.0, d / 255.0) + flags
    return _ip_slow(text)


def _plain_octet(part: str) -> bool:
    # ASCII digits, no leading zero: exactly what ipaddress accepts as an octet
    return 0 < len(part) <= 3 and part.isascii() and part.isdigit() and (part[0] != "0" or len(part) == 1)


# /24s holding stdlib special-purpose entries narrower than /24 (192.0.0.0/29,
# 192.0.0.170/31, 255.255.255.255/32, and newer Pythons' /32s in 192.0.0.0/24).
_FINE_V4_24 = frozenset({(192, 0, 0), (255, 255, 255)})


def _v4_flags(text: str) -> tuple[float, ...]:
    feats = _ip_slow(text)
    if feats is None:  # pragma: no cover - only called on valid dotted quads
        raise ValueError(f"not an IPv4 address: {text!r}")
    return feats[4:]


@lru_cache(maxsize=65_536)
def _v4_flags_24(a: int, b: int, c: int) -> tuple[float, ...]:
    return _v4_flags(f"{a}.{b}.{c}.1")


@lru_cache(maxsize=65_536)
def _ip_slow(text: str) -> tuple[float, ...] | None:
    candidate = text.strip()
    if candidate.startswith("[") and "]" in candidate:
        candidate = candidate[1 : candidate.index("]")]
    candidate = candidate.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    raw = addr.packed
    if addr.version == 4:
        address = [b / 255.0 for b in raw]
    else:
        address = [sum(raw[i : i + 4]) / (4 * 255.0) for i in range(0, 16, 4)]
    flags = (
        addr.version == 4,
        addr.version == 6,
        addr.is_private,
        addr.is_loopback,
        addr.is_multicast,
        addr.is_link_local,
        addr.is_global,
    )
    return tuple(address) + tuple(float(f) for f in flags)


def port_class(port: int) -> int:
    """0 well-known (< 1024), 1 registered (< 49152), 2 ephemeral."""
    return 0 if port < 1024 else 1 if port < 49152 else 2


def _port(event: Event, field: str) -> int | None:
    return _port_value(event.get(field))


def _ip_value(raw: object) -> tuple[float, ...] | None:
    text = str_value(raw)
    return ip_features(text) if text is not None else None


def _port_value(raw: object) -> int | None:
    number = float_value(raw)
    if number is None or not number.is_integer() or not 0 <= number <= 65535:
        return None
    return int(number)


class NetworkEncoder(ComponentEncoder):
    """IP and port features of ``src_ip``, ``dst_ip``, ``src_port``, ``dst_port`` (dim 41)."""

    name = "network"
    version = "v1"

    @property
    def dim(self) -> int:
        """41: two addresses of 11, src port class 3, dst port class 3 + service 13."""
        return DIM

    def encode(self, events: Events) -> ComponentBatch:
        """Fill the layout of the module docstring; absent when no IP/port is usable."""
        n = len(events)
        if n == 0:
            return empty_batch(self.dim)
        out = np.zeros((n, self.dim), dtype=np.float64)
        present = np.zeros(n, dtype=bool)
        for field, offset in (("src_ip", _SRC_IP), ("dst_ip", _DST_IP)):
            feats = column_map(column(events, field), _ip_value)
            rows = [i for i, f in enumerate(feats) if f is not None]
            if rows:
                out[rows, offset : offset + IP_DIM] = [feats[i] for i in rows]
                present[rows] = True
        src = column_map(column(events, "src_port"), _port_value)
        rows = [i for i, p in enumerate(src) if p is not None]
        if rows:
            out[rows, [_SRC_PORT + port_class(src[i]) for i in rows]] = 1.0
            present[rows] = True
        dst = column_map(column(events, "dst_port"), _port_value)
        rows = [i for i, p in enumerate(dst) if p is not None]
        if rows:
            out[rows, [_DST_PORT + port_class(dst[i]) for i in rows]] = 1.0
            service = [_DST_PORT + PORT_CLASS_DIM + _SERVICE_INDEX.get(dst[i], _N_SERVICE - 1) for i in rows]
            out[rows, service] = 1.0
            present[rows] = True
        return finish_rows(out, present)

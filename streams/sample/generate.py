"""Generate the bundled synthetic sample stream (SecurityEvent v1, JSON lines, gzip).

    python -m streams.sample.generate --out streams/sample/sample_events.jsonl.gz --seed 7

The stream covers six simulated hours (2025-03-11 00:00-06:00 UTC) of a small company
with three offices: Singapore (UTC+8) and Sydney (UTC+11) are at work, Frankfurt
(UTC+1) is asleep, so its workstations only show background system traffic. It holds:

- 40 users with stable habits: their own workstation (``ws-<site>-NNN``, admins on
  ``adm-NN`` in the 10.0.5.0/24 admin subnet), working hours, a fixed set of usual
  applications (outlook, teams, chrome/msedge, office, onedrive, ...) and usual
  destinations (Microsoft 365 direct on 443, web SaaS through the squid proxy, DNS on
  udp/53 to the domain controller);
- 12 servers: sshd logins by admins from the admin subnet, cron jobs, nginx reverse
  proxy access logs from internet clients, Kerberos/file share audit on Windows
  servers, a nightly backup upload to S3 (large bytes_out that is normal);
- raw messages the way sshd (syslog), Windows Security / Sysmon (forwarded as
  syslog), a FortiGate firewall (key=value traffic logs), squid and nginx write them.

Injected scenarios (all after the first 1,500 events, together < 5% of the stream).
Each injected event carries ``attributes["scenario"]``. That key exists for
evaluation and demos only; a detector must never read it.

SCENARIOS (sidecar list: name, start UTC, what happens):
    ssh_bruteforce           01:52  60 failed passwords for root/admin/oracle/... on
                                    bastion-01 from 185.220.101.47 within ~3 minutes,
                                    then "Accepted password for root" from that IP
    malicious_process_chain  02:31  ws-sgp-005 (srahman): outlook -> winword (.docm) ->
                                    powershell.exe -enc ... -> mimikatz.exe and
                                    procdump.exe -ma lsass.exe (Sysmon 1/3/10/11, 4688)
    data_exfiltration        03:00  ws-fra-004 (fweber, asleep): rclone.exe uploads
                                    ~900 MB to never-seen 45.146.164.110 on 8443/4444
    port_scan                04:12  ws-syd-012 (tnguyen) probes 40 ports, each on 3 of 16
                                    server-subnet hosts, within ~20 s (120 firewall
                                    deny lines)
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.sample import _net
from streams.sample._formats import iso

SCENARIOS: tuple[tuple[str, str], ...] = (
    ("ssh_bruteforce", "60 failed SSH passwords from 185.220.101.47, then root accepted"),
    ("malicious_process_chain", "winword -> powershell -enc -> mimikatz / procdump lsass"),
    ("data_exfiltration", "~900 MB out to a never-seen external IP on 8443/4444 at 03:00"),
    ("port_scan", "one workstation probes 40 ports on 16 hosts (3 each) in ~20 s"),
)

DURATION_S = 6 * 3600
DEFAULT_OUT = Path(__file__).with_name("sample_events.jsonl.gz")

Event = dict[str, Any]


# --------------------------------------------------------------------------- time



# ------------------------------------------------------------------------ actors


@dataclass(frozen=True)
class User:
    """A person with a stable routine."""

    name: str
    site: str
    utc_offset: float
    host: str
    ip: str
    start_local: float  # hour of day
    end_local: float
    apps: tuple[str, ...]
    web: tuple[str, ...]  # usual web SaaS sites (through the proxy)
    admin: bool
    rate_per_h: float

    def active_window(self) -> tuple[float, float]:
        """Working hours as seconds from the stream start (may lie outside it)."""
        return ((self.start_local - self.utc_offset) * 3600.0, (self.end_local - self.utc_offset) * 3600.0)


SITES: dict[str, tuple[float, str, tuple[str, ...]]] = {
    "sgp": (8.0, "10.20.1", ("jtan", "wlim", "pnair", "amenon", "srahman", "dong", "mgoh", "kpillai",
                             "hlee", "mchua", "faziz", "kteo", "gwong", "riyer", "lchen", "bkoh")),
    "syd": (11.0, "10.30.1", ("osmith", "jwilson", "ctaylor", "lbrown", "mnguyen", "nwilliams", "ajones",
                              "emartin", "ithompson", "lwhite", "zharris", "tnguyen")),
    "fra": (1.0, "10.40.1", ("kmueller", "jschmidt", "lfischer", "fweber", "abecker", "pwagner",
                             "shoffmann", "lschulz", "mkoch", "trichter", "jklein", "mwolf")),
}
ADMINS = ("kpillai", "dong", "lbrown", "emartin")
OPTIONAL_APPS = ("excel.exe", "winword.exe", "powerpnt.exe", "onedrive.exe", "code.exe", "slack.exe")


def make_users(rng: random.Random) -> list[User]:
    """The 40 users, deterministic for a given generator state."""
    users: list[User] = []
    admin_no = 0
    for site, (offset, prefix, names) in SITES.items():
        for i, name in enumerate(names, start=1):
            admin = name in ADMINS
            if admin:
                admin_no += 1
                host, ip = f"adm-{admin_no:02d}", f"10.0.5.{10 + admin_no}"
            else:
                host, ip = f"ws-{site}-{i:03d}", f"{prefix}.{20 + i * 3}"
            browser = "chrome.exe" if rng.random() < 0.65 else "msedge.exe"
            extra = rng.sample(OPTIONAL_APPS, rng.randint(1, 3))
            if admin and "code.exe" not in extra:
                extra.append("code.exe")
            web = tuple(rng.sample(_net.WEB_SITES, rng.randint(2, 4)))
            users.append(User(
                name=name, site=site, utc_offset=offset, host=host, ip=ip,
                start_local=rng.choice((7.5, 8.0, 8.0, 8.5, 9.0, 9.5)),
                end_local=rng.choice((17.0, 17.5, 18.0, 18.0, 18.5)),
                apps=("outlook.exe", "teams.exe", browser, *extra), web=web, admin=admin,
                rate_per_h=rng.uniform(6.5, 12.5),
            ))
    return users


# --------------------------------------------------------------------- generator


class Generator:
    """Accumulates timestamped events; every random draw comes from one seeded RNG."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.items: list[tuple[float, int, Event]] = []
        self.fw = _net.Firewall()
        self._pid = 4000
        self._port = 49200
        self._logon: dict[str, str] = {}
        self.procs: dict[tuple[str, str], int] = {}  # (host, app) -> running pid

    # -- helpers
    def add(self, t: float, event: Event, scenario: str | None = None) -> None:
        """Record one event at ``t`` seconds from the start (fields with None dropped)."""
        t = round(t, 3)
        event = {"time": iso(t), **{k: v for k, v in event.items() if v is not None}}
        if scenario is not None:
            event.setdefault("attributes", {})["scenario"] = scenario
        self.items.append((t, len(self.items), event))

    def pid(self) -> int:
        """A fresh process id."""
        self._pid += self.rng.randint(4, 400)
        if self._pid > 65000:
            self._pid = 4000 + self.rng.randint(0, 500)
        return self._pid

    def port(self) -> int:
        """A fresh ephemeral client port."""
        self._port += self.rng.randint(1, 37)
        if self._port > 65000:
            self._port = 49200 + self.rng.randint(0, 300)
        return self._port

    def logon_id(self, user: User) -> str:
        """The user's current Windows logon id."""
        if user.name not in self._logon:
            self.new_logon(user)
        return self._logon[user.name]

    def new_logon(self, user: User) -> str:
        """Start a new Windows logon session for ``user``."""
        self._logon[user.name] = f"0x{self.rng.randint(0x100000, 0xFFFFFF):X}"
        return self._logon[user.name]

    def poisson_times(self, start: float, end: float, rate_per_h: float) -> Iterator[float]:
        """Event times of a Poisson process on [start, end) clipped to the stream."""
        start, end = max(start, 0.0), min(end, float(DURATION_S))
        t = start
        while rate_per_h > 0:
            t += self.rng.expovariate(rate_per_h / 3600.0)
            if t >= end:
                return
            yield t

    def events(self) -> list[Event]:
        """All events in chronological order with deterministic ids."""
        # Flows that end after the window (or helpers that look back before it) fall outside.
        ordered = sorted((i for i in self.items if 0.0 <= i[0] < DURATION_S), key=lambda i: (i[0], i[1]))
        out = []
        for n, (_, _, event) in enumerate(ordered, start=1):
            out.append({"event_id": f"sample-{n:06d}", **event})
        return out


def build(seed: int = 7) -> list[Event]:
    """Generate the whole stream (normal activity plus the four scenarios)."""
    from streams.sample import _attacks, _normal, _servers

    gen = Generator(seed)
    users = make_users(gen.rng)
    _normal.workstations(gen, users)
    _servers.servers(gen, users)
    _attacks.inject_all(gen, users)
    return gen.events()


def encode(events: Sequence[Event]) -> bytes:
    """JSON lines, compact separators, UTF-8."""
    return b"".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for e in events)


def write_sample(out: Path, seed: int = 7) -> list[Event]:
    """Generate and write the gzip file reproducibly (fixed gzip mtime, no file name)."""
    events = build(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(encode(events))
    return events



def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    events = write_sample(args.out, args.seed)
    scen: dict[str, int] = {}
    for e in events:
        name = e.get("attributes", {}).get("scenario")
        if name:
            scen[name] = scen.get(name, 0) + 1
    print(f"wrote {len(events)} events to {args.out} ({args.out.stat().st_size} bytes); scenarios: {scen}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

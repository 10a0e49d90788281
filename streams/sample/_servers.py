"""Server activity of the sample stream: cron, admin SSH, nginx, nightly backup."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

from streams.sample import _net as net
from streams.sample._formats import _dt
from streams.sample._normal import DURATION_S, _ts, firewall, lognorm

if TYPE_CHECKING:
    from streams.sample.generate import Generator, User

LINUX = tuple(name for name, (_, os_) in net.SERVERS.items() if os_ == "linux")

# (hosts, every N minutes, at minute offset, user, command)
CRON_JOBS: tuple[tuple[tuple[str, ...], int, int, str, str], ...] = (
    (LINUX, 60, 17, "root", "cd / && run-parts --report /etc/cron.hourly"),
    (("web-01", "web-02"), 5, 0, "www-data", "/usr/local/bin/healthcheck.sh >/dev/null 2>&1"),
    (("monitor-01",), 5, 0, "root", "/usr/lib/nagios/plugins/check_all --quiet"),
    (("app-01", "app-02"), 15, 0, "shop", "cd /srv/shop && ./bin/queue-gc --older-than 1h"),
    (("db-01", "db-02", "backup-01"), 10, 0, "root", "command -v debian-sa1 > /dev/null && debian-sa1 1 1"),
    (("db-01",), 60, 0, "postgres", "/usr/local/bin/pg_wal_archive.sh"),
    (("bastion-01",), 30, 0, "root", "/usr/local/sbin/sync-authorized-keys --source ldap"),
    (("proxy-01",), 60, 0, "proxy", "/usr/sbin/squid -k rotate"),
)
BACKUP_AT = 1.5 * 3600  # 01:30 UTC
BACKUP_CMD = "/usr/local/bin/backup-s3.sh --target s3://corp-backups/nightly"


def sshd(gen: Generator, t: float, host: str, pid: int, text: str, *, user: str | None, src: str | None,
         sport: int | None, event_type: str = "authentication", outcome: str = "success",
         severity: str = "informational", scenario: str | None = None) -> None:
    """One sshd syslog line on ``host``."""
    gen.add(t, {"message": f"{_ts(t)} {host} sshd[{pid}]: {text}", "source": "sshd", "event_type": event_type,
                "severity": severity, "outcome": outcome, "host": host, "user": user, "process": "sshd",
                "src_ip": src, "dst_ip": net.SERVERS[host][0], "src_port": sport, "dst_port": 22,
                "protocol": "ssh", "session_id": f"{host}:sshd:{pid}"}, scenario)


def cron_line(gen: Generator, t: float, host: str, user: str, cmd: str) -> None:
    """One cron ``CMD`` syslog line."""
    pid = gen.pid()
    gen.add(t, {"message": f"{_ts(t)} {host} CRON[{pid}]: ({user}) CMD ({cmd})", "source": "cron",
                "event_type": "scheduled_task", "severity": "informational", "outcome": "success",
                "host": host, "user": user, "process": "cron"})


def cron(gen: Generator) -> None:
    """Every scheduled job, on the minute plus a little jitter."""
    for minute in range(DURATION_S // 60):
        for hosts, every, offset, user, cmd in CRON_JOBS:
            if minute % every != offset:
                continue
            for host in hosts:
                cron_line(gen, minute * 60 + gen.rng.uniform(0.4, 1.6), host, user, cmd)
    cron_line(gen, BACKUP_AT + 0.9, "backup-01", "root", BACKUP_CMD)


def _fingerprint(user: str) -> str:
    return base64.b64encode(hashlib.sha256(f"ed25519:{user}".encode()).digest()).decode().rstrip("=")


def admin_ssh(gen: Generator, admins: list[User]) -> None:
    """Admins open SSH sessions to Linux servers from the admin subnet during their day."""
    rng = gen.rng
    targets = LINUX
    weights = [4 if h == "bastion-01" else 1 for h in targets]
    for u in admins:
        a, b = u.active_window()
        for t in gen.poisson_times(a + 600, b, 1.4):
            host = rng.choices(targets, weights)[0]
            pid, sport = gen.pid(), gen.port()
            if rng.random() < 0.07:  # key not loaded in the agent: preauth close, then retry
                sshd(gen, t - rng.uniform(5, 20), host, pid - 1,
                     f"Connection closed by authenticating user {u.name} {u.ip} port {sport - 2} [preauth]",
                     user=u.name, src=u.ip, sport=sport - 2, outcome="failure", severity="low")
            sshd(gen, t, host, pid, f"Accepted publickey for {u.name} from {u.ip} port {sport} ssh2: ED25519 "
                 f"SHA256:{_fingerprint(u.name)}", user=u.name, src=u.ip, sport=sport)
            sshd(gen, t + 0.02, host, pid, f"pam_unix(sshd:session): session opened for user {u.name}"
                 f"(uid={1000 + sum(map(ord, u.name)) % 500}) by (uid=0)", user=u.name, src=u.ip, sport=sport,
                 event_type="session_start")
            dur = rng.uniform(45, 2400)
            end = t + dur
            if end >= DURATION_S:
                continue
            sshd(gen, end, host, pid, f"Received disconnect from {u.ip} port {sport}:11: disconnected by user",
                 user=u.name, src=u.ip, sport=sport, event_type="session_end")
            sshd(gen, end + 0.01, host, pid, f"pam_unix(sshd:session): session closed for user {u.name}",
                 user=u.name, src=u.ip, sport=sport, event_type="session_end")
            firewall(gen, end + 0.02, src=u.ip, dst=net.SERVERS[host][0], dport=22, sent=lognorm(gen, 30e3),
                     rcvd=lognorm(gen, 200e3), duration_s=dur, user=u.name, sport=sport)


UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:135.0) Gecko/20100101 Firefox/135.0",
)
SITE = "https://shop.example.com"


def _request(gen: Generator, t: float, client: str, ua: str, method: str, path: str, status: int, size: int,
             referer: str, rt: float) -> None:
    """One nginx access log line on web-01/02 (reverse proxy in front of app-01/02)."""
    web = gen.rng.choice(("web-01", "web-02"))
    upstream = gen.rng.choice(("10.10.0.31", "10.10.0.32"))
    dt = _stamp(t)
    msg = (f'{client} - - [{dt} +0000] "{method} {path} HTTP/2.0" {status} {size} "{referer}" "{ua}" '
           f'rt={rt:.3f} upstream={upstream}:8080')
    gen.add(t, {"message": msg, "source": "proxy", "event_type": "http_request",
                "severity": "informational" if status < 400 else "low" if status < 500 else "medium",
                "outcome": "success" if status < 400 else "failure", "host": web, "process": "nginx",
                "src_ip": client, "dst_ip": net.SERVERS[web][0], "src_port": gen.port(), "dst_port": 443,
                "protocol": "https", "bytes_in": size, "bytes_out": gen.rng.randint(280, 900),
                "duration_ms": int(rt * 1000),
                "attributes": {"http_method": method, "http_status": status, "url_path": path.split("?")[0]}})


def _stamp(t: float) -> str:
    return _dt(t).strftime("%d/%b/%Y:%H:%M:%S")


def nginx(gen: Generator) -> None:
    """Shop visits from internet clients, and monitor-01 health checks every five minutes."""
    rng = gen.rng
    clients = net.client_pool([rng.randint(0, 252) for _ in range(140)])
    client_w = [1.0 / (1 + i) ** 0.6 for i in range(len(clients))]
    for t in gen.poisson_times(0, DURATION_S, 34):
        client = rng.choices(clients, client_w)[0]
        ua = UAS[int(client.split(".")[-1]) % len(UAS)]
        entry = rng.choice(("/", "/", f"/products/{rng.randint(1000, 1400)}", "/search?q=headphones",
                            "/search?q=usb-c+cable", "/deals"))
        _request(gen, t, client, ua, "GET", entry, 200, lognorm(gen, 38e3, 0.3), "-", rng.uniform(0.01, 0.09))
        t += rng.uniform(0.05, 0.4)
        for asset in ("/static/app.3f9c1e.js", "/static/app.3f9c1e.css"):
            cached = rng.random() < 0.45
            _request(gen, t, client, ua, "GET", asset, 304 if cached else 200,
                     0 if cached else lognorm(gen, 180e3, 0.1), SITE + entry, rng.uniform(0.0, 0.004))
            t += rng.uniform(0.01, 0.1)
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            t += rng.uniform(2, 60)
            method, path, status = rng.choice((
                ("GET", f"/api/v1/products?page={rng.randint(1, 9)}", 200),
                ("GET", f"/api/v1/products/{rng.randint(1000, 1400)}", 200),
                ("POST", "/api/v1/cart/items", 201), ("GET", "/api/v1/cart", 200),
                ("POST", "/login", 302), ("GET", "/account/orders", 200),
                ("GET", f"/products/{rng.randint(1401, 1500)}", 404), ("GET", "/favicon.ico", 404),
            ))
            if rng.random() < 0.006:
                status = 502
            _request(gen, t, client, ua, method, path, status, lognorm(gen, 6e3, 0.6) if status < 300 else 153,
                     SITE + entry, rng.uniform(0.01, 0.3))
    for minute in range(0, DURATION_S // 60, 5):
        for _ in range(2):
            _request(gen, minute * 60 + rng.uniform(2.0, 2.5), net.SERVERS["monitor-01"][0], "check_http/v2.4.9",
                     "GET", "/healthz", 200, 2, "-", rng.uniform(0.001, 0.004))


def backup(gen: Generator) -> None:
    """The nightly backup upload: large but expected bytes_out from backup-01 to S3 on 443."""
    t = BACKUP_AT + 5
    for _ in range(4):
        size = int(gen.rng.uniform(80e6, 260e6))
        dur = size / gen.rng.uniform(0.9e6, 1.6e6)
        firewall(gen, t + dur, src=net.SERVERS["backup-01"][0], dst=net.S3[1], dport=443, sent=size,
                 rcvd=lognorm(gen, 400e3, 0.3), duration_s=dur)
        t += dur + gen.rng.uniform(5, 30)


def servers(gen: Generator, users: list[User]) -> None:
    """Server activity: cron, admin ssh, nginx, backup."""
    cron(gen)
    admin_ssh(gen, [u for u in users if u.admin])
    nginx(gen)
    backup(gen)

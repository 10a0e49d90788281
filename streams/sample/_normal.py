"""Normal (benign) activity of the sample stream, and the event emitters it shares.

Emitters take the generator, a time in seconds from the stream start and the actor,
render the raw message with :mod:`streams.sample._net` and record a SecurityEvent v1
object with the structured fields a parser would extract from that message.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

from streams.sample import _net as net
from streams.sample._formats import iso, syslog_ts

if TYPE_CHECKING:
    from streams.sample.generate import Generator, User

DURATION_S = 6 * 3600

# app -> (median bytes out, median bytes in, median duration s)
PROFILE: dict[str, tuple[float, float, float]] = {
    "outlook.exe": (6e3, 45e3, 4.0), "teams.exe": (15e3, 60e3, 8.0), "onedrive.exe": (400e3, 150e3, 6.0),
    "excel.exe": (120e3, 600e3, 3.0), "winword.exe": (90e3, 500e3, 3.0), "powerpnt.exe": (300e3, 2e6, 5.0),
    "chrome.exe": (18e3, 250e3, 6.0), "msedge.exe": (18e3, 250e3, 6.0), "code.exe": (8e3, 90e3, 3.0),
    "slack.exe": (6e3, 40e3, 20.0), "svchost.exe": (3e3, 25e3, 1.5), "msmpeng.exe": (5e3, 12e3, 1.0),
}
BLOCKED_WEB = ("www.dropbox.com", "mega.nz", "wetransfer.com", "pastebin.com")


def _utc(t: float) -> str:
    return iso(t)[:-1].replace("T", " ")


def _fw_dt(t: float) -> tuple[str, str]:
    stamp = _utc(t)
    return stamp[:10], stamp[11:19]


def _ts(t: float) -> str:
    return syslog_ts(t)


def lognorm(gen: Generator, median: float, sigma: float = 0.9) -> int:
    """A positive integer with the given median (heavy right tail)."""
    return max(1, int(gen.rng.lognormvariate(math.log(median), sigma)))


def image_of(app: str, user: str) -> str:
    """Full image path of ``app`` for ``user``."""
    return net.IMAGES.get(app, rf"C:\Windows\System32\{app}").replace("{user}", user)


# ----------------------------------------------------------------------- emitters


def process_start(gen: Generator, t: float, host: str, user: str, logon_id: str, app: str, parent: str,
                  cmd: str | None = None, *, image: str | None = None, with_4688: bool = True,
                  scenario: str | None = None) -> int:
    """Sysmon 1 (and Windows 4688 a few ms later) for a new process; returns its pid."""
    pid = gen.pid()
    image = image or image_of(app, user)
    cmd = cmd or f'"{image}"'
    ppid = gen.procs.get((host, parent), 700 + gen.rng.randint(0, 3000))
    pimage = image_of(parent, user)
    text = net.sysmon_1(_utc(t), host, user, logon_id, pid, image, cmd, ppid, pimage, f'"{pimage}"',
                        hashlib.sha256(image.lower().encode()).hexdigest().upper(), t)
    base = {"source": "sysmon", "event_type": "process_start", "severity": "informational",
            "outcome": "success", "host": host, "user": user, "process": app}
    gen.add(t, {"message": net.sysmon_msg(_ts(t), host, 1, text), **base,
                "attributes": {"event_code": 1, "parent_process": parent}}, scenario)
    if with_4688:
        t2 = t + gen.rng.uniform(0.002, 0.04)
        text = net.process_4688(user, logon_id, pid, image, ppid, pimage, cmd)
        gen.add(t2, {"message": net.win_msg(_ts(t2), host, 4688, text), **base, "source": "windows-security",
                     "attributes": {"event_code": 4688, "parent_process": parent}}, scenario)
    gen.procs[(host, app)] = pid
    return pid


def firewall(gen: Generator, t_end: float, *, src: str, dst: str, dport: int, proto: int = 6,
             sent: int, rcvd: int, duration_s: float, action: str = "close", user: str | None = None,
             sport: int | None = None, scenario: str | None = None) -> None:
    """One FortiGate traffic log line, logged when the session ends (or is denied)."""
    sport = sport or gen.port()
    spkt, rpkt = (1, 0) if action == "deny" else (sent // 1300 + 3, rcvd // 1300 + 2)
    policy = 0 if action == "deny" else {"lan-admin": 12, "dmz-servers": 31}.get(net.interface(src), 7)
    msg = gen.fw.msg(_fw_dt(t_end), action=action, src=src, sport=sport, dst=dst, dport=dport, proto=proto,
                     duration_s=int(duration_s), sent=sent, rcvd=rcvd, spkt=spkt, rpkt=rpkt, policy=policy,
                     user=user)
    gen.add(t_end, {
        "message": msg, "source": "firewall", "event_type": "network_connection",
        "severity": "low" if action == "deny" else "informational",
        "outcome": "failure" if action == "deny" else "success", "host": "fw-core-01", "user": user,
        "src_ip": src, "dst_ip": dst, "src_port": sport, "dst_port": dport,
        "protocol": "tcp" if proto == 6 else "udp", "bytes_in": rcvd, "bytes_out": sent,
        "packets": spkt + rpkt, "duration_ms": int(duration_s * 1000), "attributes": {"action": action},
    }, scenario)


def sysmon_net(gen: Generator, t: float, host: str, ip: str, user: str, account: str, app: str, pid: int,
               dst: str, dst_name: str, dport: int, sport: int, proto: str = "tcp",
               scenario: str | None = None) -> None:
    """Sysmon 3 (network connection) from a workstation."""
    text = net.sysmon_3(_utc(t), host, account, pid, image_of(app, user), proto, ip, sport, dst, dst_name,
                        dport, t)
    gen.add(t, {"message": net.sysmon_msg(_ts(t), host, 3, text), "source": "sysmon",
                "event_type": "network_connection", "severity": "informational", "outcome": "success",
                "host": host, "user": user, "process": app, "src_ip": ip, "dst_ip": dst, "src_port": sport,
                "dst_port": dport, "protocol": proto, "attributes": {"event_code": 3}}, scenario)


def squid(gen: Generator, t_end: float, *, client: str, user: str, site: str, ip: str | None, size: int,
          elapsed_ms: int, sport: int, denied: bool = False) -> None:
    """One squid native access.log line for a CONNECT tunnel."""
    code = "TCP_DENIED/403" if denied else "TCP_TUNNEL/200"
    hier = "HIER_NONE/-" if denied else f"HIER_DIRECT/{ip}"
    msg = (f"{1741651200 + t_end:.3f} {elapsed_ms:6d} {client} {code} {size} CONNECT {site}:443 {user} "
           f"{hier} {'text/html' if denied else '-'}")
    gen.add(t_end, {"message": msg, "source": "proxy", "event_type": "http_request",
                    "severity": "low" if denied else "informational",
                    "outcome": "failure" if denied else "success", "host": "proxy-01", "user": user,
                    "process": "squid", "src_ip": client, "dst_ip": ip, "src_port": sport,
                    "dst_port": net.PROXY_PORT, "protocol": "http", "bytes_in": size,
                    "duration_ms": elapsed_ms,
                    "attributes": {"http_method": "CONNECT", "http_status": 403 if denied else 200,
                                   "url_host": site}})


def windows_auth(gen: Generator, t: float, host: str, user: str, code: int, text: str, *,
                 src: str | None = None, sport: int | None = None, logon_type: int | None = None,
                 session: str | None = None) -> None:
    """A Windows Security authentication event (4624, 4625, 4634, 4768)."""
    fail = code == 4625
    attrs: dict[str, str | int] = {"event_code": code}
    if logon_type is not None:
        attrs["logon_type"] = logon_type
    gen.add(t, {"message": net.win_msg(_ts(t), host, code, text), "source": "windows-security",
                "event_type": "authentication", "severity": "low" if fail else "informational",
                "outcome": "failure" if fail else "success", "host": host, "user": user,
                "process": "lsass.exe", "src_ip": src, "src_port": sport, "session_id": session,
                "attributes": attrs})


# --------------------------------------------------------------------- activities


def app_activity(gen: Generator, t: float, u: User, app: str) -> None:
    """One use of ``app`` on the user's workstation: DNS, connection, proxy and firewall logs."""
    rng = gen.rng
    pid = gen.procs.get((u.host, app)) or process_start(gen, t - 1.0, u.host, u.name, gen.logon_id(u), app,
                                                         "explorer.exe")
    out_m, in_m, dur_m = PROFILE[app]
    sent, rcvd, dur = lognorm(gen, out_m), lognorm(gen, in_m), lognorm(gen, dur_m * 1000, 0.7) / 1000
    if app == "teams.exe" and rng.random() < 0.05:  # a call
        sent, rcvd, dur = lognorm(gen, 25e6, 0.5), lognorm(gen, 30e6, 0.5), rng.uniform(600, 2400)
    if app == "onedrive.exe" and rng.random() < 0.15:  # a sync upload
        sent = lognorm(gen, 12e6, 0.8)
    sport = gen.port()
    account = f"{net.DOMAIN}\\{u.name}"
    if app in net.PROXY_APPS:
        site = rng.choice(u.web) if app in ("chrome.exe", "msedge.exe") else (
            "api.github.com" if app == "code.exe" else "app.slack.com")
        ip = net.WEB[site]
        sysmon_net(gen, t, u.host, u.ip, u.name, account, app, pid, net.PROXY_IP, f"proxy-01.{net.FQDN}",
                   net.PROXY_PORT, sport)
        squid(gen, t + dur, client=u.ip, user=u.name, site=site, ip=ip, size=rcvd, elapsed_ms=int(dur * 1000),
              sport=sport)
        if rng.random() < 0.5:
            firewall(gen, t + dur + 0.01, src=net.PROXY_IP, dst=ip, dport=443, sent=sent, rcvd=rcvd,
                     duration_s=dur)
        return
    name, ip = net.M365.get(app) or net.BACKGROUND[app]
    if rng.random() < 0.3:
        text = net.sysmon_22(_utc(t - 0.05), u.host, account, pid, image_of(app, u.name), name, ip, t)
        gen.add(t - 0.05, {"message": net.sysmon_msg(_ts(t - 0.05), u.host, 22, text), "source": "sysmon",
                           "event_type": "dns_query", "severity": "informational", "outcome": "success",
                           "host": u.host, "user": u.name, "process": app,
                           "attributes": {"event_code": 22, "query": name}})
        if rng.random() < 0.5:
            firewall(gen, t - 0.03, src=u.ip, dst=net.DNS_SERVER, dport=53, proto=17,
                     sent=rng.randint(60, 90), rcvd=rng.randint(90, 260), duration_s=0, user=u.name)
    sysmon_net(gen, t, u.host, u.ip, u.name, account, app, pid, ip, name, 443, sport)
    firewall(gen, t + dur, src=u.ip, dst=ip, dport=443, sent=sent, rcvd=rcvd, duration_s=dur, user=u.name,
             sport=sport)


def background(gen: Generator, t: float, host: str, ip: str, user: str) -> None:
    """Windows background service traffic (Defender, telemetry), no user needed."""
    app = gen.rng.choice(("svchost.exe", "svchost.exe", "msmpeng.exe"))
    name, dst = net.BACKGROUND[app]
    pid = gen.procs.setdefault((host, app), 900 + gen.rng.randint(0, 4000))
    sport = gen.port()
    out_m, in_m, dur_m = PROFILE[app]
    sent, rcvd, dur = lognorm(gen, out_m), lognorm(gen, in_m), lognorm(gen, dur_m * 1000, 0.6) / 1000
    sysmon_net(gen, t, host, ip, "SYSTEM", "NT AUTHORITY\\SYSTEM", app, pid, dst, name, 443, sport)
    firewall(gen, t + dur, src=ip, dst=dst, dport=443, sent=sent, rcvd=rcvd, duration_s=dur, sport=sport)


def logon(gen: Generator, t: float, u: User) -> None:
    """Morning logon: Kerberos TGT on the DC, 4624 interactive, explorer and the usual apps."""
    lid = gen.new_logon(u)
    dc_ip = net.SERVERS["dc-01"][0]
    sport = gen.port()
    text = (f"A Kerberos authentication ticket (TGT) was requested. Account Information: Account Name: "
            f"{u.name} Supplied Realm Name: CORP.EXAMPLE.COM User ID: {net.DOMAIN}\\{u.name} Service "
            f"Information: Service Name: krbtgt Service ID: {net.DOMAIN}\\krbtgt Network Information: "
            f"Client Address: ::ffff:{u.ip} Client Port: {sport} Additional Information: Ticket Options: "
            f"0x40810010 Result Code: 0x0 Ticket Encryption Type: 0x12 Pre-Authentication Type: 2")
    windows_auth(gen, t, "dc-01", u.name, 4768, text, src=u.ip, sport=sport)
    firewall(gen, t + 0.02, src=u.ip, dst=dc_ip, dport=88, sent=1650, rcvd=1480, duration_s=0, user=u.name,
             sport=sport)
    windows_auth(gen, t + 0.4, u.host, u.name, 4624, net.logon_4624(u.host, u.name, lid, 2, "127.0.0.1", 0),
                 logon_type=2, session=f"{u.host}:{lid}")
    process_start(gen, t + 2.1, u.host, u.name, lid, "explorer.exe", "userinit.exe")
    start = t + 15
    for app in u.apps:
        start += gen.rng.uniform(5, 120)
        process_start(gen, start, u.host, u.name, lid, app, "explorer.exe")


def unlock(gen: Generator, t: float, u: User) -> None:
    """Screen unlock (4624 type 7), sometimes after a mistyped password (4625)."""
    if gen.rng.random() < 0.15:
        windows_auth(gen, t - gen.rng.uniform(2, 8), u.host, u.name, 4625, net.logon_4625(u.host, u.name, 7),
                     logon_type=7)
    lid = gen.logon_id(u)
    windows_auth(gen, t, u.host, u.name, 4624, net.logon_4624(u.host, u.name, lid, 7, "127.0.0.1", 0),
                 logon_type=7, session=f"{u.host}:{lid}")


def share_access(gen: Generator, t: float, u: User) -> None:
    """Network logon to the file server and a share access (4624 type 3, 5140)."""
    fs_ip = net.SERVERS["file-01"][0]
    lid = f"0x{gen.rng.randint(0x1000000, 0x7FFFFFF):X}"
    sport = gen.port()
    windows_auth(gen, t, "file-01", u.name, 4624, net.logon_4624("file-01", u.name, lid, 3, u.ip, sport),
                 src=u.ip, sport=sport, logon_type=3, session=f"file-01:{lid}")
    share = gen.rng.choice(("Finance", "Projects", "Public", "HR", "Engineering")) if u.admin else (
        ("Projects", "Public", "Finance")[sum(map(ord, u.name)) % 3])
    text = (f"A network share object was accessed. Subject: Security ID: {net.DOMAIN}\\{u.name} Account "
            f"Name: {u.name} Account Domain: {net.DOMAIN} Logon ID: {lid} Network Information: Object "
            f"Type: File Source Address: {u.ip} Source Port: {sport} Share Information: Share Name: "
            f"\\\\*\\{share} Share Path: \\??\\D:\\Shares\\{share} Access Request Information: Access "
            f"Mask: 0x1 Accesses: ReadData (or ListDirectory)")
    gen.add(t + 0.01, {"message": net.win_msg(_ts(t + 0.01), "file-01", 5140, text),
                       "source": "windows-security", "event_type": "file_access", "severity": "informational",
                       "outcome": "success", "host": "file-01", "user": u.name, "src_ip": u.ip,
                       "src_port": sport, "session_id": f"file-01:{lid}",
                       "attributes": {"event_code": 5140, "share": share}})
    dur = gen.rng.uniform(2, 90)
    firewall(gen, t + dur, src=u.ip, dst=fs_ip, dport=445, sent=lognorm(gen, 40e3), rcvd=lognorm(gen, 2e6),
             duration_s=dur, user=u.name, sport=sport)


def small_events(gen: Generator, t: float, u: User) -> None:
    """Rarer routine events: attachment saved, Defender scan of lsass, blocked NTP/web."""
    rng = gen.rng
    roll = rng.random()
    account = f"{net.DOMAIN}\\{u.name}"
    if roll < 0.35:
        pid = gen.procs.get((u.host, "outlook.exe"), 7000)
        target = (f"C:\\Users\\{u.name}\\AppData\\Local\\Microsoft\\Windows\\INetCache\\Content.Outlook\\"
                  f"K3J9Q2ZB\\{rng.choice(('Report', 'Minutes', 'Invoice', 'Agenda', 'Budget'))}_"
                  f"{rng.randint(1, 40):02d}.{rng.choice(('pdf', 'xlsx', 'docx', 'pptx'))}")
        text = net.sysmon_11(_utc(t), u.host, account, pid, image_of("outlook.exe", u.name), target, t)
        gen.add(t, {"message": net.sysmon_msg(_ts(t), u.host, 11, text), "source": "sysmon",
                    "event_type": "file_access", "severity": "informational", "outcome": "success",
                    "host": u.host, "user": u.name, "process": "outlook.exe",
                    "attributes": {"event_code": 11}})
    elif roll < 0.6:
        pid = gen.procs.setdefault((u.host, "msmpeng.exe"), 3100)
        text = net.sysmon_10(_utc(t), u.host, "NT AUTHORITY\\SYSTEM", pid, net.IMAGES["msmpeng.exe"], 788,
                             "0x1010", t)
        gen.add(t, {"message": net.sysmon_msg(_ts(t), u.host, 10, text), "source": "sysmon",
                    "event_type": "process_access", "severity": "informational", "outcome": "success",
                    "host": u.host, "user": "SYSTEM", "process": "msmpeng.exe",
                    "attributes": {"event_code": 10, "target_process": "lsass.exe"}})
    elif roll < 0.8:
        firewall(gen, t, src=u.ip, dst="20.101.57.9", dport=123, proto=17, sent=76, rcvd=0, duration_s=0,
                 action="deny", user=u.name)
    else:
        squid(gen, t, client=u.ip, user=u.name, site=rng.choice(BLOCKED_WEB), ip=None, size=3912,
              elapsed_ms=rng.randint(0, 3), sport=gen.port(), denied=True)


def user_day(gen: Generator, u: User) -> None:
    """All workstation activity of one user inside the stream window."""
    rng = gen.rng
    a, b = u.active_window()
    for t in gen.poisson_times(0, DURATION_S, 0.8):
        background(gen, t, u.host, u.ip, u.name)
    if a >= DURATION_S or b <= 0:
        return
    if a > 0:
        a = min(a + rng.uniform(-600, 900), DURATION_S - 1.0)
        logon(gen, a, u)
        a += 300
    weights = [4 if app in ("outlook.exe", "teams.exe") else 3 if app.endswith(("chrome.exe", "msedge.exe"))
               else 1 for app in u.apps]
    for t in gen.poisson_times(a, b, u.rate_per_h):
        local = (t / 3600 + u.utc_offset) % 24
        if 12.0 <= local < 13.0 and rng.random() < 0.65:
            continue  # lunch
        app = rng.choices(u.apps, weights)[0]
        if rng.random() < 0.04:
            process_start(gen, t - 2, u.host, u.name, gen.logon_id(u), app, "explorer.exe")
        app_activity(gen, t, u, app)
    for t in gen.poisson_times(a, b, 0.45):
        unlock(gen, t, u)
    for t in gen.poisson_times(a, b, 0.3):
        share_access(gen, t, u)
    for t in gen.poisson_times(a, b, 0.5):
        small_events(gen, t, u)
    if b < DURATION_S:
        lid = gen.logon_id(u)
        windows_auth(gen, b, u.host, u.name, 4634, net.logoff_4634(u.name, lid, 2), logon_type=2,
                     session=f"{u.host}:{lid}")


def workstations(gen: Generator, users: list[User]) -> None:
    """Activity of every user's workstation."""
    for u in users:
        user_day(gen, u)



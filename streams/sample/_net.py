"""Address plan and raw-message formats of the synthetic sample stream.

Each ``*_msg`` function renders one log line the way the product writes it (FortiGate
traffic log, squid native access log, nginx combined log, sshd/cron syslog, Windows
Security and Sysmon events forwarded as single-line syslog).
"""

from __future__ import annotations

from dataclasses import dataclass

DOMAIN = "CORP"
FQDN = "corp.example.com"

# Servers: name -> (ip, os).
SERVERS: dict[str, tuple[str, str]] = {
    "bastion-01": ("10.10.0.5", "linux"),
    "proxy-01": ("10.10.0.8", "linux"),
    "dc-01": ("10.10.0.10", "windows"),
    "file-01": ("10.10.0.12", "windows"),
    "web-01": ("10.10.0.21", "linux"),
    "web-02": ("10.10.0.22", "linux"),
    "app-01": ("10.10.0.31", "linux"),
    "app-02": ("10.10.0.32", "linux"),
    "db-01": ("10.10.0.41", "linux"),
    "db-02": ("10.10.0.42", "linux"),
    "backup-01": ("10.10.0.51", "linux"),
    "monitor-01": ("10.10.0.61", "linux"),
}
DNS_SERVER = SERVERS["dc-01"][0]
PROXY_IP, PROXY_PORT = SERVERS["proxy-01"][0], 3128

# Microsoft 365 endpoints reached directly (proxy bypass, as Microsoft recommends).
M365: dict[str, tuple[str, str]] = {
    "outlook.exe": ("outlook.office365.com", "52.96.164.130"),
    "teams.exe": ("teams.microsoft.com", "52.113.194.132"),
    "onedrive.exe": ("corp-my.sharepoint.com", "13.107.136.10"),
    "excel.exe": ("corp.sharepoint.com", "13.107.138.10"),
    "winword.exe": ("corp.sharepoint.com", "13.107.138.10"),
    "powerpnt.exe": ("corp.sharepoint.com", "13.107.138.10"),
}
LOGIN_MS = ("login.microsoftonline.com", "20.190.159.2")
# Web SaaS reached through the explicit proxy: host -> ip.
WEB: dict[str, str] = {
    "www.google.com": "142.250.74.100",
    "github.com": "140.82.121.4",
    "api.github.com": "140.82.121.6",
    "corp.my.salesforce.com": "136.146.32.10",
    "corp.atlassian.net": "185.166.143.24",
    "zoom.us": "170.114.52.2",
    "app.slack.com": "54.192.18.61",
    "www.linkedin.com": "13.107.42.14",
    "docs.python.org": "151.101.0.223",
    "stackoverflow.com": "104.18.32.7",
}
WEB_SITES: tuple[str, ...] = tuple(WEB)
PROXY_APPS = {"chrome.exe", "msedge.exe", "code.exe", "slack.exe"}
BACKGROUND = {  # Windows background services (no user logged in needed)
    "svchost.exe": ("settings-win.data.microsoft.com", "20.42.73.24"),
    "msmpeng.exe": ("wdcp.microsoft.com", "20.50.201.195"),
}
S3 = ("s3.eu-central-1.amazonaws.com", "52.219.170.41")

IMAGES: dict[str, str] = {
    "outlook.exe": r"C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE",
    "teams.exe": r"C:\Program Files\WindowsApps\MSTeams_25031.805.3440.5290_x64__8wekyb3d8bbwe\ms-teams.exe",
    "chrome.exe": r"C:\Program Files\Google\Chrome\Application\chrome.exe",
    "msedge.exe": r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
    "excel.exe": r"C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE",
    "winword.exe": r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE",
    "powerpnt.exe": r"C:\Program Files\Microsoft Office\root\Office16\POWERPNT.EXE",
    "onedrive.exe": r"C:\Program Files\Microsoft OneDrive\OneDrive.exe",
    "code.exe": r"C:\Users\{user}\AppData\Local\Programs\Microsoft VS Code\Code.exe",
    "slack.exe": r"C:\Users\{user}\AppData\Local\slack\slack.exe",
    "explorer.exe": r"C:\Windows\explorer.exe",
    "svchost.exe": r"C:\Windows\System32\svchost.exe",
    "msmpeng.exe": r"C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.25010.11-0\MsMpEng.exe",
    "userinit.exe": r"C:\Windows\System32\userinit.exe",
    "lsass.exe": r"C:\Windows\system32\lsass.exe",
    "powershell.exe": r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
    "cmd.exe": r"C:\Windows\System32\cmd.exe",
}

# Internet clients of the web shop (never the attacker addresses below).
_CLIENT_PREFIXES = ("81.2.69", "86.48.12", "92.40.176", "109.152.33", "176.24.90", "203.59.14",
                    "49.180.22", "61.68.104", "114.79.3", "121.200.5", "60.240.71", "101.188.67")
ATTACKER_SSH = "185.220.101.47"
ATTACKER_STAGING = "91.215.85.17"
EXFIL_DST = "45.146.164.110"


def client_pool(rng_values: list[int]) -> list[str]:
    """Internet client addresses for nginx, one per value (host octets 2..254)."""
    return [f"{_CLIENT_PREFIXES[i % len(_CLIENT_PREFIXES)]}.{2 + v % 253}" for i, v in enumerate(rng_values)]


def interface(ip: str) -> str:
    """FortiGate interface a source/destination address sits behind."""
    for prefix, name in (("10.20.", "lan-sgp"), ("10.30.", "lan-syd"), ("10.40.", "lan-fra"),
                         ("10.0.5.", "lan-admin"), ("10.10.", "dmz-servers")):
        if ip.startswith(prefix):
            return name
    return "wan1"


_SERVICES = {(6, 443): "HTTPS", (6, 80): "HTTP", (17, 53): "DNS", (6, 22): "SSH", (17, 123): "NTP",
             (6, 3128): "squid", (6, 445): "SMB", (6, 3389): "RDP", (6, 25): "SMTP", (6, 21): "FTP",
             (6, 23): "TELNET", (6, 389): "LDAP", (6, 1433): "MS-SQL", (6, 3306): "MYSQL"}


@dataclass
class Firewall:
    """FortiGate ``fw-core-01`` traffic log renderer with its own session counter."""

    session: int = 187_340_112

    def msg(self, date_time: tuple[str, str], *, action: str, src: str, sport: int, dst: str, dport: int,
            proto: int, duration_s: int, sent: int, rcvd: int, spkt: int, rpkt: int, policy: int,
            user: str | None = None) -> str:
        """One ``type="traffic" subtype="forward"`` line."""
        self.session += 1 + (sport % 7)
        level = "warning" if action == "deny" else "notice"
        service = _SERVICES.get((proto, dport), f"{'tcp' if proto == 6 else 'udp'}/{dport}")
        line = (f'date={date_time[0]} time={date_time[1]} devname="fw-core-01" devid="FG200FT922901234" '
                f'logid="0000000013" type="traffic" subtype="forward" level="{level}" vd="root" '
                f'srcip={src} srcport={sport} srcintf="{interface(src)}" dstip={dst} dstport={dport} '
                f'dstintf="{interface(dst)}" sessionid={self.session} proto={proto} action="{action}" '
                f'policyid={policy} service="{service}" duration={duration_s} sentbyte={sent} '
                f'rcvdbyte={rcvd} sentpkt={spkt} rcvdpkt={rpkt}')
        return line + (f' user="{user}"' if user else "")


def win_msg(ts: str, host: str, code: int, text: str) -> str:
    """Windows Security event forwarded as one syslog line."""
    return f"{ts} {host.upper()} Microsoft-Windows-Security-Auditing[712]: {code}: {text}"


def sysmon_msg(ts: str, host: str, code: int, text: str) -> str:
    """Sysmon event forwarded as one syslog line."""
    return f"{ts} {host.upper()} Microsoft-Windows-Sysmon[3120]: {code}: {text}"


def guid(host: str, pid: int, t: float) -> str:
    """Sysmon-style process GUID: machine part, creation time part, pid part."""
    machine = sum(ord(c) * (i + 1) for i, c in enumerate(host)) & 0xFFFFFFFF
    return f"{{{machine:08x}-{(int(t) >> 8) & 0xFFFF:04x}-{int(t) & 0xFF:02x}0a-{pid & 0xFFFF:04x}-000000001a00}}"


def logon_4624(host: str, user: str, logon_id: str, logon_type: int, src: str, sport: int) -> str:
    """Text of event 4624 (an account was successfully logged on)."""
    proc = r"C:\Windows\System32\svchost.exe" if logon_type in (2, 7, 11) else "-"
    package = "Negotiate" if logon_type in (2, 7, 11) else "Kerberos"
    return (f"An account was successfully logged on. Subject: Security ID: S-1-5-18 Account Name: "
            f"{host.upper()}$ Account Domain: {DOMAIN} Logon ID: 0x3E7 Logon Information: Logon Type: "
            f"{logon_type} Restricted Admin Mode: - Virtual Account: No Elevated Token: No New Logon: "
            f"Security ID: {DOMAIN}\\{user} Account Name: {user} Account Domain: {DOMAIN} Logon ID: "
            f"{logon_id} Process Information: Process Name: {proc} Network Information: Workstation "
            f"Name: {host.upper()} Source Network Address: {src} Source Port: {sport} Detailed "
            f"Authentication Information: Logon Process: User32 Authentication Package: {package}")


def logon_4625(host: str, user: str, logon_type: int) -> str:
    """Text of event 4625 (an account failed to log on)."""
    return (f"An account failed to log on. Subject: Security ID: S-1-5-18 Account Name: {host.upper()}$ "
            f"Account Domain: {DOMAIN} Logon ID: 0x3E7 Logon Type: {logon_type} Account For Which Logon "
            f"Failed: Security ID: NULL SID Account Name: {user} Account Domain: {DOMAIN} Failure "
            f"Information: Failure Reason: Unknown user name or bad password. Status: 0xC000006D Sub "
            f"Status: 0xC000006A Process Information: Caller Process Name: C:\\Windows\\System32\\"
            f"svchost.exe Network Information: Workstation Name: {host.upper()} Source Network Address: "
            f"127.0.0.1 Source Port: 0")


def logoff_4634(user: str, logon_id: str, logon_type: int) -> str:
    """Text of event 4634 (an account was logged off)."""
    return (f"An account was logged off. Subject: Security ID: {DOMAIN}\\{user} Account Name: {user} "
            f"Account Domain: {DOMAIN} Logon ID: {logon_id} Logon Type: {logon_type}")


def process_4688(user: str, logon_id: str, pid: int, image: str, ppid: int, parent: str, cmd: str) -> str:
    """Text of event 4688 (a new process has been created)."""
    return (f"A new process has been created. Creator Subject: Security ID: {DOMAIN}\\{user} Account "
            f"Name: {user} Account Domain: {DOMAIN} Logon ID: {logon_id} Target Subject: Security ID: "
            f"NULL SID Account Name: - Account Domain: - Logon ID: 0x0 Process Information: New Process "
            f"ID: 0x{pid:x} New Process Name: {image} Token Elevation Type: %%1938 Mandatory Label: "
            f"Mandatory Label\\Medium Mandatory Level Creator Process ID: 0x{ppid:x} Creator Process "
            f"Name: {parent} Process Command Line: {cmd}")


def sysmon_1(utc: str, host: str, user: str, logon_id: str, pid: int, image: str, cmd: str, ppid: int,
             parent: str, parent_cmd: str, sha256: str, t: float) -> str:
    """Text of Sysmon event 1 (process create)."""
    cwd = f"C:\\Users\\{user}\\"
    return (f"Process Create: RuleName: - UtcTime: {utc} ProcessGuid: {guid(host, pid, t)} ProcessId: "
            f"{pid} Image: {image} CommandLine: {cmd} CurrentDirectory: {cwd} User: {DOMAIN}\\{user} "
            f"LogonId: {logon_id} TerminalSessionId: 1 IntegrityLevel: Medium Hashes: SHA256={sha256} "
            f"ParentProcessGuid: {guid(host, ppid, t - 3600)} ParentProcessId: {ppid} ParentImage: "
            f"{parent} ParentCommandLine: {parent_cmd}")


def sysmon_3(utc: str, host: str, user: str, pid: int, image: str, proto: str, src: str, sport: int,
             dst: str, dst_name: str, dport: int, t: float) -> str:
    """Text of Sysmon event 3 (network connection detected)."""
    port_name = {443: "https", 80: "http", 53: "domain"}.get(dport, "-")
    return (f"Network connection detected: RuleName: - UtcTime: {utc} ProcessGuid: {guid(host, pid, t)} "
            f"ProcessId: {pid} Image: {image} User: {user} Protocol: {proto} Initiated: true "
            f"SourceIsIpv6: false SourceIp: {src} SourceHostname: {host.upper()}.{FQDN} SourcePort: "
            f"{sport} SourcePortName: - DestinationIsIpv6: false DestinationIp: {dst} DestinationHostname: "
            f"{dst_name} DestinationPort: {dport} DestinationPortName: {port_name}")


def sysmon_22(utc: str, host: str, user: str, pid: int, image: str, query: str, answer: str, t: float) -> str:
    """Text of Sysmon event 22 (DNS query)."""
    return (f"Dns query: RuleName: - UtcTime: {utc} ProcessGuid: {guid(host, pid, t)} ProcessId: {pid} "
            f"QueryName: {query} QueryStatus: 0 QueryResults: ::ffff:{answer}; Image: {image} User: {user}")


def sysmon_11(utc: str, host: str, user: str, pid: int, image: str, target: str, t: float) -> str:
    """Text of Sysmon event 11 (file created)."""
    return (f"File created: RuleName: - UtcTime: {utc} ProcessGuid: {guid(host, pid, t)} ProcessId: {pid} "
            f"Image: {image} TargetFilename: {target} CreationUtcTime: {utc} User: {user}")


def sysmon_10(utc: str, host: str, src_user: str, pid: int, image: str, lsass_pid: int, access: str,
              t: float) -> str:
    """Text of Sysmon event 10 (process accessed), target lsass.exe."""
    return (f"Process accessed: RuleName: - UtcTime: {utc} SourceProcessGUID: {guid(host, pid, t)} "
            f"SourceProcessId: {pid} SourceThreadId: {pid + 12} SourceImage: {image} TargetProcessGUID: "
            f"{guid(host, lsass_pid, 0)} TargetProcessId: {lsass_pid} TargetImage: {IMAGES['lsass.exe']} "
            f"GrantedAccess: {access} CallTrace: C:\\Windows\\SYSTEM32\\ntdll.dll+9d4c4|C:\\Windows\\"
            f"System32\\KERNELBASE.dll+2c13e|UNKNOWN SourceUser: {src_user} TargetUser: NT AUTHORITY\\SYSTEM")

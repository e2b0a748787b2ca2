"""A private Postfix instance set up as an outbound relay, for the side-by-side bench.

Responsible for: writing a complete Postfix configuration under a temporary directory
(own `config_directory`, `queue_directory`, `data_directory`, log file), starting it,
filling its queue through its normal SMTP injection with delivery held, releasing the
queue (the timed part), and stopping every Postfix process again, also after errors.
Not responsible for: receivers or DNS (bench.phases), or measuring (bench.measure).

How Postfix is pointed at the bench's DNS server and receivers (both on loopback):
  * Port. Postfix's SMTP client connects to port 25 of an MX host. A transport map entry
    `dom001.test  smtp:dom001.test:PORT` keeps the MX lookup (no brackets: transport(5),
    "disable MX lookups with [host]") and only changes the port; one entry per domain,
    in a `texthash:` table so no postmap run is needed.
  * DNS. Postfix resolves with the system resolver (libresolv, /etc/resolv.conf, port 53
    only). Its `smtp` service runs chrooted (master.cf column 5 = y) in the queue directory,
    and resolv.conf is read relative to the chroot, so `<queue>/etc/resolv.conf` names the
    bench's DNS server, which therefore listens on port 53 of a loopback address
    (bench.phases picks a free 127.53.x.y). The machine's resolver configuration is never
    touched.
  * Holding. The injection smtpd answers every recipient with the access action HOLD
    (`check_client_access static:HOLD`), so mail lands in the hold queue; `postsuper -H
    ALL` moves it to the deferred queue and `postqueue -f` makes the queue manager take it
    all at once. `queue_run_delay = 3600s` keeps the periodic deferred scan from starting
    early, so the timed window begins at the flush.

Settings that decide speed (the issue's reference run): `smtp_destination_concurrency_limit
= 20` (Postfix's default; it starts at `initial_destination_concurrency = 5` and grows by
feedback), connection cache on demand (default yes), `default_process_limit = 100`
(default), ipv4 only, no TLS (the receivers offer none). Postfix needs root to start.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import smtplib
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from bench.measure import descendants
from bench.sinks import find_tool, wait_listening
from bench.workload import Mail

__all__ = ["PostfixRelay"]

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 60.0

_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{inject} inet n - n - - smtpd
  -o smtpd_recipient_restrictions=check_client_access,static:HOLD,permit_mynetworks,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       y       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixRelay:
    """One Postfix instance under `root`: inject on `inject_port`, deliver to MX:`smtp_port`.

    Example:
        with PostfixRelay(root, dns_ip="127.53.7.9", smtp_port=p, inject_port=q,
                          domains=names) as pf:
            pf.inject(mails)
            pf.release()          # the timed part starts here
    """

    def __init__(
        self,
        root: Path,
        *,
        dns_ip: str,
        smtp_port: int,
        inject_port: int,
        domains: Sequence[str],
        concurrency: int = 20,
        active_limit: int = 20_000,
        retry: float | None = None,
    ) -> None:
        """`retry`: seconds between a deferral and the next attempt (minimal = maximal
        backoff = queue_run_delay; the backpressure mode); None: the queue is not scanned
        before the flush (queue_run_delay 3600 s) and Postfix's own backoff applies."""
        self.root = root
        self.conf = root / "conf"
        self.queue = root / "queue"
        self.data = root / "data"
        self.log = root / "postfix.log"
        self.dns_ip = dns_ip
        self.smtp_port = smtp_port
        self.inject_port = inject_port
        self.domains = list(domains)
        self.concurrency = concurrency
        self.active_limit = active_limit
        self.retry = retry
        self._started = False
        self._pids: set[int] = set()

    # -- configuration --------------------------------------------------------------------
    def write_config(self) -> None:
        for d in (self.root, self.conf, self.queue, self.data):
            d.mkdir(parents=True, exist_ok=True)
        # The postfix user must be able to reach its queue; mkdtemp makes 0700 directories.
        for d in (self.root, *self.root.parents):
            st = d.stat()
            if st.st_mode & 0o001:
                continue
            if st.st_uid != os.geteuid():
                raise PermissionError(f"{d} is not searchable by the postfix user")
            d.chmod(st.st_mode | 0o011)
        # Postfix's master takes its lock in data_directory as the mail_owner.
        pw = pwd.getpwnam("postfix")
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "meta_directory": "/etc/postfix",  # postfix-files, read by `postfix check`
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(self.root),  # default /var, /dev/stdout only
            "myhostname": "postfix-bench.sender.test",
            "mydomain": "sender.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "transport_maps": f"texthash:{self.conf / 'transport'}",
            "smtp_host_lookup": "dns",
            "smtp_address_preference": "ipv4",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "default_destination_concurrency_limit": str(self.concurrency),
            "smtp_destination_concurrency_limit": str(self.concurrency),
            "smtp_connection_cache_on_demand": "yes",
            "queue_run_delay": "3600s" if self.retry is None else f"{self.retry:g}s",
            "qmgr_message_active_limit": str(self.active_limit),
            "biff": "no",
            "append_dot_mydomain": "no",
        }
        if self.retry is not None:
            step = f"{self.retry:g}s"
            main.update(minimal_backoff_time=step, maximal_backoff_time=step)
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        master = _MASTER_CF.format(inject=f"127.0.0.1:{self.inject_port}")
        (self.conf / "master.cf").write_text(master)
        (self.conf / "transport").write_text(
            "".join(f"{d} smtp:{d}:{self.smtp_port}\n" for d in self.domains)
        )
        # The chrooted smtp client's view of /etc (see the module docstring).
        etc = self.queue / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "resolv.conf").write_text(
            f"nameserver {self.dns_ip}\noptions timeout:2 attempts:2\n"
        )
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        for name in ("services", "localtime", "nsswitch.conf"):
            with contextlib.suppress(OSError):
                shutil.copyfile(f"/etc/{name}", etc / name)

    # -- lifecycle --------------------------------------------------------------------------
    def _postfix(self, *args: str, timeout: float = _START_TIMEOUT) -> str:
        proc = subprocess.run(
            [find_tool("postfix"), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            # Postfix commands log to maillog_file (or syslog), not to a non-tty stderr.
            why = proc.stderr.strip() or self.log_tail(5) or "(no output; see syslog)"
            raise RuntimeError(f"postfix {' '.join(args)} failed: {why}")
        return proc.stderr

    def start(self) -> PostfixRelay:
        if os.geteuid() != 0:
            raise PermissionError("the Postfix comparison needs root (postfix start)")
        self.write_config()
        self._started = True
        try:
            self._postfix("start")
            wait_listening("127.0.0.1", self.inject_port, _START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def master_pid(self) -> int | None:
        try:
            text = (self.queue / "pid" / "master.pid").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def stop(self) -> None:
        """Stop the master and everything it started; SIGKILL what is left after 60 s."""
        if not self._started:
            return
        master = self.master_pid
        if master is not None and _alive(master):
            self._pids.update([master, *descendants(master)])
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._postfix("stop", timeout=_STOP_TIMEOUT)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while any(_alive(p) for p in self._pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in self._pids:
            if _alive(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        self._started = False

    def __enter__(self) -> PostfixRelay:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- work ---------------------------------------------------------------------------------
    def inject(self, mails: Sequence[Mail], connections: int = 4, timeout: float = 600) -> float:
        """Submit `mails` over SMTP (held, not delivered); return the seconds it took once
        all of them are in the hold queue."""
        t0 = time.monotonic()
        errors: list[BaseException] = []

        def submit(part: Sequence[Mail]) -> None:
            try:
                with smtplib.SMTP("127.0.0.1", self.inject_port, timeout=60) as s:
                    s.ehlo("producer.sender.test")
                    for m in part:
                        s.sendmail(m.sender, [m.rcpt], m.data)
            except BaseException as e:
                errors.append(e)

        threads = [
            threading.Thread(target=submit, args=(mails[i::connections],), daemon=True)
            for i in range(connections)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"injection into Postfix failed: {errors[0]!r}")
        deadline = time.monotonic() + timeout
        while self.held() < len(mails):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.held()} of {len(mails)} messages reached hold")
            time.sleep(0.05)
        return time.monotonic() - t0

    def held(self) -> int:
        return _count_files(self.queue / "hold")

    def release(self) -> None:
        """Move the held mail to the deferred queue, then flush it: delivery starts now."""
        postsuper = find_tool("postsuper")
        subprocess.run(
            [postsuper, "-c", str(self.conf), "-H", "ALL"], check=True, capture_output=True
        )
        self._postfix("flush")

    def queued(self) -> int:
        """Messages still in incoming, active or deferred (0 when all were delivered)."""
        return sum(_count_files(self.queue / q) for q in ("incoming", "active", "deferred"))

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _count_files(top: Path) -> int:
    n = 0
    for _, _, files in os.walk(top):
        n += len(files)
    return n

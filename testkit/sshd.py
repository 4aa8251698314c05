"""A throw-away OpenSSH server on 127.0.0.1 for tests (session scope).

Runs /usr/sbin/sshd -D from a private config in a tmp dir, on a free port
chosen at runtime, with its own host key and a generated client key; it is
stopped by PID at the end of the session.  Only 127.0.0.1 is ever used.
"""

from __future__ import annotations

import ctypes
import dataclasses
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from one_gfs2clvm.config import HostAddress, SshConfig

SSHD = "/usr/sbin/sshd"
HOST = "worker1"


@dataclasses.dataclass(frozen=True)
class SshdServer:
    port: int
    dir: Path
    client_key: Path          # authorized
    other_key: Path           # a valid ed25519 key that is NOT authorized
    host_pub: str             # "ssh-ed25519 AAAA..." of the server
    other_pub: str            # "ssh-ed25519 AAAA..." of a different key
    known_hosts: Path         # correct known_hosts for [127.0.0.1]:port
    config: SshConfig         # SshConfig(hosts={"worker1": 127.0.0.1:port})

    def known_hosts_line(self, pub: str) -> str:
        return f"[127.0.0.1]:{self.port} {pub}\n"

    def ssh_config(self, **changes) -> SshConfig:
        """A copy of .config with some fields changed (e.g. known_hosts=...)."""
        return dataclasses.replace(self.config, **changes)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test",
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL)
    kind, blob = path.with_suffix(".pub").read_text().split()[:2]
    return f"{kind} {blob}"


def _die_with_parent() -> None:
    """In the child: get SIGTERM if pytest dies without running the teardown."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _wait_for_banner(proc: subprocess.Popen, port: int, log: Path, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on 127.0.0.1:{port}: {log.read_text()}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> SshdServer:
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        pytest.fail(f"{SSHD} and ssh-keygen are required (apt-get install openssh-server)")
    tmp = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(tmp / "host_key")
    client_pub = _keygen(tmp / "client_key")
    other_pub = _keygen(tmp / "other_key")
    (tmp / "authorized_keys").write_text(client_pub + "\n")
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text(f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {tmp / 'host_key'}
PidFile {tmp / 'sshd.pid'}
AuthorizedKeysFile {tmp / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
LogLevel ERROR
""")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege-separation dir
    log = tmp / "sshd.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], preexec_fn=_die_with_parent,
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)
    try:
        _wait_for_banner(proc, port, log)
        known_hosts = tmp / "known_hosts"
        server = SshdServer(
            port=port, dir=tmp, client_key=tmp / "client_key", other_key=tmp / "other_key",
            host_pub=host_pub, other_pub=other_pub, known_hosts=known_hosts,
            config=SshConfig(user=getpass.getuser(), identity_file=str(tmp / "client_key"),
                             known_hosts=str(known_hosts), connect_timeout=5.0,
                             command_timeout=120.0,
                             hosts={HOST: HostAddress("127.0.0.1", port)}))
        known_hosts.write_text(server.known_hosts_line(host_pub))
        yield server
    finally:
        from one_gfs2clvm import remote

        remote.close_all()
        proc.terminate()  # exactly the sshd we started, by its PID
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

"""The connection keeper (one_gfs2clvm/keeper.py) against a real sshd on 127.0.0.1.

Each "action" here is a fresh Remote (what a new action process has) or a
real separate Python process; the keeper is the real detached process that
keeper.start() launches."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from one_gfs2clvm import remote
from one_gfs2clvm.errors import HostKeyError, RemoteCommandFailed, RemoteTimeout
from one_gfs2clvm.remote import Remote

HOST = "worker1"
ROOT = Path(__file__).resolve().parents[2]
WHO = ["sh", "-c", "echo $SSH_CONNECTION"]    # client address and PORT: one per TCP connection


def _wait(condition, what: str, limit: float = 20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _keeper_pid(base: Path) -> int | None:
    lock = base / f"gfs2clvm-keeper-{os.getuid()}" / "lock"
    try:
        text = lock.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text and os.path.exists(f"/proc/{text}") else None


def _socket(base: Path) -> Path:
    return base / f"gfs2clvm-keeper-{os.getuid()}" / "socket"


class Traced:
    def __init__(self, path: Path):
        self.path = path

    def modes(self) -> list[str]:
        if not self.path.exists():
            return []
        return [line.split("\t")[1] for line in self.path.read_text().splitlines()]


@pytest.fixture
def trace(tmp_path, monkeypatch):
    path = tmp_path / "trace"
    monkeypatch.setenv(remote.TRACE_ENV, str(path))
    return Traced(path)


@pytest.fixture
def base(tmp_path):
    """A keeper_dir; the keeper started under it is stopped by its PID afterwards."""
    directory = tmp_path / "run"
    directory.mkdir()
    yield directory
    pid = _keeper_pid(directory)
    if pid:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def via(sshd, base):
    """An SshConfig using the keeper under `base`, with a keeper already serving."""
    config = sshd.ssh_config(keeper_dir=str(base), keeper_idle=60.0)
    Remote(HOST, config).run(["true"])          # no keeper yet: direct, and starts one
    _wait(lambda: _socket(base).exists(), "the keeper's socket")
    return config


def test_first_action_connects_itself_and_starts_the_keeper_next_ones_use_it(sshd, base, trace):
    config = sshd.ssh_config(keeper_dir=str(base), keeper_idle=60.0)
    assert Remote(HOST, config).run(["echo", "one"]).stdout == "one\n"
    assert trace.modes() == ["direct"]
    _wait(lambda: _socket(base).exists(), "the keeper's socket")
    directory = _socket(base).parent
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    assert oct(_socket(base).stat().st_mode & 0o777) == "0o600"
    assert Remote(HOST, config).run(["echo", "two"]).stdout == "two\n"
    assert Remote(HOST, config).run(["echo", "three"]).stdout == "three\n"
    assert trace.modes() == ["direct", "keeper", "keeper"]


def test_separate_processes_share_one_ssh_connection(via, trace):
    script = ("import sys; from one_gfs2clvm.remote import Remote; from one_gfs2clvm.config import "
              "SshConfig, HostAddress; import json; c = json.loads(sys.argv[1]); "
              "c['hosts'] = {k: HostAddress(*v) for k, v in c['hosts'].items()}; "
              "print(Remote('worker1', SshConfig(**c)).run(['sh', '-c', 'echo $SSH_CONNECTION'])"
              ".stdout, end='')")
    fields = dataclasses.asdict(via)
    fields["hosts"] = {k: [v["address"], v["port"]] for k, v in fields["hosts"].items()}
    seen = set()
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script, json.dumps(fields)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=True)
        seen.add(done.stdout)
    assert len(seen) == 1, seen                 # the same client port: one TCP connection
    assert trace.modes() == ["keeper"] * 3


def test_bytes_exit_status_stderr_and_steps_arrive_exactly(via, tmp_path):
    rem = Remote(HOST, via)
    hostile = ["two words", "it's", "$(touch /tmp/x)", "line1\nline2", "", "héllo 日本"]
    dumped = rem.run(["python3", "-c", "import sys, json; print(json.dumps(sys.argv[1:]))",
                      *hostile]).stdout
    assert json.loads(dumped) == hostile
    data = os.urandom(3 * 1024 * 1024 + 17)
    out = rem.run(["sha256sum"], stdin=data).stdout.split()[0]
    assert out == hashlib.sha256(data).hexdigest()
    big = rem.run(["head", "-c", str(2 * 1024 * 1024), "/dev/zero"]).stdout_bytes
    assert big == bytes(2 * 1024 * 1024)
    result = rem.run(["sh", "-c", "echo out; echo err >&2; exit 7"], check=False)
    assert (result.exit_status, result.stdout, result.stderr) == (7, "out\n", "err\n")
    with pytest.raises(RemoteCommandFailed) as failed:
        rem.run_script([["true"], ["sh", "-c", "echo bad >&2; exit 3"], ["touch", str(tmp_path / "no")]])
    assert failed.value.step_index == 1 and failed.value.stderr == "bad\n"
    assert not (tmp_path / "no").exists()


def test_timeout_ends_the_command_and_the_keeper_keeps_serving(via):
    rem = Remote(HOST, via)
    with pytest.raises(RemoteTimeout):
        rem.run(["sleep", "30"], timeout=1)
    assert rem.run(["echo", "still"]).stdout == "still\n"


def test_host_key_is_checked_through_the_keeper(sshd, via, tmp_path):
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(sshd.known_hosts_line(sshd.other_pub))
    marker = tmp_path / "ran"
    rem = Remote(HOST, sshd.ssh_config(keeper_dir=via.keeper_dir, known_hosts=str(wrong)))
    with pytest.raises(HostKeyError, match="does not match"):
        rem.run(["touch", str(marker)])
    assert not marker.exists()


def test_an_edited_known_hosts_means_a_new_verified_connection(sshd, base, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line(sshd.host_pub))
    config = sshd.ssh_config(keeper_dir=str(base), known_hosts=str(known))
    Remote(HOST, config).run(["true"])
    _wait(lambda: _socket(base).exists(), "the keeper's socket")
    first = Remote(HOST, config).run(WHO).stdout
    assert Remote(HOST, config).run(WHO).stdout == first
    known.write_text(sshd.known_hosts_line(sshd.other_pub))     # the admin changed it
    with pytest.raises(HostKeyError):
        Remote(HOST, config).run(["true"])
    known.write_text(sshd.known_hosts_line(sshd.host_pub) + "\n")
    assert Remote(HOST, config).run(WHO).stdout != first


@pytest.mark.parametrize("unsafe", ["group-readable", "symlink"])
def test_a_directory_that_is_not_private_is_not_used(sshd, base, trace, tmp_path, unsafe):
    directory = base / f"gfs2clvm-keeper-{os.getuid()}"
    if unsafe == "symlink":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        directory.symlink_to(elsewhere)
    else:
        directory.mkdir(mode=0o750)
        os.chmod(directory, 0o750)
    config = sshd.ssh_config(keeper_dir=str(base))
    for _ in range(2):
        assert Remote(HOST, config).run(["echo", "ok"]).stdout == "ok\n"
    assert trace.modes() == ["direct", "direct"]
    time.sleep(0.5)
    assert not list(directory.iterdir()), "no keeper may start in it"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to play another user")
def test_a_keeper_of_another_user_is_not_talked_to(sshd, base, trace):
    directory = base / f"gfs2clvm-keeper-{os.getuid()}"
    directory.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(directory / "socket"))
    pid = os.fork()
    if pid == 0:                                  # an impostor: listens as nobody
        try:
            os.setuid(65534)
            listener.listen(4)
            client, _ = listener.accept()
            client.recv(1 << 16)
            client.sendall(b"K\0\0\0\0")
            time.sleep(5)
        finally:
            os._exit(0)
    listener.close()
    try:
        time.sleep(0.3)
        config = sshd.ssh_config(keeper_dir=str(base))
        assert Remote(HOST, config).run(["echo", "ok"]).stdout == "ok\n"
        assert trace.modes() == ["direct"]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_keeper_killed_mid_command_fails_that_command_like_a_dropped_connection(via, base,
                                                                                   trace):
    rem = Remote(HOST, via)
    pid = _keeper_pid(base)
    killer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
    killer.start()
    with pytest.raises(RemoteCommandFailed) as failed:
        rem.run(["sleep", "20"], timeout=60)
    assert failed.value.exit_status == -1
    # the next action finds a dead socket: it connects by itself and starts a new keeper
    assert Remote(HOST, via).run(["echo", "ok"]).stdout == "ok\n"
    assert trace.modes()[-1] == "direct"
    _wait(lambda: _keeper_pid(base) not in (None, pid), "a new keeper")


def test_the_keeper_exits_when_idle_and_removes_its_socket(sshd, base):
    config = sshd.ssh_config(keeper_dir=str(base), keeper_idle=1.0)
    Remote(HOST, config).run(["true"])
    _wait(lambda: _socket(base).exists(), "the keeper's socket")
    Remote(HOST, config).run(["true"])
    _wait(lambda: not _socket(base).exists() and _keeper_pid(base) is None,
          "the idle keeper to remove its socket and end")


def test_only_one_keeper_serves_a_directory(via, base):
    directory = str(_socket(base).parent)
    second = subprocess.run([sys.executable, "-m", "one_gfs2clvm.keeper", directory, "60"],
                            cwd=ROOT, timeout=30)
    assert second.returncode == 0 and _keeper_pid(base) is not None
    assert Remote(HOST, via).run(["echo", "ok"]).stdout == "ok\n"


def test_a_started_keeper_does_not_hold_the_actions_output_open(sshd, base):
    """oned reads an action's stdout/stderr to their end: the detached keeper
    (idle 60 s) must not inherit them, or every action would last a minute."""
    script = ("import sys; from one_gfs2clvm import keeper; "
              "keeper.start(keeper.socket_dir(sys.argv[1]), 60); print('started')")
    done = subprocess.run([sys.executable, "-c", script, str(base)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.stdout == "started\n"
    _wait(lambda: _socket(base).exists(), "the keeper's socket")


def test_reach_goes_through_the_keeper_and_checks_the_host_key(sshd, via, trace, tmp_path,
                                                               monkeypatch):
    # this process may not connect by itself (the keeper is another process)
    monkeypatch.setattr(Remote, "transport", lambda self: pytest.fail("connected directly"))
    Remote(HOST, via).reach()                   # connected and verified, nothing run
    assert trace.modes() == []                  # no command: no trace line
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(sshd.known_hosts_line(sshd.other_pub))
    with pytest.raises(HostKeyError, match="does not match"):
        Remote(HOST, sshd.ssh_config(keeper_dir=via.keeper_dir, known_hosts=str(wrong))).reach()
    assert Remote(HOST, via).run(["echo", "ok"]).stdout == "ok\n"
    assert trace.modes() == ["keeper"]

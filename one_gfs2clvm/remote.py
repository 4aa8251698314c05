"""Run argv lists on worker nodes over SSH (paramiko), one connection per host.

Rules this module keeps:
  * a command is always an argv list turned into ONE string with shlex.join,
    so every argument reaches the remote program byte-exact as one argument;
  * host keys are checked against ssh.known_hosts only, unknown or changed
    keys are refused (RejectPolicy) -- there is no "add it anyway" path;
    `@revoked` keys are refused, `@cert-authority` lines grant nothing, and
    unusable lines are skipped, not a crash (_load_known_hosts);
  * paramiko is imported lazily, so importing this module stays cheap;
  * stdout and stderr are drained by two threads while a third feeds stdin,
    so large streams in any direction cannot deadlock; one overall deadline;
  * commands go through this user's connection keeper when there is one
    (keeper.py: connections that outlive the action, like ControlPersist),
    else over this process's own connection;
  * with $ONE_GFS2CLVM_TRACE naming a file, every command appends one line
    to it: host, keeper|direct, seconds, the command (cut at 300 characters)
    -- what an action ran where, for admins and the benchmarks.

The remote login shell must be a POSIX shell (sh/dash/bash), like ssh itself
assumes.  run_script() sends `/bin/sh -c <script>` so the script always runs
under /bin/sh whatever that shell is.
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import random
import re
import secrets
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator, Sequence, Union

from .config import SshConfig
from .errors import ConnectError, HostKeyError, RemoteCommandFailed, RemoteTimeout

CHUNK = 256 * 1024
KEEPALIVE_S = 30
TRACE_ENV = "ONE_GFS2CLVM_TRACE"
HANDSHAKE_TRIES = 4     # connects cut short by sshd (MaxStartups) before giving up

# paramiko logs transport-thread failures (e.g. a guest still booting resets
# the banner exchange); with no handler Python prints them on stderr, which
# OpenNebula would take as part of the action's error message.  Our callers
# get typed exceptions instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str
    stdout_bytes: bytes = field(default=b"", repr=False)
    stderr_bytes: bytes = field(default=b"", repr=False)


class ShellFragment(str):
    """Pre-quoted shell text used verbatim as one run_script step (rare; audit it)."""


@dataclass(frozen=True, init=False)
class Pipe:
    """`a | b | ...` of our own argv lists; the step fails if ANY stage fails.

    dash has no `set -o pipefail`, so each stage reports a non-zero status on
    fd 3, which is collected by a command substitution; the step then exits
    with the first reported status.  A stage killed by SIGPIPE counts as failed.
    """

    stages: tuple[tuple[str, ...], ...]

    def __init__(self, stages: Sequence[Sequence[str]]):
        if len(stages) < 2 or not all(stages):
            raise ValueError("Pipe needs at least two non-empty argv lists")
        object.__setattr__(self, "stages", tuple(tuple(s) for s in stages))

    def __str__(self) -> str:
        return " | ".join(shlex.join(s) for s in self.stages)

    def render(self) -> str:
        parts = [f'{{ {shlex.join(s)} 3>&- 4>&- || echo "$?" >&3; }}' for s in self.stages]
        chain = " | ".join(parts[:-1] + [parts[-1] + " >&4"])
        return (f'{{ _pf=$( {{ {chain}; }} 3>&1 ); }} 4>&1; '
                f'[ -z "$_pf" ] || exit "${{_pf%%[!0-9]*}}"')


@dataclass(frozen=True)
class Labeled:
    """An argv step shown in errors and logs by a short label (e.g. one whose
    argv carries a whole program text); it runs exactly as its argv."""

    argv: tuple[str, ...]
    label: str

    def __str__(self) -> str:
        return self.label


Step = Union[Sequence[str], ShellFragment, Pipe, Labeled]


class _HandshakeCut(ConnectError):
    """The TCP connection was accepted but sshd ended the SSH handshake."""


class _Timeout(Exception):
    def __init__(self, stderr: bytes):
        super().__init__()
        self.stderr = stderr


class Remote:
    """One SSH connection to one worker, opened on first use, reopened if dead."""

    def __init__(self, host: str, ssh: SshConfig):
        self.host = host
        self.ssh = ssh
        self._lock = threading.Lock()
        self._client = None  # paramiko.SSHClient
        self._use_keeper = ssh.keeper_dir is not None

    @property
    def where(self) -> str:
        addr = self.ssh.address_of(self.host)
        return f"{addr.address}:{addr.port}"

    # -- connection ---------------------------------------------------------

    def transport(self):
        """The live paramiko Transport, connecting first if needed."""
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self._client.close()
                self._client = None
            self._client = self._connect_retrying()
            return self._client.get_transport()

    def _connect_retrying(self):
        """_connect(); a handshake that sshd cut short is tried again.  Under a
        burst of actions (oned's TM pool) sshd's MaxStartups drops new
        connections at random before authentication ("Error reading SSH
        protocol banner", "No existing session"); waiting a random moment and
        connecting again is what gets through.  A refused TCP connection, a
        host key or an authentication failure is final at once.  The price: an
        sshd that accepts but never answers costs HANDSHAKE_TRIES x
        connect_timeout (paramiko reports its silence as the same banner error)."""
        for attempt in range(1, HANDSHAKE_TRIES + 1):
            try:
                return self._connect()
            except _HandshakeCut:
                if attempt == HANDSHAKE_TRIES:
                    raise
                time.sleep(random.uniform(0.5, 1.5) * attempt)
        raise AssertionError("unreachable")

    def _connect(self):
        import paramiko

        ssh, host, where = self.ssh, self.host, self.where
        addr = ssh.address_of(host)
        if ssh.identity_file and not os.access(ssh.identity_file, os.R_OK):
            raise ConnectError(f"{host}: SSH identity file {ssh.identity_file} is missing "
                               f"or not readable", host)
        client = paramiko.SSHClient()
        known = _load_known_hosts(client.get_host_keys(), ssh.known_hosts, host, where)
        unknown: list[str] = []
        revoked: list = []

        class _Reject(paramiko.RejectPolicy):
            def missing_host_key(self, client, hostname, key):
                if key.asbytes() in known.revoked:
                    revoked.append(key)
                else:
                    unknown.append(f"{key.get_name()} {key.fingerprint}")
                super().missing_host_key(client, hostname, key)

        client.set_missing_host_key_policy(_Reject())
        try:
            sock = socket.create_connection((addr.address, addr.port), timeout=ssh.connect_timeout)
        except OSError as exc:
            raise ConnectError(f"{host}: cannot connect to {where}: {exc}", host) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            use_defaults = ssh.identity_file is None
            client.connect(addr.address, port=addr.port, username=ssh.user, sock=sock,
                           key_filename=ssh.identity_file, timeout=ssh.connect_timeout,
                           banner_timeout=ssh.connect_timeout, auth_timeout=ssh.connect_timeout,
                           look_for_keys=use_defaults, allow_agent=use_defaults)
        except paramiko.BadHostKeyException as exc:
            _close(client, sock)
            if exc.key.asbytes() in known.revoked:
                raise _revoked(host, where, ssh.known_hosts, exc.key) from None
            raise HostKeyError(f"{host}: host key for {where} does not match known_hosts "
                               f"{ssh.known_hosts}: refusing to connect{known.note()}",
                               host) from None
        except paramiko.AuthenticationException as exc:
            _close(client, sock)
            raise ConnectError(f"{host}: SSH authentication as {ssh.user} to {where} "
                               f"failed: {_one_line(exc)}", host) from None
        except Exception as exc:  # SSHException, OSError, EOFError, paramiko's bare Exception
            _close(client, sock)
            if revoked:
                raise _revoked(host, where, ssh.known_hosts, revoked[0]) from None
            if unknown:
                raise HostKeyError(f"{host}: host key for {where} ({unknown[0]}) is not in "
                                   f"known_hosts {ssh.known_hosts}: refusing to connect"
                                   f"{known.note()}", host) from None
            raise _HandshakeCut(f"{host}: cannot connect to {where}: "
                                f"{_one_line(exc)}", host) from None
        client.get_transport().set_keepalive(KEEPALIVE_S)
        return client

    def reach(self) -> None:
        """Connect (host key checked) or raise -- through the keeper when there is one."""
        chan = self._keeper_channel()
        if chan is not None:
            chan.close()
        else:
            self.transport()

    def _keeper_channel(self):
        """A channel through the keeper, or None: then this process connects by
        itself from here on (see keeper.py for when that happens)."""
        if not self._use_keeper:
            return None
        from . import keeper
        chan = keeper.open_channel(self.host, self.ssh)
        if chan is None:
            self._use_keeper = False
        return chan

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- commands -------------------------------------------------------------

    def run(self, argv: Sequence[str], stdin: bytes | BinaryIO | None = None,
            timeout: float | None = None, check: bool = True) -> CommandResult:
        if not argv:
            raise ValueError("run() needs a non-empty argv list")
        command = shlex.join(argv)
        limit = self.ssh.command_timeout if timeout is None else timeout
        try:
            result = self._exec(command, stdin, limit)
        except _Timeout:
            raise RemoteTimeout(f"{self.host}: {command}: timed out after {limit:g} s",
                                self.host) from None
        if check and result.exit_status != 0:
            raise RemoteCommandFailed(self.host, command, result.exit_status,
                                      result.stderr, result.stdout)
        return result

    def run_script(self, steps: Sequence[Step], stdin: bytes | BinaryIO | None = None,
                   timeout: float | None = None, check: bool = True,
                   on_stdout: Callable[[bytes], None] | None = None) -> CommandResult:
        """Run steps in order in ONE `/bin/sh -c` round trip, stopping at the first failure.

        stderr returned/raised is marker-free; on failure RemoteCommandFailed.command
        is the failing step and .stderr that step's stderr (.stdout is all stdout).
        """
        if not steps:
            raise ValueError("run_script() needs at least one step")
        shown = [_show(step) for step in steps]
        tag = f"@@one-gfs2clvm-step-{secrets.token_hex(8)}"
        lines = ["set -e"]
        for index, step in enumerate(steps):
            lines.append(f"printf '\\n%s %d\\n' {tag} {index} >&2")
            lines.append(_render(step))
        command = shlex.join(["/bin/sh", "-c", "\n".join(lines) + "\n"])
        limit = self.ssh.command_timeout if timeout is None else timeout
        try:
            raw = self._exec(command, stdin, limit, on_stdout)
        except _Timeout as exc:
            index = _split_steps(exc.stderr, tag)[0] or 0
            raise RemoteTimeout(f"{self.host}: {shown[index]}: timed out after {limit:g} s "
                                f"(step {index + 1} of {len(steps)})", self.host) from None
        index, per_step = _split_steps(raw.stderr_bytes, tag)
        stderr = b"".join(per_step)
        result = CommandResult(raw.exit_status, raw.stdout, _text(stderr),
                               raw.stdout_bytes, stderr)
        if check and result.exit_status != 0:
            failed = shown[index] if index is not None else "/bin/sh -c <script>"
            raise RemoteCommandFailed(self.host, failed, result.exit_status,
                                      _text(per_step[-1]), result.stdout, step_index=index)
        return result

    def open_channel(self):
        """A new session channel on this process's own connection.  A connection found dead is reopened once; a
        live one whose sshd did not answer the channel request in time (a host
        under load) is asked twice more; a refusal (e.g. MaxSessions) is final."""
        reopened, busy = False, 0
        while True:
            transport = self.transport()
            try:
                return transport.open_session(timeout=self.ssh.connect_timeout)
            except Exception as exc:  # paramiko.SSHException, EOFError, OSError
                alive = transport.is_active()
                if alive and "Timeout opening channel" in str(exc) and busy < 2:
                    busy += 1
                    continue
                if alive or reopened:
                    raise ConnectError(f"{self.host}: cannot open an SSH session on "
                                       f"{self.where}: {exc or type(exc).__name__}",
                                       self.host) from None
                reopened = True

    def _exec(self, command: str, stdin: bytes | BinaryIO | None, limit: float,
              on_stdout: Callable[[bytes], None] | None = None) -> CommandResult:
        started = time.monotonic()
        deadline = started + limit
        chan = self._keeper_channel() or self.open_channel()
        try:
            chan.exec_command(command)
        except Exception as exc:  # paramiko.SSHException, EOFError, OSError
            chan.close()
            raise ConnectError(f"{self.host}: cannot start a command on {self.where}: "
                               f"{exc or type(exc).__name__}", self.host) from None
        out: list[bytes] = []
        err: list[bytes] = []
        failure: list[BaseException] = []
        threads = [threading.Thread(target=_drain, args=(chan.recv, out, on_stdout),
                                    daemon=True),
                   threading.Thread(target=_drain, args=(chan.recv_stderr, err), daemon=True),
                   threading.Thread(target=_feed, args=(chan, stdin, failure), daemon=True)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            if any(t.is_alive() for t in threads) or \
                    not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
                chan.close()
                for thread in threads:
                    thread.join(1.0)
                raise _Timeout(b"".join(err))
            if failure:
                raise failure[0]
            status = chan.recv_exit_status()
        finally:
            chan.close()
            _trace(self.host, chan, time.monotonic() - started, command)
        stdout, stderr = b"".join(out), b"".join(err)
        return CommandResult(status, _text(stdout), _text(stderr), stdout, stderr)


def _trace(host: str, chan, seconds: float, command: str) -> None:
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    mode = "direct" if hasattr(chan, "get_transport") else "keeper"
    line = f"{host}\t{mode}\t{seconds:.3f}\t{' '.join(command.split())[:300]}\n"
    try:
        with open(path, "a", encoding="utf-8") as trace:
            trace.write(line)
    except OSError:
        pass              # a trace must never break the command


def _drain(recv, sink: list[bytes], watcher=None) -> None:
    while data := recv(CHUNK):
        sink.append(data)
        if watcher is not None:
            try:
                watcher(data)
            except Exception:   # a progress display must never break the command
                watcher = None


def _chunks(stdin: bytes | BinaryIO | None) -> Iterator[bytes | memoryview]:
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        view = memoryview(stdin)
        for start in range(0, len(view), CHUNK):
            yield view[start:start + CHUNK]
    elif stdin is not None:
        while chunk := stdin.read(CHUNK):
            yield chunk


def _feed(chan, stdin: bytes | BinaryIO | None, failure: list[BaseException]) -> None:
    chunks = _chunks(stdin)
    while True:
        try:
            chunk = next(chunks, None)
        except BaseException as exc:  # the local stream failed: report it, stop the command
            failure.append(exc)
            chan.close()
            return
        try:
            if chunk is None:
                chan.shutdown_write()
                return
            chan.sendall(chunk)
        except OSError:
            return  # the remote side closed its stdin (exited): its exit status tells why


def _show(step: Step) -> str:
    if isinstance(step, (ShellFragment, Pipe, Labeled)):
        return str(step)
    if isinstance(step, str) or not step:
        raise ValueError(f"a run_script step must be an argv list, got {step!r}")
    return shlex.join(step)


def _render(step: Step) -> str:
    if isinstance(step, Pipe):
        return step.render()
    if isinstance(step, Labeled):
        return shlex.join(step.argv)
    return str(step) if isinstance(step, ShellFragment) else shlex.join(step)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _split_steps(stderr: bytes, tag: str) -> tuple[int | None, list[bytes]]:
    """(index of the last step that started, stderr of each started step)."""
    pieces = re.split(b"\n" + re.escape(tag.encode()) + rb" (\d+)\n", stderr)
    # pieces = [before-any-marker, idx0, text0, idx1, text1, ...]
    if len(pieces) == 1:
        return None, pieces
    texts = pieces[2::2]
    texts[0] = pieces[0] + texts[0]
    return int(pieces[-2]), texts


@dataclass
class _KnownHosts:
    revoked: set[bytes]          # key blobs of @revoked lines (for every host)
    skipped: list[int]           # numbers of lines that could not be used

    def note(self) -> str:
        """For a refusal: which lines were skipped (maybe the host's own)."""
        if not self.skipped:
            return ""
        numbers = ", ".join(map(str, self.skipped[:5])) + (", ..." if len(self.skipped) > 5
                                                           else "")
        return f" (unusable lines skipped: {numbers})"


def _load_known_hosts(keys, path: str, host: str, where: str) -> _KnownHosts:
    """Fill paramiko HostKeys `keys` from the known_hosts file `path`.

    paramiko's own loader raises InvalidHostKey (or UnicodeDecodeError) on a
    `@revoked`/`@cert-authority` line or on garbage, and knows no markers.  So:
      * a line that cannot be used (garbage, unknown key type or marker) is
        skipped, as OpenSSH does: it grants nothing; refusals list its number;
      * `@cert-authority` lines are ignored: paramiko does not verify host
        certificates, so they grant nothing either;
      * `@revoked` keys are refused for every host whatever the line's host
        names, even if a plain line lists the same key; an unreadable
        `@revoked` line refuses every connection (which key it meant is unknown).
    """
    from paramiko.hostkeys import HostKeyEntry

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise HostKeyError(f"{host}: known_hosts file {path} does not exist: "
                           f"cannot verify the host key of {where}", host) from None
    except OSError as exc:
        raise HostKeyError(f"{host}: cannot read known_hosts {path}: {exc.strerror}",
                           host) from None
    known = _KnownHosts(set(), [])
    entries = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        fields = raw.split()
        if not fields or fields[0].startswith(b"#"):
            continue
        if fields[0] == b"@revoked":
            blob = _key_blob(fields[2:4])
            if blob is None:
                raise HostKeyError(f"{host}: known_hosts {path} line {number}: unreadable "
                                   f"@revoked line: refusing to connect to any host until "
                                   f"it is fixed", host)
            known.revoked.add(blob)
            continue
        if fields[0] == b"@cert-authority":
            continue
        entry = None
        if not fields[0].startswith(b"@"):
            try:
                # one space between fields: paramiko splits on each single space or tab
                entry = HostKeyEntry.from_line(b" ".join(fields).decode("utf-8"), number)
            except Exception:  # InvalidHostKey, SSHException, ValueError, UnicodeDecodeError
                pass
        if entry is None or entry.key is None:
            known.skipped.append(number)
        else:
            entries.append(entry)
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if entry.key.asbytes() in known.revoked:
            continue
        for name in entry.hostnames:
            if (name, entry.key.get_name()) not in seen:  # the first line wins, as paramiko's
                seen.add((name, entry.key.get_name()))
                keys.add(name, entry.key.get_name(), entry.key)
    return known


def _key_blob(fields: list[bytes]) -> bytes | None:
    """The key of `TYPE BASE64` fields, or None if they do not make one."""
    if len(fields) != 2:
        return None
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except ValueError:  # binascii.Error
        return None
    size = int.from_bytes(blob[:4], "big")
    return blob if len(blob) > 4 + size and blob[4:4 + size] == fields[0] else None


def _revoked(host: str, where: str, path: str, key) -> HostKeyError:
    return HostKeyError(f"{host}: host key for {where} ({key.get_name()} {key.fingerprint}) "
                        f"is marked @revoked in known_hosts {path}: refusing to connect", host)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _close(client, sock: socket.socket) -> None:
    client.close()
    sock.close()


_pool: dict[tuple, Remote] = {}
_pool_lock = threading.Lock()


def get_remote(host: str, ssh: SshConfig) -> Remote:
    """The shared Remote for host (one SSH connection per host per process)."""
    addr = ssh.address_of(host)
    key = (host, addr.address, addr.port, ssh.user, ssh.identity_file, ssh.known_hosts)
    with _pool_lock:
        remote = _pool.get(key)
        if remote is None:
            remote = _pool[key] = Remote(host, ssh)
        return remote


def close_all() -> None:
    with _pool_lock:
        remotes = list(_pool.values())
        _pool.clear()
    for remote in remotes:
        remote.close()


atexit.register(close_all)

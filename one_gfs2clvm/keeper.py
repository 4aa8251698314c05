"""The connection keeper: SSH connections that outlive one action.

OpenNebula's stock drivers reuse OpenSSH ControlMaster connections across
actions (ControlPersist).  This is the same for paramiko: one long-lived
process per user holds verified SSH connections to the workers, and action
processes run their commands through it over a private UNIX socket instead of
paying a TCP + SSH handshake + authentication per host per action.

Where: `<[ssh] keeper_dir>/gfs2clvm-keeper-<uid>/socket` (default keeper_dir
/run/one, which OpenNebula's service owns for oneadmin).  The directory is
created 0700; it is used only when it is a real directory owned by this user
with no group/other access, and both ends check the other's credentials
(SO_PEERCRED): the keeper serves only its own uid, an action talks only to a
keeper of its own uid.  Nothing in the keeper is more trusted than the action
itself: it runs as the same user with the same files.

Life: the first action that finds no keeper starts one (detached, its own
session, stdio on /dev/null so oned never waits on it) and runs its own
commands over its own connection; later actions use the keeper.  The keeper
exits after `keeper_idle` seconds without a command.  One flock decides which
of two keepers started at once stays.

Safety: host keys are checked exactly as for a direct connection (the keeper
uses remote.Remote to connect).  A connection is keyed on everything that
decides who we talk to and how we check it, including the known_hosts file's
identity (inode, size, mtime): editing known_hosts makes the next command use
a new, freshly verified connection.  At most CHANNELS_PER_CONNECTION commands
share one connection (sshd's MaxSessions defaults to 10); more open another.

Fallback: no keeper, an unusable directory, or a keeper that breaks before a
command starts -> the action connects by itself (remote.Remote's direct path)
for the rest of its life.  A keeper that dies while a command runs ends that
command like a dropped SSH connection (exit status -1): whether it ran on the
worker is unknown, exactly as with a direct connection.

Wire protocol (one UNIX connection per command), frames of 1 type byte +
4-byte big-endian length + payload:
  action -> keeper  O open (JSON connection parameters), C command, I stdin
                    data, D stdin done
  keeper -> action  K ok, E error (JSON kind + message), o stdout, e stderr,
                    x exit status (4-byte signed), then the keeper closes.
A reach (Remote.reach: connect and check the host key, run nothing) is O,
then hanging up after K: no session channel is opened.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

from .errors import ConnectError, HostKeyError
from .remote import CHUNK

CHANNELS_PER_CONNECTION = 8
_HEADER = struct.Struct(">cI")
_STATUS = struct.Struct(">i")
_UCRED = struct.Struct("3i")
_ERRORS = {"HostKeyError": HostKeyError, "ConnectError": ConnectError}
MAX_FRAME = 4 * CHUNK


class ProtocolError(Exception):
    """The other end sent something that is not this protocol (or vanished)."""


# -- shared by both ends ------------------------------------------------------

def socket_dir(base: str) -> str | None:
    """This user's keeper directory under `base`, created 0700 if missing;
    None when it cannot be used safely (not ours, not private, a symlink, no base)."""
    path = os.path.join(base, f"gfs2clvm-keeper-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return path


def peer_uid(sock: socket.socket) -> int:
    return _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                         _UCRED.size))[1]


def send_frame(sock: socket.socket, kind: bytes, payload: bytes | memoryview = b"") -> None:
    sock.sendall(_HEADER.pack(kind, len(payload)))
    if payload:
        sock.sendall(payload)


def read_frame(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """The next frame, or None at a clean end of stream."""
    header = _read_exact(sock, _HEADER.size, eof_ok=True)
    if header is None:
        return None
    kind, length = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes")
    return kind, _read_exact(sock, length) if length else b""


def _read_exact(sock: socket.socket, size: int, eof_ok: bool = False) -> bytes | None:
    parts, missing = [], size
    while missing:
        data = sock.recv(missing)
        if not data:
            if eof_ok and missing == size:
                return None
            raise ProtocolError("connection closed inside a frame")
        parts.append(data)
        missing -= len(data)
    return b"".join(parts)


def connection_key(host: str, ssh) -> dict:
    """What decides who we talk to and how we check it -- sent with every command."""
    addr = ssh.address_of(host)
    try:
        info = os.stat(ssh.known_hosts)
        known = [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]
    except OSError:
        known = None          # the connect will report it, with its usual message
    return {"host": host, "address": addr.address, "port": addr.port, "user": ssh.user,
            "identity_file": ssh.identity_file, "known_hosts": ssh.known_hosts,
            "known_hosts_id": known, "connect_timeout": ssh.connect_timeout}


# -- the action's end -----------------------------------------------------------

def open_channel(host: str, ssh) -> "KeeperChannel | None":
    """A channel to `host` through this user's keeper, or None when there is no
    usable keeper (one is started for the next action).  A keeper that could not
    connect to the host raises the same ConnectError/HostKeyError a direct
    connection would."""
    directory = socket_dir(ssh.keeper_dir)
    if directory is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(ssh.connect_timeout)
        sock.connect(os.path.join(directory, "socket"))
        if peer_uid(sock) != os.getuid():
            raise ProtocolError("keeper of another user")
        send_frame(sock, b"O", json.dumps(connection_key(host, ssh)).encode())
        # the keeper may have to connect first: allow it its connect retries
        sock.settimeout(ssh.connect_timeout * 5 + 5)
        reply = read_frame(sock)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        start(directory, ssh.keeper_idle)
        return None
    except (OSError, ProtocolError):
        sock.close()
        return None
    if reply is not None and reply[0] == b"E":
        sock.close()
        raise _error(reply[1], host)
    if reply is None or reply[0] != b"K":
        sock.close()
        return None
    sock.settimeout(None)
    return KeeperChannel(sock, host)


def _error(payload: bytes, host: str) -> Exception:
    try:
        detail = json.loads(payload)
        kind, message = _ERRORS.get(detail["kind"], ConnectError), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        kind, message = ConnectError, f"{host}: the connection keeper failed"
    return kind(message, host)


def start(directory: str, idle: float) -> None:
    """Start a keeper for `directory`, detached: its own session, stdio on
    /dev/null (oned reads an action's stdout/stderr to their end: a keeper
    holding them would stall every action), no wait."""
    try:
        process = subprocess.Popen([sys.executable, "-m", "one_gfs2clvm.keeper", directory,
                                    f"{idle:g}"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True,
                                   close_fds=True, cwd="/")
    except OSError:
        return            # no keeper then: every action connects by itself
    # a long-lived caller (a test session, the CLI) reaps it; an action that
    # ends first hands it to init
    threading.Thread(target=process.wait, daemon=True).start()


class KeeperChannel:
    """What remote.Remote._exec needs of a paramiko channel, over the keeper."""

    def __init__(self, sock: socket.socket, host: str):
        self._sock = sock
        self.host = host
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._buffers: dict[bytes, list[bytes]] = {b"o": [], b"e": []}
        self._ended = False
        self._status = -1
        self.status_event = threading.Event()
        self._reader: threading.Thread | None = None

    def exec_command(self, command: str) -> None:
        send_frame(self._sock, b"C", command.encode())
        try:
            reply = read_frame(self._sock)
        except (OSError, ProtocolError) as exc:
            raise ConnectError(f"{self.host}: the connection keeper failed: {exc}",
                               self.host) from None
        if reply is None or reply[0] != b"K":
            raise _error(reply[1] if reply else b"", self.host)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while (frame := read_frame(self._sock)) is not None:
                kind, payload = frame
                if kind == b"x":
                    self._status = _STATUS.unpack(payload)[0]
                    break
                with self._cond:
                    self._buffers[kind].append(payload)
                    self._cond.notify_all()
        except (OSError, ProtocolError, KeyError, struct.error):
            pass          # a keeper gone mid-command: like a dropped connection, status -1
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        self.status_event.set()

    def _recv(self, kind: bytes) -> bytes:
        with self._cond:
            while not self._buffers[kind] and not self._ended:
                self._cond.wait()
            return self._buffers[kind].pop(0) if self._buffers[kind] else b""

    def recv(self, size: int) -> bytes:
        return self._recv(b"o")

    def recv_stderr(self, size: int) -> bytes:
        return self._recv(b"e")

    def sendall(self, data) -> None:
        with self._send_lock:
            send_frame(self._sock, b"I", data)

    def shutdown_write(self) -> None:
        with self._send_lock:
            send_frame(self._sock, b"D")

    def recv_exit_status(self) -> int:
        self.status_event.wait()
        return self._status

    def close(self) -> None:
        """Ends the command's connection; the keeper closes the SSH channel."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._cond:
            self._ended = True
            self._cond.notify_all()


# -- the keeper's end -------------------------------------------------------------

def _send_error(client: socket.socket, exc: ConnectError) -> None:
    send_frame(client, b"E", json.dumps({"kind": type(exc).__name__,
                                         "message": str(exc)}).encode())


class Keeper:
    def __init__(self, directory: str, idle: float):
        self.directory = directory
        self.idle = idle
        self._lock = threading.Lock()
        self._slots: dict[str, list[list]] = {}   # key -> [[Remote, open channels], ...]
        self._busy = 0
        self._last = time.monotonic()

    # connections -----------------------------------------------------------
    def _acquire(self, params: dict):
        from .config import HostAddress, SshConfig
        from .remote import Remote
        key = json.dumps(params, sort_keys=True)
        with self._lock:
            slots = self._slots.setdefault(key, [])
            slot = next((s for s in slots if s[1] < CHANNELS_PER_CONNECTION), None)
            if slot is None:
                ssh = SshConfig(user=params["user"], identity_file=params["identity_file"],
                                known_hosts=params["known_hosts"],
                                connect_timeout=float(params["connect_timeout"]),
                                hosts={params["host"]: HostAddress(params["address"],
                                                                   int(params["port"]))})
                slot = [Remote(params["host"], ssh), 0]
                slots.append(slot)
            slot[1] += 1
        return slot

    def _release(self, slot) -> None:
        with self._lock:
            slot[1] -= 1

    # one command -------------------------------------------------------------
    def serve(self, client: socket.socket) -> None:
        """One command; run() counted it busy before this thread started."""
        try:
            if peer_uid(client) == os.getuid():
                self._serve(client)
        except (OSError, ProtocolError, ValueError, KeyError, TypeError):
            pass
        finally:
            client.close()
            with self._lock:
                self._busy -= 1
                self._last = time.monotonic()

    def _serve(self, client: socket.socket) -> None:
        """'O' connects (or reuses a connection) and answers K or E: that alone is
        Remote.reach(); 'C' then opens the session channel and runs the command."""
        frame = read_frame(client)
        if frame is None or frame[0] != b"O":
            return
        slot = self._acquire(json.loads(frame[1]))
        try:
            try:
                slot[0].transport()            # connects, host key checked, or raises
            except ConnectError as exc:
                _send_error(client, exc)
                return
            send_frame(client, b"K")
            frame = read_frame(client)
            if frame is None or frame[0] != b"C":
                return                         # a reach(): nothing to run
            try:
                chan = slot[0].open_channel()
            except ConnectError as exc:
                _send_error(client, exc)
                return
            try:
                self._run(client, chan, frame[1].decode())
            finally:
                chan.close()
        finally:
            self._release(slot)

    def _run(self, client: socket.socket, chan, command: str) -> None:
        try:
            chan.exec_command(command)
        except Exception as exc:  # paramiko.SSHException, EOFError, OSError
            _send_error(client, ConnectError(f"cannot start a command: {exc}"))
            return
        send_frame(client, b"K")
        send_lock = threading.Lock()

        def pump(recv, kind: bytes) -> None:
            try:
                while data := recv(CHUNK):
                    with send_lock:
                        send_frame(client, kind, data)
            except OSError:
                chan.close()           # the action is gone: end the command's channel

        pumps = [threading.Thread(target=pump, args=(chan.recv, b"o"), daemon=True),
                 threading.Thread(target=pump, args=(chan.recv_stderr, b"e"), daemon=True)]
        for thread in pumps:
            thread.start()

        def finish() -> None:
            for thread in pumps:
                thread.join()
            status = chan.recv_exit_status()
            try:
                with send_lock:
                    send_frame(client, b"x", _STATUS.pack(status))
                client.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        finisher = threading.Thread(target=finish, daemon=True)
        finisher.start()
        try:
            while (frame := read_frame(client)) is not None:
                kind, payload = frame
                if kind == b"I":
                    chan.sendall(payload)
                elif kind == b"D":
                    chan.shutdown_write()
        except (OSError, ProtocolError):
            pass
        if finisher.is_alive():        # the action hung up before the command ended
            chan.close()
        finisher.join()

    # life ------------------------------------------------------------------------
    def run(self) -> int:
        lock_fd = os.open(os.path.join(self.directory, "lock"),
                          os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0                       # another keeper serves this directory
        os.ftruncate(lock_fd, 0)
        os.write(lock_fd, f"{os.getpid()}\n".encode())   # for admins: which process it is
        path = os.path.join(self.directory, "socket")
        try:
            os.unlink(path)                # a dead keeper's socket
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(path)
        finally:
            os.umask(old_umask)
        listener.listen(64)
        listener.settimeout(1.0)
        try:
            while True:
                try:
                    client, _ = listener.accept()
                except socket.timeout:
                    with self._lock:
                        if not self._busy and time.monotonic() - self._last > self.idle:
                            return 0
                    continue
                client.settimeout(None)
                with self._lock:
                    self._busy += 1
                threading.Thread(target=self.serve, args=(client,), daemon=True).start()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)            # still ours: we hold the flock
            listener.close()
            with self._lock:
                remotes = [slot[0] for slots in self._slots.values() for slot in slots]
            for remote in remotes:
                remote.close()


def main(argv: list[str]) -> int:
    directory, idle = argv[0], float(argv[1])
    if socket_dir(os.path.dirname(directory)) != directory:
        return 2                           # not this user's private directory
    return Keeper(directory, idle).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Front-end lock per volume group.

OpenNebula runs driver actions in parallel.  LVM metadata changes to one VG
from several actions at once would only fight over the VG lock on the workers
(lvmlockd/clvmd) and burn their retries, so the front-end serialises them
itself: one flock()ed file per VG in [locking] lock_dir.

flock() locks belong to the open file, so they vanish with the process (no
stale locks after a crash).  Within one process the lock is re-entrant: an
action that holds it may call helpers that take it again.

The lock directory must be the driver's own, or any local user could plant
symlinks or files there and block every metadata change (the default
/var/lock/one lies in /run/lock, writable by everyone).  Each lock is taken so:

  * lock_dir is created with mode 0700 if absent (missing parents 0755);
  * it is opened with O_NOFOLLOW and checked on that descriptor: a real
    directory (not a symlink), owned by the effective uid; if it is group- or
    other-writable, it is ours, so it is tightened to 0700 (fchmod) -- files
    already in it are still checked one by one below;  a directory of another
    owner is refused, never changed;
  * its immediate parent must be owned by root or by us and not writable by
    group/others unless sticky (like /run/lock), else another user could
    rename the directory away; farther ancestors are not checked;
  * the lock file is opened relative to that descriptor with O_NOFOLLOW and
    O_CLOEXEC (mode 0600) and must be a regular file owned by us.

Any failed check is a ConfigError: one line naming lock_dir and what is wrong.

Waiting: [locking] lock_timeout bounds how long a waiter waits for ONE holder,
not for the whole queue.  Whoever takes a lock writes "<pid> <ns>" into its
file; a waiter that sees that change restarts its clock.  So twenty actions
queued behind one another (oned's TM pool deploying twenty VMs) all get their
turn, while a holder that keeps the lock longer than lock_timeout (a stuck
process) makes the waiters give up with LockTimeout.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import re
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from .config import Config
from .errors import ConfigError, LockTimeout
from .names import check_vg

POLL_INTERVAL = 0.1  # seconds between LOCK_NB attempts


@dataclass
class _Held:
    fd: int
    pid: int
    depth: int


_held: dict[str, _Held] = {}  # lock key -> lock this process holds


def lock_path(config: Config, vg: str) -> str:
    return os.path.join(config.lock_dir, f"gfs2clvm-{check_vg(vg)}.lock")


def _who(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _bad(lock_dir: str, why: str) -> ConfigError:
    return ConfigError(f"[locking] lock_dir {lock_dir}: {why}")


def _make_parents(path: str) -> None:
    """mkdir -p with mode 0755 whatever the umask (a umask of 0 must not make
    a world-writable parent)."""
    head = os.path.dirname(path)
    if head != path and not os.path.isdir(head):
        _make_parents(head)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return
    os.chmod(path, 0o755)


def _check_parent(lock_dir: str, parent: str) -> None:
    try:
        try:
            st = os.stat(parent)
        except FileNotFoundError:
            _make_parents(parent)
            st = os.stat(parent)
    except OSError as exc:
        raise _bad(lock_dir, f"cannot use its parent {parent}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise _bad(lock_dir, f"its parent {parent} is not a directory")
    if st.st_uid not in (0, os.geteuid()):
        raise _bad(lock_dir, f"its parent {parent} is owned by {_who(st.st_uid)}, "
                             f"who could replace it: use a directory under one owned "
                             f"by root or by {_who(os.geteuid())}")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise _bad(lock_dir, f"its parent {parent} is writable by group or others and "
                             f"not sticky, so anyone could replace it")


def _open_dir(lock_dir: str) -> int:
    """A descriptor of lock_dir after the checks of the module docstring."""
    lock_dir = lock_dir.rstrip("/") or "/"
    parent = os.path.dirname(lock_dir) or "/"
    created = False
    _check_parent(lock_dir, parent)
    try:
        try:
            os.mkdir(lock_dir, 0o700)
            created = True
        except FileExistsError:
            pass
        fd = os.open(lock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(lock_dir):
            raise _bad(lock_dir, "is a symlink: refusing to follow it "
                                 "(make it a directory of its own)") from None
        raise _bad(lock_dir, f"cannot create or open it: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise _bad(lock_dir, f"is owned by {_who(st.st_uid)}, not by "
                                 f"{_who(os.geteuid())} that runs the driver: refusing "
                                 f"to use it (remove it, or choose another lock_dir)")
        if created or st.st_mode & 0o022:
            os.fchmod(fd, 0o700)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open(config: Config, path: str) -> int:
    """Open (creating) the lock file `path` in config.lock_dir; its descriptor."""
    lock_dir, name = config.lock_dir, os.path.basename(path)
    dir_fd = _open_dir(lock_dir)
    try:
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _bad(lock_dir, f"lock file {name} is a symlink: refusing to follow "
                                     f"it (remove it)") from None
            raise _bad(lock_dir, f"cannot open lock file {name}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _bad(lock_dir, f"lock file {name} is not a regular file (remove it)")
        if st.st_uid != os.geteuid():
            raise _bad(lock_dir, f"lock file {name} is owned by {_who(st.st_uid)}, not by "
                                 f"{_who(os.geteuid())} (remove it)")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _holder(fd: int) -> bytes:
    """Who took the lock last, as written by _claim()."""
    try:
        return os.pread(fd, 64, 0)
    except OSError:
        return b""


def _claim(fd: int) -> None:
    """Mark the lock as taken by this process now (the waiters' progress sign)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {time.time_ns()}\n".encode(), 0)
    except OSError:
        pass                            # only a progress hint: the flock is what counts


def _acquire(config: Config, path: str) -> int:
    fd = _open(config, path)
    deadline = time.monotonic() + config.lock_timeout
    holder = _holder(fd)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _claim(fd)
            return fd
        except BlockingIOError:
            current = _holder(fd)
            if current != holder:       # the lock changed hands: the queue moves
                holder, deadline = current, time.monotonic() + config.lock_timeout
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.close(fd)
                raise LockTimeout(f"could not lock {path} within {config.lock_timeout:g} s: "
                                  f"one holder kept it all that time (a stuck driver "
                                  f"action?)") from None
            time.sleep(min(POLL_INTERVAL, remaining))
        except BaseException:
            os.close(fd)
            raise


@contextmanager
def vg_lock(config: Config, vg: str) -> Iterator[str]:
    """Hold the front-end lock of `vg`; yields the lock file path."""
    with _hold(config, f"vg:{vg}", lock_path(config, config.check_vg(vg))) as path:
        yield path


@contextmanager
def named_lock(config: Config, name: str) -> Iterator[str]:
    """Hold a front-end lock for anything else that needs serialising
    (e.g. one image read-activated on one host by several clones)."""
    safe = re.sub(r"[^A-Za-z0-9_.@=-]", "_", name)[:200]
    with _hold(config, f"name:{safe}", os.path.join(config.lock_dir, f"gfs2clvm-{safe}.lock")) \
            as path:
        yield path


@contextmanager
def _hold(config: Config, key: str, path: str) -> Iterator[str]:
    held = _held.get(key)
    if held is not None and held.pid != os.getpid():
        # Inherited across fork(): the parent's lock, not ours.
        os.close(held.fd)
        del _held[key]
        held = None
    if held is None:
        held = _held[key] = _Held(_acquire(config, path), os.getpid(), 0)
    held.depth += 1
    try:
        yield path
    finally:
        held.depth -= 1
        if held.depth == 0:
            del _held[key]
            os.close(held.fd)  # closing the only descriptor releases the flock

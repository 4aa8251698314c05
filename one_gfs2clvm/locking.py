"""Front-end lock per volume group.

OpenNebula runs driver actions in parallel.  LVM metadata changes to one VG
from several actions at once would only fight over the VG lock on the workers
(lvmlockd/clvmd) and burn their retries, so the front-end serialises them
itself: one flock()ed file per VG in [locking] lock_dir.

flock() locks belong to the open file, so they vanish with the process (no
stale locks after a crash).  Within one process the lock is re-entrant: an
action that holds it may call helpers that take it again.
"""

from __future__ import annotations

import fcntl
import os
import re
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


def _open(config: Config, path: str) -> int:
    try:
        if not os.path.isdir(config.lock_dir):
            os.makedirs(config.lock_dir, mode=0o755, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConfigError(f"[locking] lock_dir: cannot open lock file {path}: "
                          f"{exc.strerror}") from None


def _acquire(config: Config, path: str) -> int:
    fd = _open(config, path)
    deadline = time.monotonic() + config.lock_timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.close(fd)
                raise LockTimeout(f"could not lock {path} within {config.lock_timeout:g} s "
                                  f"(another driver action holds it)") from None
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

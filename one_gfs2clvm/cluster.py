"""The driver's view of the workers: SSH connections, LVM clients, VG locks.

All LVM work happens on a worker that is in the lock space (the front-end is
not); metadata changes are additionally serialised per VG on the front-end,
because several driver processes run at once (oned runs up to 15 TM actions
in parallel and the VMM driver runs its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TypeVar

from .config import Config
from .errors import ConfigError, ConnectError, RemoteTimeout
from .locking import vg_lock
from .lvm import LvmClient
from .names import check_host

T = TypeVar("T")


class Cluster:
    def __init__(self, config: Config):
        self.config = config

    def remote(self, host: str, user: str | None = None):
        from . import remote
        ssh = self.config.ssh
        if user and user != ssh.user:
            from dataclasses import replace
            ssh = replace(ssh, user=user)
        return remote.get_remote(check_host(host), ssh)

    def run(self, host: str, argv: list[str]):
        """Runner for LvmClient: never raises on a non-zero exit."""
        return self.remote(host).run(argv, check=False)

    def lvm(self, host: str) -> LvmClient:
        return LvmClient(self.config, self.run, host)

    def locked(self, vg: str) -> AbstractContextManager:
        """Front-end lock around a metadata change of `vg` (cross-process)."""
        return vg_lock(self.config, self.config.check_vg(vg))

    def on_bridge(self, work: Callable[[str], T], candidates: Iterable[str] = ()) -> T:
        """Run work(host) on the first reachable bridge host.

        Candidates: the caller's (e.g. a datastore's BRIDGE_LIST), else
        [storage] bridge_hosts.  Only an unreachable host is skipped; an error
        from the work itself is raised, not retried elsewhere.
        """
        hosts = [h for h in candidates if h] or list(self.config.bridge_hosts)
        if not hosts:
            raise ConfigError("no bridge host: set [storage] bridge_hosts in "
                              f"{self.config.source} or the datastore's BRIDGE_LIST")
        failures = []
        for host in hosts:
            try:
                return work(host)
            except (ConnectError, RemoteTimeout) as exc:
                if getattr(exc, "host", host) != host:
                    raise
                failures.append(exc.one_line())
        raise ConnectError("no bridge host reachable: " + "; ".join(failures))

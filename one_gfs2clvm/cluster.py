"""The driver's view of the workers: SSH connections, LVM clients, VG locks.

All LVM work happens on a worker that is in the lock space (the front-end is
not); metadata changes are additionally serialised per VG on the front-end,
because several driver processes run at once (oned runs up to 15 TM actions
in parallel and the VMM driver runs its own).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TypeVar

from .config import Config
from .errors import ConfigError, ConnectError, RemoteCommandFailed, RemoteError, RemoteTimeout
from .locking import vg_lock
from .lvm import LvmClient, helper_argv, lvm_error
from .names import check_host
from .nodehelper import BATCH_SEPARATOR, BATCH_VERBS, split_batch

T = TypeVar("T")
_MOUNT_CHECK = "gfs2clvm-mount-check"     # $0 of the mount_check step, to recognise it
_BATCH_FAILED_RE = re.compile(r"batch step (\d+) of \d+ failed: \S+ (\S+)")
_BATCH_REFUSED_RE = re.compile(r"refused: batch step (\d+)\b")


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

    def run(self, host: str, argv: list[str], timeout: float | None = None):
        """Runner for LvmClient: never raises on a non-zero exit."""
        return self.remote(host).run(argv, check=False, timeout=timeout)

    def lvm(self, host: str, timeout: float | None = None) -> LvmClient:
        if timeout is None:
            return LvmClient(self.config, self.run, host)
        return LvmClient(self.config, lambda h, argv: self.run(h, argv, timeout), host)

    def helper(self, verb: str, *args: object) -> list[str]:
        """argv of one node-helper step, for run_steps()."""
        return helper_argv(self.config, verb, *args)

    def run_steps(self, host: str, steps: list, stdin=None, timeout: float | None = None,
                  on_stdout=None):
        """Several steps in ONE remote script (one round trip), stopping at the first
        failure; a failing node-helper step raises its typed LVM error.
        Consecutive node-helper steps run as ONE helper batch (one sudo, one
        python start), which stops at its first failing step like the script.
        A failure carries `failed_step`, the index in `steps` of the step that
        failed (all before it ran, none after).
        `on_stdout` sees stdout as it arrives (progress output)."""
        from .remote import CommandResult
        prefix = self._helper_prefix()
        merged, firsts = self._batched(steps)
        try:
            return self.remote(host).run_script(merged, stdin=stdin, timeout=timeout,
                                                on_stdout=on_stdout)
        except RemoteCommandFailed as exc:
            words = shlex.split(exc.command) if exc.command else []
            failed = _failed_step(firsts, exc.step_index, words, exc.stderr)
            if words[3:4] == [_MOUNT_CHECK]:
                error = RemoteError(f"{host}: {self.config.gfs2_mount} is not mounted there (the "
                                    f"shared GFS2 of the workers): mount it, then retry",
                                    host=host)
            elif words[:3] == prefix and len(words) >= 5:
                error = lvm_error(host, CommandResult(exc.exit_status, exc.stdout, exc.stderr),
                                  _helper_target(words[3:], exc.stderr))
            else:
                exc.failed_step = failed
                raise
            error.failed_step = failed
            raise error from None

    def _helper_prefix(self) -> list[str]:
        return [self.config.sudo, "-n", self.config.node_helper]

    def batched(self, steps: list) -> list:
        """`steps` with every run of two or more consecutive batchable node-helper
        steps (create remove extend activate addtag deltag) joined into one
        `batch` step; everything else, and the order, unchanged."""
        return self._batched(steps)[0]

    def _batched(self, steps: list) -> tuple[list, list[int]]:
        """(batched steps, index in `steps` of each one's first step)."""
        prefix = self._helper_prefix()

        def batchable(step) -> bool:
            return isinstance(step, list) and step[:3] == prefix and \
                len(step) > 3 and step[3] in BATCH_VERBS

        merged: list = []
        firsts: list[int] = []
        run: list = []
        for index, step in enumerate([*steps, None]):
            if step is not None and batchable(step):
                run.append(step)
                continue
            if len(run) == 1:
                merged.append(run[0])
            elif run:
                words = [*prefix, "batch"]
                for position, each in enumerate(run):
                    words += ([BATCH_SEPARATOR] if position else []) + [str(w) for w in each[3:]]
                merged.append(words)
            if run:
                firsts.append(index - len(run))
            run = []
            if step is not None:
                merged.append(step)
                firsts.append(index)
        return merged, firsts

    def mount_check(self) -> list[list[str]]:
        """A first step for scripts that write on the shared filesystem: fails with
        a clear line when [storage] gfs2_mount is not mounted on that host
        (instead of mkdir's "Permission denied" on the bare directory).  None
        for lock_mode = none (one host, no shared filesystem required)."""
        if self.config.lock_mode == "none":
            return []
        return [["sh", "-c", 'mountpoint -q "$1"', _MOUNT_CHECK, self.config.gfs2_mount]]

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


def _batch_step(stderr: str) -> tuple[int, bool] | None:
    """(index of the batch step the helper names, whether it ran and failed --
    False: refused, so nothing of the batch ran), or None."""
    found = _BATCH_FAILED_RE.search(stderr or "")
    if found:
        return int(found[1]) - 1, True
    found = _BATCH_REFUSED_RE.search(stderr or "")
    return (int(found[1]) - 1, False) if found else None


def _failed_step(firsts: list[int], index: int | None, words: list[str],
                 stderr: str) -> int | None:
    """The caller's index of the failed step: the failed script step's first
    original step, plus the batch step the helper names (if a batch)."""
    if index is None or not 0 <= index < len(firsts):
        return None
    if words[3:4] == ["batch"]:
        named = _batch_step(stderr)
        if named is None:
            return None
        step, ran = named
        return firsts[index] + (step if ran else 0)    # a refused batch ran nothing
    return firsts[index]


def _helper_target(request: list[str], stderr: str) -> str:
    """What a failed helper run was changing ("vg/lv", "VG vg"): for a batch, the
    step the helper names as failed (or refused)."""
    if request[:1] == ["batch"]:
        steps = split_batch(request[1:])
        named = _batch_step(stderr)
        if named is None or not 0 <= named[0] < len(steps):
            return "a helper batch"
        request = steps[named[0]]
    if len(request) > 2:
        return f"{request[1]}/{request[2]}"
    return f"VG {request[1]}" if len(request) > 1 else "the node helper"

"""Copies between volumes (and from image files): clone, snapshot, save-as,
restore, export.  Every one reads its source through `Read`, so the rule for
reading a volume on a host exists once.
"""

from __future__ import annotations

import contextlib

from ..errors import DriverError
from ..locking import named_lock
from ..qemuimg import ConvertProgress
from ..streaming import Progress
from .ops import INCOMPLETE_TAG, MiB, Context, Disks, Volume, round_up_mib


def _best_effort(action: Context, host: str, step: list, after: str) -> None:
    """Run one cleanup `step` on `host` after a failure; if it fails too, log
    what stayed and go on (the caller re-raises the first error)."""
    try:
        action.cluster.run_steps(host, [step])
    except Exception as exc:
        detail = exc.one_line() if isinstance(exc, DriverError) else repr(exc)
        action.log(f"could not clean up after {after} on {host}: {detail}")


class Read:
    """Reading `volume` on `host` (a copy source, a snapshot being restored, an
    image being exported).

    `activate` / `release` are the steps to put where the caller's script
    reads: activation for reading (shared on this host, excluding no other
    host: the lock table's "read") and its undo on this host only; both empty
    when the volume is already active there (a VM uses it: read it as it is,
    leave it active).  `run` runs the caller's ONE script under the per-host
    read lock, so two actions' activate/read/release of the same volume on one
    host never interleave (one's release would deactivate it under the
    other's read); when the script fails, `release` and then each `cleanup`
    step run separately (best effort, what stayed is logged) and the error
    is raised."""

    def __init__(self, action: Context, host: str, volume: Volume, active_here: bool):
        self.action, self.host, self.volume = action, host, volume
        cluster = action.cluster
        policy = cluster.lvm(host).policy
        self.activate = [] if active_here else [
            cluster.helper("activate", volume.vg, volume.lv, policy.flag("read"))]
        self.release = [] if active_here else [
            cluster.helper("activate", volume.vg, volume.lv, policy.flag("release"))]

    def run(self, steps: list, cleanup: list = (), on_stdout=None):
        with self.held(cleanup):
            return self.action.cluster.run_steps(self.host, steps, on_stdout=on_stdout)

    @contextlib.contextmanager
    def held(self, cleanup: list = (), doing: str | None = None):
        """The per-host read lock around several scripts of the caller's; if one
        fails, `release` then each `cleanup` step (read when it fails: the
        caller may add to the list) run separately, best effort; what stayed
        is logged as left after `doing` (default: reading the volume)."""
        action = self.action
        with named_lock(action.config, f"read-{self.volume.device.replace('/', '_')}"
                                       f"@{self.host}"):
            try:
                yield self
            except Exception:
                for step in [*self.release, *cleanup]:
                    _best_effort(action, self.host, step, doing or f"reading {self.volume}")
                raise


def _fill_steps(action: Context, disks: Disks, source_path: str, source_format: str,
                target: Volume, progress: bool) -> list:
    """Zero `target` per policy, then copy into it (zero runs skipped when it is
    known zero)."""
    return ([disks.zero_command(target.device)] if action.config.zero_on_create else []) + [
        disks.copy_command(source_path, target.device, source_format, disks.target_is_zero(),
                           progress=progress)]


def copy_into(action: Context, disks: Disks, host: str, source, source_format: str,
              target: Volume, source_active_here: bool, size: int | None = None) -> None:
    """Copy `source` (a Volume, or an image file's path on GFS2) into the
    existing LV `target` on `host`, in ONE remote script: activate target
    exclusively, read-activate the source (Read), zero per policy, copy,
    release the source.  `size` (bytes to copy, when known): progress lines
    every few seconds.  When the script fails, the target is deactivated on
    `host` (after the source's release; best effort, what stayed is logged)
    and the error is raised: a target left active there would block its
    removal (or any use) from another host."""
    cluster = action.cluster
    steps = [cluster.helper("activate", target.vg, target.lv,
                            cluster.lvm(host).policy.flag("exclusive"))]
    read = Read(action, host, source, source_active_here) if isinstance(source, Volume) else None
    source_path = source.device if read else source
    if read:
        steps += read.activate
    steps += _fill_steps(action, disks, source_path, source_format, target, bool(size))
    if read:
        steps += read.release
    progress = Progress(action.log, f"copy of {source} into {target} on {host}", size) \
        if size else None
    on_stdout = ConvertProgress(progress) if progress else None
    try:
        if read:
            read.run(steps, on_stdout=on_stdout)
        else:
            cluster.run_steps(host, steps, on_stdout=on_stdout)
    except Exception:
        _best_effort(action, host, cluster.helper("activate", target.vg, target.lv, "n"),
                     f"copying into {target}")
        raise
    if progress is not None:
        progress.update(size)
        progress.finish()
    else:
        action.log(f"copied {source_path} into {target} on {host}")


def copy_to_new_volume(action: Context, disks: Disks, host: str, source: Volume, source_lv,
                       target: Volume, tags: list[str] = (), undo_hosts=None) -> None:
    """A new LV `target` with the bytes of `source` (whose report is source_lv),
    copied on `host` and left inactive (fill_new_volume).  The caller has
    checked that target is absent or removed its leftover."""
    fill_new_volume(action, disks, host, source, "raw", target, source_lv.size_bytes,
                    list(tags), source_active_here=source_lv.active_locally,
                    undo_hosts=undo_hosts)


def fill_new_volume(action: Context, disks: Disks, host: str, source, source_format: str,
                    target: Volume, size: int, tags: list[str], source_active_here=False,
                    undo_hosts=None, keep_active: bool = False, link: str | None = None
                    ) -> None:
    """A new LV `target` (`size` bytes, rounded up to MiB) holding the bytes of
    `source` (a Volume, or an image file's path on GFS2), made on `host` in
    three round trips and two helper runs:
      1. under the VG lock, ONE helper batch: create it inactive, marked
         incomplete and tagged `tags`; activate it exclusively; read-activate
         a volume source (Read);
      2. zero per policy, copy (no VG lock: copies never queue behind
         metadata changes);
      3. under the VG lock, ONE batch: release the source, deactivate the
         target unless `keep_active`, drop the mark; then link it as `link`
         (GFS2 checked first).
    A volume source's per-host read lock is held from 1 to 3.  When a step
    fails, the source is released and the target deactivated there (best
    effort), and the undo removes the target: registered once the create step
    has run (failed_step says so), never for an LV the create did not make --
    when that is unknown (a timeout), a re-run finds the incomplete leftover."""
    cluster = action.cluster
    policy = cluster.lvm(host).policy
    created = round_up_mib(size)
    make = cluster.helper("create", target.vg, target.lv, created, INCOMPLETE_TAG, *tags)
    activate = cluster.helper("activate", target.vg, target.lv, policy.flag("exclusive"))
    off = cluster.helper("activate", target.vg, target.lv, "n")
    read = Read(action, host, source, source_active_here) if isinstance(source, Volume) else None
    source_path = source.device if read else source
    copy = _fill_steps(action, disks, source_path, source_format, target, progress=True)
    finish = [*(read.release if read else []), *([] if keep_active else [off]),
              cluster.helper("deltag", target.vg, target.lv, INCOMPLETE_TAG)]
    if link:
        finish = cluster.mount_check() + finish + disks.link_steps(target, link)
    progress = Progress(action.log, f"copy of {source} into {target} on {host}", size)
    cleanup: list = []
    doing = f"copying into {target}"
    with read.held(cleanup, doing) if read else _failing_cleanup(action, host, cleanup, doing):
        try:
            with cluster.locked(target.vg):
                cluster.run_steps(host, [make, activate, *(read.activate if read else [])])
        except DriverError as exc:
            if exc.failed_step != 0:             # the LV exists (or may: then best effort)
                if exc.failed_step is not None:
                    disks.undo_create(host, target, undo_hosts)
                cleanup.append(off)
            raise
        disks.undo_create(host, target, undo_hosts)
        action.log(f"created {target} ({created // MiB} MiB)")
        cleanup.append(off)
        cluster.run_steps(host, copy, on_stdout=ConvertProgress(progress))
        progress.update(size)
        progress.finish()
        with cluster.locked(target.vg):
            cluster.run_steps(host, finish)


@contextlib.contextmanager
def _failing_cleanup(action: Context, host: str, cleanup: list, doing: str):
    """What Read.held does on failure, for a source that is a file (no lock, no
    release): each `cleanup` step, best effort."""
    try:
        yield None
    except Exception:
        for step in cleanup:
            _best_effort(action, host, step, doing)
        raise


def restore(action: Context, disks: Disks, host: str, target: Volume, target_lv,
            snapshot: Volume, snap_lv, keep_active: bool = False) -> None:
    """Make every byte of `target` read as `snapshot`, in ONE remote script on
    `host`: read the snapshot (Read), activate target exclusively, zero its
    tail beyond the snapshot's size (a volume grown after the snapshot), copy
    (zero runs written as write-zeroes: the target is not known zero), release
    the snapshot and -- unless `keep_active` (a VM disk staying on its host)
    -- the target.  A target smaller than its snapshot is grown first."""
    cluster = action.cluster
    size = target_lv.size_bytes
    if snap_lv.size_bytes > size:
        with cluster.locked(target.vg):
            cluster.lvm(host).extend(target.vg, target.lv, snap_lv.size_bytes)
        size = snap_lv.size_bytes
        action.log(f"grew {target} to {size // MiB} MiB (the size of {snapshot})")
    read = Read(action, host, snapshot, snap_lv.active_locally)
    off = [] if keep_active else [cluster.helper("activate", target.vg, target.lv, "n")]
    steps = read.activate + [cluster.helper("activate", target.vg, target.lv,
                                            cluster.lvm(host).policy.flag("exclusive"))]
    if size > snap_lv.size_bytes:
        steps.append(disks.zero_command(target.device, snap_lv.size_bytes,
                                        size - snap_lv.size_bytes))
    steps.append(disks.copy_command(snapshot.device, target.device, "raw",
                                    target_is_zero=False))
    read.run(steps + read.release + off, cleanup=off)
    action.log(f"{target} now holds the data of {snapshot}")

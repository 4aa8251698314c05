"""Copies between volumes (and from image files): clone, snapshot, save-as,
restore, export.  Every one reads its source through `Read`, so the rule for
reading a volume on a host exists once.
"""

from __future__ import annotations

from ..errors import DriverError
from ..locking import named_lock
from ..qemuimg import ConvertProgress
from ..streaming import Progress
from .ops import INCOMPLETE_TAG, MiB, Context, Disks, Volume


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
        action = self.action
        with named_lock(action.config, f"read-{self.volume.device.replace('/', '_')}"
                                       f"@{self.host}"):
            try:
                return action.cluster.run_steps(self.host, steps, on_stdout=on_stdout)
            except Exception:
                for step in [*self.release, *cleanup]:
                    _best_effort(action, self.host, step, f"reading {self.volume}")
                raise


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
    if action.config.zero_on_create:
        steps.append(disks.zero_command(target.device))
    steps.append(disks.copy_command(source_path, target.device, source_format,
                                    disks.target_is_zero(), progress=bool(size)))
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
    copied on `host`: created incomplete, filled, released, mark dropped.
    The caller has checked that target is absent or removed its leftover."""
    disks.create(host, target, source_lv.size_bytes, [INCOMPLETE_TAG, *tags],
                 undo_hosts=undo_hosts)
    copy_into(action, disks, host, source, "raw", target, source_lv.active_locally,
              size=source_lv.size_bytes)
    disks.deactivate(host, target)
    disks.retag(host, target, drop=[INCOMPLETE_TAG])


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

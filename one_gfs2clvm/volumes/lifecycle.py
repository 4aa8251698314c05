"""A VM disk's life on the shared VG: made (volatile), moved between hosts,
released, deleted -- with every step idempotent and exact.

A disk in use is an LV active on the host that runs the VM (exclusively, or
shared for read-only/live-migration), a `one-use=<vm>:<disk>:<host>` tag
recording that, and a symlink `<VM dir>/disk.<N>` on GFS2 pointing at the
LV's device.  Callers pass where a disk lives as an object with `host`,
`path` (its link), `disk_id` and, for new disks, `sysdir` (the front doors'
paths.DiskArg); which paths they may name is the front door's rule.
"""

from __future__ import annotations

import posixpath

from ..errors import DriverError, InvalidArgument
from ..names import Use, disk_id_from_path, parse_lv_name, vm_disk_lv
from .ops import (INCOMPLETE_TAG, MiB, Context, Disks, Volume, is_frontend, mkfs_command,
                  refuse_if_open, volume_of, zero_and_remove)


def linked_volume(disks: Disks, host: str, link: str) -> Volume | None:
    """The LV a disk.N symlink points at (the truth on GFS2), if it is one of ours."""
    target = disks.read_link(host, link)
    if not target or not target.startswith("/dev/"):
        return None
    try:
        return volume_of(target)
    except InvalidArgument:
        return None


def make_volatile(action: Context, size_mb: int, dst, vg: str, fs: str) -> None:
    """A volatile disk: new LV of size_mb, formatted as `fs` ('swap', '' = raw)."""
    if size_mb <= 0:
        raise InvalidArgument(f"invalid size {size_mb} MB")
    if fs and fs != "swap":
        mkfs_command(fs, vm_disk_lv(action.vm_id, dst.disk_id))   # checks the type
    disks = Disks(action)
    volume = Volume(vg, vm_disk_lv(action.vm_id, dst.disk_id))
    use = Use(action.vm_id, dst.disk_id, dst.host)
    if disks.complete_or_cleared(dst.host, volume, disks.lv(dst.host, volume)):
        disks.activate_and_link(dst.host, volume, "exclusive", dst.path)
        action.log(f"{volume} already prepared; activated and linked")
        return
    disks.create(dst.host, volume, size_mb * MiB, [INCOMPLETE_TAG, use.tag])
    steps = action.cluster.mount_check() + [
        action.cluster.helper("activate", volume.vg, volume.lv,
                              action.cluster.lvm(dst.host).policy.flag("exclusive"))]
    if action.config.zero_on_create:
        steps.append(disks.zero_command(volume.device))
    if fs == "swap":
        steps.append(["/sbin/mkswap", volume.device])
    elif fs:
        steps.append(mkfs_command(fs, volume.device))
    steps += [["mkdir", "-p", dst.sysdir], ["ln", "-sfn", volume.device, dst.path]]
    action.cluster.run_steps(dst.host, steps)
    disks.retag(dst.host, volume, drop=[INCOMPLETE_TAG])
    action.log(f"{volume} ({size_mb} MB{', ' + fs if fs else ''}) ready on {dst.host}")


def move_disk(action: Context, disks: Disks, volume: Volume, disk_id: int, src, dst,
              readonly: bool, bridge_hosts: list[str] | None = None) -> None:
    """Stop/undeploy (dst is the front-end), resume (src is), or cold migration:
    the LV ends active only on dst (or nowhere), its use tag saying so."""
    if src.host == dst.host and src.path == dst.path:
        action.log("source and destination are the same: nothing to move")
        return
    if not is_frontend(src.host) and src.host != dst.host:
        if disks.deactivate(src.host, volume, tolerate_unreachable=True):
            action.log(f"deactivated {volume} on {src.host}")
    if is_frontend(dst.host):                   # stop / undeploy: keep data, release host
        disks.set_use(disks.worker(dst.host, bridge_hosts), volume, None, action.vm_id, disk_id)
        action.log(f"{volume} released (VM leaves its host)")
        return
    intent = "shared" if readonly else "exclusive"
    # one round trip: activate (NotFound if the LV is gone), use tags, link
    disks.activate_and_link(dst.host, volume, intent, dst.path, tags=[disks.use_step(
        volume, Use(action.vm_id, disk_id, dst.host), action.vm_id, disk_id, readonly)])
    action.log(f"{volume} active ({intent}) on {dst.host}")


def move_dir(action: Context, disks: Disks, src, dst) -> None:
    if src.path == dst.path or is_frontend(dst.host):
        return                                  # one GFS2: the directory is already there
    host = disks.worker(dst.host)
    move = ["sh", "-c", 'if [ -e "$1" ] && [ ! -e "$2" ]; then '
            'mkdir -p "$(dirname "$2")" && mv "$1" "$2"; fi', "sh", src.path, dst.path]
    action.cluster.run_steps(host, action.cluster.mount_check() + [move])


def delete_disk(action: Context, disks: Disks, host: str, path: str, disk_id: int,
                volume: Volume | None) -> None:
    """The VM's own LV is zeroed (per policy) and removed; a persistent image is
    only released; the symlink goes.  Missing pieces are fine (idempotent)."""
    if volume is not None:
        name = parse_lv_name(volume.lv)
        if name.kind == "vm_disk" and (name.vm_id, name.disk_id) == (action.vm_id, disk_id):
            remove_vm_disk(action, disks, host, volume)
        else:
            release_use(action, disks, host, volume, disk_id)
    disks.unlink(host, path)


def linked_disks(disks: Disks, host: str, directory: str) -> list[tuple[int, str, Volume | None]]:
    """(disk id, link path, LV or None) for each disk.N symlink in a VM dir on GFS2."""
    result = disks.cluster.remote(host).run(
        ["find", directory, "-maxdepth", "1", "-name", "disk.*", "-type", "l",
         "-printf", "%f %l\\n"], check=False)
    found = []
    for line in result.stdout.splitlines():
        name, _, target = line.partition(" ")
        try:
            disk_id = disk_id_from_path(name)
        except InvalidArgument:
            continue
        volume = None
        if target.startswith("/dev/"):
            try:
                volume = volume_of(target)
            except InvalidArgument:
                volume = None
        found.append((disk_id, posixpath.join(directory, name), volume))
    return sorted(found)


def remove_vm_disk(action: Context, disks: Disks, host: str, volume: Volume) -> None:
    """Zero (per policy) and remove a VM's own disk LV and its snapshots, after
    deactivating it where the VM last ran (its use tag) if that is elsewhere."""
    report = {lv.name: lv for lv in action.cluster.lvm(host).lvs(volume.vg)}
    lv = report.get(volume.lv)
    if lv is None:
        action.log(f"{volume} already gone")
        zero_and_remove(disks, host, volume, report)       # snapshots it left behind
        return
    refuse_if_open(host, volume, lv)
    where = next((u.host for u in disks.uses(lv) if not is_frontend(u.host)), host)
    if where != host:
        disks.deactivate(where, volume, tolerate_unreachable=True)
    zero_and_remove(disks, host, volume, report)


def release_use(action: Context, disks: Disks, host: str, volume: Volume, disk_id: int) -> None:
    """A persistent image used by this VM: deactivate and drop the use tag, keep data."""
    lv = disks.lv(host, volume)
    if lv is None:
        return
    mine = [u for u in disks.uses(lv) if (u.vm_id, u.disk_id) == (action.vm_id, disk_id)]
    for use in mine:
        if not is_frontend(use.host):
            disks.deactivate(use.host, volume, tolerate_unreachable=True)
    disks.set_use(host, volume, None, action.vm_id, disk_id)
    action.log(f"released {volume} (persistent image kept)")


def vm_volumes(action: Context, host: str, vgs) -> list[tuple[Volume, int]]:
    """(volume, disk id) of every LV of the action's VM in `vgs` -- its disks and
    their snapshots, by exact name -- as reported on `host`."""
    found = []
    for vg in vgs:
        for lv in action.cluster.lvm(host).lvs(vg):
            try:
                name = parse_lv_name(lv.name)
            except InvalidArgument:
                continue
            if name.kind in ("vm_disk", "vm_snap") and name.vm_id == action.vm_id:
                found.append((Volume(vg, lv.name), name.disk_id))
    return found


def delete_vm_dir(action: Context, disks: Disks, host: str, path: str) -> None:
    remaining = [str(volume) for volume, _ in vm_volumes(action, host,
                                                          action.config.volume_groups)]
    if remaining:
        raise DriverError(f"VM {action.vm_id} still has LVs ({', '.join(remaining)}): "
                          f"not removing {path}; delete its disks first")
    action.cluster.run_steps(host, action.cluster.mount_check() + [["rm", "-rf", path]])
    action.log(f"removed {path}")

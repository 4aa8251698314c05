"""TM actions, OpenNebula 6.10 - 7.4 layout (`remotes/tm/gfs2clvm/<action>`).

Arguments are exactly what oned writes into transfer files (reference 3.3).
Every action runs on the front-end and reaches workers only over SSH; LVM
runs on a worker in the lock space, through the node helper.

Choices written down:
  * VM-disk LVs live in the VG of the datastore named by the action's DSID
    argument (template attribute VG_NAME, else the first configured VG):
    clones in the image datastore's VG (CLONE_TARGET=SELF), volatile disks
    in the system datastore's.
  * Disk snapshots are full copies in their own linear LVs
    (lv-one-<vm>-<disk>-snap-<id>): lvmlockd refuses shared activation of
    COW snapshots and their origins, so those would pin a VM to its host.
    Copies are inactive LVs, so they survive cold and live migration.
  * Live migration under lvmlockd: source converts its exclusive lock to
    shared, destination activates shared; afterwards the source deactivates
    and the destination converts to exclusive.  failmigrate reverses.
"""

from __future__ import annotations

import os

from ..errors import DriverError, InUse, InvalidArgument, NotFound, SourceNotFound
from ..names import IsoxSource, LvSource, Use, vm_disk_lv
from ..volumes.copies import copy_into, copy_to_new_volume, restore
from ..volumes.lifecycle import (delete_disk, delete_vm_dir, linked_volume, make_volatile,
                                 move_dir, move_disk, release_use)
from ..volumes.ops import INCOMPLETE_TAG, MiB, Disks, Volume, is_frontend, snapshot_volume
from . import runtime
from .args import (ContextDisk, DatastoreOnly, DiskFromImage, DiskSize, DiskSnapshot, Migration,
                   Move, NewDisk, Remove, SaveDisk, parse_tm)
from .paths import DiskArg
from .runtime import Action
from .vmdisks import bridges, build_context, clone_disk, datastore_vg, disk_volume, link_disk

SYSTEM_TM = "gfs2clvm"       # the TM_MAD of this driver (volatile disks belong to it)


# ----------------------------------------------------------------- clone / ln

def clone(action: Action, req: DiskFromImage) -> None:
    if isinstance(req.source, IsoxSource):
        clone_disk(action, req.source, req.disk, None, 0)
        return
    vm = action.api.vm(req.vm_id)
    clone_disk(action, req.source, req.disk, datastore_vg(action, req.ds_id),
               vm.disk(req.disk.disk_id).size_mb or 0, vm, bridges(action, req.ds_id))


def ln(action: Action, req: DiskFromImage) -> None:
    readonly = False
    if isinstance(req.source, LvSource):
        readonly = action.api.vm(req.vm_id).disk(req.disk.disk_id).readonly
    link_disk(action, req.source, req.disk, readonly)


# ----------------------------------------------------------------- volatile disks

def mkimage(action: Action, req: NewDisk) -> None:
    fs = req.fs
    if fs is None:                      # FORMAT is not swap: the disk's FS, if any
        fs = action.api.vm(req.vm_id).disk(req.disk.disk_id).fs or ""
    make_volatile(action, req.size_mb, req.disk, datastore_vg(action, req.ds_id), fs)


mkswap = mkimage


# ----------------------------------------------------------------- context

def context(action: Action, req: ContextDisk) -> None:
    build_context(action, list(req.files), req.disk)


# ----------------------------------------------------------------- mv / delete

def mv(action: Action, req: Move) -> None:
    disks = Disks(action)
    if not isinstance(req.dst, DiskArg):
        move_dir(action, disks, req.src, req.dst)
        return
    disk_id = req.dst.disk_id
    vm = action.api.vm(req.vm_id)
    volume = disk_volume(action, vm, disk_id, req.ds_id)
    if volume is None:                          # an ISO symlink: GFS2 keeps it
        return
    move_disk(action, disks, volume, disk_id, req.src, req.dst, vm.disk(disk_id).readonly,
              bridges(action, req.ds_id))


def delete(action: Action, req: Remove) -> None:
    disks = Disks(action)
    target = req.target
    host = disks.worker(target.host, bridges(action, req.ds_id))
    if not isinstance(target, DiskArg):
        delete_vm_dir(action, disks, host, target.path)
        return
    volume = linked_volume(disks, host, target.path)
    if volume is None:
        try:
            volume = disk_volume(action, action.api.vm(req.vm_id), target.disk_id, req.ds_id)
        except InvalidArgument:                 # the disk is gone from the template
            volume = Volume(datastore_vg(action, req.ds_id),
                            vm_disk_lv(req.vm_id, target.disk_id))
    delete_disk(action, disks, host, target.path, target.disk_id, volume)


# ----------------------------------------------------------------- persistent / saveas

def mvds(action: Action, req: SaveDisk) -> None:
    disks = Disks(action)
    host = disks.worker(req.disk.host, bridges(action, req.ds_id))
    release_use(action, disks, host, req.image, req.disk.disk_id)
    disks.unlink(host, req.disk.path)


def cpds(action: Action, req: SaveDisk) -> None:
    disks = Disks(action)
    vm = action.api.vm(req.vm_id)
    disk_ds = vm.disk(req.disk.disk_id).datastore_id
    volume = disk_volume(action, vm, req.disk.disk_id,
                         disk_ds if disk_ds is not None else req.ds_id)
    if volume is None:
        raise InvalidArgument(f"disk {req.disk.disk_id} of VM {vm.id} is not an LV")
    if req.snap_id >= 0:
        volume = snapshot_volume(volume, req.snap_id)
    target = req.image
    host = disks.worker(req.disk.host, bridges(action, req.ds_id))
    source_lv, target_lv = disks.lv(host, volume), disks.lv(host, target)
    if source_lv is None:
        raise SourceNotFound(f"{volume} does not exist")
    if target_lv is None:
        raise NotFound(f"target image LV {target} does not exist (allocate it with the "
                       f"datastore's mkfs first)")
    if target_lv.size_bytes < source_lv.size_bytes:
        with action.cluster.locked(target.vg):
            action.cluster.lvm(host).extend(target.vg, target.lv, source_lv.size_bytes)
    copy_into(action, disks, host, volume, "raw", target, source_lv.active_locally,
               size=source_lv.size_bytes)
    disks.deactivate(host, target)
    action.log(f"saved {volume} into image {target}")


# ----------------------------------------------------------------- live migration

def migrate(action: Action, req: Migration) -> None:
    """premigrate / postmigrate / failmigrate: the phase is in the request."""
    phase, src, dst = req.phase, req.src_host, req.dst_host
    from .xml import parse_vm_base64
    vm = parse_vm_base64(action.stdin.decode("ascii", "replace"))
    if vm.id != req.vm_id:
        raise InvalidArgument(f"{phase}: the VM document on stdin is VM {vm.id}, "
                              f"not VM {req.vm_id}")
    disks = Disks(action)
    ours, others = [], set()
    for disk in vm.disks:
        tm = disk.tm_mad or SYSTEM_TM          # volatile disks belong to the system TM
        if tm != SYSTEM_TM:
            others.add(tm)
            continue
        ds = disk.datastore_id if disk.datastore_id is not None else req.ds_id
        volume = disk_volume(action, vm, disk.disk_id, ds)
        if volume is not None:
            ours.append((disk, volume))
    mode = action.config.lock_mode
    for disk, volume in ours:
        readonly = disk.readonly
        if phase == "premigrate":
            if mode == "lvmlockd":
                disks.activate_and_link(src, volume, "shared")     # ex -> sh on the source
                action.undo.push(f"{volume} back to exclusive on {src}",
                                 lambda v=volume: disks.activate_and_link(src, v, "exclusive"))
            # clvmd: 'shared' is cluster-wide -ay, which stays (as the 2012 driver did)
            disks.activate_and_link(dst, volume, "shared")
            if mode != "clvmd":
                action.undo.push(f"deactivate {volume} on {dst}",
                                 lambda v=volume: disks.deactivate(dst, v))
        elif phase == "postmigrate":
            use = Use(vm.id, disk.disk_id, dst)
            if mode != "clvmd":
                disks.deactivate(src, volume, tolerate_unreachable=True)
                disks.activate_and_link(dst, volume, "shared" if readonly else "exclusive",
                                        tags=[disks.use_step(volume, use, vm.id, disk.disk_id,
                                                             readonly)])
            else:
                disks.set_use(dst, volume, use, vm.id, disk.disk_id, readonly=readonly)
        else:                                   # failmigrate: the VM stays on src
            if mode != "clvmd":
                disks.deactivate(dst, volume, tolerate_unreachable=True)
                disks.activate_and_link(src, volume, "shared" if readonly else "exclusive")
        action.log(f"{phase}: {volume} handled ({src} -> {dst})")
    if not req.caller:
        _dispatch_other_tms(action, phase, sorted(others), list(req.forwarded))


premigrate = postmigrate = failmigrate = migrate


def _dispatch_other_tms(action: Action, phase: str, tms: list[str], args: list[str]) -> None:
    """Disks of other drivers: call their TM like OpenNebula's migrate_other does,
    naming ourselves as the caller so they do not dispatch back."""
    import subprocess
    remotes = os.environ.get("ONE_REMOTES_DIR", "/var/lib/one/remotes")
    for tm in tms:
        if not tm.replace("_", "").replace("-", "").isalnum():
            raise InvalidArgument(f"invalid TM_MAD {tm!r} in the VM template")
        script = os.path.join(remotes, "tm", tm, phase)
        if not os.access(script, os.X_OK):
            action.log(f"{tm} has no {phase}: nothing to do for its disks")
            continue
        proc = subprocess.run([script, *args, SYSTEM_TM], input=action.stdin,
                              capture_output=True)
        if proc.returncode != 0:
            raise DriverError(f"{tm}/{phase} failed: "
                              f"{proc.stderr.decode('utf-8', 'replace').strip()}")
        action.log(f"{tm}/{phase} done")


# ----------------------------------------------------------------- resize / snapshots

def resize(action: Action, req: DiskSize) -> None:
    size = req.size_mb * MiB
    disks = Disks(action)
    volume = disk_volume(action, action.api.vm(req.vm_id), req.disk.disk_id, req.ds_id)
    if volume is None:
        raise InvalidArgument("this disk is not an LV: nothing to resize")
    host = disks.worker(req.disk.host, bridges(action, req.ds_id))
    lv = disks.lv(host, volume)
    if lv is None:
        raise NotFound(f"{volume} does not exist")
    if lv.size_bytes >= size:
        action.log(f"{volume} is already {lv.size_bytes // MiB} MB")
        return
    elsewhere = [u.host for u in disks.uses(lv) if u.host != host and not is_frontend(u.host)]
    if elsewhere:
        raise InUse(f"{volume} is in use on {elsewhere[0]}: resize it there "
                    f"(lvmlockd cannot extend an LV active on another host)")
    with action.cluster.locked(volume.vg):
        action.cluster.lvm(host).extend(volume.vg, volume.lv, size)
    if action.config.zero_on_create:
        disks.activate_and_link(host, volume, "exclusive")
        new_size = disks.device_size(host, volume.device)
        action.cluster.run_steps(host, [disks.zero_command(
            volume.device, lv.size_bytes, new_size - lv.size_bytes)])
    action.log(f"{volume} grown from {lv.size_bytes // MiB} to {size // MiB} MB")


def _snapshot_of(action: Action, req: DiskSnapshot):
    """(disks, host, the disk's volume, its snapshot's volume)."""
    disks = Disks(action)
    volume = disk_volume(action, action.api.vm(req.vm_id), req.disk.disk_id, req.ds_id)
    if volume is None:
        raise InvalidArgument("this disk is not an LV: no snapshots")
    snapshot = snapshot_volume(volume, req.snap_id)
    return disks, disks.worker(req.disk.host, bridges(action, req.ds_id)), volume, snapshot


def snap_create(action: Action, req: DiskSnapshot) -> None:
    disks, host, volume, snapshot = _snapshot_of(action, req)
    if disks.complete_or_cleared(host, snapshot, disks.lv(host, snapshot)):
        action.log(f"{snapshot} already exists")
        return
    source = disks.lv(host, volume)
    if source is None:
        raise SourceNotFound(f"{volume} does not exist")
    copy_to_new_volume(action, disks, host, volume, source, snapshot)
    action.log(f"snapshot {snapshot} of {volume} taken")


def snap_delete(action: Action, req: DiskSnapshot) -> None:
    disks, host, _, snapshot = _snapshot_of(action, req)
    disks.remove(host, snapshot)


def snap_revert(action: Action, req: DiskSnapshot) -> None:
    """The disk's bytes become the snapshot's (its tail zeroed if the disk grew
    after the snapshot); the disk stays active where it was."""
    disks, host, volume, snapshot = _snapshot_of(action, req)
    known = disks.lvs(host, [volume, snapshot])
    snap_lv = known.get(snapshot)
    if snap_lv is None or INCOMPLETE_TAG in snap_lv.tags:
        raise SourceNotFound(f"snapshot {snapshot} does not exist")
    if volume not in known:
        raise NotFound(f"{volume} does not exist")
    restore(action, disks, host, volume, known[volume], snapshot, snap_lv, keep_active=True)


# ----------------------------------------------------------------- monitor

def monitor(action: Action, req: DatastoreOnly) -> None:
    ds_id = req.ds_id
    from .xml import parse_driver_action
    data = parse_driver_action(action.stdin.decode("ascii", "replace")) if action.stdin else None
    ds = data.datastore if data is not None and data.datastore is not None else \
        action.api.datastore(ds_id)
    vg = action.config.check_vg(ds.vg_name or action.config.default_vg)
    timeout = min(30.0, action.config.ssh.command_timeout)
    group = action.cluster.on_bridge(lambda h: action.cluster.lvm(h, timeout).vgs(vg),
                                     ds.bridge_list)
    total, free = group.size_bytes // MiB, group.free_bytes // MiB
    print(f"USED_MB={total - free}\nFREE_MB={free}\nTOTAL_MB={total}")


# ----------------------------------------------------------------- entry point

ACTIONS = runtime.entries(parse_tm, {
    "clone": clone, "ln": ln, "mkimage": mkimage, "mkswap": mkswap, "context": context,
    "mv": mv, "mvds": mvds, "cpds": cpds, "delete": delete, "premigrate": premigrate,
    "postmigrate": postmigrate, "failmigrate": failmigrate, "resize": resize,
    "snap_create": snap_create, "snap_delete": snap_delete, "snap_revert": snap_revert,
    "monitor": monitor,
})


main = runtime.FrontDoor(
    "TM action", ACTIONS,
    stdin=lambda name, argv: name in {"premigrate", "postmigrate", "failmigrate", "monitor"},
    strip_stdin=True).main

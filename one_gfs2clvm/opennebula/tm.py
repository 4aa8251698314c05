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

from ..errors import DriverError, InvalidArgument, LockContention, NotFound
from ..names import HOST_RE, IsoxSource, LvSource, Use, check_host, parse_id, vm_disk_lv
from ..volumes.copies import copy_into, restore
from ..volumes.lifecycle import (delete_disk, delete_vm_dir, linked_volume, make_volatile,
                                 move_dir, move_disk, release_use)
from ..volumes.ops import (INCOMPLETE_TAG, MiB, Disks, Volume, image_volume, is_frontend,
                           snapshot_volume)
from . import paths, runtime
from .args import expect, image_source, tm_source
from .paths import DiskArg
from .runtime import Action
from .vmdisks import bridges, build_context, clone_disk, datastore_vg, disk_volume, link_disk

SYSTEM_TM = "gfs2clvm"       # the TM_MAD of this driver (volatile disks belong to it)


def _disk_arg(action: Action, text: str, vm_id: int, system_ds: int | None = None) -> DiskArg:
    return paths.disk_arg(action.config, text, vm_id, system_ds)


# ----------------------------------------------------------------- lookups

# ----------------------------------------------------------------- clone / ln

def clone(action: Action, argv: list[str]) -> None:
    src_arg, dst_arg, vm_arg, ds_arg = expect(argv, 4, "clone fe:SOURCE host:dir/disk.N VMID DSID")
    vm_id = parse_id(vm_arg, "VM id")
    ds_id = parse_id(ds_arg, "datastore id")
    dst = _disk_arg(action, dst_arg, vm_id)
    source = image_source(action.config, src_arg)
    action.bind_vm(vm_id)
    if isinstance(source, IsoxSource):
        clone_disk(action, source, dst, None, 0)
        return
    vm = action.api.vm(vm_id)
    clone_disk(action, source, dst, datastore_vg(action, ds_id),
               vm.disk(dst.disk_id).size_mb or 0, vm, bridges(action, ds_id))


def ln(action: Action, argv: list[str]) -> None:
    src_arg, dst_arg, vm_arg, ds_arg = expect(argv, 4, "ln fe:SOURCE host:dir/disk.N VMID DSID")
    vm_id = parse_id(vm_arg, "VM id")
    parse_id(ds_arg, "datastore id")
    dst = _disk_arg(action, dst_arg, vm_id)
    source = image_source(action.config, src_arg)
    action.bind_vm(vm_id)
    readonly = False
    if isinstance(source, LvSource):
        readonly = action.api.vm(action.vm_id).disk(dst.disk_id).readonly
    link_disk(action, source, dst, readonly)


# ----------------------------------------------------------------- volatile disks

def mkimage(action: Action, argv: list[str]) -> None:
    size_arg, fmt, dst_arg, vm_arg, ds_arg = expect(
        argv, 5, "mkimage SIZE FORMAT host:dir/disk.N VMID DSID")
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    size_mb = parse_id(size_arg, "size")
    dst = _disk_arg(action, dst_arg, vm_id, ds_id)
    action.bind_vm(vm_id)
    fs = ""
    if fmt != "swap":
        fs = action.api.vm(action.vm_id).disk(dst.disk_id).fs or ""
    make_volatile(action, size_mb, dst, datastore_vg(action, ds_id),
                  "swap" if fmt == "swap" else fs)


def mkswap(action: Action, argv: list[str]) -> None:
    size_arg, dst_arg, vm_arg, ds_arg = expect(argv, 4, "mkswap SIZE host:dir/disk.N VMID DSID")
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    size_mb = parse_id(size_arg, "size")
    dst = _disk_arg(action, dst_arg, vm_id, ds_id)
    action.bind_vm(vm_id)
    make_volatile(action, size_mb, dst, datastore_vg(action, ds_id), "swap")


# ----------------------------------------------------------------- context

def context(action: Action, argv: list[str]) -> None:
    if len(argv) < 4:
        raise InvalidArgument("usage: context FILE... host:dir/disk.N VMID DSID")
    *files, dst_arg, vm_arg, ds_arg = argv
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    dst = _disk_arg(action, dst_arg, vm_id, ds_id)
    action.bind_vm(vm_id)
    build_context(action, files, dst)


# ----------------------------------------------------------------- mv / delete

def mv(action: Action, argv: list[str]) -> None:
    src_arg, dst_arg, vm_arg, ds_arg = expect(argv, 4, "mv hostA:path hostB:path VMID DSID")
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    config = action.config
    if not paths.is_disk_path(dst_arg):
        # the VM directory; a migration may come from another system datastore
        src = paths.dir_arg(config, src_arg, vm_id, what="source directory")
        dst = paths.dir_arg(config, dst_arg, vm_id, ds_id, what="destination directory")
        action.bind_vm(vm_id)
        move_dir(action, Disks(action), src, dst)
        return
    src = paths.disk_arg(config, src_arg, vm_id, what="source disk")
    dst = paths.disk_arg(config, dst_arg, vm_id, what="destination disk")
    if src.disk_id != dst.disk_id:
        raise InvalidArgument(f"refusing mv {src_arg!r} {dst_arg!r}: not the same disk")
    action.bind_vm(vm_id)
    disks = Disks(action)
    disk_id = dst.disk_id
    vm = action.api.vm(action.vm_id)
    volume = disk_volume(action, vm, disk_id, ds_id)
    if volume is None:                          # an ISO symlink: GFS2 keeps it
        return
    move_disk(action, disks, volume, disk_id, src, dst, vm.disk(disk_id).readonly,
              bridges(action, ds_id))


def delete(action: Action, argv: list[str]) -> None:
    path_arg, vm_arg, ds_arg = expect(argv, 3, "delete host:path VMID DSID")
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    if paths.is_disk_path(path_arg):
        target = paths.disk_arg(action.config, path_arg, vm_id)
    else:                        # the VM directory: of this VM in this system datastore
        target = paths.dir_arg(action.config, path_arg, vm_id, ds_id)
    action.bind_vm(vm_id)
    disks = Disks(action)
    host = disks.worker(target.host, bridges(action, ds_id))
    if not isinstance(target, DiskArg):
        delete_vm_dir(action, disks, host, target.path)
        return
    disk_id = target.disk_id
    volume = linked_volume(disks, host, target.path)
    if volume is None:
        try:
            volume = disk_volume(action, action.api.vm(action.vm_id), disk_id, ds_id)
        except InvalidArgument:                 # the disk is gone from the template
            volume = Volume(datastore_vg(action, ds_id), vm_disk_lv(action.vm_id, disk_id))
    delete_disk(action, disks, host, target.path, disk_id, volume)


# ----------------------------------------------------------------- persistent / saveas

def mvds(action: Action, argv: list[str]) -> None:
    disk_arg, source_arg, vm_arg, ds_arg = expect(argv, 4, "mvds host:dir/disk.N SOURCE VMID DSID")
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    disk = _disk_arg(action, disk_arg, vm_id)
    volume = image_volume(action.config, tm_source(source_arg), "mvds")
    action.bind_vm(vm_id)
    disks = Disks(action)
    host = disks.worker(disk.host, bridges(action, ds_id))
    release_use(action, disks, host, volume, disk.disk_id)
    disks.unlink(host, disk.path)


def cpds(action: Action, argv: list[str]) -> None:
    disk_arg, source_arg, snap_arg, vm_arg, ds_arg = expect(
        argv, 5, "cpds host:dir/disk.N SOURCE SNAPID VMID DSID")
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    snap_id = -1 if snap_arg == "-1" else parse_id(snap_arg, "snapshot id")
    disk = _disk_arg(action, disk_arg, vm_id)
    target = image_volume(action.config, tm_source(source_arg), "cpds")
    action.bind_vm(vm_id)
    disks = Disks(action)
    vm = action.api.vm(action.vm_id)
    disk_ds = vm.disk(disk.disk_id).datastore_id
    volume = disk_volume(action, vm, disk.disk_id, disk_ds if disk_ds is not None else ds_id)
    if volume is None:
        raise InvalidArgument(f"disk {disk.disk_id} of VM {vm.id} is not an LV")
    if snap_id >= 0:
        volume = snapshot_volume(volume, snap_id)
    host = disks.worker(disk.host, bridges(action, ds_id))
    source_lv, target_lv = disks.lv(host, volume), disks.lv(host, target)
    if source_lv is None:
        raise NotFound(f"{volume} does not exist")
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

def premigrate(action: Action, argv: list[str]) -> None:
    _migrate(action, argv, "premigrate")


def postmigrate(action: Action, argv: list[str]) -> None:
    _migrate(action, argv, "postmigrate")


def failmigrate(action: Action, argv: list[str]) -> None:
    _migrate(action, argv, "failmigrate")


def _migrate(action: Action, argv: list[str], phase: str) -> None:
    src, dst, sysdir, vm_arg, ds_arg, caller = expect(
        argv, 5, f"{phase} SRCHOST DSTHOST SYSDIR VMID SYSDS [CALLING_TM]", optional=1)
    vm_id, sys_ds = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    src, dst = check_host(src), check_host(dst)
    for host in (src, dst):            # a live migration runs between two hosts
        if is_frontend(host):
            raise InvalidArgument(f"{phase}: {host} is the front-end, not a host a VM runs on")
    paths.check_sysdir(action.config, sysdir, vm_id, sys_ds)
    if caller and not HOST_RE.fullmatch(caller):
        raise InvalidArgument(f"invalid CALLING_TM {caller!r}")
    action.bind_vm(vm_id)
    from .xml import parse_vm_base64
    vm = parse_vm_base64(action.stdin.decode("ascii", "replace"))
    if vm.id != vm_id:
        raise InvalidArgument(f"{phase}: the VM document on stdin is VM {vm.id}, not VM {vm_id}")
    disks = Disks(action)
    ours, others = [], set()
    for disk in vm.disks:
        tm = disk.tm_mad or SYSTEM_TM          # volatile disks belong to the system TM
        if tm != SYSTEM_TM:
            others.add(tm)
            continue
        ds = disk.datastore_id if disk.datastore_id is not None else sys_ds
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
            if mode != "clvmd":
                disks.deactivate(src, volume, tolerate_unreachable=True)
                disks.activate_and_link(dst, volume, "shared" if readonly else "exclusive")
            disks.set_use(dst, volume, Use(vm.id, disk.disk_id, dst), vm.id, disk.disk_id,
                          readonly=readonly)
        else:                                   # failmigrate: the VM stays on src
            if mode != "clvmd":
                disks.deactivate(dst, volume, tolerate_unreachable=True)
                disks.activate_and_link(src, volume, "shared" if readonly else "exclusive")
        action.log(f"{phase}: {volume} handled ({src} -> {dst})")
    if not caller:
        _dispatch_other_tms(action, phase, sorted(others), [src, dst, sysdir, vm_arg, ds_arg])


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

def resize(action: Action, argv: list[str]) -> None:
    disk_arg, size_arg, vm_arg, ds_arg = expect(argv, 4, "resize host:dir/disk.N SIZE VMID DSID")
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    disk = _disk_arg(action, disk_arg, vm_id)
    size = parse_id(size_arg, "size") * MiB
    action.bind_vm(vm_id)
    disks = Disks(action)
    volume = disk_volume(action, action.api.vm(action.vm_id), disk.disk_id, ds_id)
    if volume is None:
        raise InvalidArgument("this disk is not an LV: nothing to resize")
    host = disks.worker(disk.host, bridges(action, ds_id))
    lv = disks.lv(host, volume)
    if lv is None:
        raise NotFound(f"{volume} does not exist")
    if lv.size_bytes >= size:
        action.log(f"{volume} is already {lv.size_bytes // MiB} MB")
        return
    elsewhere = [u.host for u in disks.uses(lv) if u.host != host and not is_frontend(u.host)]
    if elsewhere:
        raise LockContention(f"{volume} is in use on {elsewhere[0]}: resize it there "
                             f"(lvmlockd cannot extend an LV active on another host)")
    with action.cluster.locked(volume.vg):
        action.cluster.lvm(host).extend(volume.vg, volume.lv, size)
    if action.config.zero_on_create:
        disks.activate_and_link(host, volume, "exclusive")
        new_size = disks.device_size(host, volume.device)
        action.cluster.run_steps(host, [disks.zero_command(
            volume.device, lv.size_bytes, new_size - lv.size_bytes)])
    action.log(f"{volume} grown from {lv.size_bytes // MiB} to {size // MiB} MB")


def _snapshot_args(action: Action, argv: list[str], usage: str):
    disk_arg, snap_arg, vm_arg, ds_arg = expect(argv, 4, usage)
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    disk = _disk_arg(action, disk_arg, vm_id)
    snap_id = parse_id(snap_arg, "snapshot id")
    action.bind_vm(vm_id)
    disks = Disks(action)
    volume = disk_volume(action, action.api.vm(action.vm_id), disk.disk_id, ds_id)
    if volume is None:
        raise InvalidArgument("this disk is not an LV: no snapshots")
    snapshot = snapshot_volume(volume, snap_id)
    return disks, disks.worker(disk.host, bridges(action, ds_id)), volume, snapshot


def snap_create(action: Action, argv: list[str]) -> None:
    disks, host, volume, snapshot = _snapshot_args(
        action, argv, "snap_create host:dir/disk.N SNAPID VMID DSID")
    existing = disks.lv(host, snapshot)
    if existing is not None and INCOMPLETE_TAG not in existing.tags:
        action.log(f"{snapshot} already exists")
        return
    if existing is not None:
        disks.remove(host, snapshot)
    source = disks.lv(host, volume)
    if source is None:
        raise NotFound(f"{volume} does not exist")
    disks.create(host, snapshot, source.size_bytes, [INCOMPLETE_TAG])
    copy_into(action, disks, host, volume, "raw", snapshot, source.active_locally,
               size=source.size_bytes)
    disks.deactivate(host, snapshot)
    disks.retag(host, snapshot, drop=[INCOMPLETE_TAG])
    action.log(f"snapshot {snapshot} of {volume} taken")


def snap_delete(action: Action, argv: list[str]) -> None:
    disks, host, _, snapshot = _snapshot_args(
        action, argv, "snap_delete host:dir/disk.N SNAPID VMID DSID")
    disks.remove(host, snapshot)


def snap_revert(action: Action, argv: list[str]) -> None:
    """The disk's bytes become the snapshot's (its tail zeroed if the disk grew
    after the snapshot); the disk stays active where it was."""
    disks, host, volume, snapshot = _snapshot_args(
        action, argv, "snap_revert host:dir/disk.N SNAPID VMID DSID")
    known = disks.lvs(host, [volume, snapshot])
    snap_lv = known.get(snapshot)
    if snap_lv is None or INCOMPLETE_TAG in snap_lv.tags:
        raise NotFound(f"snapshot {snapshot} does not exist")
    if volume not in known:
        raise NotFound(f"{volume} does not exist")
    restore(action, disks, host, volume, known[volume], snapshot, snap_lv, keep_active=True)


# ----------------------------------------------------------------- monitor

def monitor(action: Action, argv: list[str]) -> None:
    (ds_arg,) = expect(argv, 1, "monitor DSID")
    ds_id = parse_id(ds_arg, "datastore id")
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

ACTIONS = {
    "clone": clone, "ln": ln, "mkimage": mkimage, "mkswap": mkswap, "context": context,
    "mv": mv, "mvds": mvds, "cpds": cpds, "delete": delete, "premigrate": premigrate,
    "postmigrate": postmigrate, "failmigrate": failmigrate, "resize": resize,
    "snap_create": snap_create, "snap_delete": snap_delete, "snap_revert": snap_revert,
    "monitor": monitor,
}


main = runtime.FrontDoor(
    "TM action", ACTIONS,
    stdin=lambda name, argv: name in {"premigrate", "postmigrate", "failmigrate", "monitor"},
    strip_stdin=True).main

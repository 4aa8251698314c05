"""TM commands, OpenNebula 3.x layout (`/usr/lib/one/tm_commands/gfs2clvm/tm_*.sh`).

3.x passes `host:path` arguments with VM paths `/var/lib/one/<vid>/images/
disk.N` and no datastores: every LV lives in the first configured VG.  The
same disk operations as the modern layout run underneath; 3.x moves and
deletes whole VM directories, so those walk the directory's disk.N links on
GFS2 (the truth about what the VM uses) plus the VM's own LVs by exact name.

    CLONE   tm_clone.sh   fe:SOURCE host:.../disk.N [SIZE_MB]
    LN      tm_ln.sh      fe:SOURCE host:.../disk.N
    MKSWAP  tm_mkswap.sh  SIZE_MB host:.../disk.N
    MKIMAGE tm_mkimage.sh SIZE_MB FSTYPE host:.../disk.N
    MV      tm_mv.sh      hostA:path hostB:path        (a dir or one disk.N)
    DELETE  tm_delete.sh  host:/var/lib/one/<vid>/images
    CONTEXT tm_context.sh FILE... host:.../disk.N
"""

from __future__ import annotations

from ..names import HostPath, vm_disk_lv
from ..volumes.lifecycle import (delete_disk, linked_disks, make_volatile, move_disk,
                                 remove_vm_disk, vm_volumes)
from ..volumes.ops import Disks, Volume, is_frontend
from . import paths, runtime
from .args import ContextDisk, DiskFromImage, Move, NewDisk, Remove
from .args3 import parse_tm3
from .paths import DiskArg
from .runtime import Action
from .vmdisks import build_context, clone_disk, link_disk


def clone3(action: Action, req: DiskFromImage) -> None:
    clone_disk(action, req.source, req.disk, action.config.default_vg, req.size_mb, legacy=True)


def ln3(action: Action, req: DiskFromImage) -> None:
    link_disk(action, req.source, req.disk, readonly=False, legacy=True)


def mkimage3(action: Action, req: NewDisk) -> None:
    make_volatile(action, req.size_mb, req.disk, action.config.default_vg, req.fs)


mkswap3 = mkimage3


def context3(action: Action, req: ContextDisk) -> None:
    build_context(action, list(req.files), req.disk)


def mv3(action: Action, req: Move) -> None:
    disks = Disks(action)
    src, dst = req.src, req.dst
    vm_dir = paths.vm_dir3(action.config, req.vm_id)
    if isinstance(src, DiskArg):
        # a persistent disk saved back at epilog: release it (its data is the image)
        host = disks.worker(src.host)
        for disk_id, _, volume in linked_disks(disks, host, vm_dir):
            if disk_id == src.disk_id and volume is not None:
                move_disk(action, disks, volume, disk_id, src, dst, readonly=False)
        return
    # the whole VM directory: stop (dst = front-end), resume (src = front-end), migrate.
    # Link paths are the same on both sides: the host side's dir is on GFS2.
    worker_side = dst if not is_frontend(dst.host) else src
    for disk_id, link, volume in linked_disks(disks, disks.worker(worker_side.host), vm_dir):
        if volume is not None:
            move_disk(action, disks, volume, disk_id, HostPath(src.host, link),
                      HostPath(dst.host, link), readonly=False)


def delete3(action: Action, req: Remove) -> None:
    disks = Disks(action)
    target = req.target
    host = disks.worker(target.host)
    if isinstance(target, DiskArg):
        volume = next((v for d, _, v in linked_disks(disks, host, target.sysdir)
                       if d == target.disk_id), None)
        delete_disk(action, disks, host, target.path, target.disk_id, volume)
        return
    for disk_id, link, volume in linked_disks(disks, host, target.path):
        delete_disk(action, disks, host, link, disk_id, volume)
    # the VM's own LVs that no link names any more (an interrupted deploy), and
    # snapshots whose disk is gone: by exact name, each disk with its snapshots
    vg = action.config.default_vg
    orphans = {Volume(vg, vm_disk_lv(req.vm_id, disk_id))
               for _, disk_id in vm_volumes(action, host, [vg])}
    for volume in sorted(orphans, key=str):
        remove_vm_disk(action, disks, host, volume)
    action.cluster.run_steps(host, action.cluster.mount_check() + [["rm", "-rf", target.path]])
    action.log(f"removed {target.path}")


COMMANDS = runtime.entries(parse_tm3, {
    "clone": clone3, "ln": ln3, "mkswap": mkswap3, "mkimage": mkimage3, "mv": mv3,
    "delete": delete3, "context": context3})


main = runtime.FrontDoor("3.x TM command", COMMANDS, label="tm_{}", legacy=True).main

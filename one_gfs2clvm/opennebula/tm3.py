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

from ..errors import InvalidArgument
from ..names import HostPath, parse_lv_name
from . import paths, runtime
from ..names import parse_id
from ..volumes.ops import Disks, Volume, is_frontend
from .args import expect, image_source
from .paths import DiskArg
from .runtime import Action
from ..volumes.lifecycle import (delete_disk, linked_disks, make_volatile, move_disk,
                                 remove_vm_disk)
from .vmdisks import build_context, clone_disk, link_disk


def _disk(action: Action, arg: str) -> DiskArg:
    """A host-side 3.x disk, <gfs2>/<vid>/images/disk.N (paths.disk_arg3); the
    VM id comes from it."""
    dst = paths.disk_arg3(action.config, arg)
    if dst.path != f"{paths.vm_dir3(action.config, dst.vm_id)}/disk.{dst.disk_id}":
        raise InvalidArgument(f"refusing disk {arg!r}: it must be "
                              f"{paths.vm_dir3(action.config, dst.vm_id)}/disk.<N>")
    action.bind_vm(dst.vm_id)
    return dst


def clone3(action: Action, argv: list[str]) -> None:
    src_arg, dst_arg, size_arg = expect(argv, 2, "tm_clone.sh fe:SOURCE host:dir/disk.N [SIZE]",
                                       optional=1)
    size_mb = parse_id(size_arg, "size") if size_arg else 0
    dst = _disk(action, dst_arg)
    clone_disk(action, image_source(action.config, src_arg, legacy=True), dst,
               action.config.default_vg, size_mb, legacy=True)


def ln3(action: Action, argv: list[str]) -> None:
    src_arg, dst_arg = expect(argv, 2, "tm_ln.sh fe:SOURCE host:dir/disk.N")
    dst = _disk(action, dst_arg)
    link_disk(action, image_source(action.config, src_arg, legacy=True), dst, readonly=False,
              legacy=True)


def mkswap3(action: Action, argv: list[str]) -> None:
    size_arg, dst_arg = expect(argv, 2, "tm_mkswap.sh SIZE host:dir/disk.N")
    size_mb = parse_id(size_arg, "size")
    make_volatile(action, size_mb, _disk(action, dst_arg), action.config.default_vg, "swap")


def mkimage3(action: Action, argv: list[str]) -> None:
    size_arg, fs, dst_arg = expect(argv, 3, "tm_mkimage.sh SIZE FSTYPE host:dir/disk.N")
    size_mb = parse_id(size_arg, "size")
    make_volatile(action, size_mb, _disk(action, dst_arg), action.config.default_vg,
                  "" if fs in ("raw", "-") else fs)


def context3(action: Action, argv: list[str]) -> None:
    if len(argv) < 2:
        raise InvalidArgument("usage: tm_context.sh FILE... host:dir/disk.N")
    *files, dst_arg = argv
    build_context(action, files, _disk(action, dst_arg))


def mv3(action: Action, argv: list[str]) -> None:
    src_arg, dst_arg = expect(argv, 2, "tm_mv.sh hostA:path hostB:path")
    config = action.config
    if paths.is_disk_path(src_arg):
        src = paths.disk_arg3(config, src_arg, "source disk")
        dst = paths.disk_arg3(config, dst_arg, "destination disk")
    else:
        src = paths.dir_arg3(config, src_arg, "source directory")
        dst = paths.dir_arg3(config, dst_arg, "destination directory")
    if src.vm_id != dst.vm_id:
        raise InvalidArgument(f"refusing mv {src_arg!r} {dst_arg!r}: two different VMs")
    action.bind_vm(src.vm_id)
    disks = Disks(action)
    vm_dir = paths.vm_dir3(config, src.vm_id)
    if isinstance(src, DiskArg):
        # a persistent disk saved back at epilog: release it (its data is the image)
        if src.disk_id != dst.disk_id:
            raise InvalidArgument(f"refusing mv {src_arg!r} {dst_arg!r}: not the same disk")
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


def delete3(action: Action, argv: list[str]) -> None:
    (path_arg,) = expect(argv, 1, "tm_delete.sh host:/var/lib/one/<vid>/images")
    if paths.is_disk_path(path_arg):
        disk = _disk(action, path_arg)
        disks = Disks(action)
        host = disks.worker(disk.host)
        volume = next((v for d, _, v in linked_disks(disks, host, disk.sysdir)
                       if d == disk.disk_id), None)
        delete_disk(action, disks, host, disk.path, disk.disk_id, volume)
        return
    target = paths.dir_arg3(action.config, path_arg)
    directory = paths.vm_dir3(action.config, target.vm_id)
    if target.path != directory:
        raise InvalidArgument(f"refusing VM directory {path_arg!r}: it must be {directory}")
    action.bind_vm(target.vm_id)
    disks = Disks(action)
    host = disks.worker(target.host)
    for disk_id, link, volume in linked_disks(disks, host, directory):
        delete_disk(action, disks, host, link, disk_id, volume)
    # the VM's own LVs that no link names any more (an interrupted deploy): exact names
    vg = action.config.default_vg
    for lv in action.cluster.lvm(host).lvs(vg):
        try:
            name = parse_lv_name(lv.name)
        except InvalidArgument:
            continue
        if name.kind == "vm_disk" and name.vm_id == action.vm_id:
            remove_vm_disk(action, disks, host, Volume(vg, lv.name))
    action.cluster.run_steps(host, action.cluster.mount_check() + [["rm", "-rf", target.path]])
    action.log(f"removed {target.path}")


COMMANDS = {"clone": clone3, "ln": ln3, "mkswap": mkswap3, "mkimage": mkimage3, "mv": mv3,
            "delete": delete3, "context": context3}


main = runtime.FrontDoor("3.x TM command", COMMANDS, label="tm_{}", legacy=True).main

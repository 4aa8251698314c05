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

import posixpath

from ..errors import InvalidArgument
from ..names import HostPath, parse_host_path, parse_lv_name
from . import runtime
from .disks import Disks, Volume, is_frontend
from .runtime import Action
from .tm import (DiskArg, _args, _disk_arg, _int, _remove_vm_disk, _source, build_context,
                 clone_disk, delete_disk, link_disk, linked_disks, make_volatile, move_disk)


def _vm_of(path: str) -> int:
    """VM id from a 3.x path: /var/lib/one/<vid>/images[/disk.N]."""
    parts = [part for part in path.split("/") if part]
    if "images" not in parts or parts.index("images") == 0:
        raise InvalidArgument(f"not a 3.x VM path (.../<vid>/images/...): {path!r}")
    return _int(parts[parts.index("images") - 1], "VM id")


def _disk(action: Action, arg: str) -> DiskArg:
    dst = _disk_arg(arg)
    action.vm_id = _vm_of(dst.path)
    return dst


def clone3(action: Action, argv: list[str]) -> None:
    src_arg, dst_arg, size_arg = _args(argv, 2, "tm_clone.sh fe:SOURCE host:dir/disk.N [SIZE]",
                                       optional=1)
    dst = _disk(action, dst_arg)
    clone_disk(action, _source(src_arg), dst, action.config.default_vg,
               _int(size_arg, "size") if size_arg else 0)


def ln3(action: Action, argv: list[str]) -> None:
    src_arg, dst_arg = _args(argv, 2, "tm_ln.sh fe:SOURCE host:dir/disk.N")
    link_disk(action, _source(src_arg), _disk(action, dst_arg), readonly=False)


def mkswap3(action: Action, argv: list[str]) -> None:
    size_arg, dst_arg = _args(argv, 2, "tm_mkswap.sh SIZE host:dir/disk.N")
    make_volatile(action, _int(size_arg, "size"), _disk(action, dst_arg),
                  action.config.default_vg, "swap")


def mkimage3(action: Action, argv: list[str]) -> None:
    size_arg, fs, dst_arg = _args(argv, 3, "tm_mkimage.sh SIZE FSTYPE host:dir/disk.N")
    make_volatile(action, _int(size_arg, "size"), _disk(action, dst_arg),
                  action.config.default_vg, "" if fs in ("raw", "-") else fs)


def context3(action: Action, argv: list[str]) -> None:
    if len(argv) < 2:
        raise InvalidArgument("usage: tm_context.sh FILE... host:dir/disk.N")
    *files, dst_arg = argv
    build_context(action, files, _disk(action, dst_arg))


def mv3(action: Action, argv: list[str]) -> None:
    src_arg, dst_arg = _args(argv, 2, "tm_mv.sh hostA:path hostB:path")
    src, dst = parse_host_path(src_arg), parse_host_path(dst_arg)
    action.vm_id = _vm_of(dst.path if "images" in dst.path else src.path)
    disks = Disks(action)
    if posixpath.basename(src.path).startswith("disk."):
        # a persistent disk saved back at epilog: release it (its data is the image)
        disk = _disk_arg(src_arg)
        host = disks.worker(disk.host)
        for disk_id, _, volume in linked_disks(disks, host, disk.sysdir):
            if disk_id == disk.disk_id and volume is not None:
                move_disk(action, disks, volume, disk_id, src, dst, readonly=False)
        return
    # the whole VM directory: stop (dst = front-end), resume (src = front-end), migrate.
    # Link paths are the same on both sides: the worker side's dir is on GFS2.
    worker_side = dst if not is_frontend(dst.host) else src
    directory = _images_dir(worker_side.path)
    for disk_id, link, volume in linked_disks(disks, disks.worker(worker_side.host), directory):
        if volume is not None:
            move_disk(action, disks, volume, disk_id, HostPath(src.host, link),
                      HostPath(dst.host, link), readonly=False)


def _images_dir(path: str) -> str:
    """3.x uses /var/lib/one/<vid>/images on hosts and /var/lib/one/<vid> on the FE."""
    path = path.rstrip("/")
    return path if path.endswith("/images") else posixpath.join(path, "images")


def delete3(action: Action, argv: list[str]) -> None:
    (path_arg,) = _args(argv, 1, "tm_delete.sh host:/var/lib/one/<vid>/images")
    target = parse_host_path(path_arg)
    action.vm_id = _vm_of(target.path)
    disks = Disks(action)
    host = disks.worker(target.host)
    if posixpath.basename(target.path).startswith("disk."):
        disk = _disk_arg(path_arg)
        volume = next((v for d, _, v in linked_disks(disks, host, disk.sysdir)
                       if d == disk.disk_id), None)
        delete_disk(action, disks, host, disk.path, disk.disk_id, volume)
        return
    directory = _images_dir(target.path)
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
            _remove_vm_disk(action, disks, host, Volume(vg, lv.name))
    action.cluster.remote(host).run(["rm", "-rf", target.path])
    action.log(f"removed {target.path}")


COMMANDS = {"clone": clone3, "ln": ln3, "mkswap": mkswap3, "mkimage": mkimage3, "mv": mv3,
            "delete": delete3, "context": context3}


def main(name: str, argv: list[str]) -> int:
    function = COMMANDS.get(name)
    if function is None:
        import sys
        sys.stderr.write(f"gfs2clvm: unknown 3.x TM command {name!r}\n")
        return 2
    return runtime.run(f"tm_{name}", function, argv, legacy=True)

"""The modern calling conventions, parsed once into typed, immutable requests:
TM argv (what oned writes into transfer files, reference 3.3) and datastore
actions (DS_DRIVER_ACTION_DATA, base64 XML on stdin or as the first argument).
Nothing here calls a worker or oned.

The request types are shared by both layouts: the 3.x parsers (args3.py) fill
the same types, with `ds_id` None (3.x has no datastores).  A request whose
`vm_id` is set binds the action to that VM before the action runs
(runtime.entries): the VM id travels in the request, nowhere else.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from ..errors import InvalidArgument
from ..names import (HOST_RE, FileSource, IsoxSource, LvSource, check_host, parse_id,
                     parse_lv_name, parse_source)
from ..volumes.ops import Volume, image_volume, is_frontend
from . import paths
from .paths import DirArg, DiskArg


def expect(argv: list[str], count: int, usage: str, optional: int = 0) -> list[str]:
    """argv with `count` arguments and up to `optional` more (missing ones "")."""
    if not count <= len(argv) <= count + optional:
        raise InvalidArgument(f"usage: {usage} (got {len(argv)} arguments)")
    return argv + [""] * (count + optional - len(argv))


_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def tm_source(arg: str):
    """SOURCE as oned passes it: `<fe>:<SOURCE>`, or raw when it contains ':'.
    Schemes other than lvm://, vol://, http(s):// (file://, ...) and host parts
    that are no host name (`-o...`) are refused."""
    for scheme in ("lvm://", "vol://", "http://", "https://"):
        if arg.startswith(scheme):
            return parse_source(arg)
    if _SCHEME_RE.match(arg):
        raise InvalidArgument(f"refusing SOURCE {arg!r}: unsupported scheme")
    host, sep, rest = arg.partition(":")
    if sep and not HOST_RE.fullmatch(host):
        raise InvalidArgument(f"refusing SOURCE {arg!r}: {host!r} is not a host name")
    return parse_source(rest if sep else arg)


def image_source(config, arg: str, legacy: bool = False):
    """A clone/ln SOURCE, checked before any remote call: an image file in a
    datastore directory or an .isox (paths.check_image_file), an image LV
    (<vg>/lv-oneimg-<id>), lvm:// or vol://."""
    source = tm_source(arg)
    if isinstance(source, (FileSource, IsoxSource)):
        paths.check_image_file(config, source.path, legacy)
    elif isinstance(source, LvSource):
        config.check_vg(source.vg)
        if parse_lv_name(source.lv).kind != "image":
            raise InvalidArgument(f"refusing SOURCE {arg!r}: an LV SOURCE must be an image "
                                  f"LV <vg>/lv-oneimg-<id> (lvm://<vm>/<disk> copies a VM's "
                                  f"disk, with its rights checked)")
    return source


# ----------------------------------------------------------------- requests

@dataclass(frozen=True)
class DiskFromImage:
    """clone / ln: the VM disk `disk` from the checked image SOURCE `source`."""
    vm_id: int
    source: object                  # names.FileSource / IsoxSource / LvSource / URL sources
    disk: DiskArg
    ds_id: int | None = None        # the image datastore (None: 3.x)
    size_mb: int = 0                # 3.x clone's optional SIZE


@dataclass(frozen=True)
class NewDisk:
    """mkimage / mkswap: a volatile disk of `size_mb` MiB."""
    vm_id: int
    size_mb: int
    fs: str | None                  # "swap", a filesystem, "" (raw); None: from the VM template
    disk: DiskArg
    ds_id: int | None = None        # the system datastore


@dataclass(frozen=True)
class ContextDisk:
    """context: the ISO of `files` as `disk`."""
    vm_id: int
    files: tuple[str, ...]
    disk: DiskArg
    ds_id: int | None = None


@dataclass(frozen=True)
class Move:
    """mv: one disk (DiskArg twice) or the whole VM directory (DirArg twice)."""
    vm_id: int
    src: DiskArg | DirArg
    dst: DiskArg | DirArg
    ds_id: int | None = None


@dataclass(frozen=True)
class Remove:
    """delete: one disk or the VM directory."""
    vm_id: int
    target: DiskArg | DirArg
    ds_id: int | None = None


@dataclass(frozen=True)
class SaveDisk:
    """mvds / cpds: `disk` (or its snapshot `snap_id`, -1: none) into the image LV `image`."""
    vm_id: int
    disk: DiskArg
    image: Volume
    ds_id: int
    snap_id: int = -1


@dataclass(frozen=True)
class Migration:
    """premigrate / postmigrate / failmigrate between two hosts."""
    vm_id: int
    phase: str
    src_host: str
    dst_host: str
    sysdir: str
    ds_id: int                      # the system datastore
    caller: str                     # CALLING_TM ("" when oned called us)
    forwarded: tuple[str, ...]      # the five arguments handed to other TMs


@dataclass(frozen=True)
class DiskSize:
    """resize: `disk` grows to `size_mb` MiB."""
    vm_id: int
    disk: DiskArg
    size_mb: int
    ds_id: int


@dataclass(frozen=True)
class DiskSnapshot:
    """snap_create / snap_delete / snap_revert: snapshot `snap_id` of `disk`."""
    vm_id: int
    disk: DiskArg
    snap_id: int
    ds_id: int


@dataclass(frozen=True)
class DatastoreOnly:
    """TM monitor: a datastore, no VM."""
    ds_id: int
    vm_id: None = None


@dataclass(frozen=True)
class DriverCall:
    """A datastore action: the object id and the parsed DS_DRIVER_ACTION_DATA."""
    obj_id: int
    data: object                    # xml.DriverAction
    vm_id: None = None


# ----------------------------------------------------------------- modern TM argv

def _vm_ds(vm_arg: str, ds_arg: str) -> tuple[int, int]:
    return parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")


def _disk_from_image(action, name: str, argv: list[str]) -> DiskFromImage:
    src_arg, dst_arg, vm_arg, ds_arg = expect(argv, 4, f"{name} fe:SOURCE host:dir/disk.N "
                                                       f"VMID DSID")
    vm_id, ds_id = _vm_ds(vm_arg, ds_arg)
    dst = paths.disk_arg(action.config, dst_arg, vm_id)
    return DiskFromImage(vm_id, image_source(action.config, src_arg), dst, ds_id)


def _new_disk(action, name: str, argv: list[str]) -> NewDisk:
    if name == "mkswap":
        size_arg, dst_arg, vm_arg, ds_arg = expect(argv, 4, "mkswap SIZE host:dir/disk.N "
                                                            "VMID DSID")
        fs = "swap"
    else:
        size_arg, fmt, dst_arg, vm_arg, ds_arg = expect(
            argv, 5, "mkimage SIZE FORMAT host:dir/disk.N VMID DSID")
        fs = "swap" if fmt == "swap" else None
    vm_id, ds_id = _vm_ds(vm_arg, ds_arg)
    size_mb = parse_id(size_arg, "size")
    return NewDisk(vm_id, size_mb, fs, paths.disk_arg(action.config, dst_arg, vm_id, ds_id),
                   ds_id)


def _context(action, name: str, argv: list[str]) -> ContextDisk:
    if len(argv) < 4:
        raise InvalidArgument("usage: context FILE... host:dir/disk.N VMID DSID")
    *files, dst_arg, vm_arg, ds_arg = argv
    vm_id, ds_id = _vm_ds(vm_arg, ds_arg)
    return ContextDisk(vm_id, tuple(files),
                       paths.disk_arg(action.config, dst_arg, vm_id, ds_id), ds_id)


def _move(action, name: str, argv: list[str]) -> Move:
    src_arg, dst_arg, vm_arg, ds_arg = expect(argv, 4, "mv hostA:path hostB:path VMID DSID")
    vm_id, ds_id = _vm_ds(vm_arg, ds_arg)
    config = action.config
    if not paths.is_disk_path(dst_arg):
        # the VM directory; a migration may come from another system datastore
        return Move(vm_id,
                    paths.dir_arg(config, src_arg, vm_id, what="source directory"),
                    paths.dir_arg(config, dst_arg, vm_id, ds_id, what="destination directory"),
                    ds_id)
    src = paths.disk_arg(config, src_arg, vm_id, what="source disk")
    dst = paths.disk_arg(config, dst_arg, vm_id, what="destination disk")
    if src.disk_id != dst.disk_id:
        raise InvalidArgument(f"refusing mv {src_arg!r} {dst_arg!r}: not the same disk")
    return Move(vm_id, src, dst, ds_id)


def _remove(action, name: str, argv: list[str]) -> Remove:
    path_arg, vm_arg, ds_arg = expect(argv, 3, "delete host:path VMID DSID")
    vm_id, ds_id = _vm_ds(vm_arg, ds_arg)
    if paths.is_disk_path(path_arg):
        target = paths.disk_arg(action.config, path_arg, vm_id)
    else:                        # the VM directory: of this VM in this system datastore
        target = paths.dir_arg(action.config, path_arg, vm_id, ds_id)
    return Remove(vm_id, target, ds_id)


def _save_disk(action, name: str, argv: list[str]) -> SaveDisk:
    snap_arg = "-1"
    if name == "cpds":
        disk_arg, source_arg, snap_arg, vm_arg, ds_arg = expect(
            argv, 5, "cpds host:dir/disk.N SOURCE SNAPID VMID DSID")
    else:
        disk_arg, source_arg, vm_arg, ds_arg = expect(argv, 4, "mvds host:dir/disk.N SOURCE "
                                                               "VMID DSID")
    vm_id, ds_id = _vm_ds(vm_arg, ds_arg)
    snap_id = -1 if snap_arg == "-1" else parse_id(snap_arg, "snapshot id")
    disk = paths.disk_arg(action.config, disk_arg, vm_id)
    image = image_volume(action.config, tm_source(source_arg), name)
    return SaveDisk(vm_id, disk, image, ds_id, snap_id)


def _migration(action, phase: str, argv: list[str]) -> Migration:
    src, dst, sysdir, vm_arg, ds_arg, caller = expect(
        argv, 5, f"{phase} SRCHOST DSTHOST SYSDIR VMID SYSDS [CALLING_TM]", optional=1)
    vm_id, sys_ds = _vm_ds(vm_arg, ds_arg)
    src, dst = check_host(src), check_host(dst)
    for host in (src, dst):            # a live migration runs between two hosts
        if is_frontend(host):
            raise InvalidArgument(f"{phase}: {host} is the front-end, not a host a VM runs on")
    paths.check_sysdir(action.config, sysdir, vm_id, sys_ds)
    if caller and not HOST_RE.fullmatch(caller):
        raise InvalidArgument(f"invalid CALLING_TM {caller!r}")
    return Migration(vm_id, phase, src, dst, sysdir, sys_ds, caller,
                     (src, dst, sysdir, vm_arg, ds_arg))


def _disk_size(action, name: str, argv: list[str]) -> DiskSize:
    disk_arg, size_arg, vm_arg, ds_arg = expect(argv, 4, "resize host:dir/disk.N SIZE VMID DSID")
    vm_id, ds_id = _vm_ds(vm_arg, ds_arg)
    disk = paths.disk_arg(action.config, disk_arg, vm_id)
    return DiskSize(vm_id, disk, parse_id(size_arg, "size"), ds_id)


def _disk_snapshot(action, name: str, argv: list[str]) -> DiskSnapshot:
    disk_arg, snap_arg, vm_arg, ds_arg = expect(argv, 4, f"{name} host:dir/disk.N SNAPID "
                                                         f"VMID DSID")
    vm_id, ds_id = _vm_ds(vm_arg, ds_arg)
    disk = paths.disk_arg(action.config, disk_arg, vm_id)
    return DiskSnapshot(vm_id, disk, parse_id(snap_arg, "snapshot id"), ds_id)


def _datastore_only(action, name: str, argv: list[str]) -> DatastoreOnly:
    (ds_arg,) = expect(argv, 1, f"{name} DSID")
    return DatastoreOnly(parse_id(ds_arg, "datastore id"))


TM_REQUESTS = {
    "clone": _disk_from_image, "ln": _disk_from_image, "mkimage": _new_disk,
    "mkswap": _new_disk, "context": _context, "mv": _move, "delete": _remove,
    "mvds": _save_disk, "cpds": _save_disk, "premigrate": _migration,
    "postmigrate": _migration, "failmigrate": _migration, "resize": _disk_size,
    "snap_create": _disk_snapshot, "snap_delete": _disk_snapshot,
    "snap_revert": _disk_snapshot, "monitor": _datastore_only,
}


def parse_tm(action, name: str, argv: list[str]):
    """The modern TM's one parser: `name`'s argv as its typed request."""
    return TM_REQUESTS[name](action, name, argv)


# ----------------------------------------------------------------- datastore actions

def driver_action(action, argv: list[str]):
    """(object id, DriverAction) from either datastore calling convention."""
    from .xml import parse_driver_action
    if len(argv) == 1:
        payload, obj = action.stdin, argv[0]
    elif len(argv) == 2:
        payload, obj = argv[0].encode(), argv[1]
    else:
        raise InvalidArgument(f"usage: {action.name} ID (base64 XML on stdin), "
                              f"or {action.name} BASE64_XML ID")
    obj_id = parse_id(obj, "id")
    if not payload.strip():
        raise InvalidArgument(f"{action.name}: no DS_DRIVER_ACTION_DATA on stdin")
    return obj_id, parse_driver_action(payload.strip())


def parse_datastore(action, name: str, argv: list[str]) -> DriverCall:
    """The datastore actions' one parser."""
    return DriverCall(*driver_action(action, argv))


def action_vg(config, data) -> str:
    """The VG of the action's DATASTORE (VG_NAME, else the first configured VG)."""
    ds = data.datastore
    if ds is None:
        raise InvalidArgument("DS_DRIVER_ACTION_DATA has no DATASTORE")
    return config.check_vg(ds.vg_name or config.default_vg)


def action_bridges(config, data) -> list[str]:
    """The DATASTORE's BRIDGE_LIST, else [storage] bridge_hosts."""
    ds = data.datastore
    return (ds.bridge_list if ds is not None else []) or list(config.bridge_hosts)


def reply(line: str) -> None:
    """A datastore action's answer to oned: one line on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

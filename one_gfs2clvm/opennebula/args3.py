"""The OpenNebula 3.x calling conventions, parsed once into typed, immutable
requests: TM commands (`tm_<name>.sh` argv, host:path arguments whose paths
carry the VM id) and image-manager actions (`<action> ... ID [ID]`).  The TM
commands fill the same request types as the modern layout (args.py) with
`ds_id` None: 3.x has no datastores, every LV lives in the first configured VG.
Nothing here calls a worker or oned.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgument
from ..names import parse_id
from . import paths
from .args import ContextDisk, DiskFromImage, Move, NewDisk, Remove, expect, image_source
from .paths import DiskArg

# ----------------------------------------------------------------- TM commands


def _disk(config, arg: str) -> DiskArg:
    """A host-side 3.x disk, <gfs2>/<vid>/images/disk.N (paths.disk_arg3)."""
    dst = paths.disk_arg3(config, arg)
    if dst.path != f"{paths.vm_dir3(config, dst.vm_id)}/disk.{dst.disk_id}":
        raise InvalidArgument(f"refusing disk {arg!r}: it must be "
                              f"{paths.vm_dir3(config, dst.vm_id)}/disk.<N>")
    return dst


def _clone(action, name: str, argv: list[str]) -> DiskFromImage:
    src_arg, dst_arg, size_arg = expect(argv, 2, "tm_clone.sh fe:SOURCE host:dir/disk.N [SIZE]",
                                       optional=1)
    size_mb = parse_id(size_arg, "size") if size_arg else 0
    dst = _disk(action.config, dst_arg)
    source = image_source(action.config, src_arg, legacy=True)
    return DiskFromImage(dst.vm_id, source, dst, size_mb=size_mb)


def _ln(action, name: str, argv: list[str]) -> DiskFromImage:
    src_arg, dst_arg = expect(argv, 2, "tm_ln.sh fe:SOURCE host:dir/disk.N")
    dst = _disk(action.config, dst_arg)
    return DiskFromImage(dst.vm_id, image_source(action.config, src_arg, legacy=True), dst)


def _new_disk(action, name: str, argv: list[str]) -> NewDisk:
    if name == "mkswap":
        size_arg, dst_arg = expect(argv, 2, "tm_mkswap.sh SIZE host:dir/disk.N")
        fs = "swap"
    else:
        size_arg, fs, dst_arg = expect(argv, 3, "tm_mkimage.sh SIZE FSTYPE host:dir/disk.N")
        fs = "" if fs in ("raw", "-") else fs
    size_mb = parse_id(size_arg, "size")
    dst = _disk(action.config, dst_arg)
    return NewDisk(dst.vm_id, size_mb, fs, dst)


def _context(action, name: str, argv: list[str]) -> ContextDisk:
    if len(argv) < 2:
        raise InvalidArgument("usage: tm_context.sh FILE... host:dir/disk.N")
    *files, dst_arg = argv
    dst = _disk(action.config, dst_arg)
    return ContextDisk(dst.vm_id, tuple(files), dst)


def _move(action, name: str, argv: list[str]) -> Move:
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
    if isinstance(src, DiskArg) and src.disk_id != dst.disk_id:
        raise InvalidArgument(f"refusing mv {src_arg!r} {dst_arg!r}: not the same disk")
    return Move(src.vm_id, src, dst)


def _remove(action, name: str, argv: list[str]) -> Remove:
    (path_arg,) = expect(argv, 1, "tm_delete.sh host:/var/lib/one/<vid>/images")
    if paths.is_disk_path(path_arg):
        disk = _disk(action.config, path_arg)
        return Remove(disk.vm_id, disk)
    target = paths.dir_arg3(action.config, path_arg)
    directory = paths.vm_dir3(action.config, target.vm_id)
    if target.path != directory:
        raise InvalidArgument(f"refusing VM directory {path_arg!r}: it must be {directory}")
    return Remove(target.vm_id, target)


TM3_REQUESTS = {"clone": _clone, "ln": _ln, "mkswap": _new_disk, "mkimage": _new_disk,
                "mv": _move, "delete": _remove, "context": _context}


def parse_tm3(action, name: str, argv: list[str]):
    """The 3.x TM's one parser: `name`'s argv as its typed request."""
    return TM3_REQUESTS[name](action, name, argv)


# ----------------------------------------------------------------- image manager

@dataclass(frozen=True)
class ImageCall3:
    """A 3.x image-manager action on image `image_id`.  `path`: cp's PATH, rm's
    SOURCE, mv's SRC (a VM disk path); `fs`, `size_mb`: mkfs; `dst`: mv's DST
    (`-` for a save-as, the image's SOURCE for a persistent save-back)."""
    image_id: int
    path: str = ""
    fs: str = ""
    size_mb: int = 0
    dst: str = ""
    vm_id: None = None      # mv reads a VM's disk, but like oned's own 3.x driver it
                            # does not serialise with that VM's TM actions


def _image_id(text: str, repeated: str) -> int:
    image_id = parse_id(text, "image id")
    if repeated and repeated != text:
        raise InvalidArgument(f"image id given twice and different: {text} {repeated}")
    return image_id


def _image_cp(action, name: str, argv: list[str]) -> ImageCall3:
    path, id_arg, again = expect(argv, 2, "cp PATH ID", optional=1)
    return ImageCall3(_image_id(id_arg, again), path=path)


def _image_mkfs(action, name: str, argv: list[str]) -> ImageCall3:
    fs, size_arg, id_arg, again = expect(argv, 3, "mkfs FSTYPE SIZE_MB ID", optional=1)
    image_id = _image_id(id_arg, again)
    return ImageCall3(image_id, fs="" if fs in ("raw", "-", "") else fs,
                      size_mb=parse_id(size_arg, "size"))


def _image_mv(action, name: str, argv: list[str]) -> ImageCall3:
    src, dst, id_arg, again = expect(argv, 3, "mv SRC DST|- ID", optional=1)
    return ImageCall3(_image_id(id_arg, again), path=src, dst=dst)


def _image_rm(action, name: str, argv: list[str]) -> ImageCall3:
    source, id_arg, again = expect(argv, 2, "rm SOURCE ID", optional=1)
    return ImageCall3(_image_id(id_arg, again), path=source)


IMAGE3_REQUESTS = {"cp": _image_cp, "mkfs": _image_mkfs, "mv": _image_mv, "rm": _image_rm}


def parse_image3(action, name: str, argv: list[str]) -> ImageCall3:
    """The 3.x image manager's one parser."""
    return IMAGE3_REQUESTS[name](action, name, argv)

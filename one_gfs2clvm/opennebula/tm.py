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

import io
import os
import posixpath
import tarfile

from ..errors import DriverError, InvalidArgument, LockContention, NotFound
from ..names import (HOST_RE, FileSource, IsoxSource, LvmSource, LvSource, UrlSource, Use,
                     VolSource, check_host, disk_id_from_path, parse_id, parse_lv_name,
                     vm_disk_lv)
from ..volumes.copies import copy_into, restore
from ..volumes.ops import (INCOMPLETE_TAG, MiB, Disks, Volume, image_volume, is_frontend,
                           mkfs_command, refuse_if_open, snapshot_volume, snapshots_of,
                           volume_of, zero_and_remove)
from . import paths, runtime
from .args import expect, image_source, tm_source
from .paths import DiskArg
from .runtime import Action

SYSTEM_TM = "gfs2clvm"       # the TM_MAD of this driver (volatile disks belong to it)


def _disk_arg(action: Action, text: str, vm_id: int, system_ds: int | None = None) -> DiskArg:
    return paths.disk_arg(action.config, text, vm_id, system_ds)


# ----------------------------------------------------------------- lookups

def datastore_vg(action: Action, ds_id: int | None) -> str:
    """The VG of a datastore (template VG_NAME), else the first configured VG."""
    if ds_id is None:
        return action.config.default_vg
    ds = action.api.datastore(ds_id)
    return action.config.check_vg(ds.vg_name or action.config.default_vg)


def bridges(action: Action, ds_id: int | None) -> list[str]:
    if ds_id is None:
        return list(action.config.bridge_hosts)
    return action.api.datastore(ds_id).bridge_list or list(action.config.bridge_hosts)


def disk_volume(action: Action, vm, disk_id: int, ds_id: int | None) -> Volume | None:
    """The LV a VM disk uses, from the VM template (None: not an LV, e.g. .isox)."""
    disk = vm.disk(disk_id)
    if disk.source and (disk.persistent or not disk.clone):
        source = tm_source(disk.source)
        if isinstance(source, IsoxSource):
            return None
        if isinstance(source, LvSource):
            return image_volume(action.config, source, f"disk {disk_id} of VM {vm.id}")
    return Volume(datastore_vg(action, ds_id), vm_disk_lv(vm.id, disk_id))


def linked_volume(disks: Disks, host: str, link: str) -> Volume | None:
    """The LV a disk.N symlink points at (the truth on GFS2), if it is one of ours."""
    target = disks.read_link(host, link)
    if not target or not target.startswith("/dev/"):
        return None
    try:
        return volume_of(target)
    except InvalidArgument:
        return None


def check_may_use(action: Action, vm, what: str, owner_uid: int, owner_gid: int, perms,
                  right: str = "use") -> None:
    """The VM's owner must have `right` (use, manage) on what it copies."""
    from .xml import may
    user = action.api.user(vm.uid)
    if not may(user, owner_uid, owner_gid, perms, right):
        raise InvalidArgument(f"VM {vm.id}: its owner {vm.uname} (uid {vm.uid}) may not "
                              f"{right} {what}: refusing to copy it")


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


def clone_disk(action: Action, source, dst: DiskArg, vg: str | None, size_mb: int,
               vm=None, bridge_hosts: list[str] | None = None, legacy: bool = False) -> None:
    """Copy `source` into lv-one-<vm>-<disk> in `vg`, sized max(source, size_mb),
    active exclusively on dst.host and linked as dst.path (an .isox: link only).
    Should dst.host die mid-copy, the half-made LV is removed from another of
    `bridge_hosts` once the lock manager has released the dead host's lock."""
    disks = Disks(action)
    if isinstance(source, IsoxSource):
        real = _existing_file(action, disks, dst.host, source.path, legacy)
        disks.link(dst.host, dst.path, real)
        action.log(f"linked {dst.path} -> {real} (ISO, no LVM)")
        return
    vm_id = action.vm_id
    target = Volume(vg, vm_disk_lv(vm_id, dst.disk_id))
    copy_from, source_format, copy_host = _resolve_copy_source(action, disks, vm, source, dst.host,
                                                               legacy)
    use = Use(vm_id, dst.disk_id, dst.host)

    known = disks.lvs(dst.host, [target] + ([copy_from] if isinstance(copy_from, Volume) else []))
    existing = known.get(target)
    if existing is not None and INCOMPLETE_TAG not in existing.tags:
        # a re-run after success (or resubmit): make the end state true again
        disks.activate_and_link(dst.host, target, "exclusive", dst.path)
        disks.set_use(dst.host, target, use, vm_id, dst.disk_id)
        action.log(f"{target} already exists and is complete; activated and linked")
        return
    if existing is not None:
        action.log(f"{target} is left over from an interrupted copy: recreating it")
        disks.remove(dst.host, target)

    source_active_here = False
    if isinstance(copy_from, Volume):
        source_lv = known.get(copy_from)
        if source_lv is None:
            raise NotFound(f"source {copy_from} does not exist")
        size = source_lv.size_bytes
        # copied where the source is in use (lvm://): it is active there already
        source_active_here = copy_host != dst.host
    else:
        source_format, size = disks.probe_image(copy_host, copy_from)
    size = max(size, size_mb * MiB)
    disks.create(dst.host, target, size, [INCOMPLETE_TAG, use.tag],
                 undo_hosts=list(bridge_hosts or action.config.bridge_hosts) or None)
    copy_into(action, disks, copy_host, copy_from, source_format, target, source_active_here,
               size=size)
    if copy_host != dst.host:
        disks.deactivate(copy_host, target)
    disks.activate_and_link(dst.host, target, "exclusive", dst.path, drop_tags=[INCOMPLETE_TAG])
    action.log(f"{target} ready on {dst.host} as {dst.path}")


def _existing_file(action: Action, disks: Disks, host: str, path: str, legacy: bool) -> str:
    """The real path of an image file SOURCE on `host` (symlinks resolved), which
    must exist and obey the image-file rule (paths.check_image_file)."""
    real = disks.resolve(host, path)
    if real is None:
        raise NotFound(f"image file {path} does not exist on {host}")
    return paths.file_source_real(action.config, path, real, legacy)


def _resolve_copy_source(action: Action, disks: Disks, vm, source, host: str,
                         legacy: bool = False):
    """(Volume or file path, format, host to copy on) for a clone/cp source.
    `vm` (the requesting VM) is needed only for lvm:// and vol:// permission checks.
    A file is resolved on the host and probed (format, no backing or data file)."""
    if isinstance(source, (LvmSource, VolSource)) and vm is None:
        vm = action.api.vm(action.vm_id)
    if isinstance(source, LvSource):
        return Volume(action.config.check_vg(source.vg), source.lv), "raw", host
    if isinstance(source, FileSource):
        return _existing_file(action, disks, host, source.path, legacy), None, host
    if isinstance(source, LvmSource):
        from .xml import vm_is_quiescent
        other = action.api.vm(source.vm_id)
        if not vm_is_quiescent(other):
            raise InvalidArgument(f"lvm://{source.vm_id}/{source.disk_id}: VM {source.vm_id} is "
                                  f"not suspended, stopped, powered off or undeployed")
        # copying a VM's disk is OpenNebula's disk-saveas: MANAGE on that VM
        check_may_use(action, vm, f"VM {other.id}", other.uid, other.gid, other.permissions,
                      right="manage")
        other_ds = other.disk(source.disk_id).datastore_id
        if other_ds is None and other.last_history is not None:
            other_ds = other.last_history.ds_id       # a volatile disk: the system DS
        volume = disk_volume(action, other, source.disk_id, other_ds)
        return volume, "raw", disks.holder(host, volume) or host
    if isinstance(source, VolSource):
        image = action.api.image(source.image_id)
        check_may_use(action, vm, f"image {image.id}", image.uid, image.gid, image.permissions)
        volume = image_volume(action.config, tm_source(image.source), f"vol://{image.id}")
        return volume, "raw", disks.holder(host, volume) or host
    if isinstance(source, UrlSource):
        raise InvalidArgument("clone from a URL is not supported: import it into an image "
                              "datastore first")
    raise InvalidArgument(f"unsupported clone source {source!r}")


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


def link_disk(action: Action, source, dst: DiskArg, readonly: bool,
              legacy: bool = False) -> None:
    """Use an image in place: a persistent image LV (activated here) or a file
    (which must exist and lie where image files lie)."""
    disks = Disks(action)
    if isinstance(source, (IsoxSource, FileSource)):
        real = _existing_file(action, disks, dst.host, source.path, legacy)
        disks.link(dst.host, dst.path, real)
        action.log(f"linked {dst.path} -> {real} (file, no LVM)")
        return
    volume = image_volume(action.config, source, "ln")
    intent = "shared" if readonly else "exclusive"
    use = Use(action.vm_id, dst.disk_id, dst.host)
    current = disks.lv(dst.host, volume)
    if current is None:
        raise NotFound(f"image LV {volume} does not exist")
    others = [u for u in disks.uses(current)
              if (u.vm_id, u.disk_id) != (action.vm_id, dst.disk_id)]
    if others and not readonly:
        raise LockContention(f"{volume} is in use by VM {others[0].vm_id} on {others[0].host}")
    disks.activate_and_link(dst.host, volume, intent, dst.path)
    action.undo.push(f"deactivate {volume} on {dst.host}",
                     lambda: disks.deactivate(dst.host, volume))
    disks.set_use(dst.host, volume, use, action.vm_id, dst.disk_id, readonly=readonly)
    action.log(f"{volume} active ({intent}) on {dst.host} as {dst.path}")


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


def make_volatile(action: Action, size_mb: int, dst: DiskArg, vg: str, fs: str) -> None:
    """A volatile disk: new LV of size_mb, formatted as `fs` ('swap', '' = raw)."""
    if size_mb <= 0:
        raise InvalidArgument(f"invalid size {size_mb} MB")
    if fs and fs != "swap":
        mkfs_command(fs, vm_disk_lv(action.vm_id, dst.disk_id))   # checks the type
    disks = Disks(action)
    volume = Volume(vg, vm_disk_lv(action.vm_id, dst.disk_id))
    use = Use(action.vm_id, dst.disk_id, dst.host)
    existing = disks.lv(dst.host, volume)
    if existing is not None and INCOMPLETE_TAG not in existing.tags:
        disks.activate_and_link(dst.host, volume, "exclusive", dst.path)
        action.log(f"{volume} already prepared; activated and linked")
        return
    if existing is not None:
        disks.remove(dst.host, volume)
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


# ----------------------------------------------------------------- context

def context(action: Action, argv: list[str]) -> None:
    if len(argv) < 4:
        raise InvalidArgument("usage: context FILE... host:dir/disk.N VMID DSID")
    *files, dst_arg, vm_arg, ds_arg = argv
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    dst = _disk_arg(action, dst_arg, vm_id, ds_id)
    action.bind_vm(vm_id)
    build_context(action, files, dst)


def build_context(action: Action, files: list[str], dst: DiskArg) -> None:
    """The context ISO, built on the host into the VM dir on GFS2 (a file, no LVM):
    the front-end's files travel as one tar stream, one round trip."""
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        for spec in files:
            path, name = _context_file(spec)
            tar.add(path, arcname=name, recursive=True)
    host = Disks(action).worker(dst.host)
    staging = f"{dst.path}.d"
    steps = action.cluster.mount_check() + [["rm", "-rf", staging], ["mkdir", "-p", staging],
             ["tar", "-x", "-C", staging, "-f", "-"],
             ["xorriso", "-as", "mkisofs", "-quiet", "-o", f"{dst.path}.tmp", "-V", "CONTEXT",
              "-J", "-R", staging],
             ["mv", "-f", f"{dst.path}.tmp", dst.path], ["rm", "-rf", staging]]
    action.cluster.run_steps(host, steps, stdin=payload.getvalue())
    action.log(f"context ISO {dst.path} built on {host} from {len(files)} file(s)")


def _context_file(spec: str) -> tuple[str, str]:
    """`path` or `path:'name'` (oned sends the quotes literally)."""
    path, sep, name = spec.partition(":")
    name = name.strip("'\"") if sep else os.path.basename(path)
    if not name or "/" in name or name in (".", ".."):
        raise InvalidArgument(f"invalid context file name in {spec!r}")
    if not os.path.exists(path):
        raise InvalidArgument(f"context file {path} does not exist on the front-end")
    return path, name


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
        _mv_dir(action, Disks(action), src, dst)
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


def move_disk(action: Action, disks: Disks, volume: Volume, disk_id: int, src, dst,
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
    disks.activate_and_link(dst.host, volume, intent, dst.path)
    disks.set_use(dst.host, volume, Use(action.vm_id, disk_id, dst.host), action.vm_id,
                  disk_id, readonly=readonly)
    action.log(f"{volume} active ({intent}) on {dst.host}")


def _mv_dir(action: Action, disks: Disks, src, dst) -> None:
    if src.path == dst.path or is_frontend(dst.host):
        return                                  # one GFS2: the directory is already there
    host = disks.worker(dst.host)
    move = ["sh", "-c", 'if [ -e "$1" ] && [ ! -e "$2" ]; then '
            'mkdir -p "$(dirname "$2")" && mv "$1" "$2"; fi', "sh", src.path, dst.path]
    action.cluster.run_steps(host, action.cluster.mount_check() + [move])


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
        _delete_dir(action, disks, host, target.path)
        return
    disk_id = target.disk_id
    volume = linked_volume(disks, host, target.path)
    if volume is None:
        try:
            volume = disk_volume(action, action.api.vm(action.vm_id), disk_id, ds_id)
        except InvalidArgument:                 # the disk is gone from the template
            volume = Volume(datastore_vg(action, ds_id), vm_disk_lv(action.vm_id, disk_id))
    delete_disk(action, disks, host, target.path, disk_id, volume)


def delete_disk(action: Action, disks: Disks, host: str, path: str, disk_id: int,
                volume: Volume | None) -> None:
    """The VM's own LV is zeroed (per policy) and removed; a persistent image is
    only released; the symlink goes.  Missing pieces are fine (idempotent)."""
    if volume is not None:
        name = parse_lv_name(volume.lv)
        if name.kind == "vm_disk" and (name.vm_id, name.disk_id) == (action.vm_id, disk_id):
            remove_vm_disk(action, disks, host, volume)
        else:
            _release(action, disks, host, volume, disk_id)
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


def remove_vm_disk(action: Action, disks: Disks, host: str, volume: Volume) -> None:
    """Zero (per policy) and remove a VM's own disk LV and its snapshots, after
    deactivating it where the VM last ran (its use tag) if that is elsewhere."""
    report = {lv.name: lv for lv in action.cluster.lvm(host).lvs(volume.vg)}
    lv = report.get(volume.lv)
    if lv is None:
        action.log(f"{volume} already gone")
        disks.remove(host, *snapshots_of(volume, report), present=True)
        return
    refuse_if_open(host, volume, lv)
    where = next((u.host for u in disks.uses(lv) if not is_frontend(u.host)), host)
    if where != host:
        disks.deactivate(where, volume, tolerate_unreachable=True)
    zero_and_remove(disks, host, volume, report)


def _release(action: Action, disks: Disks, host: str, volume: Volume, disk_id: int) -> None:
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


def _delete_dir(action: Action, disks: Disks, host: str, path: str) -> None:
    remaining = []
    for vg in action.config.volume_groups:
        for lv in action.cluster.lvm(host).lvs(vg):
            try:
                name = parse_lv_name(lv.name)
            except InvalidArgument:
                continue
            if name.kind in ("vm_disk", "vm_snap") and name.vm_id == action.vm_id:
                remaining.append(f"{vg}/{lv.name}")
    if remaining:
        raise DriverError(f"VM {action.vm_id} still has LVs ({', '.join(remaining)}): "
                          f"not removing {path}; delete its disks first")
    action.cluster.run_steps(host, action.cluster.mount_check() + [["rm", "-rf", path]])
    action.log(f"removed {path}")


# ----------------------------------------------------------------- persistent / saveas

def mvds(action: Action, argv: list[str]) -> None:
    disk_arg, source_arg, vm_arg, ds_arg = expect(argv, 4, "mvds host:dir/disk.N SOURCE VMID DSID")
    vm_id, ds_id = parse_id(vm_arg, "VM id"), parse_id(ds_arg, "datastore id")
    disk = _disk_arg(action, disk_arg, vm_id)
    volume = image_volume(action.config, tm_source(source_arg), "mvds")
    action.bind_vm(vm_id)
    disks = Disks(action)
    host = disks.worker(disk.host, bridges(action, ds_id))
    _release(action, disks, host, volume, disk.disk_id)
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

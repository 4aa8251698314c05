"""What both TM layouts (and the image imports) share about a VM's disks in
OpenNebula terms: which LV a disk of a VM template is, where its datastore's
VG and bridges are, which sources a VM's owner may copy, and the steps that
need them (clone, ln, the context ISO).  The volume work itself is the
engine's (volumes/).
"""

from __future__ import annotations

import io
import os
import tarfile

from ..errors import InUse, InvalidArgument, NotFound, SourceNotFound
from ..names import (FileSource, IsoxSource, LvmSource, LvSource, UrlSource, Use, VolSource,
                     vm_disk_lv)
from ..volumes.copies import copy_into, fill_new_volume
from ..volumes.ops import INCOMPLETE_TAG, MiB, Disks, Volume, image_volume
from . import paths
from .args import tm_source
from .paths import DiskArg
from .runtime import Action


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


def lvm_source_volume(action: Action, vm, disk_id: int) -> Volume:
    """The LV behind lvm://VM/DISK (an image LV for a persistent disk), in the
    disk's datastore's VG (a volatile disk: the system datastore's)."""
    ds_id = vm.disk(disk_id).datastore_id
    if ds_id is None and vm.last_history is not None:
        ds_id = vm.last_history.ds_id
    volume = disk_volume(action, vm, disk_id, ds_id)
    if volume is None:
        raise InvalidArgument(f"lvm://{vm.id}/{disk_id} is not an LV")
    return volume


def copy_source_volume(action: Action, source, requester: str, owner) -> Volume:
    """The LV an lvm:// or vol:// source names, once the requester's owner may
    copy it -- the one rule for every action that copies one (TM clone, image
    imports): lvm://VM/DISK only from a VM that is suspended, stopped, powered
    off or undeployed, with MANAGE on that VM (it is OpenNebula's
    disk-saveas); vol://IMAGE with USE on the image.  `owner`: the document
    (VM or IMAGE) whose owner's rights count; `requester` names it in the
    refusal ("VM 7", "image 5")."""
    from .xml import may_use_object, vm_is_quiescent
    if isinstance(source, LvmSource):
        vm = action.api.vm(source.vm_id)
        if not vm_is_quiescent(vm):
            raise InvalidArgument(f"lvm://{source.vm_id}/{source.disk_id}: VM {vm.id} is "
                                  f"not suspended, stopped, powered off or undeployed")
        what, obj, right = f"VM {vm.id}", vm, "manage"
        volume = lvm_source_volume(action, vm, source.disk_id)
    elif isinstance(source, VolSource):
        image = action.api.image(source.image_id)
        what, obj, right = f"image {image.id}", image, "use"
        volume = image_volume(action.config, tm_source(image.source) if image.source else None,
                              f"vol://{image.id}")
    else:
        raise InvalidArgument(f"not an lvm:// or vol:// source: {source!r}")
    if not may_use_object(action.api.user(owner.uid), obj, right):
        raise InvalidArgument(f"{requester}: its owner {owner.uname} (uid {owner.uid}) may not "
                              f"{right} {what}: refusing to copy it")
    return volume


def clone_disk(action: Action, source, dst: DiskArg, vg: str | None, size_mb: int,
               vm=None, bridge_hosts: list[str] | None = None, legacy: bool = False) -> None:
    """Copy `source` into lv-one-<vm>-<disk> in `vg`, sized max(source, size_mb),
    active exclusively on dst.host and linked as dst.path (an .isox: link only).
    Should dst.host die mid-copy, the half-made LV is removed from another of
    `bridge_hosts` once the lock manager has released the dead host's lock."""
    disks = Disks(action)
    if isinstance(source, IsoxSource):
        real = existing_file(action, disks, dst.host, source.path, legacy)
        disks.link(dst.host, dst.path, real)
        action.log(f"linked {dst.path} -> {real} (ISO, no LVM)")
        return
    vm_id = action.vm_id
    target = Volume(vg, vm_disk_lv(vm_id, dst.disk_id))
    copy_from, source_format, copy_host, source_lv = resolve_copy_source(
        action, disks, vm, source, dst.host, legacy)
    use = Use(vm_id, dst.disk_id, dst.host)

    unread = [copy_from] if isinstance(copy_from, Volume) and source_lv is None else []
    known = disks.lvs(dst.host, [target] + unread)      # one report for what is not read yet
    if disks.complete_or_cleared(dst.host, target, known.get(target)):
        # a re-run after success (or resubmit): make the end state true again
        disks.activate_and_link(dst.host, target, "exclusive", dst.path,
                                tags=[disks.use_step(target, use, vm_id, dst.disk_id)])
        action.log(f"{target} already exists and is complete; activated and linked")
        return

    source_active_here = False
    if isinstance(copy_from, Volume):
        source_lv = source_lv or known.get(copy_from)
        if source_lv is None:
            raise SourceNotFound(f"source {copy_from} does not exist")
        size = source_lv.size_bytes
        # copied where the source is in use (lvm://): it is active there already
        source_active_here = copy_host != dst.host
    else:
        source_format, size = disks.probe_image(copy_host, copy_from)
    size = max(size, size_mb * MiB)
    undo_hosts = list(bridge_hosts or action.config.bridge_hosts) or None
    if copy_host == dst.host:                  # the usual case: 2 helper runs around the copy
        fill_new_volume(action, disks, dst.host, copy_from, source_format, target, size,
                        [use.tag], source_active_here, undo_hosts, keep_active=True,
                        link=dst.path)
        action.log(f"{target} ready on {dst.host} as {dst.path}")
        return
    disks.create(dst.host, target, size, [INCOMPLETE_TAG, use.tag], undo_hosts=undo_hosts)
    copy_into(action, disks, copy_host, copy_from, source_format, target, source_active_here,
               size=size)
    if copy_host != dst.host:
        disks.deactivate(copy_host, target)
    disks.activate_and_link(dst.host, target, "exclusive", dst.path,
                            tags=[disks.retag_step(target, drop=[INCOMPLETE_TAG])])
    action.log(f"{target} ready on {dst.host} as {dst.path}")


def existing_file(action: Action, disks: Disks, host: str, path: str, legacy: bool) -> str:
    """The real path of an image file SOURCE on `host` (symlinks resolved), which
    must exist and obey the image-file rule (paths.check_image_file)."""
    real = disks.resolve(host, path)
    if real is None:
        raise SourceNotFound(f"image file {path} does not exist on {host}")
    return paths.file_source_real(action.config, path, real, legacy)


def resolve_copy_source(action: Action, disks: Disks, vm, source, host: str,
                         legacy: bool = False):
    """(Volume or file path, format, host to copy on, the source's report as
    read on `host` or None when not read yet) for a clone/cp source.  `vm`
    (the requesting VM) is needed only for lvm:// and vol:// permission
    checks.  A file is resolved on the host and probed (format, no backing or
    data file)."""
    if isinstance(source, (LvmSource, VolSource)) and vm is None:
        vm = action.api.vm(action.vm_id)
    if isinstance(source, LvSource):
        return Volume(action.config.check_vg(source.vg), source.lv), "raw", host, None
    if isinstance(source, FileSource):
        return existing_file(action, disks, host, source.path, legacy), None, host, None
    if isinstance(source, (LvmSource, VolSource)):
        volume = copy_source_volume(action, source, f"VM {vm.id}", vm)
        return (volume, "raw", *disks.copy_site(host, volume))
    if isinstance(source, UrlSource):
        raise InvalidArgument("clone from a URL is not supported: import it into an image "
                              "datastore first")
    raise InvalidArgument(f"unsupported clone source {source!r}")


def link_disk(action: Action, source, dst: DiskArg, readonly: bool,
              legacy: bool = False) -> None:
    """Use an image in place: a persistent image LV (activated here) or a file
    (which must exist and lie where image files lie)."""
    disks = Disks(action)
    if isinstance(source, (IsoxSource, FileSource)):
        real = existing_file(action, disks, dst.host, source.path, legacy)
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
        raise InUse(f"{volume} is in use by VM {others[0].vm_id} on {others[0].host}")
    disks.activate_and_link(dst.host, volume, intent, dst.path)
    action.undo.push(f"deactivate {volume} on {dst.host}",
                     lambda: disks.deactivate(dst.host, volume))
    action.undo.push(f"remove the link {dst.path} on {dst.host}",
                     lambda: disks.unlink(dst.host, dst.path))
    disks.set_use(dst.host, volume, use, action.vm_id, dst.disk_id, readonly=readonly)
    action.log(f"{volume} active ({intent}) on {dst.host} as {dst.path}")


def build_context(action: Action, files: list[str], dst: DiskArg) -> None:
    """The context ISO, built on the host into the VM dir on GFS2 (a file, no LVM):
    the front-end's files travel as one tar stream, one round trip."""
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        for spec in files:
            path, name = context_file(spec)
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


def context_file(spec: str) -> tuple[str, str]:
    """`path` or `path:'name'` (oned sends the quotes literally)."""
    path, sep, name = spec.partition(":")
    name = name.strip("'\"") if sep else os.path.basename(path)
    if not name or "/" in name or name in (".", ".."):
        raise InvalidArgument(f"invalid context file name in {spec!r}")
    if not os.path.exists(path):
        raise InvalidArgument(f"context file {path} does not exist on the front-end")
    return path, name

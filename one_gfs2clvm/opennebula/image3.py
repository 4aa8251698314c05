"""Image manager, OpenNebula 3.x layout (`/var/lib/one/remotes/image/fs/<action>`).

3.2's one_image.rb runs these on the management node with the image id
appended once more, and answers `<ACTION> SUCCESS <id> <stdout>`; stdout is
`SOURCE SIZE_MB`.  No datastores: volumes go to the first configured VG,
workers are [storage] bridge_hosts, staging for qcow2/vmdk/vdi imports and
ISO copies is <gfs2>/images.  Same engine as the modern datastore actions.

    cp    PATH ID [ID]          import (file, GFS2 file, URL, lvm://, vol://, .isox)
    mkfs  FSTYPE SIZE_MB ID [ID] datablock (FSTYPE raw: no filesystem)
    mv    SRC DST|- ID [ID]     saveas (DST -): copy the VM disk SRC links to into
                                lv-oneimg-<ID>; persistent save-back: nothing moves
    rm    SOURCE ID [ID]        remove (refused while a VM uses it)

Choices written down: RESTRICTED_DIRS "/" and SAFE_DIRS "/var/tmp" (3.2's
fs.conf defaults are not read); lvm:// and vol:// check the image owner's
rights through oned like the modern driver (3.2's driver checked nothing).
"""

from __future__ import annotations

import sys

from ..errors import InvalidArgument, NotFound, SourceNotFound
from ..names import IsoxSource, LvSource, image_lv, parse_source
from ..streaming import Checksums
from ..volumes.copies import copy_to_new_volume
from ..volumes.lifecycle import linked_volume
from ..volumes.ops import MiB, Disks, Volume, made_tag
from . import paths, runtime
from .args3 import ImageCall3, parse_image3
from .datastore import make_datablock, remove_image
from .imports import DEFAULT_RESTRICTED, DEFAULT_SAFE, Import
from .runtime import Action


def _bridges(action: Action) -> list[str]:
    return list(action.config.bridge_hosts)


def _reply(source: str, size_bytes: int) -> None:
    sys.stdout.write(f"{source} {-(-size_bytes // MiB)}\n")
    sys.stdout.flush()


def cp3(action: Action, req: ImageCall3) -> None:
    path, image_id = req.path, req.image_id
    source = parse_source(path)
    owner = None
    if not isinstance(source, IsoxSource) and path.startswith(("lvm://", "vol://")):
        owner = action.api.image(image_id)
    job = Import(action, image_id, path, action.config.default_vg, _bridges(action),
                 paths.images_dir3(action.config), Checksums(), DEFAULT_RESTRICTED, DEFAULT_SAFE, owner=owner)
    line = job.run()
    result = line.rsplit(" ", 1)[0]
    if isinstance(parse_source(result), LvSource):
        lv = job.disks.lv(job.host, job.target)
        if lv is None:
            raise NotFound(f"{job.target} vanished after the import")
        _reply(result, lv.size_bytes)
    else:
        size = action.cluster.remote(job.host).run(["stat", "-L", "-c", "%s", "--", result])
        _reply(result, int(size.stdout.strip()))


def mkfs3(action: Action, req: ImageCall3) -> None:
    volume = Volume(action.config.default_vg, image_lv(req.image_id))
    make_datablock(action, volume, req.size_mb, req.fs, _bridges(action), made_tag("mkfs"))
    _reply(str(volume), req.size_mb * MiB)


def mv3(action: Action, req: ImageCall3) -> None:
    src, dst, image_id = req.path, req.dst, req.image_id
    # SRC names a VM disk; the link read is the host-side one that path derives
    vm_id, disk_id = paths.disk_path3(action.config, src)
    link = f"{paths.vm_dir3(action.config, vm_id)}/disk.{disk_id}"
    # saving a VM's disk is disk-saveas: the image's owner needs MANAGE on the VM
    from .xml import may_use_object
    image, vm = action.api.image(image_id), action.api.vm(vm_id)
    if not may_use_object(action.api.user(image.uid), vm, "manage"):
        raise InvalidArgument(f"image {image_id}: its owner {image.uname} (uid {image.uid}) "
                              f"may not manage VM {vm_id}: refusing to save its disk")
    disks = Disks(action)

    def on(host: str) -> None:
        volume = linked_volume(disks, host, link)
        if volume is None:
            raise NotFound(f"mv: {link} is not a link to one of our LVs (on {host})")
        if dst != "-":
            # persistent save-back: the VM wrote into the image LV itself
            target = parse_source(dst)
            if not isinstance(target, LvSource) or \
                    (target.vg, target.lv) != (volume.vg, volume.lv):
                raise InvalidArgument(f"mv: {src} uses {volume}, not the image {dst}")
            lv = disks.lv(host, volume)
            action.log(f"{volume} is the image itself: nothing to move")
            _reply(dst, lv.size_bytes if lv is not None else 0)
            return
        # saveas: a new image volume with the VM disk's bytes
        target = Volume(volume.vg, image_lv(image_id))
        known = disks.lvs(host, [volume, target])
        if volume not in known:
            raise SourceNotFound(f"{volume} does not exist")
        if disks.complete_or_cleared(host, target, known.get(target), made_tag("saveas")):
            action.log(f"{target} already saved")
            _reply(str(target), known[target].size_bytes)
            return
        copy_to_new_volume(action, disks, host, volume, known[volume], target,
                           [made_tag("saveas")], undo_hosts=_bridges(action))
        action.log(f"saved {volume} as image {target}")
        _reply(str(target), known[volume].size_bytes)
    action.cluster.on_bridge(on, _bridges(action))


def rm3(action: Action, req: ImageCall3) -> None:
    remove_image(action, req.image_id, req.path, _bridges(action),
                 paths.images_dir3(action.config))


COMMANDS = runtime.entries(parse_image3, {"cp": cp3, "mkfs": mkfs3, "mv": mv3, "rm": rm3})


main = runtime.FrontDoor("3.x image action", COMMANDS, label="image {}", legacy=True).main

"""Datastore actions, OpenNebula 6.10 - 7.4 (`remotes/datastore/gfs2clvm/<action>`).

Input: the base64 DS_DRIVER_ACTION_DATA on stdin with the object id as the only
argument (6.8+), or as argv[1] with the id as argv[2] (6.6 and older): both
are accepted.  Output: exactly one stdout line where oned reads one (`mkfs`:
SOURCE, `stat`: size in MB, `clone`: SOURCE FORMAT); `monitor` prints its
three lines.  Images are LVs `lv-oneimg-<image id>` in the datastore's VG
(template VG_NAME, else the first configured VG); SOURCE is `<vg>/<lv>`.

Implemented so far: mkfs (incl. FORMAT=save_as), rm, stat (LV, lvm://,
vol:// sources), clone, monitor.  cp (imports) comes next.
"""

from __future__ import annotations

import sys

from ..errors import InvalidArgument, LockContention, NotFound
from ..names import (LvmSource, LvSource, VolSource, image_lv, parse_lv_name, parse_source,
                     vm_disk_lv)
from . import runtime
from .disks import INCOMPLETE_TAG, MiB, Disks, Volume
from .runtime import Action
from .tm import _copy_into, _mkfs_command, _parent_of, datastore_vg


def request(action: Action, argv: list[str]):
    """(object id, DriverAction) from either calling convention."""
    from .xml import parse_driver_action
    if len(argv) == 1:
        payload, obj = action.stdin, argv[0]
    elif len(argv) == 2:
        payload, obj = argv[0].encode(), argv[1]
    else:
        raise InvalidArgument(f"usage: {action.name} ID (base64 XML on stdin), "
                              f"or {action.name} BASE64_XML ID")
    if not obj.isascii() or not obj.isdigit():
        raise InvalidArgument(f"invalid id {obj!r}")
    if not payload.strip():
        raise InvalidArgument(f"{action.name}: no DS_DRIVER_ACTION_DATA on stdin")
    return int(obj), parse_driver_action(payload.strip())


def _vg(action: Action, data) -> str:
    ds = data.datastore
    if ds is None:
        raise InvalidArgument("DS_DRIVER_ACTION_DATA has no DATASTORE")
    return action.config.check_vg(ds.vg_name or action.config.default_vg)


def _bridge(action: Action, data) -> list[str]:
    ds = data.datastore
    return (ds.bridge_list if ds is not None else []) or list(action.config.bridge_hosts)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def mkfs(action: Action, argv: list[str]) -> None:
    image_id, data = request(action, argv)
    image = data.image
    if image is None or not image.size_mb:
        raise InvalidArgument("mkfs: the IMAGE has no SIZE")
    volume = Volume(_vg(action, data), image_lv(image_id))
    disks = Disks(action)
    fs = "" if image.format == "save_as" else (image.fs or "")
    if fs and not fs.isalnum():
        raise InvalidArgument(f"invalid filesystem type {fs!r}")

    def on(host: str) -> None:
        existing = disks.lv(host, volume)
        if existing is not None and INCOMPLETE_TAG not in existing.tags:
            action.log(f"{volume} already exists")
            return
        if existing is not None:
            disks.remove(host, volume, present=True)
        disks.create(host, volume, image.size_mb * MiB, [INCOMPLETE_TAG])
        steps = []
        if fs or action.config.zero_on_create:
            steps.append(action.cluster.helper("activate", volume.vg, volume.lv,
                                               action.cluster.lvm(host).policy.flag("exclusive")))
            if action.config.zero_on_create:
                steps.append(disks.zero_command(volume.device))
            if fs:
                steps.append(_mkfs_command(fs, volume.device))
            steps.append(action.cluster.helper("activate", volume.vg, volume.lv, "n"))
            action.cluster.run_steps(host, steps)
        disks.retag(host, volume, drop=[INCOMPLETE_TAG])
    action.cluster.on_bridge(on, _bridge(action, data))
    action.log(f"datablock {volume} ({image.size_mb} MB{', ' + fs if fs else ''}) ready")
    _out(f"{volume.vg}/{volume.lv}")


def rm(action: Action, argv: list[str]) -> None:
    _, data = request(action, argv)
    image = data.image
    source = parse_source(image.source) if image is not None and image.source else None
    if not isinstance(source, LvSource):
        raise InvalidArgument(f"rm: image SOURCE is not an LV of ours: "
                              f"{image.source if image is not None else None!r}")
    volume = Volume(action.config.check_vg(source.vg), source.lv)
    disks = Disks(action)

    def on(host: str) -> None:
        report = {lv.name: lv for lv in action.cluster.lvm(host).lvs(volume.vg)}
        lv = report.get(volume.lv)
        if lv is None:
            action.log(f"{volume} already gone")
            return
        users = disks.uses(lv)
        if users:
            raise LockContention(f"{volume} is in use by VM {users[0].vm_id} on "
                                 f"{users[0].host}: not removing it")
        base = parse_lv_name(volume.lv)
        snapshots = [Volume(volume.vg, name) for name in report if _parent_of(name) == base]
        if action.config.zero_on_delete:
            action.cluster.run_steps(host, [
                action.cluster.helper("activate", volume.vg, volume.lv,
                                      action.cluster.lvm(host).policy.flag("exclusive")),
                disks.zero_command(volume.device)])
        disks.remove(host, *snapshots, volume, present=True)
    action.cluster.on_bridge(on, _bridge(action, data))


def stat(action: Action, argv: list[str]) -> None:
    _, data = request(action, argv)
    if data.image is None or not data.image.path:
        raise InvalidArgument("stat: the IMAGE has no PATH")
    source = parse_source(data.image.path)
    if isinstance(source, VolSource):
        source = parse_source(action.api.image(source.image_id).source)
    if isinstance(source, LvmSource):
        vm = action.api.vm(source.vm_id)
        ds_id = vm.disk(source.disk_id).datastore_id
        if ds_id is None and vm.last_history is not None:
            ds_id = vm.last_history.ds_id             # a volatile disk: the system DS
        source = LvSource(datastore_vg(action, ds_id), vm_disk_lv(source.vm_id, source.disk_id))
    if not isinstance(source, LvSource):
        raise InvalidArgument(f"stat: {data.image.path!r} is not yet supported "
                              f"(LV, lvm:// and vol:// sources are)")
    volume = Volume(action.config.check_vg(source.vg), source.lv)
    lv = action.cluster.on_bridge(lambda h: Disks(action).lv(h, volume), _bridge(action, data))
    if lv is None:
        raise NotFound(f"{volume} does not exist")
    _out(str(-(-lv.size_bytes // MiB)))


def clone(action: Action, argv: list[str]) -> None:
    image_id, data = request(action, argv)
    if data.image is None or not data.image.path:
        raise InvalidArgument("clone: the IMAGE has no PATH (the source image's SOURCE)")
    source = parse_source(data.image.path)
    if not isinstance(source, LvSource):
        raise InvalidArgument(f"clone: source {data.image.path!r} is not an image LV")
    source = Volume(action.config.check_vg(source.vg), source.lv)
    target = Volume(_vg(action, data), image_lv(image_id))
    disks = Disks(action)

    def on(host: str) -> None:
        known = disks.lvs(host, [source, target])
        if source not in known:
            raise NotFound(f"source image {source} does not exist")
        existing = known.get(target)
        if existing is not None and INCOMPLETE_TAG not in existing.tags:
            action.log(f"{target} already exists")
            return
        if existing is not None:
            disks.remove(host, target, present=True)
        disks.create(host, target, known[source].size_bytes, [INCOMPLETE_TAG])
        _copy_into(action, disks, host, source, "raw", target,
                   known[source].active_locally)
        action.cluster.run_steps(host, [
            action.cluster.helper("activate", target.vg, target.lv, "n")])
        disks.retag(host, target, drop=[INCOMPLETE_TAG])
    action.cluster.on_bridge(on, _bridge(action, data))
    _out(f"{target.vg}/{target.lv} raw")


def monitor(action: Action, argv: list[str]) -> None:
    _, data = request(action, argv)
    vg = _vg(action, data)
    timeout = min(30.0, action.config.ssh.command_timeout)
    group = action.cluster.on_bridge(lambda h: action.cluster.lvm(h, timeout).vgs(vg),
                                     _bridge(action, data))
    total, free = group.size_bytes // MiB, group.free_bytes // MiB
    print(f"USED_MB={total - free}\nFREE_MB={free}\nTOTAL_MB={total}")


ACTIONS = {"mkfs": mkfs, "rm": rm, "stat": stat, "clone": clone, "monitor": monitor}


def main(name: str, argv: list[str]) -> int:
    function = ACTIONS.get(name)
    if function is None:
        sys.stderr.write(f"gfs2clvm: datastore action {name!r} is not implemented yet\n")
        return 2
    stdin = runtime.read_stdin() if len(argv) == 1 else None
    return runtime.run(f"datastore {name}", function, argv, stdin=stdin)

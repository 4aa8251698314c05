"""Datastore actions, OpenNebula 6.10 - 7.4 (`remotes/datastore/gfs2clvm/<action>`).

Input: the base64 DS_DRIVER_ACTION_DATA on stdin with the object id as the only
argument (6.8+), or as argv[1] with the id as argv[2] (6.6 and older): both
are accepted.  Output: exactly one stdout line where oned reads one (`mkfs`:
SOURCE, `stat`: size in MB, `cp` and `clone`: SOURCE FORMAT); `monitor`
prints its three lines.  Images are LVs `lv-oneimg-<image id>` in the
datastore's VG (template VG_NAME, else the first configured VG); SOURCE is
`<vg>/<lv>`, or the ISO's path for an `.isox` image.  Imports: imports.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import DriverError, InvalidArgument, NotFound, SourceNotFound
from ..names import IsoxSource, LvSource, check_host, image_lv, parse_lv_name, parse_source, shown
from ..volumes.copies import Read, copy_to_new_volume, restore
from ..volumes.ops import (INCOMPLETE_TAG, MiB, Disks, Volume, check_snapshot, image_volume,
                           made_tag, mkfs_command, refuse_if_used, snapshot_volume,
                           snapshots_of, writers, zero_and_remove)
from . import paths, runtime
from .args import DriverCall, action_bridges, action_vg, parse_datastore, reply
from .runtime import Action


def mkfs(action: Action, req: DriverCall) -> None:
    image_id, data = req.obj_id, req.data
    image = data.image
    if image is None or not image.size_mb:
        raise InvalidArgument("mkfs: the IMAGE has no SIZE")
    fs = "" if image.format == "save_as" else (image.fs or "")
    volume = Volume(action_vg(action.config, data), image_lv(image_id))
    make_datablock(action, volume, image.size_mb, fs, action_bridges(action.config, data),
                   made_tag("mkfs", image))
    reply(f"{volume.vg}/{volume.lv}")


def make_datablock(action: Action, volume: Volume, size_mb: int, fs: str,
                   bridges: list[str], made: str) -> None:
    """A new image LV of size_mb, formatted as `fs` ('' = raw), tagged `made`;
    idempotent, and never adopts an LV another action made (made_tag)."""
    if fs:
        mkfs_command(fs, volume.device)             # checks the filesystem type
    if size_mb <= 0:
        raise InvalidArgument(f"invalid size {size_mb} MB")
    disks = Disks(action)

    def on(host: str) -> None:
        if disks.complete_or_cleared(host, volume, disks.lv(host, volume), made):
            action.log(f"{volume} already exists")
            return
        disks.create(host, volume, size_mb * MiB, [INCOMPLETE_TAG, made])
        steps = []
        if fs or action.config.zero_on_create:
            steps.append(action.cluster.helper("activate", volume.vg, volume.lv,
                                               action.cluster.lvm(host).policy.flag("exclusive")))
            if action.config.zero_on_create:
                steps.append(disks.zero_command(volume.device))
            if fs:
                steps.append(mkfs_command(fs, volume.device))
            steps.append(action.cluster.helper("activate", volume.vg, volume.lv, "n"))
            action.cluster.run_steps(host, steps)
        disks.retag(host, volume, drop=[INCOMPLETE_TAG])
    action.cluster.on_bridge(on, bridges)
    action.log(f"datablock {volume} ({size_mb} MB{', ' + fs if fs else ''}) ready")


def rm(action: Action, req: DriverCall) -> None:
    image_id, data = req.obj_id, req.data
    image = data.image
    remove_image(action, image_id, image.source if image is not None else "",
                 action_bridges(action.config, data), paths.datastore_dir(action.config, _ds_id(data)))


def _ds_id(data) -> int:
    ds, image = data.datastore, data.image
    ds_id = ds.id if ds is not None else (image.datastore_id if image is not None else None)
    if ds_id is None:
        raise InvalidArgument("DS_DRIVER_ACTION_DATA names no datastore")
    return ds_id


def remove_image(action: Action, image_id: int, source_text: str, bridges: list[str],
                 own_dir: str) -> None:
    """Remove image `image_id`'s LV lv-oneimg-<image_id> (and its snapshot LVs),
    refused while a VM uses it; an .isox image loses only the copy cp made in
    `own_dir` (its datastore directory).  Choice: a SOURCE naming anything else
    (another image's LV, an ISO elsewhere) was not made for this image, so rm
    leaves it alone, says so and succeeds: the image's record can go, the data
    it pointed at stays with its owner."""
    source = parse_source(source_text) if source_text else None
    if isinstance(source, IsoxSource):
        _rm_iso(action, image_id, source.path, bridges, own_dir)
        return
    if not isinstance(source, LvSource) or parse_lv_name(source.lv).kind != "image":
        raise InvalidArgument(f"rm: image SOURCE is not an image LV of ours "
                              f"(<vg>/lv-oneimg-<id>): {shown(source_text)}")
    volume = Volume(action.config.check_vg(source.vg), source.lv)
    if volume.lv != image_lv(image_id):
        action.log(f"{volume} is not image {image_id}'s own LV ({image_lv(image_id)}): "
                   f"left alone")
        return
    disks = Disks(action)

    def on(host: str) -> None:
        report = {lv.name: lv for lv in action.cluster.lvm(host).lvs(volume.vg)}
        if volume.lv not in report:
            action.log(f"{volume} already gone")
            zero_and_remove(disks, host, volume, report)   # snapshots it left behind
            return
        refuse_if_used(volume, disks.uses(report[volume.lv]), "removing it")
        zero_and_remove(disks, host, volume, report)
    action.cluster.on_bridge(on, bridges)


def _rm_iso(action: Action, image_id: int, path: str, bridges: list[str],
            own_dir: str) -> None:
    """An .isox image: delete the file only if cp made it (<own_dir>/<id>.isox);
    an ISO registered in place belongs to whoever put it there."""
    from .imports import owned_iso_path
    if not owned_iso_path(image_id, path, own_dir):
        action.log(f"ISO {path} was registered in place: file left alone")
        return
    action.cluster.on_bridge(lambda h: action.cluster.remote(h).run(["rm", "-f", "--", path]),
                             bridges)
    action.log(f"removed ISO copy {path}")


def stat(action: Action, req: DriverCall) -> None:
    """Size in MB of what `cp` would make, for every PATH form.

    Choice: stat receives no owner to check, so for `lvm://VM/DISK` and
    `vol://IMAGE` it reveals only the size of that existing LV (rounded up to
    MB; what oned needs for the quota) or that it does not exist; no bytes,
    names or tags.  `cp` checks the image owner's rights (MANAGE on the VM,
    USE on the image) before it copies anything."""
    data = req.data
    if data.image is None or not data.image.path:
        raise InvalidArgument("stat: the IMAGE has no PATH")
    from .imports import Import
    job = Import.from_driver_action(action, 0, data)
    reply(str(-(-job.source_size() // MiB)))


def cp(action: Action, req: DriverCall) -> None:
    """Import PATH into lv-oneimg-<id> (see imports.py); prints `SOURCE FORMAT`."""
    from .imports import cp as import_image
    import_image(action, req.obj_id, req.data)


def clone(action: Action, req: DriverCall) -> None:
    image_id, data = req.obj_id, req.data
    if data.image is None or not data.image.path:
        raise InvalidArgument("clone: the IMAGE has no PATH (the source image's SOURCE)")
    source = image_volume(action.config, parse_source(data.image.path), "clone")
    target = Volume(action_vg(action.config, data), image_lv(image_id))
    made = made_tag("clone", data.image)
    disks = Disks(action)

    def on(host: str) -> None:
        known = disks.lvs(host, [source, target])
        if source not in known:
            raise SourceNotFound(f"source image {source} does not exist")
        if disks.complete_or_cleared(host, target, known.get(target), made):
            action.log(f"{target} already exists")
            return
        copy_to_new_volume(action, disks, host, source, known[source], target, [made])
    action.cluster.on_bridge(on, action_bridges(action.config, data))
    reply(f"{target.vg}/{target.lv} raw")


def monitor(action: Action, req: DriverCall) -> None:
    data = req.data
    vg = action_vg(action.config, data)
    timeout = min(30.0, action.config.ssh.command_timeout)
    group = action.cluster.on_bridge(lambda h: action.cluster.lvm(h, timeout).vgs(vg),
                                     action_bridges(action.config, data))
    total, free = group.size_bytes // MiB, group.free_bytes // MiB
    print(f"USED_MB={total - free}\nFREE_MB={free}\nTOTAL_MB={total}")


# ----------------------------------------------------------------- image snapshots, export
#
# An image's snapshots are the LVs the TM's snap_create makes for a persistent
# image disk (volumes.ops: snapshot_volume, snapshots_of).

_MD5_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ImageRequest:
    """What an image action works on, from its input alone (no remote call)."""
    image_id: int
    volume: Volume                     # the image LV, from IMAGE/SOURCE
    bridges: tuple[str, ...]           # datastore BRIDGE_LIST, else [storage] bridge_hosts
    snap_id: int | None = None         # IMAGE/TARGET_SNAPSHOT
    snapshot: Volume | None = None     # its LV


def image_request(action: Action, req: DriverCall, snapshot: bool = False) -> ImageRequest:
    """What an image action works on, checked; `snapshot`: the action needs
    IMAGE/TARGET_SNAPSHOT."""
    image_id, data = req.obj_id, req.data
    image = data.image
    if image is None:
        raise InvalidArgument(f"{action.name}: DS_DRIVER_ACTION_DATA has no IMAGE")
    source = parse_source(image.source) if image.source else None
    if not isinstance(source, LvSource) or source.lv != image_lv(image_id):
        raise InvalidArgument(f"{action.name}: image {image_id}'s SOURCE is not its own LV "
                              f"<vg>/{image_lv(image_id)}: {shown(image.source)}")
    volume = Volume(action.config.check_vg(source.vg), source.lv)
    bridges = tuple(action_bridges(action.config, data))
    if not snapshot:
        return ImageRequest(image_id, volume, bridges)
    snap_id = image.target_snapshot
    if snap_id is None or snap_id < 0:
        raise InvalidArgument(f"{action.name}: IMAGE {image_id} has no TARGET_SNAPSHOT")
    return ImageRequest(image_id, volume, bridges, snap_id, snapshot_volume(volume, snap_id))


def snap_delete(action: Action, call: DriverCall) -> None:
    """Remove the image snapshot LV IMAGE/TARGET_SNAPSHOT (exact name); a missing
    one is fine (idempotent, logged).  Allowed while the image is in use: the
    snapshot is a separate LV no VM has open."""
    req = image_request(action, call, snapshot=True)
    disks = Disks(action)

    def on(host: str) -> None:
        if req.snapshot not in disks.lvs(host, [req.snapshot]):
            action.log(f"{req.snapshot} already gone")
            return
        disks.remove(host, req.snapshot, present=True)
    action.cluster.on_bridge(on, req.bridges)


def snap_revert(action: Action, call: DriverCall) -> None:
    """Copy snapshot IMAGE/TARGET_SNAPSHOT back over the image LV on a bridge host.
    Refused (InUse) while a VM uses the image; SourceNotFound when the
    snapshot is missing or incomplete.  Both LVs are inactive afterwards."""
    req = image_request(action, call, snapshot=True)
    disks = Disks(action)

    def on(host: str) -> None:
        known = disks.lvs(host, [req.volume, req.snapshot])
        image_lv = known.get(req.volume)
        if image_lv is None:
            raise NotFound(f"image LV {req.volume} does not exist")
        refuse_if_used(req.volume, disks.uses(image_lv), "reverting it")
        check_snapshot(req.snapshot, known.get(req.snapshot))
        restore(action, disks, host, req.volume, image_lv, req.snapshot, known[req.snapshot])
    action.cluster.on_bridge(on, req.bridges)


def snap_flatten(action: Action, call: DriverCall) -> None:
    """OpenNebula's flatten: the image becomes the content of snapshot
    IMAGE/TARGET_SNAPSHOT and ALL the image's snapshots are removed.  Refused
    while a VM uses the image.

    Order, for re-running after a crash: copy the target over the image, then
    remove the other snapshots, the target LAST (one removal script, in that
    order).  So a run that died anywhere left the target in place unless
    everything was done, and a re-run copies again and finishes.  Hence on a
    re-run:
      * target present: copy it again (the same bytes), remove all snapshots;
      * target gone and no snapshot left: already flattened -- logged, success
        (also when the target never existed: nothing to remove, and oned's
        empty snapshot list then matches the VG);
      * target gone but other snapshots left: that is not a state this action
        leaves behind, so the target never existed or was removed outside it;
        SourceNotFound, nothing touched (removing the rest would lose snapshots
        without giving the image the requested content).
    """
    req = image_request(action, call, snapshot=True)
    disks = Disks(action)

    def on(host: str) -> None:
        report = {lv.name: lv for lv in action.cluster.lvm(host).lvs(req.volume.vg)}
        image_lv = report.get(req.volume.lv)
        if image_lv is None:
            raise NotFound(f"image LV {req.volume} does not exist")
        refuse_if_used(req.volume, disks.uses(image_lv), "flattening it")
        others = [s for s in snapshots_of(req.volume, report) if s != req.snapshot]
        target = report.get(req.snapshot.lv)
        if target is None:
            if others:
                raise SourceNotFound(f"snapshot {req.snapshot} does not exist (the image "
                                     f"still has {', '.join(s.lv for s in others)}): not "
                                     f"flattening")
            action.log(f"{req.snapshot} and every other snapshot of {req.volume} are gone: "
                       f"flattened already")
            return
        check_snapshot(req.snapshot, target)
        restore(action, disks, host, req.volume, image_lv, req.snapshot, target)
        disks.remove(host, *others, req.snapshot, present=True)
    action.cluster.on_bridge(on, req.bridges)


def parse_md5sum(stdout: str, name: str = "-") -> str:
    """The digest `md5sum` printed for `name` (`<32 hex>  <name>`; "-": its stdin)."""
    for line in stdout.splitlines():
        digest, _, printed = line.strip().partition("  ")
        if printed == name and _MD5_RE.fullmatch(digest):
            return digest
    raise DriverError(f"md5sum printed no checksum of {name}: "
                      f"{' '.join(stdout.split())[:200]!r}")


def _plain_word(what: str, word: str) -> str:
    """`word` unchanged, if no shell would change it.  The marketplace driver runs
    DISPOSE_CMD unquoted (`$DISPOSE_CMD`: split on blanks and globbed, quotes
    left as they are) and downloader.sh splits IMPORT_SOURCE on blanks, so a
    word that needs quoting would break both: refused."""
    import shlex
    if not isinstance(word, str) or not word or shlex.quote(word) != word:
        raise InvalidArgument(f"export: {what} {word!r} needs shell quoting, which "
                              f"IMPORT_SOURCE and DISPOSE_CMD cannot carry")
    return word


def export_dir(action: Action, data) -> str:
    """The image datastore's directory on the shared GFS2 (paths.datastore_dir,
    the rule imports use too): <gfs2_mount>/datastores/<datastore id>."""
    return paths.datastore_dir(action.config, _ds_id(data))


def export_file(action: Action, data, image_id: int, token: str | None = None) -> str:
    """The temporary export file of image `image_id` (see `export`); a random
    token per export, so one marketplace import's DISPOSE_CMD never removes the
    file another export of the same image is still being downloaded from."""
    import secrets
    token = secrets.token_hex(4) if token is None else token
    return _plain_word("export file",
                       f"{export_dir(action, data)}/.export-{image_id}-{token}.raw")


def export_source(host: str, path: str) -> str:
    """IMPORT_SOURCE in the pseudo-URL form OpenNebula's downloader.sh reads
    (`ssh://[user@]host:path`, fetched as `ssh host cat path`)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgument(f"export: invalid path {path!r}")
    return f"ssh://{check_host(host)}:{_plain_word('path', path)}"


def dispose_command(host: str, path: str) -> str:
    """DISPOSE_CMD: what the marketplace driver runs on the front-end (as oneadmin)
    once it has its copy: remove the export file `path` on `host`."""
    import shlex
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgument(f"export: invalid path {path!r}")
    return shlex.join(["ssh", check_host(host), "rm", "-f", _plain_word("path", path)])


def import_info_xml(source: str, md5: str, size_mb: int, dispose_cmd: str | None = None,
                    fmt: str = "raw") -> str:
    """The one line `export` prints: <IMPORT_INFO> with the text escaped by lxml.
    With `dispose_cmd` (IMPORT_SOURCE is a temporary copy): DISPOSE YES and
    DISPOSE_CMD; without: DISPOSE NO."""
    from lxml import etree
    if not isinstance(md5, str) or not _MD5_RE.fullmatch(md5):
        raise InvalidArgument(f"export: invalid MD5 {md5!r}")
    if isinstance(size_mb, bool) or not isinstance(size_mb, int) or size_mb < 0:
        raise InvalidArgument(f"export: invalid SIZE {size_mb!r}")
    fields = [("IMPORT_SOURCE", source), ("MD5", md5), ("SIZE", str(size_mb)),
              ("FORMAT", fmt), ("DISPOSE", "NO" if dispose_cmd is None else "YES")]
    if dispose_cmd is not None:
        fields.append(("DISPOSE_CMD", dispose_cmd))
    root = etree.Element("IMPORT_INFO")
    for tag, text in fields:
        if not isinstance(text, str) or not text or "\n" in text or "\r" in text:
            raise InvalidArgument(f"export: invalid {tag} {text!r}")
        try:
            etree.SubElement(root, tag).text = text
        except ValueError as exc:           # control characters: not XML text
            raise InvalidArgument(f"export: invalid {tag} {text!r}: {exc}") from None
    return etree.tostring(root, encoding="unicode")


def export(action: Action, call: DriverCall) -> None:
    """Marketplace export: one line `<IMPORT_INFO>` (IMPORT_SOURCE, MD5, SIZE in MB
    rounded up, FORMAT raw, DISPOSE YES, DISPOSE_CMD).

    Choice: a temporary export file plus DISPOSE, the scheme OpenNebula defines
    for a source that must be removed after the marketplace import (the market
    driver runs DISPOSE_CMD once it has its copy).  Pointing IMPORT_SOURCE at
    the LV's device node, as OpenNebula's lvm driver does, does not work here:
    the node exists only while the LV is active on that host, and this driver
    cannot leave it active -- under lvmlockd a leftover activation blocks
    exclusive use of the image on every other host, and nothing would ever
    release it.  The file costs GFS2 space (the image's data; zero runs stay
    holes) until the marketplace disposes of it.

    On the first reachable bridge host, in ONE remote script: `mkdir -p` the
    datastore directory (export_dir: BASE_PATH under gfs2_mount, else
    <gfs2_mount>/datastores/<ds id>); read-activate the LV (shared); `qemu-img
    convert -q -f raw -O raw -t none <device> <file>.part` (a sparse raw copy);
    `md5sum` of it; release the LV; `mv -f` the .part to `<dir>/.export-<image
    id>-<token>.raw` (export_file).  So the file appears only when everything
    else succeeded.  When a step fails, the LV is released and the .part
    removed (each best effort, separately); the LV is read through
    volumes.copies.Read like every copy source.  An LV already active there (a read-only VM on that
    host) is read as it is and left active.  Refused (InUse) while a
    VM that may write the image uses it: a checksum or copy of a disk being
    written is inconsistent.  A VM that is merely powered off still counts
    (its host keeps the LV active).

    IMPORT_SOURCE is `ssh://<host>:<file>` (downloader.sh: `ssh <host> cat
    <file>`; the file is on the shared GFS2, so any node could serve it) and
    DISPOSE_CMD `ssh <host> rm -f <file>`: both run on the front-end as
    oneadmin, and the marketplace runs DISPOSE_CMD unquoted, so a path that
    needs shell quoting is refused before anything runs.  A second export of
    the same image overwrites the same file.
    """
    req = image_request(action, call)
    target = export_file(action, call.data, req.image_id)
    disks = Disks(action)
    volume = req.volume

    def on(host: str):
        source, dispose = export_source(host, target), dispose_command(host, target)
        lv = disks.lv(host, volume)
        if lv is None:
            raise SourceNotFound(f"image LV {volume} does not exist")
        if INCOMPLETE_TAG in lv.tags:
            raise SourceNotFound(f"image LV {volume} is incomplete (a copy into it was "
                                 f"interrupted)")
        refuse_if_used(volume, writers(lv),
                        "exporting it (a copy of a disk a VM may write is inconsistent)")
        md5 = _export_on(action, host, volume, lv.active_locally, target)
        return host, source, dispose, md5, lv.size_bytes
    host, source, dispose, md5, size_bytes = action.cluster.on_bridge(on, req.bridges)
    action.log(f"{volume}: exported to {host}:{target}, md5 {md5}, {size_bytes} bytes")
    reply(import_info_xml(source, md5, -(-size_bytes // MiB), dispose))


def export_steps(read: Read, target: str) -> tuple[list, list]:
    """(the export script, the cleanup run step by step when it fails) for
    `export`, reading the image through `read`."""
    import posixpath
    from ..qemuimg import convert_argv
    part = f"{target}.part"
    steps = ([["mkdir", "-p", posixpath.dirname(target)]] + read.activate
             + [convert_argv(read.volume.device, part, into_device=False), ["md5sum", part]]
             + read.release + [["mv", "-f", part, target]])
    return steps, [["rm", "-f", part]]


def _export_on(action: Action, host: str, volume: Volume, active_here: bool,
               target: str) -> str:
    """Run export_steps on `host`; the MD5 of the export file."""
    read = Read(action, host, volume, active_here)
    steps, cleanup = export_steps(read, target)
    result = read.run(steps, cleanup=cleanup)
    return parse_md5sum(result.stdout, f"{target}.part")


ACTIONS = runtime.entries(parse_datastore, {"cp": cp, "mkfs": mkfs, "rm": rm, "stat": stat, "clone": clone, "monitor": monitor,
           "snap_delete": snap_delete, "snap_revert": snap_revert,
           "snap_flatten": snap_flatten, "export": export})


# 6.8+: the payload on stdin, the id the only argument; older: both as argv
main = runtime.FrontDoor("datastore action", ACTIONS, label="datastore {}",
                         stdin=lambda name, argv: len(argv) == 1).main

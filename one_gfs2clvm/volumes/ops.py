"""Volume operations on the shared VG: the lifecycle every front door drives.

A disk in use is: an LV, active on the host that runs the VM (exclusively,
or shared for read-only/live-migration), a `one-use=<vm>:<disk>:<host>` tag
on the LV recording that (what `activate` reads after a node reboot), and a
symlink `<sysdir>/disk.<N>` on GFS2 pointing at the LV's device.

Rules kept here:
  * metadata changes (create/remove/extend/rename/tags) run under the
    front-end VG lock; data copies do not hold it;
  * LVs are created inactive and activated where the VM runs;
  * every step is idempotent (re-running after a crash is safe) and a
    multi-step operation registers undo steps on the action.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Protocol

from ..errors import (ConnectError, InUse, InvalidArgument, LockContention, NotFound, NotOurs,
                      RemoteTimeout, SourceNotFound)
from ..lvm import LogicalVolume
from ..names import (LvSource, Use, check_host, check_tag, lv_device_path, parse_lv_name,
                     parse_use_tag)
from ..nodehelper import READONLY_TAG
from .. import qemuimg

MiB = 1 << 20
INCOMPLETE_TAG = "one-incomplete"     # set while a copy into a new LV is running
MADE_PREFIX = "one-made="             # which action made an image LV (made_tag)
_FS_RE = re.compile(r"[a-z][a-z0-9]{0,15}")


class Context(Protocol):
    """What the engine needs from whoever calls it (opennebula.runtime.Action is
    one): configuration, the cluster, a log, an undo list, and the VM the
    operation is for (None: not a VM's)."""

    config: object
    cluster: object
    vm_id: int | None
    undo: object

    def log(self, message: str) -> None: ...


def made_tag(maker: str, image=None) -> str:
    """`one-made=<maker>[.<image REGTIME>]`: set when an action creates an image LV,
    so a re-run adopts only what the same action made for the same image."""
    stamp = getattr(image, "regtime", None)
    return check_tag(f"{MADE_PREFIX}{maker}" + (f".{stamp}" if stamp is not None else ""))


def round_up_mib(size_bytes: int) -> int:
    return -(-size_bytes // MiB) * MiB


def is_frontend(host: str) -> bool:
    """OpenNebula names the front-end itself for stopped/undeployed VMs."""
    names = {socket.gethostname(), socket.getfqdn(), "localhost"}
    names |= {name.split(".")[0] for name in names}
    return host in names or host.split(".")[0] in names


@dataclass(frozen=True)
class Volume:
    vg: str
    lv: str

    @property
    def device(self) -> str:
        return lv_device_path(self.vg, self.lv)

    def __str__(self) -> str:
        return f"{self.vg}/{self.lv}"


class Disks:
    """Volume operations for one action (logging and undo go to the action)."""

    def __init__(self, action: Context):
        self.action = action
        self.config = action.config
        self.cluster = action.cluster

    # -- where to run --------------------------------------------------------
    def worker(self, host: str, bridges: list[str] | None = None) -> str:
        """A worker to run on: `host` itself, or a bridge host when `host` is the
        front-end (stopped/undeployed VMs), which is outside the lock space."""
        if not is_frontend(host):
            return check_host(host)
        candidates = [h for h in (bridges or []) if h] or list(self.config.bridge_hosts)
        if not candidates:
            raise InvalidArgument(f"{host} is the front-end and no bridge host is configured")

        def reachable(bridge: str) -> str:
            self.cluster.remote(bridge).reach()  # connects (host key checked) or raises
            return bridge
        return self.cluster.on_bridge(reachable, candidates)

    # -- reports -------------------------------------------------------------
    def lv(self, host: str, volume: Volume) -> LogicalVolume | None:
        return self.cluster.lvm(host).lv(volume.vg, volume.lv)

    def lvs(self, host: str, volumes: list[Volume]) -> dict[Volume, LogicalVolume]:
        """Several LVs in one report per VG (usually one round trip); absent ones
        are missing from the result."""
        found: dict[Volume, LogicalVolume] = {}
        for vg in sorted({volume.vg for volume in volumes}):
            names = [volume.lv for volume in volumes if volume.vg == vg]
            for lv in self.cluster.lvm(host).lvs(vg, names):
                found[Volume(vg, lv.name)] = lv
        return found

    def uses(self, lv: LogicalVolume) -> list[Use]:
        return [use for use in map(parse_use_tag, lv.tags) if use]

    def copy_site(self, host: str, volume: Volume) -> tuple[str, LogicalVolume]:
        """Where to read `volume` for a copy -- the host a VM uses it on (its
        one-use tag), else `host` -- and its report as read on `host` (whether
        it is active is per host: a caller copying elsewhere reads it there)."""
        lv = self.lv(host, volume)
        if lv is None:
            raise SourceNotFound(f"{volume} does not exist")
        uses = self.uses(lv)
        return (uses[0].host if uses else host), lv

    # -- metadata changes (front-end VG lock) ---------------------------------
    def create(self, host: str, volume: Volume, size_bytes: int, tags: list[str],
               undo_hosts: list[str] | None = None) -> None:
        """Create `volume` inactive; undo removes it again (on `host`, or on the
        first of `undo_hosts` that can, should `host` die meanwhile)."""
        with self.cluster.locked(volume.vg):
            self.cluster.lvm(host).create(volume.vg, volume.lv, round_up_mib(size_bytes), tags)
        self.action.log(f"created {volume} ({round_up_mib(size_bytes) // MiB} MiB)")
        self.undo_create(host, volume, undo_hosts)

    def undo_create(self, host: str, volume: Volume, undo_hosts: list[str] | None = None
                    ) -> None:
        """Register the removal of `volume`, which this action has just created."""
        if undo_hosts:
            hosts = [host] + [h for h in undo_hosts if h != host]
            self.action.undo.push(f"remove {volume}", lambda: self.discard(volume, hosts))
        else:
            self.action.undo.push(f"remove {volume}", lambda: self.remove(host, volume))

    def discard(self, volume: Volume, hosts: list[str], wait: float | None = None) -> str:
        """Remove an unfinished LV from the first of `hosts` that can.  A host
        that died while it had the LV active keeps its lock until the lock
        manager recovers (dlm: the node left the membership), so lock
        contention is retried for up to `wait` (default: lock_timeout) seconds."""
        deadline = time.monotonic() + (self.config.lock_timeout if wait is None else wait)
        while True:
            problems = []
            for host in hosts:
                try:
                    self.remove(host, volume)
                    return host
                except (ConnectError, RemoteTimeout, LockContention) as exc:
                    problems.append(exc)
            if time.monotonic() >= deadline or \
                    not any(isinstance(p, LockContention) for p in problems):
                raise problems[-1]
            time.sleep(2.0)

    def complete_or_cleared(self, host: str, volume: Volume, existing,
                            made: str | None = None) -> bool:
        """True if `existing` (the LV's report, or None) is a finished LV: the
        action has nothing left to make.  A leftover of an interrupted copy
        (incomplete mark) is removed so the caller makes it again.
        `made` (made_tag): an existing LV that does not carry exactly this tag
        was made by someone else -- neither adopted nor removed (NotOurs)."""
        if existing is None:
            return False
        if made is not None:
            theirs = [tag for tag in existing.tags if tag.startswith(MADE_PREFIX)]
            if theirs != [made]:
                who = theirs[0][len(MADE_PREFIX):] if theirs else "something else"
                raise NotOurs(f"{volume} already exists, made by {who}, not by this "
                              f"{made[len(MADE_PREFIX):]}: neither reusing nor "
                              f"removing it")
        if INCOMPLETE_TAG not in existing.tags:
            return True
        self.action.log(f"{volume} is left over from an interrupted run: recreating it")
        self.remove(host, volume, present=True)
        return False

    def remove(self, host: str, *volumes: Volume, present: bool = False) -> None:
        """Deactivate here and remove, in one script under the VG lock; missing
        LVs are fine (idempotent).  `present`: the caller just saw them all."""
        if not present:
            found = self.lvs(host, list(volumes))
            volumes = tuple(volume for volume in volumes if volume in found)
        for vg in sorted({volume.vg for volume in volumes}):
            group = [v for v in volumes if v.vg == vg]
            with self.cluster.locked(vg):
                try:
                    self.cluster.run_steps(host, self._removal_steps(group))
                except NotFound:        # one vanished meanwhile: remove what is left
                    left = [v for v in group if v in self.lvs(host, group)]
                    if left:
                        self.cluster.run_steps(host, self._removal_steps(left))
        for volume in volumes:
            self.action.log(f"removed {volume}")

    def _removal_steps(self, volumes: list[Volume]) -> list[list[str]]:
        steps = []
        for volume in volumes:
            steps += [self.cluster.helper("activate", volume.vg, volume.lv, "n"),
                      self.cluster.helper("remove", volume.vg, volume.lv)]
        return steps

    def retag_step(self, volume: Volume, add: list[str] = (), drop: list[str] = ()
                   ) -> list[str] | None:
        """The helper step dropping then adding tags in one lvchange (one
        metadata commit); None when there is nothing to change."""
        add = [tag for tag in add if tag not in drop]
        if not add and not drop:
            return None
        changes = [word for tag in drop for word in ("deltag", check_tag(tag))]
        changes += [word for tag in add for word in ("addtag", check_tag(tag))]
        return self.cluster.helper("retag", volume.vg, volume.lv, *changes)

    def retag(self, host: str, volume: Volume, add: list[str] = (), drop: list[str] = ()) -> None:
        step = self.retag_step(volume, add, drop)
        if step:
            with self.cluster.locked(volume.vg):
                self.cluster.run_steps(host, [step])    # one helper run, one lvchange

    def use_step(self, volume: Volume, use: Use | None, vm_id: int, disk_id: int,
                 readonly: bool = False) -> list[str]:
        """The helper step making the LV's use tags for (vm, disk) say `use`
        (None: not in use).  The helper reads the tags and applies the one rule
        (nodehelper.use_tag_change) in the same run: no report round trip."""
        if use is not None and (use.vm_id, use.disk_id) != (vm_id, disk_id):
            raise InvalidArgument(f"use {use} is not disk {disk_id} of VM {vm_id}")
        host = "-" if use is None else check_host(use.host)
        return self.cluster.helper("use", volume.vg, volume.lv, vm_id, disk_id, host,
                                   *(["readonly"] if readonly else []))

    def set_use(self, host: str, volume: Volume, use: Use | None, vm_id: int, disk_id: int,
                readonly: bool = False) -> None:
        """Make the LV's use tags for (vm, disk) say `use` (None: not in use), in
        one helper run under the VG lock; NotFound if the LV does not exist."""
        with self.cluster.locked(volume.vg):
            self.cluster.run_steps(host, [self.use_step(volume, use, vm_id, disk_id, readonly)])

    # -- activation and links (one round trip) ---------------------------------
    def activate_and_link(self, host: str, volume: Volume, intent: str,
                          link: str | None = None, tags: list = ()) -> None:
        """One round trip: activate, then the tag steps `tags` (retag_step,
        use_step: metadata changes, so under the VG lock -- the script is
        short), in one helper batch, then link."""
        tags = [step for step in tags if step]
        steps = [self.cluster.helper("activate", volume.vg, volume.lv,
                                     self.cluster.lvm(host).policy.flag(intent)), *tags]
        if link:
            steps = self.cluster.mount_check() + steps + self.link_steps(volume, link)
        if tags:
            with self.cluster.locked(volume.vg):
                self.cluster.run_steps(host, steps)
        else:
            self.cluster.run_steps(host, steps)

    def deactivate(self, host: str, volume: Volume, tolerate_unreachable: bool = False) -> bool:
        """Deactivate on `host`; False if the host could not be reached (and tolerated)."""
        try:
            self.cluster.lvm(host).deactivate(volume.vg, volume.lv)
            return True
        except NotFound:
            return True
        except (ConnectError, RemoteTimeout) as exc:
            if not tolerate_unreachable:
                raise
            self.action.log(f"{host} unreachable, cannot deactivate {volume} there "
                            f"({exc.one_line()}); relying on the lock manager")
            return False

    def link(self, host: str, link: str, target: str) -> None:
        self.cluster.run_steps(host, self.cluster.mount_check() + self.link_steps(target, link))

    @staticmethod
    def link_steps(target, link: str) -> list[list[str]]:
        """`link` made a symlink to `target` (a Volume's device, or a path)."""
        device = target.device if isinstance(target, Volume) else target
        return [["mkdir", "-p", os.path.dirname(link)], ["ln", "-sfn", device, link]]

    def unlink(self, host: str, link: str) -> None:
        self.cluster.remote(host).run(["rm", "-f", link])

    def read_link(self, host: str, link: str) -> str | None:
        result = self.cluster.remote(host).run(["readlink", link], check=False)
        return result.stdout.strip() or None if result.exit_status == 0 else None

    # -- data ----------------------------------------------------------------
    def copy_command(self, source: str, target: str, source_format: str = "raw",
                     target_is_zero: bool = False, progress: bool = False) -> list[str]:
        """qemu-img convert into an existing device; skips zero runs only when the
        target is known to read as zeroes (the zeroing policy decides)."""
        return qemuimg.convert_argv(source, target, source_format,
                                    target_is_zero=target_is_zero, progress=progress)

    def target_is_zero(self) -> bool:
        """Only when this action zeroed the new LV itself (on_create/always).

        Not for on_delete: that would trust every past removal in the VG to have
        gone through the driver, and one manual lvremove would corrupt later
        clones.  Without it qemu-img still writes no zero buffers: zero runs
        become write-zeroes requests, which block devices offload."""
        return self.config.zero_on_create

    def zero_command(self, device: str, offset: int = 0, length: int | None = None) -> list[str]:
        argv = ["/sbin/blkdiscard", "--zeroout"]
        if offset or length is not None:
            argv += ["--offset", str(offset)]
            if length is not None:
                argv += ["--length", str(length)]
        return argv + [device]

    def device_size(self, host: str, device: str) -> int:
        result = self.cluster.remote(host).run(["/sbin/blockdev", "--getsize64", device])
        return int(result.stdout.strip())

    def resolve(self, host: str, path: str) -> str | None:
        """`path` on the host with every symlink resolved (readlink -e); None if
        it does not exist there."""
        result = self.cluster.remote(host).run(["readlink", "-e", "--", path], check=False)
        real = result.stdout.strip()
        return real if result.exit_status == 0 and real.startswith("/") else None

    def probe_image(self, host: str, path: str) -> tuple[str, int]:
        """(format, virtual size in bytes) of an image file on the host (GFS2), with
        the checks every image file passes whichever action reads it
        (qemuimg.check_info: known format, no backing or data file)."""
        result = self.cluster.remote(host).run(qemuimg.info_argv(path))
        return qemuimg.parse_info(result.stdout, host, path)


def volume_of(lv_path_or_name: str, vg: str | None = None) -> Volume:
    """Volume from `/dev/<vg>/<lv>`, `<vg>/<lv>` or a bare LV name plus vg."""
    parts = lv_path_or_name.strip("/").split("/")
    if parts[0] == "dev":
        parts = parts[1:]
    if len(parts) == 2:
        vg, lv = parts
    elif len(parts) == 1 and vg:
        lv = parts[0]
    else:
        raise InvalidArgument(f"not an LV path: {lv_path_or_name!r}")
    parse_lv_name(lv)
    return Volume(vg, lv)


def image_volume(config, source, what: str) -> Volume:
    """The image LV a SOURCE names (<vg>/lv-oneimg-<id>, names.LvSource): never a
    VM's disk LV, whichever action reads or writes through an image SOURCE."""
    if not isinstance(source, LvSource) or parse_lv_name(source.lv).kind != "image":
        raise InvalidArgument(f"{what}: the SOURCE is not an image LV <vg>/lv-oneimg-<id>")
    return Volume(config.check_vg(source.vg), source.lv)


def mkfs_command(fs: str, device: str) -> list[str]:
    """mkfs without questions: a reused LV may still carry an old signature.
    The one filesystem-type rule: lower-case letters and digits (ext4, xfs)."""
    if not isinstance(fs, str) or not _FS_RE.fullmatch(fs):
        raise InvalidArgument(f"invalid filesystem type {fs!r}")
    force = {"ext2": ["-F", "-q"], "ext3": ["-F", "-q"], "ext4": ["-F", "-q"],
             "xfs": ["-f", "-q"], "btrfs": ["-f", "-q"]}.get(fs, [])
    return [f"/sbin/mkfs.{fs}", *force, device]


# ----------------------------------------------------------------- snapshots
#
# A volume's snapshots are full copies in their own linear LVs
# `<LV>-snap-<id>`, named only through LvName.snapshot and found again only by
# the exact parent test, so `lv-oneimg-5-snap-1` is never confused with
# `...-snap-10` or with a snapshot of `lv-oneimg-51`.  The VM-disk snapshot of
# a persistent image and the image's own snapshot are the same LV.

def snapshot_volume(volume: Volume, snap_id: int) -> Volume:
    """The LV of snapshot `snap_id` of `volume`."""
    return Volume(volume.vg, parse_lv_name(volume.lv).snapshot(snap_id))


def parent_of(name: str):
    """The LvName a snapshot LV `name` belongs to (None: not a snapshot of ours)."""
    try:
        return parse_lv_name(name).parent
    except InvalidArgument:
        return None


def snapshots_of(volume: Volume, names) -> list[Volume]:
    """The snapshot LVs of `volume` among LV `names` (exact parent match), by id."""
    base = parse_lv_name(volume.lv)
    mine = [name for name in names if parent_of(name) == base]
    return [Volume(volume.vg, name)
            for name in sorted(mine, key=lambda name: parse_lv_name(name).snap_id)]


def check_snapshot(snapshot: Volume, lv: LogicalVolume | None) -> None:
    """A snapshot to read from (a copy source) exists and is complete."""
    if lv is None:
        raise SourceNotFound(f"snapshot {snapshot} does not exist")
    if INCOMPLETE_TAG in lv.tags:
        raise SourceNotFound(f"snapshot {snapshot} is incomplete (its copy was interrupted)")


# ----------------------------------------------------------------- users

def writers(lv: LogicalVolume) -> list[Use]:
    """VM disks that may be writing `lv`: its use tags, unless the LV carries the
    read-only mark (every attachment was READONLY; see Disks.set_use)."""
    if READONLY_TAG in lv.tags:
        return []
    return [use for use in map(parse_use_tag, lv.tags) if use]


def refuse_if_used(volume: Volume, users: list[Use], doing: str) -> None:
    if users:
        raise InUse(f"{volume} is in use by VM {users[0].vm_id} on "
                    f"{users[0].host}: not {doing}")


# ----------------------------------------------------------------- removal

def refuse_if_open(host: str, volume: Volume, lv: LogicalVolume) -> None:
    """Never zero, deactivate or remove what a process still has open."""
    if lv.open_locally:
        raise InUse(f"{volume} is in use on {host} (open by its VM or another "
                    f"process): not zeroing or removing it")


def zero_and_remove(disks: Disks, host: str, volume: Volume, report: dict) -> None:
    """Zero (per the zeroing policy) and remove `volume` with its snapshot LVs,
    on `host`: one zero script, one removal script under the VG lock.  The
    snapshots are full copies of the data, so they are zeroed too; a snapshot
    left behind by a volume already gone is zeroed and removed all the same.
    `report`: the VG's LVs by name, as just read on `host`.  Never zeroes or
    removes what a process still has open there."""
    snapshots = snapshots_of(volume, report)
    present = [volume] if volume.lv in report else []
    for each in present + snapshots:
        refuse_if_open(host, each, report[each.lv])
    if not present + snapshots:
        return
    if disks.config.zero_on_delete:
        flag = disks.cluster.lvm(host).policy.flag("exclusive")
        doomed = present + snapshots         # all activated first: one helper run
        disks.cluster.run_steps(host, [
            *(disks.cluster.helper("activate", each.vg, each.lv, flag) for each in doomed),
            *(disks.zero_command(each.device) for each in doomed)])
        disks.action.log(f"zeroed {', '.join(map(str, present + snapshots))}")
    disks.remove(host, *snapshots, *present, present=True)

"""Fault matrix (issue 8 §3): the installed actions under faults, driven as
OpenNebula drives them.

Every case asserts, where it applies:
  * the action exits non-zero with exactly ONE failure line that names the
    fault (or succeeds, where it can work around it);
  * no LV the action created is left behind;
  * nothing it does not own changed: an `lvs` report of every other LV from
    every node (size, tags, where active, where exclusive) and the bytes of a
    neighbour VM's disk are the same before and after (`Untouched`);
  * once the fault is removed, the very same action (same argv) succeeds.

Faults are restored in `finally` (lvmlockd restarted, lock-started, GFS2
remounted) so later tests see a healthy lab.  The cases that need a worker
to crash share ONE crash and boot: test_node_crash.py (run last).
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import time

import pytest

from testkit.fakeoned import datastore_doc, driver_action_b64
from faultkit import (CopyFreeze, assert_deployed, assert_gone, clone_args, one_line,
                      remote_pids)
from testkit.frontend import FE, IMAGE_DS, MiB, SYSTEM_DS, FrontEnd, digest, pattern
from lab.vmlab import GFS2_LV, GFS2_MOUNT, VG
from one_gfs2clvm.errors import LockContention
from one_gfs2clvm.locking import lock_path
from one_gfs2clvm.names import lv_device_path

SMALL, BIG, FILLER, MISSING = 600, 601, 608, 609
SMALL_DATA = pattern(SMALL, 16 * MiB)
BIG_SIZE = 256 * MiB
NEIGHBOUR = 7700
NEIGHBOUR_DATA = pattern(NEIGHBOUR, 4 * MiB)
DEAD_BRIDGE_DS = 101                     # an image datastore whose first bridge is dead


# ----------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def big_image(lab, tmp_path_factory):
    """lv-oneimg-601: 256 MiB of non-zero bytes, so a copy stays in flight long
    enough to be interrupted."""
    maker = FrontEnd(lab, tmp_path_factory.mktemp("faults-image"))
    maker.close()                         # only its cluster is used from here on
    data = pattern(BIG, BIG_SIZE)
    maker.make_image_lv(BIG, BIG_SIZE // MiB, data)
    yield digest(data)
    maker.remove_image_lvs([BIG])


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend-faults"))
    frontend.make_image_lv(SMALL, 16, SMALL_DATA)
    for image, size in ((SMALL, 16), (BIG, 256)):
        frontend.image(image, size=size)
    yield frontend
    frontend.remove_image_lvs([SMALL, FILLER, MISSING])
    frontend.close()


@pytest.fixture(scope="module")
def neighbour(fe, lab):
    """VM 7700 on node1 with data on its disk: what no fault case may touch."""
    node = lab.node_names[0]
    fe.vm(NEIGHBOUR, [{"image_id": SMALL, "size": 16}], host=node)
    fe.tm("clone", f"{FE}:{VG}/lv-oneimg-{SMALL}", f"{node}:{fe.disk_path(NEIGHBOUR, 0)}",
          NEIGHBOUR, IMAGE_DS)
    fe.write(node, f"lv-one-{NEIGHBOUR}-0", NEIGHBOUR_DATA)
    yield node
    fe.cleanup_vms([NEIGHBOUR])


# ----------------------------------------------------------------- helpers

def owned(vm_ids=(), image_ids=()):
    """keep() for lv_report: every LV except those of these VMs / images."""
    vm_prefixes = tuple(f"lv-one-{vm}-" for vm in vm_ids)
    images = {f"lv-oneimg-{image}" for image in image_ids}

    def keep(name: str) -> bool:
        return not (name.startswith(vm_prefixes) or name in images or
                    name.split("-snap-")[0] in images)
    return keep


class Untouched:
    """What a case must leave alone: every other LV as each node reports it, and
    the neighbour VM's bytes (all 16 MiB of its disk)."""

    def __init__(self, fe: FrontEnd, vm_ids=(), image_ids=(), nodes=None):
        self.fe, self.nodes = fe, nodes
        self.keep = owned(vm_ids, image_ids)
        self.before = self._state()

    def _state(self):
        fe = self.fe
        node = fe.lab.node_names[0]
        report = fe.lv_report(self.nodes, self.keep)
        return report, fe.sha(node, f"lv-one-{NEIGHBOUR}-0", 16 * MiB)

    def check(self, nodes=None) -> None:
        self.nodes = nodes or self.nodes
        after = self._state()
        report_before, sha_before = self.before
        report_after, sha_after = after
        assert sha_after == sha_before, "the neighbour VM's disk changed"
        changed = {name: (report_before.get(name), report_after.get(name))
                   for name in set(report_before) | set(report_after)
                   if report_before.get(name) != report_after.get(name)}
        assert not changed, f"LVs the action does not own changed: {changed}"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----------------------------------------------------------------- the target node degraded

class Degrade:
    """Take the shared-storage stack of one node down step by step, and back.

    unmount: GFS2 unmounted.  lockstop: + the GFS2 LV deactivated and the VG's
    lockspace stopped (lvmlockd refuses a lock-stop while LVs are active).
    lvmlockd: + lvmlockd stopped.  restore(): everything back, idempotently."""

    def __init__(self, lab, node: str):
        self.lab, self.node = lab, node

    def sh(self, script: str, check: bool = True):
        return self.lab.sh(self.node, script, check=check, timeout=120)

    def unmount(self) -> None:
        self.sh(f"! mountpoint -q {GFS2_MOUNT} || umount {GFS2_MOUNT}")

    def lockstop(self) -> None:
        self.unmount()
        self.sh(f"lvchange -an {VG}/{GFS2_LV} && vgchange --lock-stop {VG}")

    def stop_lvmlockd(self) -> None:
        self.lockstop()
        self.sh("lvmlockctl --stop-lockspaces --wait 1 && systemctl stop lvmlockd")

    def _wait(self, check: str, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.sh(check, check=False).exit_status != 0:
            assert time.monotonic() < deadline, f"{self.node}: {what} not back"
            time.sleep(0.5)

    def restore(self) -> None:
        self.sh("systemctl start lvmlockd")
        self._wait("lvmlockctl --info >/dev/null 2>&1", "lvmlockd")
        self.sh(f"lvmlockctl -i | grep -q 'VG {VG}' || vgchange -q --lock-start {VG}")
        self._wait(f"lvmlockctl -i | grep -q 'VG {VG}'", "lock-start")
        self.sh(f"mountpoint -q {GFS2_MOUNT} || {{ lvchange -asy {VG}/{GFS2_LV} && "
                f"mount -t gfs2 -o noatime /dev/{VG}/{GFS2_LV} {GFS2_MOUNT}; }}")


def degraded_clone(fe, lab, vm_id: int, step: str, *needles: str) -> None:
    """Clone onto node3 while its stack is degraded by `step`: one clear line,
    nothing made, nothing else touched; the same clone succeeds once restored."""
    target = lab.node_names[-1]
    guard = Untouched(fe, [vm_id])
    fe.vm(vm_id, [{"image_id": SMALL, "size": 16}], host=target)
    args = clone_args(fe, vm_id, target, SMALL)
    degrade = Degrade(lab, target)
    try:
        getattr(degrade, step)()
        failed = fe.tm("clone", *args, expect_ok=False)
        one_line(failed, target, *needles)
        assert_gone(fe, vm_id)
    finally:
        degrade.restore()
    guard.check()
    fe.tm("clone", *args)
    assert_deployed(fe, vm_id, target, 16 * MiB, digest(SMALL_DATA))


# ----------------------------------------------------------------- the cases

def test_sigkill_mid_copy_then_rerun(fe, vm_ids, lab, neighbour, big_image):
    """SIGKILL of the clone while qemu-img copies 256 MiB: the process cannot
    clean up; re-running the same clone (recover --retry) must give a correct
    disk, exclusive on the host only, the image released, no copy left running
    on the node, and nothing else changed."""
    vm_id, node = 7701, lab.node_names[1]
    vm_ids.append(vm_id)
    lv = f"lv-one-{vm_id}-0"
    guard = Untouched(fe, [vm_id], [BIG])
    fe.vm(vm_id, [{"image_id": BIG, "size": 256}], host=node)
    args = clone_args(fe, vm_id, node, BIG)
    freeze = CopyFreeze(lab, node, lv)
    running = fe.spawn_tm("clone", *args)
    freeze.wait(running)
    running.kill(signal.SIGKILL)
    killed = running.wait(60)
    freeze.release()                 # the orphaned copy goes on as it would have
    assert killed.exit_code == -signal.SIGKILL, killed.stderr
    fe.tm("clone", *args)
    assert_deployed(fe, vm_id, node, BIG_SIZE, big_image)
    assert fe.active_on(f"lv-oneimg-{BIG}") == []
    assert remote_pids(lab, node, f"qemu-img convert .*/{lv}$") == []
    guard.check()


def test_vg_full(fe, vm_ids, lab, neighbour):
    """The VG has less free space than the disk needs: one line saying so,
    nothing made; with the space back the same clone succeeds."""
    vm_id, node = 7702, lab.node_names[1]
    vm_ids.append(vm_id)
    fe.vm(vm_id, [{"image_id": SMALL, "size": 16}], host=node)
    args = clone_args(fe, vm_id, node, SMALL)
    lvm = fe.cluster.lvm(node)
    free = lvm.vgs(VG).free_bytes
    assert free > 64 * MiB
    lvm.create(VG, f"lv-oneimg-{FILLER}", free - 8 * MiB)        # 8 MiB left < 16 MiB
    try:
        guard = Untouched(fe, [vm_id])
        failed = fe.tm("clone", *args, expect_ok=False)
        one_line(failed, VG, "free space")
        assert_gone(fe, vm_id)
        guard.check()
    finally:
        lvm.remove(VG, f"lv-oneimg-{FILLER}")
    fe.tm("clone", *args)
    assert_deployed(fe, vm_id, node, 16 * MiB, digest(SMALL_DATA))


def test_gfs2_not_mounted_on_target(fe, vm_ids, lab, neighbour):
    """GFS2 not mounted on the target: the line says so (not mkdir's
    "Permission denied" on the bare directory)."""
    vm_ids.append(7703)
    degraded_clone(fe, lab, 7703, "unmount", GFS2_MOUNT, "not mounted", "GFS2")


def test_vg_not_lock_started_on_target(fe, vm_ids, lab, neighbour):
    """The VG's lockspace is stopped on the target: the line names the VG and
    says it is not lock-started there."""
    vm_ids.append(7704)
    degraded_clone(fe, lab, 7704, "lockstop", VG, "lock-start")


def test_lvmlockd_stopped_on_target(fe, vm_ids, lab, neighbour):
    """lvmlockd is not running on the target: the line says so."""
    vm_ids.append(7705)
    degraded_clone(fe, lab, 7705, "stop_lvmlockd", "lvmlockd")


def test_lv_lock_held_by_another_node(fe, vm_ids, lab, neighbour):
    """Resume onto node2 while the disk is still active exclusively on node3 (a
    stale activation): one line, nothing activated, no tag added; after node3
    lets go, the same resume succeeds."""
    vm_id, node, holder = 7706, lab.node_names[1], lab.node_names[2]
    vm_ids.append(vm_id)
    lv = f"lv-one-{vm_id}-0"
    fe.vm(vm_id, [{"image_id": SMALL, "size": 16}], host=node)
    fe.tm("clone", *clone_args(fe, vm_id, node, SMALL))
    disk = fe.disk_path(vm_id, 0)
    fe.tm("mv", f"{node}:{disk}", f"{FE}:{disk}", vm_id, IMAGE_DS)          # stop
    fe.cluster.lvm(holder).activate(VG, lv, "exclusive")
    try:
        guard = Untouched(fe, [vm_id])
        before = fe.lv_report(keep=lambda name: name == lv)
        failed = fe.tm("mv", f"{FE}:{disk}", f"{node}:{disk}", vm_id, IMAGE_DS,
                       expect_ok=False)
        one_line(failed, node, lv, "held by another host")
        assert fe.lv_report(keep=lambda name: name == lv) == before
        guard.check()
    finally:
        fe.cluster.lvm(holder).deactivate(VG, lv)
    fe.tm("mv", f"{FE}:{disk}", f"{node}:{disk}", vm_id, IMAGE_DS)
    assert_deployed(fe, vm_id, node, 16 * MiB, digest(SMALL_DATA))


def test_ssh_refused(fe, vm_ids, lab, neighbour, tmp_path):
    """The target's sshd does not answer on the configured port."""
    vm_id, node = 7707, lab.node_names[1]
    vm_ids.append(vm_id)
    port = closed_port()
    wrong = fe.variant(fe.conf_variant(tmp_path / "wrong-port.conf",
                                       {"ssh.hosts": {node: f"127.0.0.1:{port}"}}))
    fe.vm(vm_id, [{"image_id": SMALL, "size": 16}], host=node)
    args = clone_args(fe, vm_id, node, SMALL)
    guard = Untouched(fe, [vm_id])
    failed = wrong.tm("clone", *args, expect_ok=False)
    one_line(failed, node, f"127.0.0.1:{port}", "refused")
    assert_gone(fe, vm_id)
    guard.check()
    fe.tm("clone", *args)
    assert_deployed(fe, vm_id, node, 16 * MiB, digest(SMALL_DATA))


def test_host_key_changed(fe, vm_ids, lab, neighbour, tmp_path):
    """known_hosts holds another key for the target: refused before any command."""
    vm_id, node, other = 7708, lab.node_names[1], lab.node_names[0]
    vm_ids.append(vm_id)
    lines = lab.known_hosts.read_text().splitlines()
    address = {n.name: f"[127.0.0.1]:{n.ssh_port}" for n in lab.members}
    other_key = next(line for line in lines if line.startswith(address[other] + " "))
    swapped = [address[node] + " " + other_key.split(" ", 1)[1] if
               line.startswith(address[node] + " ") else line for line in lines]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("\n".join(swapped) + "\n")
    changed = fe.variant(fe.conf_variant(tmp_path / "host-key.conf",
                                         {"ssh": {"known_hosts": known_hosts}}))
    fe.vm(vm_id, [{"image_id": SMALL, "size": 16}], host=node)
    args = clone_args(fe, vm_id, node, SMALL)
    guard = Untouched(fe, [vm_id])
    failed = changed.tm("clone", *args, expect_ok=False)
    one_line(failed, node, "host key", "does not match")
    assert_gone(fe, vm_id)
    guard.check()
    fe.tm("clone", *args)
    assert_deployed(fe, vm_id, node, 16 * MiB, digest(SMALL_DATA))


def test_frontend_vg_lock_held_by_a_stuck_process(fe, vm_ids, lab, neighbour, tmp_path):
    """Another (stuck) process holds the front-end VG lock: the action gives up
    after lock_timeout with one line, having made nothing."""
    vm_id, node = 7709, lab.node_names[1]
    vm_ids.append(vm_id)
    quick = fe.variant(fe.conf_variant(tmp_path / "quick-lock.conf",
                                       {"locking": {"lock_timeout": 2}}))
    fe.vm(vm_id, [{"image_id": SMALL, "size": 16}], host=node)
    args = clone_args(fe, vm_id, node, SMALL)
    guard = Untouched(fe, [vm_id])
    path = lock_path(quick.config, VG)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        failed = quick.tm("clone", *args, expect_ok=False)
        assert time.monotonic() - started < 60
        one_line(failed, path, "within 2 s")
        assert failed.exit_code == 5
    finally:
        os.close(fd)
    assert_gone(fe, vm_id)
    guard.check()
    quick.tm("clone", *args)
    assert_deployed(fe, vm_id, node, 16 * MiB, digest(SMALL_DATA))


def test_delete_while_the_disk_is_open(fe, vm_ids, lab, neighbour):
    """terminate while a process on the host (qemu not yet gone) holds disk.0
    open: the delete must refuse with one line naming the host and that the
    LV is in use -- before zeroing it: a failed delete leaves the bytes, the
    activation, the tag and the link as they were.  Once the device is
    closed, the same delete succeeds."""
    vm_id, node = 7710, lab.node_names[1]
    vm_ids.append(vm_id)
    lv = f"lv-one-{vm_id}-0"
    fe.vm(vm_id, [{"image_id": SMALL, "size": 16}], host=node)
    fe.tm("clone", *clone_args(fe, vm_id, node, SMALL))
    written = pattern(vm_id, 2 * MiB)
    fe.write(node, lv, written)
    expected = fe.sha(node, lv, 16 * MiB)
    disk = f"{node}:{fe.disk_path(vm_id, 0)}"
    holder = lab.sh(node, 'setsid sh -c \'exec 3<"$1"; exec sleep 600\' sh "$1" '
                          '</dev/null >/dev/null 2>&1 & echo $!',
                    lv_device_path(VG, lv), user="oneadmin").stdout.strip()
    try:
        guard = Untouched(fe, [vm_id])
        before = fe.lv_report(keep=lambda name: name == lv)
        failed = fe.tm("delete", disk, vm_id, IMAGE_DS, expect_ok=False)
        one_line(failed, node, lv, "in use")
        assert fe.lv_report(keep=lambda name: name == lv) == before
        assert fe.sha(node, lv, 16 * MiB) == expected, "a failed delete zeroed the disk"
        assert fe.link(fe.disk_path(vm_id, 0)) == lv_device_path(VG, lv)
        guard.check()
    finally:
        lab.sh(node, 'kill "$1" 2>/dev/null || true', holder)
    fe.tm("delete", disk, vm_id, IMAGE_DS)
    fe.tm("delete", f"{node}:{fe.sysdir(vm_id)}", vm_id, SYSTEM_DS)
    assert_gone(fe, vm_id)
    assert not fe.exists(fe.sysdir(vm_id))


def test_source_image_missing(fe, vm_ids, lab, neighbour):
    """The image LV is gone (removed between the image's allocation and the
    deploy): one line naming it, nothing made; once it exists, the same clone
    succeeds."""
    vm_id, node = 7711, lab.node_names[1]
    vm_ids.append(vm_id)
    fe.remove_image_lvs([MISSING])
    fe.vm(vm_id, [{"image_id": MISSING, "size": 16}], host=node)
    args = clone_args(fe, vm_id, node, MISSING)
    guard = Untouched(fe, [vm_id], [MISSING])
    failed = fe.tm("clone", *args, expect_ok=False)
    one_line(failed, f"{VG}/lv-oneimg-{MISSING}", "does not exist")
    assert_gone(fe, vm_id)
    guard.check()
    data = pattern(MISSING, 8 * MiB)
    fe.make_image_lv(MISSING, 8, data)
    fe.tm("clone", *args)
    assert_deployed(fe, vm_id, node, 16 * MiB, digest(data), length=len(data))


def test_dead_first_bridge_host(fe, vm_ids, lab, neighbour, tmp_path):
    """The first BRIDGE_LIST host is unreachable: stop, delete of the stopped
    VM and monitor run on the next bridge host and succeed."""
    vm_id, node = 7712, lab.node_names[1]
    vm_ids.append(vm_id)
    dead = fe.variant(fe.conf_variant(tmp_path / "dead-bridge.conf", {
        "ssh.hosts": {"deadnode": f"127.0.0.1:{closed_port()}"},
        "storage": {"bridge_hosts": "deadnode, " + ", ".join(lab.node_names)}}))
    bridges = "deadnode " + " ".join(lab.node_names)
    template = {"BRIDGE_LIST": bridges, "VG_NAME": VG}
    fe.oned.put_datastore(datastore_doc(DEAD_BRIDGE_DS, type=0, template=template))
    fe.vm(vm_id, [{"image_id": SMALL, "size": 16, "datastore_id": DEAD_BRIDGE_DS}], host=node)
    guard = Untouched(fe, [vm_id])
    disk = fe.disk_path(vm_id, 0)
    dead.tm("clone", *clone_args(fe, vm_id, node, SMALL, DEAD_BRIDGE_DS))
    dead.tm("mv", f"{node}:{disk}", f"{FE}:{disk}", vm_id, DEAD_BRIDGE_DS)       # stop
    dead.tm("mv", f"{node}:{fe.sysdir(vm_id)}", f"{FE}:{fe.sysdir(vm_id)}", vm_id, SYSTEM_DS)
    assert fe.lv_report(keep=lambda name: name == f"lv-one-{vm_id}-0") == \
        {f"lv-one-{vm_id}-0": (16 * MiB, (), (), ())}
    monitor = dead.tm("monitor", SYSTEM_DS, stdin=driver_action_b64(
        datastore=datastore_doc(SYSTEM_DS, type=1, template=template)))
    assert set(dict(line.split("=") for line in monitor.stdout.split())) == \
        {"USED_MB", "FREE_MB", "TOTAL_MB"}
    for _ in range(2):                   # terminate while stopped; again: idempotent
        dead.tm("delete", f"{FE}:{disk}", vm_id, DEAD_BRIDGE_DS)
        dead.tm("delete", f"{FE}:{fe.sysdir(vm_id)}", vm_id, SYSTEM_DS)
    assert_gone(fe, vm_id)
    assert not fe.exists(fe.sysdir(vm_id))
    guard.check()


def test_live_migration_fails_after_premigrate(fe, vm_ids, lab, neighbour):
    """premigrate, then the hypervisor's migration fails and oned calls
    failmigrate: every disk exclusive on the source only again (lvs on every
    node), the destination cannot take it, tags and bytes unchanged; failmigrate
    again is harmless, and the migration done again succeeds."""
    vm_id, src, dst = 7713, lab.node_names[1], lab.node_names[2]
    vm_ids.append(vm_id)
    fe.vm(vm_id, [{"image_id": SMALL, "size": 16}, {"type": "fs", "size": 8}], host=src)
    fe.tm("clone", *clone_args(fe, vm_id, src, SMALL))
    fe.tm("mkimage", 8, "raw", f"{src}:{fe.disk_path(vm_id, 1)}", vm_id, SYSTEM_DS)
    written = pattern(vm_id, MiB)
    fe.write(src, f"lv-one-{vm_id}-0", written)
    guard = Untouched(fe, [vm_id])
    mine = {f"lv-one-{vm_id}-0": 16 * MiB, f"lv-one-{vm_id}-1": 8 * MiB}

    def on_only(host):
        return {lv: (size, (f"one-use={vm_id}:{lv[-1]}:{host}",), (host,), (host,))
                for lv, size in mine.items()}

    stdin = fe.vm_xml_b64(vm_id)
    args = (src, dst, fe.sysdir(vm_id), vm_id, SYSTEM_DS)
    fe.tm("premigrate", *args, stdin=stdin)
    for _ in range(2):
        fe.tm("failmigrate", *args, stdin=stdin)
        assert fe.lv_report(keep=mine.__contains__) == on_only(src)
        with pytest.raises(LockContention):
            fe.cluster.lvm(dst).activate(VG, f"lv-one-{vm_id}-0", "shared")
    assert fe.sha(src, f"lv-one-{vm_id}-0", MiB) == digest(written)
    guard.check()
    fe.tm("premigrate", *args, stdin=stdin)
    fe.tm("postmigrate", *args, stdin=stdin)
    assert fe.lv_report(keep=mine.__contains__) == on_only(dst)
    assert fe.sha(dst, f"lv-one-{vm_id}-0", MiB) == digest(written)


def test_concurrent_delete_and_clone_of_the_same_vm(fe, vm_ids, lab, neighbour,
                                                    big_image):
    """A delete of disk.0 arrives while the clone of the same disk copies (two
    driver processes at once).  Each exits 0 or with one line; the end state is
    consistent: either no LV and no link, or a complete disk with the image's
    bytes, exclusive on the host and linked.  Delete and clone re-run after it
    succeed."""
    vm_id, node = 7714, lab.node_names[1]
    vm_ids.append(vm_id)
    lv = f"lv-one-{vm_id}-0"
    fe.vm(vm_id, [{"image_id": BIG, "size": 256}], host=node)
    args = clone_args(fe, vm_id, node, BIG)
    disk = f"{node}:{fe.disk_path(vm_id, 0)}"
    guard = Untouched(fe, [vm_id])
    freeze = CopyFreeze(lab, node, lv)
    cloning = fe.spawn_tm("clone", *args)
    freeze.wait(cloning)
    deleting = fe.spawn_tm("delete", disk, vm_id, IMAGE_DS)
    time.sleep(2)                    # the delete is under way (or queued) mid-copy
    freeze.release()
    results = {"clone": cloning.wait(), "delete": deleting.wait()}
    for name, result in results.items():
        if not result.success:
            one_line(result)
    if results["clone"].success and not results["delete"].success:
        assert_deployed(fe, vm_id, node, BIG_SIZE, big_image)
    else:                                # deleted, or never made: nothing left
        assert fe.lv_report(keep=lambda name: name == lv) == {}
        assert fe.link(fe.disk_path(vm_id, 0)) is None
    assert fe.active_on(f"lv-oneimg-{BIG}") == []
    guard.check()
    # the epilog again, then the prolog again: both succeed
    fe.tm("delete", disk, vm_id, IMAGE_DS)
    fe.tm("delete", f"{node}:{fe.sysdir(vm_id)}", vm_id, SYSTEM_DS)
    assert_gone(fe, vm_id)
    fe.tm("clone", *args)
    assert_deployed(fe, vm_id, node, BIG_SIZE, big_image)

"""TM actions (modern layout) against the lab, driven as OpenNebula drives them.

Each test asserts what is true on the workers: LV existence, activation per
node, the disk.N symlink on GFS2, and the bytes.
"""

from __future__ import annotations

import os

import pytest

from testkit.frontend import FE, IMAGE_DS, MiB, SYSTEM_DS, FrontEnd, digest, pattern
from lab.vmlab import VG
from one_gfs2clvm.errors import LockContention
from one_gfs2clvm.names import lv_device_path

IMAGE_DATA = pattern(1, 8 * MiB)


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend"))
    frontend.make_image_lv(500, 32, IMAGE_DATA)
    frontend.image(500, size=32)
    yield frontend
    frontend.close()




def deploy(fe: FrontEnd, vm_id: int, host: str, volatile: bool = True, context: bool = False):
    """The prolog of a VM with disk 0 = clone of image 500 (+ disk 1 volatile ext4)."""
    disks = [{"image_id": 500, "size": 64}]
    if volatile:
        disks.append({"type": "fs", "fs": "ext4", "size": 16})
    fe.vm(vm_id, disks, host=host)
    fe.tm("clone", f"{FE}:{VG}/lv-oneimg-500", f"{host}:{fe.disk_path(vm_id, 0)}", vm_id, IMAGE_DS)
    if volatile:
        fe.tm("mkimage", 16, "raw", f"{host}:{fe.disk_path(vm_id, 1)}", vm_id, SYSTEM_DS)


def test_instantiate_and_terminate(fe, vm_ids, lab):
    vm_ids.append(7301)
    node = lab.node_names[0]
    deploy(fe, 7301, node)
    disk0, disk1 = "lv-one-7301-0", "lv-one-7301-1"
    assert fe.active_on(disk0) == [node] and fe.active_on(disk1) == [node]
    assert fe.link(fe.disk_path(7301, 0)) == lv_device_path(VG, disk0)
    assert fe.lv(disk0).size_bytes == 64 * MiB              # max(image 32, DISK SIZE 64)
    assert fe.lv(disk0).tags == (f"one-use=7301:0:{node}",)
    assert fe.sha(node, disk0, len(IMAGE_DATA)) == digest(IMAGE_DATA)
    fs_type = fe.cluster.remote(node).run(["/sbin/blkid", "-o", "value", "-s", "TYPE",
                                           lv_device_path(VG, disk1)], check=False)
    assert fs_type.stdout.strip() == "ext4"
    # the image itself is untouched and released again
    assert fe.active_on("lv-oneimg-500") == []

    # terminate: epilog deletes each disk, then the VM dir
    for disk_id, ds in ((0, IMAGE_DS), (1, SYSTEM_DS)):
        fe.tm("delete", f"{node}:{fe.disk_path(7301, disk_id)}", 7301, ds)
    fe.tm("delete", f"{node}:{fe.sysdir(7301)}", 7301, SYSTEM_DS)
    assert fe.lv(disk0) is None and fe.lv(disk1) is None
    assert not fe.exists(fe.sysdir(7301))
    # idempotent: the same epilog again succeeds and changes nothing
    fe.tm("delete", f"{node}:{fe.disk_path(7301, 0)}", 7301, IMAGE_DS)
    fe.tm("delete", f"{node}:{fe.sysdir(7301)}", 7301, SYSTEM_DS)


def test_actions_reach_the_workers_through_the_connection_keeper(fe, vm_ids, lab, tmp_path,
                                                                  monkeypatch):
    """OpenNebula starts every action as a new process; with the keeper on (the
    lab's driver config) they share its verified connections instead of each
    connecting anew.  The trace shows which way each command went."""
    trace = tmp_path / "trace"
    monkeypatch.setitem(fe.env, "ONE_GFS2CLVM_TRACE", str(trace))
    vm_ids.append(7309)
    node = lab.node_names[0]
    deploy(fe, 7309, node, volatile=False)              # a first action may start the keeper
    lock = lab.run / f"gfs2clvm-keeper-{os.getuid()}" / "lock"
    assert os.path.exists(f"/proc/{int(lock.read_text())}")
    trace.write_text("")
    fe.tm("delete", f"{node}:{fe.disk_path(7309, 0)}", 7309, IMAGE_DS)
    fe.tm("delete", f"{node}:{fe.sysdir(7309)}", 7309, SYSTEM_DS)
    lines = [line.split("\t") for line in trace.read_text().splitlines()]
    assert lines and {(host, mode) for host, mode, *_ in lines} == {(node, "keeper")}
    assert fe.lv("lv-one-7309-0") is None


def test_clone_rerun_is_idempotent(fe, vm_ids, lab):
    vm_ids.append(7302)
    node = lab.node_names[1]
    deploy(fe, 7302, node, volatile=False)
    fe.write(node, "lv-one-7302-0", pattern(2, MiB))          # the VM wrote something
    fe.tm("clone", f"{FE}:{VG}/lv-oneimg-500", f"{node}:{fe.disk_path(7302, 0)}", 7302, IMAGE_DS)
    assert fe.sha(node, "lv-one-7302-0", MiB) == digest(pattern(2, MiB))   # not re-copied
    assert fe.active_on("lv-one-7302-0") == [node]


def test_deleting_vm_1_leaves_vms_10_and_100(fe, vm_ids, lab):
    node = lab.node_names[0]
    for vm_id in (1, 10, 100):
        vm_ids.append(vm_id)
        deploy(fe, vm_id, node, volatile=False)
        fe.write(node, f"lv-one-{vm_id}-0", pattern(vm_id, MiB))
    fe.tm("delete", f"{node}:{fe.disk_path(1, 0)}", 1, IMAGE_DS)
    fe.tm("delete", f"{node}:{fe.sysdir(1)}", 1, SYSTEM_DS)
    assert fe.lv("lv-one-1-0") is None
    for vm_id in (10, 100):
        assert fe.active_on(f"lv-one-{vm_id}-0") == [node]
        assert fe.sha(node, f"lv-one-{vm_id}-0", MiB) == digest(pattern(vm_id, MiB))
        assert fe.link(fe.disk_path(vm_id, 0)) == lv_device_path(VG, f"lv-one-{vm_id}-0")


def test_live_migration_hand_over(fe, vm_ids, lab):
    vm_ids.append(7303)
    src, dst = lab.node_names[0], lab.node_names[1]
    deploy(fe, 7303, src)
    stdin = fe.vm_xml_b64(7303)
    args = (src, dst, fe.sysdir(7303), 7303, SYSTEM_DS)
    fe.tm("premigrate", *args, stdin=stdin)
    assert sorted(fe.active_on("lv-one-7303-0")) == sorted([src, dst])   # shared during copy
    fe.write(dst, "lv-one-7303-0", pattern(3, MiB))          # the destination takes over
    fe.tm("postmigrate", *args, stdin=stdin)
    for lv in ("lv-one-7303-0", "lv-one-7303-1"):
        assert fe.active_on(lv) == [dst]
        assert fe.lv(lv).tags == (f"one-use=7303:{lv[-1]}:{dst}",)
    with pytest.raises(LockContention):                      # the source can no longer take it
        fe.cluster.lvm(src).activate(VG, "lv-one-7303-0", "exclusive")
    assert fe.sha(dst, "lv-one-7303-0", MiB) == digest(pattern(3, MiB))


def test_stop_and_resume_elsewhere(fe, vm_ids, lab):
    vm_ids.append(7305)
    first, later = lab.node_names[0], lab.node_names[-1]
    deploy(fe, 7305, first)
    fe.write(first, "lv-one-7305-0", pattern(5, MiB))
    # stop: per disk MV host -> front-end, then the directory
    for disk_id, ds in ((0, IMAGE_DS), (1, SYSTEM_DS)):
        fe.tm("mv", f"{first}:{fe.disk_path(7305, disk_id)}", f"{FE}:{fe.disk_path(7305, disk_id)}",
              7305, ds)
    fe.tm("mv", f"{first}:{fe.sysdir(7305)}", f"{FE}:{fe.sysdir(7305)}", 7305, SYSTEM_DS)
    assert fe.active_on("lv-one-7305-0") == [] and fe.lv("lv-one-7305-0").tags == ()
    # resume on another host
    for disk_id, ds in ((0, IMAGE_DS), (1, SYSTEM_DS)):
        fe.tm("mv", f"{FE}:{fe.disk_path(7305, disk_id)}", f"{later}:{fe.disk_path(7305, disk_id)}",
              7305, ds)
    fe.tm("mv", f"{FE}:{fe.sysdir(7305)}", f"{later}:{fe.sysdir(7305)}", 7305, SYSTEM_DS)
    assert fe.active_on("lv-one-7305-0") == [later]
    assert fe.lv("lv-one-7305-0").tags == (f"one-use=7305:0:{later}",)
    assert fe.sha(later, "lv-one-7305-0", MiB) == digest(pattern(5, MiB))


def test_cold_migration(fe, vm_ids, lab):
    vm_ids.append(7306)
    src, dst = lab.node_names[1], lab.node_names[2 % len(lab.node_names)]
    deploy(fe, 7306, src, volatile=False)
    fe.tm("mv", f"{src}:{fe.disk_path(7306, 0)}", f"{dst}:{fe.disk_path(7306, 0)}", 7306, IMAGE_DS)
    fe.tm("mv", f"{src}:{fe.sysdir(7306)}", f"{dst}:{fe.sysdir(7306)}", 7306, SYSTEM_DS)
    assert fe.active_on("lv-one-7306-0") == [dst]
    assert fe.sha(dst, "lv-one-7306-0", len(IMAGE_DATA)) == digest(IMAGE_DATA)


def test_resubmit_redeploys_a_fresh_copy(fe, vm_ids, lab):
    """recover --recreate: the epilog deletes the disks, the prolog clones again."""
    vm_ids.append(7307)
    first, second = lab.node_names[0], lab.node_names[1]
    deploy(fe, 7307, first, volatile=False)
    fe.write(first, "lv-one-7307-0", pattern(7, MiB))
    fe.tm("delete", f"{first}:{fe.disk_path(7307, 0)}", 7307, IMAGE_DS)
    fe.tm("delete", f"{first}:{fe.sysdir(7307)}", 7307, SYSTEM_DS)
    deploy(fe, 7307, second, volatile=False)
    assert fe.active_on("lv-one-7307-0") == [second]
    assert fe.sha(second, "lv-one-7307-0", len(IMAGE_DATA)) == digest(IMAGE_DATA)


def test_reboot_and_suspend_need_no_storage_change(fe, vm_ids, lab):
    """A VM reboot or suspend calls no TM action: the disk stays usable by qemu
    (oneadmin) on its host, and the checkpoint goes to the VM dir on GFS2."""
    vm_ids.append(7308)
    node = lab.node_names[0]
    deploy(fe, 7308, node, volatile=False)
    remote = fe.cluster.remote(node)
    remote.run(["dd", f"if={fe.disk_path(7308, 0)}", "of=/dev/null", "bs=1M", "count=1",
                "iflag=direct", "status=none"])               # qemu reopening disk.0
    remote.run(["sh", "-c", 'head -c 1048576 /dev/zero > "$1"', "sh",
                f"{fe.sysdir(7308)}/checkpoint"])
    assert fe.exists(f"{fe.sysdir(7308)}/checkpoint")
    assert fe.active_on("lv-one-7308-0") == [node]


def test_delete_of_a_stopped_vm_runs_on_a_bridge(fe, vm_ids, lab):
    vm_ids.append(7309)
    node = lab.node_names[1]
    deploy(fe, 7309, node, volatile=False)
    fe.tm("mv", f"{node}:{fe.disk_path(7309, 0)}", f"{FE}:{fe.disk_path(7309, 0)}", 7309, IMAGE_DS)
    fe.tm("mv", f"{node}:{fe.sysdir(7309)}", f"{FE}:{fe.sysdir(7309)}", 7309, SYSTEM_DS)
    # terminate while stopped: oned names the front-end as the host
    fe.tm("delete", f"{FE}:{fe.disk_path(7309, 0)}", 7309, IMAGE_DS)
    fe.tm("delete", f"{FE}:{fe.sysdir(7309)}", 7309, SYSTEM_DS)
    assert fe.lv("lv-one-7309-0") is None and not fe.exists(fe.sysdir(7309))


@pytest.fixture
def fe_with_dead_host(lab, fe, tmp_path):
    """The same front-end, plus a host `deadnode` whose sshd never answers."""
    import socket
    with socket.socket() as probe:              # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = lab.driver_conf.read_text().replace("[ssh.hosts]\n",
                                               f"[ssh.hosts]\ndeadnode = 127.0.0.1:{port}\n")
    conf = tmp_path / "driver.conf"
    conf.write_text(text)
    frontend = FrontEnd(lab, tmp_path, driver_conf=conf)
    yield frontend
    frontend.close()


def test_cold_migration_from_a_dead_host(fe, fe_with_dead_host, vm_ids, lab):
    vm_ids.append(7310)
    dead = fe_with_dead_host
    node, dst = lab.node_names[0], lab.node_names[1]
    dead.vm(7310, [{"image_id": 500, "size": 64}], host="deadnode")
    dead.tm("clone", f"{FE}:{VG}/lv-oneimg-500", f"{node}:{dead.disk_path(7310, 0)}", 7310,
            IMAGE_DS)
    move = (f"deadnode:{dead.disk_path(7310, 0)}", f"{dst}:{dead.disk_path(7310, 0)}", 7310,
            IMAGE_DS)
    # the lock is still held (the host is unreachable, not yet dead for dlm): clear error
    failed = dead.tm("mv", *move, expect_ok=False)
    assert "held by another host" in failed.failure_message
    assert dead.active_on("lv-one-7310-0") == [node]
    # the host really died and its lock went with it (here: released by hand)
    dead.cluster.lvm(node).deactivate(VG, "lv-one-7310-0")
    result = dead.tm("mv", *move)
    assert "deadnode unreachable" in result.stderr
    assert dead.active_on("lv-one-7310-0") == [dst]
    assert dead.lv("lv-one-7310-0").tags == (f"one-use=7310:0:{dst}",)

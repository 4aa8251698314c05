"""The LVM layer against the real shared VG: lvmlockd + dlm in qemu guests.

Every call goes front-end (this host) -> paramiko -> sshd in a guest ->
sudo -> node helper -> lvm, exactly as the driver does it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import replace

import pytest

from lab.vmlab import GFS2_LV, VG
from one_gfs2clvm.cluster import Cluster
from one_gfs2clvm.errors import HelperRefused, InvalidArgument, LockContention, NotFound
from one_gfs2clvm.lvm import helper_argv
from one_gfs2clvm.names import lv_device_path, vm_disk_lv

MiB = 1 << 20
# VM ids per test process, far from the demo's and from each other.
_ids = itertools.count(9000 + (os.getpid() % 500) * 100)


@pytest.fixture(scope="module")
def cluster(driver_config):
    return Cluster(driver_config)


@pytest.fixture
def new_lv(lab, cluster):
    """Make fresh LV names; whatever they left behind is removed afterwards."""
    made = []

    def make(disk: int = 0) -> str:
        name = vm_disk_lv(next(_ids), disk)
        made.append(name)
        return name

    yield make
    first = lab.node_names[0]
    for name in made:
        for node in lab.node_names:
            if cluster.lvm(node).lv(VG, name) is not None:
                cluster.lvm(node).deactivate(VG, name)
        if cluster.lvm(first).lv(VG, name) is not None:
            cluster.lvm(first).remove(VG, name)


def active_on(lab, cluster, name):
    """Nodes where `name` is active, asked from each node itself."""
    return [node for node in lab.node_names
            if cluster.lvm(node).lv(VG, name).active_locally]


def test_vg_is_shared_with_lvmlockd(lab, cluster):
    vg = cluster.lvm(lab.node_names[0]).vgs(VG)
    assert vg.name == VG
    assert vg.shared and vg.lock_type == "dlm"
    assert vg.size_bytes > vg.free_bytes > 0


def test_lv_lifecycle_on_the_shared_vg(lab, cluster, new_lv):
    node1, node2 = lab.node_names[:2]
    name = new_lv()
    lvm1 = cluster.lvm(node1)
    with cluster.locked(VG):
        lvm1.create(VG, name, 8 * MiB, tags=["one-test"])
    created = cluster.lvm(node2).lv(VG, name)          # seen from another node
    assert created.size_bytes == 8 * MiB
    assert created.tags == ("one-test",)
    assert not created.active and active_on(lab, cluster, name) == []   # created inactive

    cluster.lvm(node2).extend(VG, name, 16 * MiB)
    assert lvm1.lv(VG, name).size_bytes == 16 * MiB
    lvm1.add_tag(VG, name, "one-host=node2")
    lvm1.del_tag(VG, name, "one-test")
    assert cluster.lvm(node2).lv(VG, name).tags == ("one-host=node2",)
    lvm1.remove(VG, name)
    assert cluster.lvm(node2).lv(VG, name) is None
    with pytest.raises(NotFound):
        lvm1.remove(VG, name)


def test_exact_name_selection(lab, cluster):
    """lv-one-N-0 must never match lv-one-N0-0 or lv-one-N-00 style neighbours; named
    reports (vg/lv arguments) list exactly the named LVs that exist."""
    node1 = lab.node_names[0]
    base = next(_ids)
    names = [vm_disk_lv(base, 0), vm_disk_lv(base * 10, 0), vm_disk_lv(base, 10)]
    for name in names:
        cluster.lvm(node1).create(VG, name, 4 * MiB)
    try:
        found = cluster.lvm(node1).lvs(VG, [names[0]])
        assert [lv.name for lv in found] == [names[0]]
        # a named LV that does not exist is simply absent from the report
        absent = vm_disk_lv(base, 99)
        found = cluster.lvm(node1).lvs(VG, [absent, names[2], names[0]])
        assert sorted(lv.name for lv in found) == sorted([names[0], names[2]])
        assert cluster.lvm(node1).lvs(VG, [absent]) == []
    finally:
        for name in names:
            cluster.lvm(node1).remove(VG, name)


def test_exclusive_activation_blocks_other_nodes(lab, cluster, new_lv):
    node_a, node_b = lab.node_names[0], lab.node_names[1]
    name = new_lv()
    cluster.lvm(node_a).create(VG, name, 4 * MiB)
    cluster.lvm(node_a).activate(VG, name, "exclusive")
    assert active_on(lab, cluster, name) == [node_a]
    assert cluster.lvm(node_a).lv(VG, name).active_exclusively
    for intent in ("exclusive", "shared"):
        with pytest.raises(LockContention) as err:
            cluster.lvm(node_b).activate(VG, name, intent)
        assert node_b in str(err.value) and "held by another host" in str(err.value)
    assert active_on(lab, cluster, name) == [node_a]
    cluster.lvm(node_a).deactivate(VG, name)
    cluster.lvm(node_b).activate(VG, name, "exclusive")
    assert active_on(lab, cluster, name) == [node_b]


def test_shared_activation_on_all_nodes(lab, cluster, new_lv):
    name = new_lv()
    cluster.lvm(lab.node_names[0]).create(VG, name, 4 * MiB)
    for node in lab.node_names:
        cluster.lvm(node).activate(VG, name, "shared")
    assert active_on(lab, cluster, name) == lab.node_names
    with pytest.raises(LockContention):       # shared holders block an exclusive one
        cluster.lvm(lab.node_names[0]).activate(VG, name, "exclusive")
    for node in lab.node_names:
        cluster.lvm(node).deactivate(VG, name)
    assert active_on(lab, cluster, name) == []


def test_data_written_on_a_is_read_on_b(lab, cluster, new_lv):
    node_a, node_b = lab.node_names[0], lab.node_names[-1]
    name = new_lv()
    device = lv_device_path(VG, name)
    payload = os.urandom(8 * MiB)
    cluster.lvm(node_a).create(VG, name, 8 * MiB)
    cluster.lvm(node_a).activate(VG, name)
    # as oneadmin, without sudo: the udev rule gives oneadmin the device
    owner = cluster.remote(node_a).run(["stat", "-L", "-c", "%U:%G %a", device]).stdout.split()
    assert owner == ["oneadmin:oneadmin", "660"]
    cluster.remote(node_a).run(["dd", f"of={device}", "bs=1M", "iflag=fullblock",
                                "oflag=direct", "conv=fsync,nocreat", "status=none"],
                               stdin=payload)
    cluster.lvm(node_a).deactivate(VG, name)
    cluster.lvm(node_b).activate(VG, name)
    seen = cluster.remote(node_b).run(["sha256sum", device]).stdout.split()[0]
    assert seen == hashlib.sha256(payload).hexdigest()


def test_helper_refuses_foreign_lv_and_vg(lab, cluster, driver_config):
    node = lab.node_names[0]
    remote = cluster.remote(node)
    helper = [driver_config.sudo, "-n", driver_config.node_helper]
    # LV outside our patterns: the GFS2 LV itself must be untouchable
    refused = remote.run(helper + ["remove", VG, GFS2_LV], check=False)
    assert refused.exit_status == 64 and "not one of ours" in refused.stderr
    refused = remote.run(helper + ["activate", VG, GFS2_LV, "n"], check=False)
    assert refused.exit_status == 64
    # a VG the worker's config does not name
    refused = remote.run(helper + ["create", "vg_other", "lv-one-1-0", "4194304"], check=False)
    assert refused.exit_status == 64 and "not configured" in refused.stderr
    refused = remote.run(helper + ["format-disk", VG], check=False)
    assert refused.exit_status == 64 and "unknown verb" in refused.stderr
    # a front-end that names more VGs than the worker allows gets a typed error
    wider = Cluster(replace(driver_config, volume_groups=(VG, "vg_other")))
    with pytest.raises(HelperRefused) as err:
        wider.lvm(node).vgs("vg_other")
    assert "not configured" in str(err.value) and node in str(err.value)
    # ... and the client refuses before any SSH round trip
    with pytest.raises(InvalidArgument):
        helper_argv(driver_config, "remove", VG, GFS2_LV)
    # the GFS2 LV is still there and mounted everywhere
    for node in lab.node_names:
        assert lab.sh(node, "findmnt -n -o SOURCE /var/lib/one").stdout.strip() \
            == f"/dev/mapper/{VG}-{GFS2_LV}"


def test_oneadmin_cannot_run_lvm_directly(lab, cluster, driver_config):
    remote = cluster.remote(lab.node_names[0])          # as oneadmin
    assert remote.run(["id", "-un"]).stdout.strip() == "oneadmin"
    for argv in (["sudo", "-n", "/usr/sbin/lvremove", "-f", f"{VG}/{GFS2_LV}"],
                 ["sudo", "-n", "/usr/sbin/lvm", "lvremove", "-f", f"{VG}/{GFS2_LV}"],
                 ["sudo", "-n", "/bin/sh", "-c", "id"],
                 ["/usr/sbin/lvremove", "-f", f"{VG}/{GFS2_LV}"]):
        result = remote.run(argv, check=False)
        assert result.exit_status != 0, argv
    # sudo -l lists the helper and nothing else
    listing = remote.run(["sudo", "-n", "-l"]).stdout
    allowed = [line.strip() for line in listing.splitlines() if "NOPASSWD" in line]
    assert allowed == [f"(root) NOPASSWD: {driver_config.node_helper}"]
    assert lab.sh(lab.node_names[0], f"lvs --noheadings -o lv_name {VG}/{GFS2_LV}").stdout.strip() \
        == GFS2_LV


def test_a_helper_batch_runs_in_order_and_stops_at_the_first_failure(lab, cluster, new_lv):
    """One sudo run of `batch` on real LVM: create + activate + tag happen in order;
    a later batch whose middle step fails (exclusive activation while active on
    another node) leaves the step after it undone, and the driver's typed error
    names the failing step's LV."""
    node_a, node_b = lab.node_names[:2]
    name, other = new_lv(0), new_lv(1)
    helper = lambda *words: [cluster.config.sudo, "-n", cluster.config.node_helper, *words]
    with cluster.locked(VG):
        cluster.run_steps(node_a, [helper("create", VG, name, str(4 * MiB), "one-incomplete"),
                                   helper("activate", VG, name, "ey"),
                                   helper("deltag", VG, name, "one-incomplete")])
    lv = cluster.lvm(node_b).lv(VG, name)
    assert lv.tags == () and active_on(lab, cluster, name) == [node_a]
    with cluster.locked(VG):
        cluster.lvm(node_b).create(VG, other, 4 * MiB)
    with pytest.raises(LockContention) as err:
        cluster.run_steps(node_b, [helper("addtag", VG, other, "one-first"),
                                   helper("activate", VG, name, "ey"),      # ey on node_a
                                   helper("addtag", VG, other, "one-never")])
    assert f"{node_b}: {VG}/{name}:" in err.value.one_line()
    assert cluster.lvm(node_a).lv(VG, other).tags == ("one-first",)
    assert active_on(lab, cluster, name) == [node_a]
    # one sudo run carried the three requests (sudo logs each run's command line)
    runs = lab.sh(node_b, f"journalctl -q --no-pager -t sudo | grep -c "
                          f"'one-gfs2clvm-helper batch addtag {VG} {other} one-first ; "
                          f"activate {VG} {name} ey ; addtag' || true").stdout.strip()
    assert runs == "1"


def test_retag_and_use_are_one_metadata_commit_each_on_real_lvm(lab, cluster, new_lv):
    """On real LVM (the VG's seqno counts metadata commits): `retag` with two
    changes is ONE commit; `use` reads the LV's tags and moves a disk's use tag
    in ONE commit, leaves another use alone, commits nothing when the tags
    already say so, and drops the read-only mark with the last use; a `use` of
    an LV that does not exist is NotFound and changes nothing."""
    node_a, node_b = lab.node_names[:2]
    name = new_lv(0)
    helper = lambda *words: [cluster.config.sudo, "-n", cluster.config.node_helper, *words]

    def seqno() -> int:
        return int(lab.sh(node_a, f"vgs --noheadings -o vg_seqno {VG}").stdout)

    def tags() -> list[str]:
        return sorted(cluster.lvm(node_b).lv(VG, name).tags)
    with cluster.locked(VG):
        cluster.lvm(node_a).create(VG, name, 4 * MiB, tags=["one-incomplete"])
        before = seqno()
        cluster.run_steps(node_a, [helper("retag", VG, name, "deltag", "one-incomplete",
                                          "addtag", "one-use=1:0:" + node_a)])
        assert (seqno() - before, tags()) == (1, ["one-use=1:0:" + node_a])
        cluster.run_steps(node_a, [helper("addtag", VG, name, "one-use=2:5:" + node_a),
                                   helper("addtag", VG, name, "one-readonly")])
        before = seqno()
        cluster.run_steps(node_b, [helper("use", VG, name, "1", "0", node_b)])   # moved
        assert (seqno() - before, tags()) == (
            1, ["one-readonly", "one-use=1:0:" + node_b, "one-use=2:5:" + node_a])
        cluster.run_steps(node_b, [helper("use", VG, name, "1", "0", node_b)])   # already so
        assert seqno() - before == 1
        cluster.run_steps(node_b, [helper("use", VG, name, "1", "0", "-")])
        assert tags() == ["one-readonly", "one-use=2:5:" + node_a]
        cluster.run_steps(node_b, [helper("use", VG, name, "2", "5", "-")])      # the last use
        assert tags() == []
        before = seqno()
        with pytest.raises(NotFound):
            cluster.run_steps(node_b, [helper("use", VG, new_lv(1), "1", "1", node_b)])
        assert seqno() == before

"""A worker crashes and boots again; `activate` (the node boot helper, run as
oneadmin from the synced remotes like fs_lvm's cron @reboot job) brings back
exactly the disks of the VMs that run there, from the LV tags alone.
"""

from __future__ import annotations

import pytest

from frontend import FE, IMAGE_DS, MiB, SYSTEM_DS, FrontEnd, digest, pattern
from lab.vmlab import VG

pytestmark = pytest.mark.disruptive     # crashes a node: runs last (conftest)


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend-reboot"))
    frontend.make_image_lv(530, 16, pattern(30, 2 * MiB))
    frontend.make_image_lv(531, 16, pattern(31, 2 * MiB))
    yield frontend
    for vm_id in (7601, 7602, 7603):
        frontend.cleanup_vm(vm_id)
    for node in lab.node_names:
        frontend.cluster.lvm(node).deactivate(VG, "lv-oneimg-531")
    frontend.close()


def test_activate_after_a_node_crash(fe, lab):
    if len(lab.node_names) < 3:
        pytest.skip("needs a third node that keeps running")   # default lab has 3
    crashed, other = lab.node_names[1], lab.node_names[2]
    fe.vm(7601, [{"image_id": 530, "size": 16}, {"type": "fs", "size": 8}], host=crashed)
    fe.tm("clone", f"{FE}:{VG}/lv-oneimg-530", f"{crashed}:{fe.disk_path(7601, 0)}", 7601, IMAGE_DS)
    fe.tm("mkimage", 8, "raw", f"{crashed}:{fe.disk_path(7601, 1)}", 7601, SYSTEM_DS)
    fe.vm(7602, [{"image_id": 531, "persistent": True, "size": 16}], host=crashed)
    fe.tm("ln", f"{FE}:{VG}/lv-oneimg-531", f"{crashed}:{fe.disk_path(7602, 0)}", 7602, IMAGE_DS)
    fe.vm(7603, [{"image_id": 530, "size": 16}], host=other)
    fe.tm("clone", f"{FE}:{VG}/lv-oneimg-530", f"{other}:{fe.disk_path(7603, 0)}", 7603, IMAGE_DS)
    fe.write(crashed, "lv-one-7601-0", pattern(32, MiB))
    mine = ["lv-one-7601-0", "lv-one-7601-1", "lv-oneimg-531"]

    lab.restart_node(crashed)
    for lv in mine:
        assert fe.active_on(lv) == [], lv              # a fresh boot activates nothing

    # `onehost sync` puts the remotes on the node; cron runs activate as oneadmin
    shim = (fe.remotes / "tm/gfs2clvm/activate").read_bytes()
    lab.sh(crashed, 'mkdir -p /var/tmp/one/tm/gfs2clvm && cat > "$1" && chmod 755 "$1"',
           "/var/tmp/one/tm/gfs2clvm/activate", stdin=shim)
    first = fe.cluster.remote(crashed).run(["/var/tmp/one/tm/gfs2clvm/activate"])
    for lv in mine:
        assert fe.active_on(lv) == [crashed], lv
        assert f"{VG}/{lv}: activated (-aey)" in first.stdout
    assert fe.active_on("lv-one-7603-0") == [other]    # another host's VM is left alone
    assert fe.sha(crashed, "lv-one-7601-0", MiB) == digest(pattern(32, MiB))
    again = fe.cluster.remote(crashed).run(["/var/tmp/one/tm/gfs2clvm/activate"])
    assert again.stdout.count("already active") == len(mine)

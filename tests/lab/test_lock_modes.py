"""The other lab shapes: lvmlockd with sanlock (no corosync), and a plain VG.

Each boots its own 2-node lab (own run dir) for this module, and stops it
afterwards unless it was already running.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from lab.vmlab import VG, lab_session
from one_gfs2clvm import config as config_mod
from one_gfs2clvm.cluster import Cluster
from one_gfs2clvm.errors import LockContention
from one_gfs2clvm.names import lv_device_path, vm_disk_lv

MiB = 1 << 20
pytestmark = pytest.mark.own_lab     # runs before the session lab boots (conftest)


@pytest.fixture(scope="module", params=["sanlock", "none"])
def mode_lab(request):
    with lab_session(2, request.param) as running:
        yield running


@pytest.fixture(scope="module")
def mode_cluster(mode_lab):
    return Cluster(config_mod.load(str(mode_lab.driver_conf)))


def test_vg_lock_type_matches_the_mode(mode_lab, mode_cluster):
    vg = mode_cluster.lvm(mode_lab.node_names[0]).vgs(VG)
    if mode_lab.lock == "sanlock":
        assert vg.shared and vg.lock_type == "sanlock"
        assert mode_cluster.config.lock_mode == "lvmlockd"
    else:
        assert not vg.shared and vg.lock_type == ""
        assert mode_cluster.config.lock_mode == "none"


def test_activation_policy_and_handover(mode_lab, mode_cluster):
    node_a, node_b = mode_lab.node_names
    name = vm_disk_lv(7100 + os.getpid() % 100, 0)
    device = lv_device_path(VG, name)
    payload = os.urandom(4 * MiB)
    lvm_a, lvm_b = mode_cluster.lvm(node_a), mode_cluster.lvm(node_b)
    with mode_cluster.locked(VG):
        lvm_a.create(VG, name, 4 * MiB)
    try:
        lvm_a.activate(VG, name, "exclusive")
        if mode_lab.lock == "sanlock":
            # the sanlock lease on the shared disk blocks the other node
            with pytest.raises(LockContention):
                lvm_b.activate(VG, name, "exclusive")
            assert not lvm_b.lv(VG, name).active_locally
        else:
            # a plain VG has no cluster lock: nothing stops a second activation,
            # which is exactly why lock_mode=none is for single hosts and tests
            lvm_b.activate(VG, name, "exclusive")
            assert lvm_b.lv(VG, name).active_locally
            lvm_b.deactivate(VG, name)
        mode_cluster.remote(node_a).run(["dd", f"of={device}", "bs=1M", "oflag=direct",
                                         "conv=fsync,nocreat", "status=none"], stdin=payload)
        lvm_a.deactivate(VG, name)
        lvm_b.activate(VG, name, "exclusive")
        seen = mode_cluster.remote(node_b).run(["sha256sum", device]).stdout.split()[0]
        assert seen == hashlib.sha256(payload).hexdigest()
        lvm_b.deactivate(VG, name)
    finally:
        for lvm in (lvm_a, lvm_b):
            if lvm.lv(VG, name) is not None and lvm.lv(VG, name).active_locally:
                lvm.deactivate(VG, name)
        lvm_a.remove(VG, name)
    assert lvm_b.lv(VG, name) is None

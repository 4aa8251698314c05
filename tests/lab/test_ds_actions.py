"""Datastore actions implemented so far (mkfs, rm, stat, clone, monitor) run as
one_datastore.rb runs them (stdin base64 + id, and the <= 6.6 argv form)."""

from __future__ import annotations

import pytest

from testkit import oneclient
from testkit.fakeoned import datastore_doc, driver_action_b64, image_doc
from testkit.frontend import FE, IMAGE_DS, MiB, FrontEnd, digest, pattern
from lab.vmlab import VG


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend-ds"))
    yield frontend
    frontend.remove_image_lvs((540, 541, 542, 543))
    frontend.close()


def ds(fe, action, obj_id, legacy=False, expect_ok=True, **image):
    payload = driver_action_b64(image=image_doc(obj_id, **image) if image else None,
                                datastore=datastore_doc(IMAGE_DS, template={
                                    "BRIDGE_LIST": " ".join(fe.lab.node_names), "VG_NAME": VG}))
    result = oneclient.run_ds(str(fe.remotes), "gfs2clvm", action, obj_id, payload,
                              env=fe.env, cwd=str(fe.var_lib_one), legacy_argv=legacy,
                              timeout=600)
    fe._check(result, action, expect_ok)
    return result


def test_datablock_with_fs_and_save_as_allocation(fe, lab):
    result = ds(fe, "mkfs", 540, size=32, fs="ext4", format="raw")
    assert result.stdout == f"{VG}/lv-oneimg-540\n"                # exactly one line
    assert fe.lv("lv-oneimg-540").size_bytes == 32 * MiB and fe.active_on("lv-oneimg-540") == []
    node = lab.node_names[0]
    fe.cluster.lvm(node).activate(VG, "lv-oneimg-540")
    kind = lab.sh(node, f"blkid -o value -s TYPE /dev/{VG}/lv-oneimg-540").stdout.strip()
    fe.cluster.lvm(node).deactivate(VG, "lv-oneimg-540")
    assert kind == "ext4"
    # save_as: allocate only (data comes from the TM's cpds); legacy argv form
    result = ds(fe, "mkfs", 541, legacy=True, size=16, format="save_as")
    assert result.stdout == f"{VG}/lv-oneimg-541\n" and fe.lv("lv-oneimg-541").size_bytes == 16 * MiB
    ds(fe, "mkfs", 541, size=16, format="save_as")                  # idempotent re-run


def test_stat_clone_and_rm(fe, lab):
    data = pattern(42, 4 * MiB)
    fe.make_image_lv(542, 24, data)
    assert ds(fe, "stat", 999, path=f"{VG}/lv-oneimg-542").stdout == "24\n"
    result = ds(fe, "clone", 543, path=f"{VG}/lv-oneimg-542", size=24)
    assert result.stdout == f"{VG}/lv-oneimg-543 raw\n"
    node = lab.node_names[1]
    fe.cluster.lvm(node).activate(VG, "lv-oneimg-543")
    assert fe.sha(node, "lv-oneimg-543", len(data)) == digest(data)
    fe.cluster.lvm(node).deactivate(VG, "lv-oneimg-543")
    # rm refuses while a VM uses the image, then removes it (and is idempotent)
    fe.vm(7701, [{"image_id": 543, "persistent": True, "size": 24}], host=node)
    fe.tm("ln", f"{FE}:{VG}/lv-oneimg-543", f"{node}:{fe.disk_path(7701, 0)}", 7701, IMAGE_DS)
    refused = ds(fe, "rm", 543, expect_ok=False, source=f"{VG}/lv-oneimg-543")
    assert "in use by VM 7701" in refused.failure_message and fe.lv("lv-oneimg-543") is not None
    fe.tm("mvds", f"{node}:{fe.disk_path(7701, 0)}", f"{VG}/lv-oneimg-543", 7701, IMAGE_DS)
    fe.cleanup_vms([7701])
    ds(fe, "rm", 543, source=f"{VG}/lv-oneimg-543")
    assert fe.lv("lv-oneimg-543") is None
    ds(fe, "rm", 543, source=f"{VG}/lv-oneimg-543")                  # idempotent


def test_monitor_equals_vgs_and_skips_a_dead_worker(fe, lab, tmp_path):
    import json
    import socket
    result = ds(fe, "monitor", IMAGE_DS)
    values = dict(line.split("=") for line in result.stdout.splitlines())
    assert list(values) == ["USED_MB", "FREE_MB", "TOTAL_MB"]
    report = lab.sh(lab.node_names[1], f"vgs --units b --nosuffix -o vg_size,vg_free "
                                       f"--reportformat json {VG}").stdout
    vg = json.loads(report)["report"][0]["vg"][0]
    total, free = int(vg["vg_size"]) // MiB, int(vg["vg_free"]) // MiB
    assert values == {"USED_MB": str(total - free), "FREE_MB": str(free),
                      "TOTAL_MB": str(total)}
    # the first BRIDGE_LIST host is dead (nothing answers): the next one reports
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "driver.conf"
    conf.write_text(lab.driver_conf.read_text().replace(
        "[ssh.hosts]\n", f"[ssh.hosts]\ndeadnode = 127.0.0.1:{port}\n"))
    payload = driver_action_b64(datastore=datastore_doc(IMAGE_DS, template={
        "BRIDGE_LIST": "deadnode " + " ".join(lab.node_names), "VG_NAME": VG}))
    result = oneclient.run_ds(str(fe.remotes), "gfs2clvm", "monitor", IMAGE_DS, payload,
                              env={**fe.env, "ONE_GFS2CLVM_CONF": str(conf)},
                              cwd=str(fe.var_lib_one), timeout=120)
    assert result.success, result.stderr
    assert dict(line.split("=") for line in result.stdout.splitlines())["TOTAL_MB"] == str(total)

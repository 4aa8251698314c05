"""Datastore image snapshots (snap_delete, snap_revert, snap_flatten) and the
marketplace export, run as one_datastore.rb / one_market.rb run them.

An image's snapshots are taken the way OpenNebula takes them: a TM snap_create
on a persistent disk of that image (the same LV `lv-oneimg-<id>-snap-<n>`).
Ids: images 560-569, VMs 7801-7809 (used nowhere else).
"""

from __future__ import annotations

import re
import shlex

import pytest
from lxml import etree

from testkit import oneclient
from testkit.fakeoned import datastore_doc, driver_action_b64, image_doc
from testkit.frontend import FE, IMAGE_DS, MiB, FrontEnd, digest, pattern
from lab.vmlab import VG
from one_gfs2clvm.names import lv_device_path
from one_gfs2clvm.opennebula.datastore import snapshots_of
from one_gfs2clvm.volumes.ops import Volume

IMAGES = range(560, 570)


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend-ds-snap"))
    yield frontend
    # every image LV of ours and its snapshots, by exact name
    names = [lv.name for lv in frontend.cluster.lvm(lab.node_names[0]).lvs(VG)]
    doomed = []
    for image in IMAGES:
        volume = Volume(VG, f"lv-oneimg-{image}")
        doomed += [s.lv for s in snapshots_of(volume, names)]
        if volume.lv in names:
            doomed.append(volume.lv)
    for lv in doomed:
        for node in lab.node_names:
            frontend.cluster.lvm(node).deactivate(VG, lv)
        frontend.cluster.lvm(lab.node_names[0]).remove(VG, lv)
    frontend.close()


def ds(fe, action, image_id, target=None, legacy=False, expect_ok=True, **image):
    doc = image_doc(image_id, **image)
    if target is not None:                      # image_doc writes TARGET_SNAPSHOT -1
        doc = doc.replace("<TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT>",
                          f"<TARGET_SNAPSHOT>{target}</TARGET_SNAPSHOT>")
    payload = driver_action_b64(image=doc, datastore=datastore_doc(IMAGE_DS, template={
        "BRIDGE_LIST": " ".join(fe.lab.node_names), "VG_NAME": VG}))
    result = oneclient.run_ds(str(fe.remotes), "gfs2clvm", action, image_id, payload,
                              env=fe.env, cwd=str(fe.var_lib_one), legacy_argv=legacy,
                              timeout=600)
    fe.log.append((f"ds {action} {image_id}", result.duration))
    return fe._check(result, action, expect_ok)


def attach(fe, vm_id, image_id, node, size, readonly=False):
    """A VM using the image as a persistent disk 0 on `node` (TM ln)."""
    fe.vm(vm_id, [{"image_id": image_id, "persistent": True, "size": size,
                   "readonly": readonly}], host=node)
    fe.tm("ln", f"{FE}:{VG}/lv-oneimg-{image_id}", f"{node}:{fe.disk_path(vm_id, 0)}",
          vm_id, IMAGE_DS)
    return f"{node}:{fe.disk_path(vm_id, 0)}"


def release(fe, vm_id, image_id, disk):
    fe.tm("mvds", disk, f"{VG}/lv-oneimg-{image_id}", vm_id, IMAGE_DS)


def snapshot_names(fe, image_id) -> list[str]:
    names = [lv.name for lv in fe.cluster.lvm(fe.lab.node_names[0]).lvs(VG)]
    return [s.lv for s in snapshots_of(Volume(VG, f"lv-oneimg-{image_id}"), names)]


def whole_sha(fe, node, lv) -> str:
    """sha256 of every byte of `lv`, read on `node` (activated there for it)."""
    fe.cluster.lvm(node).activate(VG, lv, "shared")
    try:
        return fe.sha(node, lv, fe.lv(lv).size_bytes)
    finally:
        fe.cluster.lvm(node).deactivate(VG, lv)


def test_revert_restores_exact_bytes_and_is_refused_while_in_use(fe, vm_ids, lab):
    vm_ids.append(7801)
    node, other = lab.node_names[0], lab.node_names[1]
    before = pattern(560, 4 * MiB)
    image = fe.make_image_lv(560, 16, before)
    disk = attach(fe, 7801, 560, node, 16)
    fe.tm("snap_create", disk, 0, 7801, IMAGE_DS)            # the image's snapshot 0
    assert snapshot_names(fe, 560) == ["lv-oneimg-560-snap-0"]
    fe.write(node, image, pattern(561, 6 * MiB))             # changed after the snapshot
    refused = ds(fe, "snap_revert", 560, target=0, expect_ok=False)
    assert refused.failure_message == (f"{VG}/{image} is in use by VM 7801 on {node}: "
                                       f"not reverting it")
    assert fe.sha(node, image, 6 * MiB) == digest(pattern(561, 6 * MiB))   # untouched
    release(fe, 7801, 560, disk)
    ds(fe, "snap_revert", 560, target=0)
    assert fe.active_on(image) == [] and fe.active_on("lv-oneimg-560-snap-0") == []
    assert whole_sha(fe, other, image) == whole_sha(fe, other, "lv-oneimg-560-snap-0")
    fe.cluster.lvm(other).activate(VG, image)
    assert fe.sha(other, image, len(before)) == digest(before)
    fe.cluster.lvm(other).deactivate(VG, image)
    # a snapshot that does not exist: one clear line, nothing changed
    missing = ds(fe, "snap_revert", 560, target=7, expect_ok=False)
    assert missing.failure_message == f"snapshot {VG}/lv-oneimg-560-snap-7 does not exist"


def test_delete_exact_and_idempotent_then_flatten(fe, vm_ids, lab):
    vm_ids.append(7802)
    node = lab.node_names[1]
    contents = {1: pattern(5621, 4 * MiB), 10: pattern(5622, 4 * MiB),
                11: pattern(5623, 4 * MiB)}
    image = fe.make_image_lv(562, 16, pattern(5620, 4 * MiB))
    disk = attach(fe, 7802, 562, node, 16)
    for snap_id, data in contents.items():
        fe.write(node, image, data)
        fe.tm("snap_create", disk, snap_id, 7802, IMAGE_DS)
    fe.write(node, image, pattern(5624, 4 * MiB))            # the current state
    assert snapshot_names(fe, 562) == [f"{image}-snap-{n}" for n in (1, 10, 11)]
    # snap_delete takes exactly snapshot 1 (not 10 or 11), also while in use
    ds(fe, "snap_delete", 562, target=1)
    assert snapshot_names(fe, 562) == [f"{image}-snap-10", f"{image}-snap-11"]
    ds(fe, "snap_delete", 562, target=1)                     # idempotent
    ds(fe, "snap_delete", 562, target=1, legacy=True)        # <= 6.6 argv form
    # flatten refused while the VM uses the image; nothing removed
    refused = ds(fe, "snap_flatten", 562, target=10, expect_ok=False)
    assert "in use by VM 7802" in refused.failure_message
    assert snapshot_names(fe, 562) == [f"{image}-snap-10", f"{image}-snap-11"]
    release(fe, 7802, 562, disk)
    ds(fe, "snap_flatten", 562, target=10)
    assert snapshot_names(fe, 562) == []
    assert fe.lv(image) is not None and fe.active_on(image) == []
    reader = lab.node_names[0]
    fe.cluster.lvm(reader).activate(VG, image)
    assert fe.sha(reader, image, 4 * MiB) == digest(contents[10])
    fe.cluster.lvm(reader).deactivate(VG, image)
    ds(fe, "snap_flatten", 562, target=10)                   # re-run: already flattened


def exported_file(fe, lab, result, md5) -> str:
    """Check one export's IMPORT_INFO line and its export file (seen from another
    node's GFS2), then do what the marketplace's DISPOSE_CMD does and check the
    file is gone.  Returns the host IMPORT_SOURCE names."""
    assert result.stdout.count("\n") == 1
    info = etree.fromstring(result.stdout.strip())
    assert info.tag == "IMPORT_INFO"
    assert [child.tag for child in info] == ["IMPORT_SOURCE", "MD5", "SIZE", "FORMAT",
                                             "DISPOSE", "DISPOSE_CMD"]
    host, _, path = info.findtext("IMPORT_SOURCE").removeprefix("ssh://").partition(":")
    assert host in lab.node_names
    assert re.fullmatch(rf"/var/lib/one/datastores/{IMAGE_DS}/\.export-563-[0-9a-f]{{8}}\.raw",
                        path), path
    try:
        assert (info.findtext("MD5"), info.findtext("SIZE"), info.findtext("FORMAT"),
                info.findtext("DISPOSE")) == (md5, "24", "raw", "YES")
        assert info.findtext("DISPOSE_CMD") == shlex.join(["ssh", host, "rm", "-f", path])
        other = next(node for node in lab.node_names if node != host)
        remote = fe.cluster.remote(other)
        assert remote.run(["md5sum", path]).stdout.split()[0] == md5
        assert remote.run(["stat", "-c", "%s", path]).stdout.strip() == str(24 * MiB)
        assert remote.run(["test", "-e", f"{path}.part"], check=False).exit_status == 1
        # DISPOSE_CMD, here through the lab's ssh to that host
        fe.cluster.remote(host).run(["rm", "-f", path])
        assert remote.run(["test", "-e", path], check=False).exit_status == 1
    finally:
        fe.cluster.remote(host).run(["rm", "-f", path, f"{path}.part"])
    return host


def test_export_copies_the_lv_to_a_file_with_its_md5(fe, vm_ids, lab):
    vm_ids.extend([7803, 7804])
    image = fe.make_image_lv(563, 24, pattern(563, 5 * MiB))
    # the md5 of the LV's bytes, read on a node
    reader = lab.node_names[-1]
    fe.cluster.lvm(reader).activate(VG, image, "shared")
    md5 = fe.cluster.remote(reader).run(["md5sum", lv_device_path(VG, image)]).stdout.split()[0]
    fe.cluster.lvm(reader).deactivate(VG, image)
    # one_market.rb runs export with the base64 XML in argv[1] and the id in argv[2]
    result = ds(fe, "export", 563, legacy=True)
    assert fe.active_on(image) == []                         # released after the copy
    exported_file(fe, lab, result, md5)
    # a VM that may write it: refused
    disk = attach(fe, 7803, 563, lab.node_names[1], 24)
    refused = ds(fe, "export", 563, expect_ok=False)
    assert refused.failure_message.startswith(
        f"{VG}/{image} is in use by VM 7803 on {lab.node_names[1]}: not exporting it")
    left = fe.cluster.remote(lab.node_names[0]).run(                # refused before copying
        ["find", f"/var/lib/one/datastores/{IMAGE_DS}", "-name", ".export-563-*"]).stdout
    assert left == ""
    release(fe, 7803, 563, disk)
    # read-only attachment on the first bridge host: exported, and left active for the VM
    first = lab.node_names[0]
    disk = attach(fe, 7804, 563, first, 24, readonly=True)
    assert exported_file(fe, lab, ds(fe, "export", 563), md5) == first
    assert first in fe.active_on(image)
    release(fe, 7804, 563, disk)
    assert fe.active_on(image) == []

"""The 3.x image manager (remotes/image/fs: cp mkfs mv rm), run as 3.2's
one_image.rb runs it (locally, id appended, stdout `SOURCE SIZE_MB`, 3.x
error framing), together with the 3.x TM commands for saveas and persistence.
This completes the 2012 driver's 3.x list: import, datablock, saveas, new
image from another image (vol://)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from testkit import oneclient
from testkit.frontend import FE, MiB, FrontEnd, digest, pattern
from lab.vmlab import VG

IMAGES = range(590, 596)
VMS = (7951, 7952)


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend-image3"))
    # 3.x's default SAFE_DIRS is /var/tmp: uploads wait there
    frontend.uploads = Path(tempfile.mkdtemp(prefix="gfs2clvm-image3-", dir="/var/tmp"))
    yield frontend
    frontend.cleanup_vms(VMS)
    frontend.remove_image_lvs(IMAGES)
    shutil.rmtree(frontend.uploads, ignore_errors=True)
    frontend.close()


def image3(fe, action, image_id, *args, expect_ok=True):
    result = oneclient.run_image3(str(fe.remotes), action, image_id, [*args, image_id],
                                  env=fe.env, cwd=str(fe.var_lib_one), timeout=600)
    fe._check(result, f"image {action}", expect_ok)
    return result


def lv_digest(fe, lv, length):
    node = fe.lab.node_names[1]
    fe.cluster.lvm(node).activate(VG, lv, "shared")
    try:
        return fe.sha(node, lv, length)
    finally:
        fe.cluster.lvm(node).deactivate(VG, lv)


def test_import_datablocks_and_rm_3x(fe, lab):
    data = pattern(40, 5 * MiB) + bytes(7 * MiB)
    upload = fe.uploads / "disk.raw"
    upload.write_bytes(data)
    result = image3(fe, "cp", 590, str(upload))
    assert result.single_line_stdout() == f"{VG}/lv-oneimg-590 12"      # SOURCE SIZE_MB
    assert lv_digest(fe, "lv-oneimg-590", len(data)) == digest(data)
    assert fe.active_on("lv-oneimg-590") == []
    result = image3(fe, "mkfs", 591, "ext3", 8)
    assert result.single_line_stdout() == f"{VG}/lv-oneimg-591 8"
    node = lab.node_names[0]
    fe.cluster.lvm(node).activate(VG, "lv-oneimg-591")
    kind = lab.sh(node, f"blkid -o value -s TYPE /dev/{VG}/lv-oneimg-591").stdout.strip()
    fe.cluster.lvm(node).deactivate(VG, "lv-oneimg-591")
    assert kind == "ext3"
    image3(fe, "rm", 591, f"{VG}/lv-oneimg-591")
    assert fe.lv("lv-oneimg-591") is None
    failed = image3(fe, "cp", 595, "/etc/hostname", expect_ok=False)    # 3.x framing
    assert "RESTRICTED_DIRS" in failed.failure_message and fe.lv("lv-oneimg-595") is None


def test_saveas_persistent_and_vol_3x(fe, lab, vm_ids):
    vm_ids.extend(VMS)
    node = lab.node_names[1]
    disk = "/var/lib/one/7951/images/disk.0"
    fe.tm3("clone", f"{FE}:{VG}/lv-oneimg-590", f"{node}:{disk}")
    fe.write(node, "lv-one-7951-0", pattern(41, MiB))
    # shutdown with a saveas disk: the TM releases the disk, the image manager
    # copies it into the new image (DST "-": it chooses the SOURCE) -- if the
    # new image's owner may manage the VM (disk-saveas), as oned records it
    fe.tm3("mv", f"{node}:{disk}", f"{FE}:{disk}")
    fe.vm(7951, [{"image_id": 590, "size": 12}], uid=5, gid=100, uname="alice")
    fe.image(592, uid=6, gid=101, uname="bob", source="")
    refused = image3(fe, "mv", 592, disk, "-", expect_ok=False)
    assert "may not manage VM 7951" in refused.failure_message and fe.lv("lv-oneimg-592") is None
    fe.image(592, uid=5, gid=100, uname="alice", source="")
    result = image3(fe, "mv", 592, disk, "-")
    assert result.single_line_stdout() == f"{VG}/lv-oneimg-592 12"
    expected = pattern(41, MiB) + pattern(40, 5 * MiB)[MiB:] + bytes(7 * MiB)
    assert lv_digest(fe, "lv-oneimg-592", len(expected)) == digest(expected)
    fe.tm3("delete", f"{node}:/var/lib/one/7951/images")
    # a persistent image saved back: nothing moves, the reply names the image
    disk = "/var/lib/one/7952/images/disk.0"
    fe.tm3("ln", f"{FE}:{VG}/lv-oneimg-590", f"{node}:{disk}")
    refused = image3(fe, "rm", 590, f"{VG}/lv-oneimg-590", expect_ok=False)
    assert "in use by VM 7952" in refused.failure_message
    fe.tm3("mv", f"{node}:{disk}", f"{FE}:{disk}")
    fe.vm(7952, [{"image_id": 590, "size": 12}])
    fe.image(590, source=f"{VG}/lv-oneimg-590", size=12)
    result = image3(fe, "mv", 590, disk, f"{VG}/lv-oneimg-590")
    assert result.single_line_stdout() == f"{VG}/lv-oneimg-590 12"
    assert "nothing to move" in result.stderr + result.stdout
    fe.tm3("delete", f"{node}:/var/lib/one/7952/images")
    # a new OS image from another image (vol://), rights checked through oned
    fe.image(590, source=f"{VG}/lv-oneimg-590", size=12)
    fe.image(593, uid=0, source="", path="vol://590", size=12)
    result = image3(fe, "cp", 593, "vol://590")
    assert result.single_line_stdout() == f"{VG}/lv-oneimg-593 12"
    assert lv_digest(fe, "lv-oneimg-593", 12 * MiB) == lv_digest(fe, "lv-oneimg-590", 12 * MiB)

"""Datastore `cp` and `stat` for every PATH form, run as one_datastore.rb runs
them (base64 XML on stdin, one stdout line): files on the management node
(raw sparse, qcow2), on GFS2 (vmdk), http URLs served on 127.0.0.1 (vdi,
raw), lvm:// and vol:// with their permission checks, .isox ISOs, and
imports that must fail without leaving anything behind."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import threading

import pytest

from testkit.frontend import FE, IMAGE_DS, MiB, FrontEnd, digest, pattern
from lab.vmlab import VG

IMAGES = range(570, 590)
VMS = (7901, 7902, 7903)
GFS2_DIR = "/var/lib/one/import-ds-test"
SUSPENDED = 5


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend-import"))
    frontend.files = tmp_path_factory.mktemp("uploads")
    node = lab.node_names[0]
    lab.sh(node, 'mkdir -p "$1" && chown oneadmin: "$1"', GFS2_DIR)
    yield frontend
    frontend.cleanup_vms(VMS)
    frontend.remove_image_lvs(IMAGES)
    lab.sh(node, 'rm -rf "$1" /var/lib/one/datastores/100/*.isox', GFS2_DIR)
    frontend.close()


@pytest.fixture(scope="module")
def web(fe):
    """http://127.0.0.1:<port>/ serving fe.files (the front-end downloads)."""
    handler = functools.partial(_QuietHandler, directory=str(fe.files))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def ds(fe, action, image_id, expect_ok=True, template=None, **image):
    return fe.ds(action, image_id, expect_ok=expect_ok, template=template, ds_template={
        "RESTRICTED_DIRS": "/", "SAFE_DIRS": f"/var/tmp {fe.files} {GFS2_DIR}"}, **image)


def lv_bytes_digest(fe, lv, length, node=None):
    node = node or fe.lab.node_names[1]
    fe.cluster.lvm(node).activate(VG, lv, "shared")
    try:
        return fe.sha(node, lv, length)
    finally:
        fe.cluster.lvm(node).deactivate(VG, lv)


def sparse_raw(path, head: bytes, tail: bytes, size: int) -> bytes:
    with open(path, "wb") as f:
        f.write(head)
        f.seek(size - len(tail))
        f.write(tail)
    return path.read_bytes()


def staged_files(fe):
    out = fe.lab.sh(fe.lab.node_names[0], "ls -a /var/lib/one/datastores/100/ 2>/dev/null || true")
    return [name for name in out.stdout.split() if name.startswith(".import-")]


def test_raw_upload_from_the_management_node(fe, lab):
    path = fe.files / "upload.raw"
    data = sparse_raw(path, pattern(1, 3 * MiB), pattern(2, MiB), 12 * MiB)
    md5 = hashlib.md5(data).hexdigest()
    assert ds(fe, "stat", 570, path=str(path)).stdout == "12\n"
    result = ds(fe, "cp", 570, path=str(path), template={"MD5": md5})
    assert result.stdout == f"{VG}/lv-oneimg-570 raw\n"              # SOURCE FORMAT, one line
    assert "MiB of zeroes skipped" in result.stderr and "MiB/s" in result.stderr
    lv = fe.lv("lv-oneimg-570")
    assert lv.size_bytes == 12 * MiB and fe.active_on("lv-oneimg-570") == []
    assert len(lv.tags) == 1 and lv.tags[0].startswith("one-made=cp.")   # cp.<REGTIME>
    assert lv_bytes_digest(fe, "lv-oneimg-570", len(data)) == digest(data)
    again = ds(fe, "cp", 570, path=str(path))                        # re-run: same answer
    assert again.stdout == result.stdout and "already imported" in again.stderr


def test_qcow2_upload_and_vmdk_on_gfs2(fe, lab):
    data = pattern(3, 5 * MiB)
    (fe.files / "disk.raw").write_bytes(data)
    qcow2 = fe.files / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
                    str(fe.files / "disk.raw"), str(qcow2)], check=True)
    assert ds(fe, "stat", 571, path=str(qcow2)).stdout == "5\n"
    assert ds(fe, "cp", 571, path=str(qcow2)).stdout == f"{VG}/lv-oneimg-571 raw\n"
    assert lv_bytes_digest(fe, "lv-oneimg-571", len(data)) == digest(data)
    assert staged_files(fe) == []                                    # staging removed
    # a vmdk already on GFS2: converted on a worker, the management node never reads it
    node = lab.node_names[2]
    vmdk = f"{GFS2_DIR}/disk.vmdk"
    fe.cluster.remote(node).run(
        ["sh", "-c", 'cat > "$1.raw" && qemu-img convert -q -f raw -O vmdk "$1.raw" "$1" && '
         'rm -f "$1.raw"', "sh", vmdk], stdin=data)
    assert not os.path.exists(vmdk)
    assert ds(fe, "stat", 572, path=vmdk).stdout == "5\n"
    result = ds(fe, "cp", 572, path=vmdk)
    assert result.stdout == f"{VG}/lv-oneimg-572 raw\n" and "conversion of" in result.stderr
    assert lv_bytes_digest(fe, "lv-oneimg-572", len(data)) == digest(data)


def test_downloads_from_a_url(fe, lab, web):
    data = pattern(4, 6 * MiB) + bytes(2 * MiB)
    (fe.files / "web.raw").write_bytes(data)
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vdi",
                    str(fe.files / "web.raw"), str(fe.files / "web.vdi")], check=True)
    assert ds(fe, "stat", 573, path=f"{web}/web.vdi").stdout == "8\n"
    assert ds(fe, "cp", 573, path=f"{web}/web.vdi").stdout == f"{VG}/lv-oneimg-573 raw\n"
    assert lv_bytes_digest(fe, "lv-oneimg-573", len(data)) == digest(data)
    sha1 = hashlib.sha1(data).hexdigest()
    result = ds(fe, "cp", 574, path=f"{web}/web.raw", template={"SHA1": sha1})
    assert result.stdout == f"{VG}/lv-oneimg-574 raw\n" and "download of" in result.stderr
    assert lv_bytes_digest(fe, "lv-oneimg-574", len(data)) == digest(data)
    assert staged_files(fe) == []


def test_failed_imports_leave_nothing_behind(fe, lab, web):
    path = fe.files / "bad.raw"
    path.write_bytes(pattern(5, 2 * MiB))
    failed = ds(fe, "cp", 575, expect_ok=False, path=str(path), template={"MD5": "0" * 32})
    assert failed.failure_message.startswith("MD5 mismatch")
    assert fe.lv("lv-oneimg-575") is None
    failed = ds(fe, "cp", 575, expect_ok=False, path="/etc/hostname")
    assert "RESTRICTED_DIRS" in failed.failure_message
    link = fe.files / "sneaky.raw"                  # a safe-dir symlink to a restricted file
    link.symlink_to("/etc/hostname")
    failed = ds(fe, "cp", 575, expect_ok=False, path=str(link))
    assert "/etc/hostname: not allowed" in failed.failure_message
    base, child = fe.files / "base.qcow2", fe.files / "child.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "4M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                    str(child)], check=True)
    failed = ds(fe, "cp", 576, expect_ok=False, path=str(child))
    assert "backing file" in failed.failure_message
    failed = ds(fe, "cp", 576, expect_ok=False, path=f"{web}/missing.raw")
    assert "HTTP 404" in failed.failure_message
    failed = ds(fe, "cp", 576, expect_ok=False, path=f"{GFS2_DIR}/nowhere.img")
    assert "exists neither on the management node nor on" in failed.failure_message
    assert fe.lv("lv-oneimg-575") is None and fe.lv("lv-oneimg-576") is None
    assert staged_files(fe) == []


def test_isox_images_stay_files(fe, lab):
    node = lab.node_names[0]
    iso = pattern(6, MiB)
    in_place = f"{GFS2_DIR}/tools.isox"
    fe.cluster.remote(node).run(["sh", "-c", 'cat > "$1"', "sh", in_place], stdin=iso)
    result = ds(fe, "cp", 577, path=in_place, type=1)
    assert result.stdout == f"{in_place} raw\n"
    assert fe.lv("lv-oneimg-577") is None                            # no LVM
    ds(fe, "rm", 577, source=in_place)                               # not ours: kept
    assert fe.exists(in_place)
    upload = fe.files / "upload.isox"
    upload.write_bytes(iso)
    copied = "/var/lib/one/datastores/100/578.isox"
    result = ds(fe, "cp", 578, path=str(upload), type=1,
                template={"MD5": hashlib.md5(iso).hexdigest()})
    assert result.stdout == f"{copied} raw\n"
    out = fe.cluster.remote(lab.node_names[2]).run(["sha256sum", copied]).stdout
    assert out.split()[0] == digest(iso)
    ds(fe, "rm", 578, source=copied)                                 # our copy: removed
    assert not fe.exists(copied)


def test_vol_and_lvm_sources_check_the_owner(fe, lab):
    data = pattern(7, 4 * MiB)
    fe.make_image_lv(579, 16, data)
    fe.image(579, uid=5, gid=100, uname="alice", permissions="600",
             source=f"{VG}/lv-oneimg-579", size=16)
    # bob's new image may not copy alice's; alice's may
    failed = ds(fe, "cp", 580, expect_ok=False, path="vol://579", uid=6, gid=101, uname="bob")
    assert "may not use image 579" in failed.failure_message and fe.lv("lv-oneimg-580") is None
    assert ds(fe, "stat", 580, path="vol://579").stdout == "16\n"
    assert ds(fe, "cp", 580, path="vol://579", uid=5, gid=100, uname="alice").stdout == \
        f"{VG}/lv-oneimg-580 raw\n"
    assert lv_bytes_digest(fe, "lv-oneimg-580", len(data)) == digest(data)
    # lvm://: alice's running VM is refused, suspended it is copied where its disk is active
    node = lab.node_names[1]
    fe.vm(7901, [{"image_id": 579, "size": 16}], host=node, uid=5, gid=100, uname="alice")
    fe.tm("clone", f"{FE}:{VG}/lv-oneimg-579", f"{node}:{fe.disk_path(7901, 0)}", 7901, IMAGE_DS)
    fe.write(node, "lv-one-7901-0", pattern(8, MiB))
    failed = ds(fe, "cp", 581, expect_ok=False, path="lvm://7901/0", uid=5, gid=100)
    assert "not suspended" in failed.failure_message and fe.lv("lv-oneimg-581") is None
    fe.vm(7901, [{"image_id": 579, "size": 16}], host=node, uid=5, gid=100, uname="alice",
          state=SUSPENDED, lcm_state=0)
    failed = ds(fe, "cp", 581, expect_ok=False, path="lvm://7901/0", uid=6, gid=101,
                uname="bob")
    assert "may not manage VM 7901" in failed.failure_message and fe.lv("lv-oneimg-581") is None
    assert ds(fe, "stat", 581, path="lvm://7901/0").stdout == "16\n"
    ds(fe, "cp", 581, path="lvm://7901/0", uid=5, gid=100, uname="alice")
    expected = pattern(8, MiB) + data[MiB:]
    assert lv_bytes_digest(fe, "lv-oneimg-581", len(expected)) == digest(expected)
    assert fe.active_on("lv-one-7901-0") == [node]                  # the VM's disk stays put
    failed = ds(fe, "cp", 582, expect_ok=False, path=f"{VG}/lv-oneimg-579")
    assert "use vol://" in failed.failure_message


def test_save_as_allocation_filled_by_cpds(fe, lab):
    """mkfs FORMAT=save_as allocates, the TM's cpds fills: a byte-identical,
    full-size image a new VM can boot from."""
    node = lab.node_names[2]
    fe.make_image_lv(584, 12, pattern(10, 3 * MiB))
    fe.vm(7902, [{"image_id": 584, "size": 12}], host=node)
    fe.tm("clone", f"{FE}:{VG}/lv-oneimg-584", f"{node}:{fe.disk_path(7902, 0)}", 7902, IMAGE_DS)
    fe.write(node, "lv-one-7902-0", pattern(9, 2 * MiB), offset_mib=4)
    ds(fe, "mkfs", 583, size=12, format="save_as")
    fe.tm("cpds", f"{node}:{fe.disk_path(7902, 0)}", f"{VG}/lv-oneimg-583", -1, 7902, IMAGE_DS)
    assert fe.lv("lv-oneimg-583").size_bytes == fe.lv("lv-one-7902-0").size_bytes
    disk = fe.sha(node, "lv-one-7902-0", 12 * MiB)
    assert lv_bytes_digest(fe, "lv-oneimg-583", 12 * MiB, node=lab.node_names[0]) == disk



def test_cli_import_with_progress_bar(fe, lab, web):
    """`one-gfs2clvm image import URL --image-id N`: the admin's shell import.
    The volume is tagged CLI-made (one-made=cli), so the datastore's cp of its
    own image N refuses to take it over -- or to remove it."""
    import sys
    data = pattern(11, 9 * MiB)
    (fe.files / "cli.raw").write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-m", "one_gfs2clvm.cli", "--config", str(fe.driver_conf),
         "image", "import", f"{web}/cli.raw", "--image-id", "585",
         "--bridge", lab.node_names[2], "--md5", hashlib.md5(data).hexdigest()],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{VG}/lv-oneimg-585 raw\n"
    assert "importing" in result.stderr          # the bar (drawn in full on a terminal only)
    assert fe.lv("lv-oneimg-585").tags == ("one-made=cli",)
    assert lv_bytes_digest(fe, "lv-oneimg-585", len(data)) == digest(data)
    failed = ds(fe, "cp", 585, expect_ok=False, path=str(fe.files / "cli.raw"))
    assert "made by cli, not by this cp." in failed.failure_message
    assert fe.lv("lv-oneimg-585").tags == ("one-made=cli",)       # neither adopted nor removed
    # mkfs and clone of image 585 do not adopt it either
    for action, extra in [("mkfs", {"size": 8, "fs": "ext4"}),
                          ("clone", {"path": f"{VG}/lv-oneimg-585"})]:
        failed = ds(fe, action, 585, expect_ok=False, **extra)
        assert f"made by cli, not by this {action}." in failed.failure_message
    assert lv_bytes_digest(fe, "lv-oneimg-585", len(data)) == digest(data)

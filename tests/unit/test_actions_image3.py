"""OpenNebula 3.x image manager actions (one_gfs2clvm.opennebula.image3.COMMANDS)
against the recording worker.

Each action runs through its argv-level entry (image3.COMMANDS[name] via
testkit.recording.run_action, 3.x error framing), with the image id appended
once more as 3.2's one_image.rb does.  The tests assert the exact remote
commands per host and in order, the stdout line (`SOURCE SIZE_MB`), what a
failing later step undoes (ScriptedWorker fails one chosen command) and that
rm touches only lv-oneimg-<id> and its snapshots.  The lab keeps proving the
real behaviour.
"""

from __future__ import annotations

import os
import tempfile
from functools import partial

import pytest

from one_gfs2clvm.opennebula import image3
from testkit import actionkit
from testkit.actionkit import (ALICE, INCOMPLETE, M, copy_into, dev, failed_copy_undone, h, made,
                               make_config, ok, on, receiver, removed_new_lv, retag, state,
                               users_api, zero_and_remove, world_of)
from testkit.fakeoned import image_doc, user_doc, vm_doc
from testkit.recording import GiB, MiB, FakeApi, ScriptedWorker

BOB = 6
IMAGES = f"{M}/images"                    # the 3.x image repository on GFS2
CP_MADE = made("cp")

# Non-zero exit, one error line inside the 3.x framing, nothing on stdout.
failed = partial(actionkit.failed, framed=True, quiet=True)


# ----------------------------------------------------------------- the world

def build_worker(config) -> ScriptedWorker:
    """Image 5 (snapshots 0 and 10) next to image 51; image 12 in use by VM 7 as its
    persistent disk 2; VM 7's disk 0 released at shutdown (inactive, linked)."""
    worker = ScriptedWorker(config)
    add = worker.vg.add
    for name in ("lv-oneimg-5", "lv-oneimg-5-snap-0", "lv-oneimg-5-snap-10", "lv-oneimg-51",
                 "lv-oneimg-51-snap-0"):
        add("vg_one", name, GiB)
    add("vg_one", "lv-oneimg-12", GiB, ["one-use=7:2:node1"], {"node1": "ey"})
    add("vg_one", "lv-one-7-0", 2 * GiB)
    worker.gfs.links.update({f"{M}/7/images/disk.0": dev("lv-one-7-0"),
                             f"{M}/7/images/disk.2": dev("lv-oneimg-12"),
                             f"{M}/9/images/disk.0": dev("lv-one-9-0")})
    return worker


def build_api() -> FakeApi:
    """alice owns images 5, 12, 42 and VM 7; bob owns VM 9."""
    api = users_api()
    api.add_user(user_doc(BOB, name="bob", gid=1))
    for image_id in (5, 12, 42):
        api.add_image(image_doc(image_id, uid=ALICE, gid=1, uname="alice",
                                persistent=image_id == 12))
    for vm_id, uid in ((7, ALICE), (9, BOB)):
        api.add_vm(vm_doc(vm_id, uid=uid, gid=1, state=8, lcm_state=0,
                          history=[{"hostname": "node1", "ds_id": 0}],
                          disks=[{"image_id": 5}, {"fs": "raw", "size": 256}]))
    return api


@pytest.fixture
def world(tmp_path):
    config = make_config(tmp_path, "test_actions_image3.conf")
    return world_of(config, build_worker(config), build_api(),
                    lambda action: (image3.COMMANDS[action], f"image {action}"), legacy=True)


@pytest.fixture
def var_tmp():
    """A directory under /var/tmp: 3.x imports read local files only from there
    (SAFE_DIRS /var/tmp, RESTRICTED_DIRS /)."""
    if not os.access("/var/tmp", os.W_OK):
        pytest.skip("/var/tmp is not writable here")
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="test_actions_image3-") as path:
        yield path


# ================================================================= cp

def test_cp_of_an_image_lv_copies_it_and_prints_source_and_size(world):
    """cp vol://5 42 (alice may use image 5): LV-to-LV on node1, then the new LV's
    size in the reply `SOURCE SIZE_MB`."""
    ok(world.run("cp", "vol://5", "42"), "vg_one/lv-oneimg-42 1024\n")
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-oneimg-42"),
                                     h("lvs", "vg_one", "lv-oneimg-5"),   # one report
                                     h("create", "vg_one", "lv-oneimg-42", GiB, INCOMPLETE,
                                       CP_MADE),
                                     *copy_into("lv-oneimg-5", "lv-oneimg-42"),
                                     h("activate", "vg_one", "lv-oneimg-42", "n"),
                                     h("deltag", "vg_one", "lv-oneimg-42", INCOMPLETE),
                                     h("lvs", "vg_one", "lv-oneimg-42"))
    assert state(world.worker, "lv-oneimg-42") == ([CP_MADE], {})


def test_cp_failed_copy_releases_the_source_and_removes_the_new_lv(world):
    """cp vol://5, qemu-img convert failing: image 5 released, lv-oneimg-42
    deactivated, then removed."""
    w = world.worker
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("cp", "vol://5", "42", "42"), 3, "Input/output")
    assert w.after_failure() == failed_copy_undone("lv-oneimg-5", "lv-oneimg-42")
    assert w.lv("lv-oneimg-42") is None


def test_cp_of_a_local_raw_file_streams_it_into_the_lv(world, var_tmp):
    """cp of a raw file under /var/tmp: created, streamed (stdin) into the device,
    released, mark dropped; the reply is the LV and its size in MB."""
    path = os.path.join(var_tmp, "upload.raw")
    with open(path, "wb") as out:
        out.write(b"data" * 4096)
    ok(world.run("cp", path, "42"), "vg_one/lv-oneimg-42 1\n")
    sent = world.worker.sent()
    # NOTE: the made tag here is `one-made=cp` without the image's REGTIME (for a
    # local file the image is not asked from oned), while vol:// / lvm:// imports
    # get `one-made=cp.<REGTIME>`; so a leftover of an earlier image 42 would be
    # adopted.  The tag word is therefore left out of the comparison.
    host, create = sent[2]
    assert (host, create[:-1]) == ("node1", h("create", "vg_one", "lv-oneimg-42", MiB,
                                              INCOMPLETE))
    assert create[-1].startswith("one-made=cp")
    assert sent[:2] + sent[3:] == on("node1",
                                     h("lvs", "vg_one", "lv-oneimg-42"),
                                     h("vgs", "vg_one"),
                                     h("activate", "vg_one", "lv-oneimg-42", "ey"),
                                     receiver("device", dev("lv-oneimg-42"), "0"),
                                     h("activate", "vg_one", "lv-oneimg-42", "n"),
                                     h("deltag", "vg_one", "lv-oneimg-42", INCOMPLETE),
                                     h("lvs", "vg_one", "lv-oneimg-42"))
    assert [call.stdin for call in world.worker.calls][3:5] == [True, True]


def test_cp_of_a_local_iso_copies_it_into_the_image_repository(world, var_tmp):
    """cp of an .isox under /var/tmp: streamed to <M>/images/42.isox.part, moved into
    place, its size asked with stat; no LVM."""
    path = os.path.join(var_tmp, "cd.isox")
    with open(path, "wb") as out:
        out.write(b"CD001" * 1000)
    ok(world.run("cp", path, "42"), f"{IMAGES}/42.isox 10\n")
    assert world.worker.sent() == on("node1", ("mkdir", "-p", IMAGES),
                                     receiver("file", f"{IMAGES}/42.isox.part", "1"),
                                     ("mv", "-f", "--", f"{IMAGES}/42.isox.part",
                                      f"{IMAGES}/42.isox"),
                                     ("stat", "-L", "-c", "%s", "--", f"{IMAGES}/42.isox"))
    assert world.worker.helper_calls() == []


def test_cp_of_a_gfs2_file_outside_safe_dirs_is_refused(world):
    """cp of <M>/images/file: 3.x has SAFE_DIRS /var/tmp only (a choice written down
    in image3): refused after resolving, no LV made."""
    path = f"{IMAGES}/abcd"
    failed(world.run("cp", path, "42"), 2, "SAFE_DIRS")
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-oneimg-42"),
                                     ("readlink", "-e", "--", path))
    assert world.worker.lv("lv-oneimg-42") is None


# ================================================================= mkfs

def test_mkfs_creates_and_formats_the_image_lv(world):
    """mkfs ext4 100 42: LV created incomplete, one script (activate, mkfs,
    deactivate), mark dropped; reply `SOURCE 100`."""
    ok(world.run("mkfs", "ext4", "100", "42"), "vg_one/lv-oneimg-42 100\n")
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-oneimg-42"),
                                     h("create", "vg_one", "lv-oneimg-42", 100 * MiB, INCOMPLETE,
                                       "one-made=mkfs"),
                                     h("activate", "vg_one", "lv-oneimg-42", "ey"),
                                     ("/sbin/mkfs.ext4", "-F", "-q", dev("lv-oneimg-42")),
                                     h("activate", "vg_one", "lv-oneimg-42", "n"),
                                     retag("lv-oneimg-42", drop=[INCOMPLETE]))


def test_mkfs_raw_only_creates(world):
    """mkfs raw 100 42 42 (the id repeated, as one_image.rb appends it): no
    filesystem, no activation."""
    ok(world.run("mkfs", "raw", "100", "42", "42"), "vg_one/lv-oneimg-42 100\n")
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-oneimg-42"),
                                     h("create", "vg_one", "lv-oneimg-42", 100 * MiB, INCOMPLETE,
                                       "one-made=mkfs"),
                                     retag("lv-oneimg-42", drop=[INCOMPLETE]))


def test_mkfs_failed_mkfs_removes_the_lv(world):
    """mkfs, mkfs.xfs failing: undo removes lv-oneimg-42."""
    w = world.worker
    w.fail("/sbin/mkfs.xfs", host="node1", stderr="mkfs.xfs: cannot open /dev/x\n")
    failed(world.run("mkfs", "xfs", "100", "42"), 3, "cannot open")
    assert w.after_failure() == removed_new_lv("lv-oneimg-42")
    assert w.lv("lv-oneimg-42") is None


def test_mkfs_with_two_different_ids_sends_nothing(world):
    """mkfs ext4 100 42 43: the ids disagree, refused before any remote call."""
    failed(world.run("mkfs", "ext4", "100", "42", "43"), 2, "different")
    assert world.worker.sent() == []


# ================================================================= mv

def test_mv_saveas_copies_the_linked_disk_into_a_new_image_lv(world):
    """mv <M>/7/images/disk.0 - 42 (saveas): the link read on node1, one report,
    lv-oneimg-42 created, the (released) disk read-activated for the copy and
    released, the new LV released and its mark dropped; reply `SOURCE SIZE_MB`."""
    w = world.worker
    ok(world.run("mv", f"{M}/7/images/disk.0", "-", "42"), "vg_one/lv-oneimg-42 2048\n")
    assert w.sent() == on("node1",
                          ("readlink", f"{M}/7/images/disk.0"),
                          h("lvs", "vg_one", "lv-one-7-0", "lv-oneimg-42"),
                          h("create", "vg_one", "lv-oneimg-42", 2 * GiB, INCOMPLETE,
                            "one-made=saveas"),
                          *copy_into("lv-one-7-0", "lv-oneimg-42"),
                          h("activate", "vg_one", "lv-oneimg-42", "n"),
                          h("deltag", "vg_one", "lv-oneimg-42", INCOMPLETE))
    assert state(w, "lv-oneimg-42") == (["one-made=saveas"], {})
    assert state(w, "lv-one-7-0") == ([], {})


def test_mv_saveas_failed_copy_removes_the_new_lv(world):
    """mv saveas, qemu-img convert failing: disk released, lv-oneimg-42 deactivated
    and removed (undo, from the bridge hosts), the VM's disk untouched."""
    w = world.worker
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("mv", f"{M}/7/images/disk.0", "-", "42"), 3, "Input/output")
    assert w.after_failure() == failed_copy_undone("lv-one-7-0", "lv-oneimg-42")
    assert w.lv("lv-oneimg-42") is None and w.lv("lv-one-7-0").size == 2 * GiB


def test_mv_of_a_persistent_disk_moves_nothing(world):
    """mv <M>/7/images/disk.2 vg_one/lv-oneimg-12 12 (persistent save-back): the
    link names the image itself; only the link and a report are read."""
    ok(world.run("mv", f"{M}/7/images/disk.2", "vg_one/lv-oneimg-12", "12"),
       "vg_one/lv-oneimg-12 1024\n")
    assert world.worker.sent() == on("node1", ("readlink", f"{M}/7/images/disk.2"),
                                     h("lvs", "vg_one", "lv-oneimg-12"))
    assert state(world.worker, "lv-oneimg-12") == (["one-use=7:2:node1"], {"node1": "ey"})


def test_mv_refuses_a_destination_that_is_not_the_linked_image(world):
    """mv of disk.2 (image 12) with DST image 5: refused after reading the link."""
    failed(world.run("mv", f"{M}/7/images/disk.2", "vg_one/lv-oneimg-5", "42"), 2,
           "lv-oneimg-12")
    assert world.worker.sent() == on("node1", ("readlink", f"{M}/7/images/disk.2"))


def test_mv_of_another_users_vm_disk_sends_nothing(world):
    """mv of bob's VM 9's disk into alice's image 42: refused before any remote call."""
    failed(world.run("mv", f"{M}/9/images/disk.0", "-", "42"), 2, "may not manage VM 9")
    assert world.worker.sent() == []


# ================================================================= rm

def test_rm_zeroes_and_removes_the_image_and_its_snapshots_only(world):
    """rm vg_one/lv-oneimg-5 5: zeroed, snapshots 0 and 10 and the LV removed;
    image 51 and its snapshot untouched."""
    w = world.worker
    before = w.names()
    ok(world.run("rm", "vg_one/lv-oneimg-5", "5", "5"), "")
    assert w.sent() == on("node1",
                          h("lvs", "vg_one"),
                          *zero_and_remove("lv-oneimg-5", "lv-oneimg-5-snap-0",
                                           "lv-oneimg-5-snap-10"))
    assert w.names() == before - {"lv-oneimg-5", "lv-oneimg-5-snap-0", "lv-oneimg-5-snap-10"}


def test_rm_of_an_image_in_use_is_refused(world):
    """rm of image 12 (VM 7 uses it): refused after the report, nothing removed."""
    before = world.worker.names()
    failed(world.run("rm", "vg_one/lv-oneimg-12", "12"), 4, "in use by VM 7")
    assert world.worker.sent() == on("node1", h("lvs", "vg_one"))
    assert world.worker.names() == before


def test_rm_failed_zeroing_removes_nothing(world):
    """rm of image 5, blkdiscard failing: every LV kept."""
    w = world.worker
    before = w.names()
    w.fail("/sbin/blkdiscard", host="node1", stderr="blkdiscard: Input/output error\n")
    failed(world.run("rm", "vg_one/lv-oneimg-5", "5"), 3, "Input/output")
    assert w.after_failure() == []
    assert w.names() == before


def test_rm_of_an_iso_copy_removes_the_file(world):
    """rm <M>/images/42.isox 42: the copy cp made, removed on a bridge host; an ISO
    elsewhere is left alone."""
    ok(world.run("rm", f"{IMAGES}/42.isox", "42"))
    assert world.worker.sent() == on("node1", ("rm", "-f", "--", f"{IMAGES}/42.isox"))
    world.worker.calls.clear()
    ok(world.run("rm", f"{M}/isos/tools.isox", "42"))
    assert world.worker.sent() == []


def test_every_image3_action_is_covered_here():
    assert set(image3.COMMANDS) == {"cp", "mkfs", "mv", "rm"}

"""Datastore actions (one_gfs2clvm.opennebula.datastore.ACTIONS) against the
recording worker.

Each action runs through its argv-level entry (datastore.ACTIONS[name] via
testkit.recording.run_action) with the base64 DS_DRIVER_ACTION_DATA on stdin
and the image id as argument (6.8+; one test uses the <= 6.6 `BASE64 ID`
form).  The tests assert the exact remote commands per host and in order,
what a failing later step undoes (ScriptedWorker fails one chosen command) and
that an image action touches only lv-oneimg-<id> and its own snapshots (never
lv-oneimg-51 for image 5, nor snapshot 10 for snapshot 1).  The lab keeps
proving the real behaviour.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from functools import partial

import pytest

from one_gfs2clvm.opennebula import datastore
from testkit import actionkit
from testkit.actionkit import (ALICE, INCOMPLETE, M, convert, copy_into, dev, failed_copy_undone, h,
                               made, make_config, monitor_output, ok, on, receiver, removed_new_lv,
                               retag,
                               state, users_api, zero_and_remove, world_of)
from testkit.fakeoned import datastore_doc, image_doc, vm_doc
from testkit.recording import EMPTY_MD5, GiB, MiB, FakeApi, ScriptedWorker

DS_DIR = f"{M}/datastores/100"            # image datastore 100's directory

# Non-zero exit, exactly one error line (containing `words`), nothing on stdout.
failed = partial(actionkit.failed, quiet=True)


# ----------------------------------------------------------------- the world

def build_worker(config) -> ScriptedWorker:
    """Image 5 with snapshots 0, 1 and 10; image 51 (a name sharing 5's prefix) with
    snapshot 1; image 12 in use by VM 7 on node1; VM 8's disk active on node2."""
    worker = ScriptedWorker(config)
    add = worker.vg.add
    for name in ("lv-oneimg-5", "lv-oneimg-5-snap-0", "lv-oneimg-5-snap-1",
                 "lv-oneimg-5-snap-10", "lv-oneimg-51", "lv-oneimg-51-snap-1"):
        add("vg_one", name, GiB)
    add("vg_one", "lv-oneimg-12", GiB, ["one-use=7:2:node1"], {"node1": "ey"})
    add("vg_one", "lv-one-8-0", GiB, ["one-use=8:0:node2"], {"node2": "ey"})
    return worker


def build_api() -> FakeApi:
    api = users_api()
    api.add_image(image_doc(5, uid=ALICE, gid=1, datastore_id=100))
    api.add_datastore(datastore_doc(100, type=0))
    api.add_vm(vm_doc(8, uid=ALICE, gid=1, uname="alice", gname="users", state=8, lcm_state=0,
                      history=[{"hostname": "node2", "ds_id": 0}],
                      disks=[{"image_id": 5}, {"fs": "raw", "size": 256}]))
    return api


def ds_input(image_id: int | None, *, ds_template: dict | None = None,
             snapshot: int | None = None, **image_fields) -> bytes:
    """base64 DS_DRIVER_ACTION_DATA: image `image_id` (alice's, in datastore 100;
    none for monitor) and datastore 100 (BRIDGE_LIST node1 node2, VG_NAME vg_one,
    plus `ds_template`)."""
    image = ""
    if image_id is not None:
        image = image_doc(image_id, uid=ALICE, gid=1, datastore_id=100, **image_fields)
        if snapshot is not None:
            image = image.replace("<TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT>",
                                  f"<TARGET_SNAPSHOT>{snapshot}</TARGET_SNAPSHOT>")
            assert f"<TARGET_SNAPSHOT>{snapshot}<" in image
    ds = datastore_doc(100, type=0, template=ds_template)
    return base64.b64encode(f"<DS_DRIVER_ACTION_DATA>{image}{ds}</DS_DRIVER_ACTION_DATA>"
                            .encode())


@pytest.fixture
def world(tmp_path):
    """The world, plus .tmp (the test's directory) and .safe (a datastore template
    letting cp/stat read the test's files and GFS2)."""
    config = make_config(tmp_path, "test_actions_datastore.conf")
    return world_of(config, build_worker(config), build_api(),
                    lambda action: (datastore.ACTIONS[action], f"datastore {action}"),
                    tmp=tmp_path, safe={"SAFE_DIRS": f"{M} {tmp_path}"})


# ================================================================= cp

def test_cp_of_a_local_raw_file_streams_it_into_a_new_lv(world):
    """cp of a raw file on the management node: report, free-space check, LV created
    incomplete (rounded up to 1 MiB), one script fed the stream on stdin (activate,
    receiver writing the device), then released and the mark dropped."""
    upload = world.tmp / "upload.raw"
    upload.write_bytes(b"\0" * 4096 + b"data" * 1024)
    outcome = world.run("cp", "42", stdin=ds_input(42, path=str(upload), ds_template=world.safe))
    ok(outcome, "vg_one/lv-oneimg-42 raw\n")
    w = world.worker
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-oneimg-42"),
                          h("vgs", "vg_one"),
                          h("create", "vg_one", "lv-oneimg-42", MiB, INCOMPLETE, made("cp")),
                          h("activate", "vg_one", "lv-oneimg-42", "ey"),
                          receiver("device", dev("lv-oneimg-42"), "0"),      # + stream
                          h("activate", "vg_one", "lv-oneimg-42", "n"),
                          h("deltag", "vg_one", "lv-oneimg-42", INCOMPLETE))
    assert [c.stdin for c in w.listed(w.calls)] == [False, False, False, True, True, False,
                                                     False]
    assert w.helper_runs() == 5         # release + unmark: one helper batch
    assert state(w, "lv-oneimg-42") == ([made("cp")], {})


def test_cp_of_a_gfs2_file_converts_it_on_a_worker(world):
    """cp of an image file only on GFS2: resolved and probed on node1, LV created,
    qemu-img convert there, released, mark dropped."""
    path = f"{DS_DIR}/upload-abcd"
    ok(world.run("cp", "42", stdin=ds_input(42, path=path, ds_template=world.safe)),
       "vg_one/lv-oneimg-42 raw\n")
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-oneimg-42"),
                                     ("readlink", "-e", "--", path),
                                     ("qemu-img", "info", "--output", "json", path),
                                     h("vgs", "vg_one"),
                                     h("create", "vg_one", "lv-oneimg-42", GiB, INCOMPLETE,
                                       made("cp")),
                                     h("activate", "vg_one", "lv-oneimg-42", "ey"),
                                     convert(path, dev("lv-oneimg-42")),
                                     h("activate", "vg_one", "lv-oneimg-42", "n"),
                                     h("deltag", "vg_one", "lv-oneimg-42", INCOMPLETE))


def test_cp_failed_conversion_removes_the_new_lv(world):
    """cp of a GFS2 file, qemu-img convert failing: undo removes lv-oneimg-42 only."""
    w = world.worker
    before = w.names()
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("cp", "42", stdin=ds_input(42, path=f"{DS_DIR}/upload-abcd",
                                                ds_template=world.safe)), 3, "Input/output")
    assert w.after_failure() == removed_new_lv("lv-oneimg-42")
    assert w.names() == before


def test_cp_failed_stream_removes_the_new_lv(world):
    """cp of a local raw file, the receiver failing: undo removes the LV."""
    upload = world.tmp / "upload.raw"
    upload.write_bytes(b"data" * 4096)
    w = world.worker
    w.fail("/usr/bin/python3", host="node1", stderr="receiver: No space left on device\n")
    failed(world.run("cp", "42", stdin=ds_input(42, path=str(upload), ds_template=world.safe)),
           3, "No space left")
    assert w.after_failure() == removed_new_lv("lv-oneimg-42")
    assert w.lv("lv-oneimg-42") is None


def qcow2_file(path, virtual_size: int) -> None:
    path.write_bytes(b"QFI\xfb" + struct.pack(">I", 3) + b"\0" * 16 +
                     struct.pack(">Q", virtual_size) + b"\0" * 4000)


def qcow2_upload(world) -> tuple:
    """A 2 GiB qcow2 file in the test's directory for image 42, and the staging
    file cp streams it into (where qemu-img info answers qcow2, 2 GiB)."""
    image = world.tmp / "disk.qcow2"
    qcow2_file(image, 2 * GiB)
    staged = f"{DS_DIR}/.import-42.qcow2"
    world.worker.reply("qemu-img", "info", "--output", "json", staged,
                       stdout=json.dumps({"virtual-size": 2 * GiB, "format": "qcow2"}))
    return image, staged


def test_cp_of_a_local_qcow2_stages_converts_and_removes_the_staging_file(world):
    """cp of a local qcow2: streamed into a staging file in the datastore directory,
    probed there, converted into the new LV, the staging file removed."""
    image, staged = qcow2_upload(world)
    w = world.worker
    ok(world.run("cp", "42", stdin=ds_input(42, path=str(image), size=4096,
                                            ds_template=world.safe)),
       "vg_one/lv-oneimg-42 raw\n")
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-oneimg-42"),
                          ("mkdir", "-p", DS_DIR),
                          receiver("file", staged, "1"),
                          ("qemu-img", "info", "--output", "json", staged),
                          h("vgs", "vg_one"),
                          h("create", "vg_one", "lv-oneimg-42", 2 * GiB, INCOMPLETE, made("cp")),
                          h("activate", "vg_one", "lv-oneimg-42", "ey"),
                          convert(staged, dev("lv-oneimg-42"), "qcow2"),
                          h("activate", "vg_one", "lv-oneimg-42", "n"),
                          h("deltag", "vg_one", "lv-oneimg-42", INCOMPLETE),
                          ("rm", "-f", staged))


def test_cp_of_a_qcow2_failing_conversion_removes_lv_and_staging_file(world):
    """cp of a local qcow2, qemu-img convert failing: the staging file removed (end of
    the conversion), then undo removes the LV and the staging file again."""
    image, staged = qcow2_upload(world)
    w = world.worker
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("cp", "42", stdin=ds_input(42, path=str(image), size=4096,
                                                ds_template=world.safe)), 3, "Input/output")
    assert w.after_failure() == [*on("node1", ("rm", "-f", staged)),
                                 *removed_new_lv("lv-oneimg-42"),
                                 *on("node1", ("rm", "-f", staged))]
    assert w.lv("lv-oneimg-42") is None


def test_cp_of_an_image_lv_copies_lv_to_lv(world):
    """cp vol://5 (alice may use image 5): LV-to-LV on node1, image 5 read-activated
    for the copy and released; lv-oneimg-5 itself unchanged."""
    ok(world.run("cp", "42", stdin=ds_input(42, path="vol://5")), "vg_one/lv-oneimg-42 raw\n")
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-oneimg-42"),
                                     h("lvs", "vg_one", "lv-oneimg-5"),   # one report
                                     h("create", "vg_one", "lv-oneimg-42", GiB, INCOMPLETE,
                                       made("cp")),
                                     *copy_into("lv-oneimg-5", "lv-oneimg-42"),
                                     h("activate", "vg_one", "lv-oneimg-42", "n"),
                                     h("deltag", "vg_one", "lv-oneimg-42", INCOMPLETE))
    assert state(world.worker, "lv-oneimg-5") == ([], {})


def test_cp_of_a_vm_disk_copies_on_the_host_holding_it(world):
    """cp lvm://8/0 (VM 8 powered off, its disk active on node2): the copy runs on
    node2, reading the disk as it is there."""
    ok(world.run("cp", "42", stdin=ds_input(42, path="lvm://8/0")), "vg_one/lv-oneimg-42 raw\n")
    assert world.worker.sent() == [
        *on("node1", h("lvs", "vg_one", "lv-oneimg-42"), h("lvs", "vg_one", "lv-one-8-0")),
        *on("node2", h("lvs", "vg_one", "lv-one-8-0"),
            h("create", "vg_one", "lv-oneimg-42", GiB, INCOMPLETE, made("cp")),
            h("activate", "vg_one", "lv-oneimg-42", "ey"),
            convert(dev("lv-one-8-0"), dev("lv-oneimg-42")),
            h("activate", "vg_one", "lv-oneimg-42", "n"),
            h("deltag", "vg_one", "lv-oneimg-42", INCOMPLETE))]
    assert state(world.worker, "lv-one-8-0") == (["one-use=8:0:node2"], {"node2": "ey"})


def test_cp_of_an_image_lv_failing_copy_releases_source_and_removes_target(world):
    """cp vol://5, qemu-img convert failing: image 5 released, lv-oneimg-42
    deactivated, then removed."""
    w = world.worker
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("cp", "42", stdin=ds_input(42, path="vol://5")), 3, "Input/output")
    assert w.after_failure() == failed_copy_undone("lv-oneimg-5", "lv-oneimg-42")
    assert w.lv("lv-oneimg-42") is None and state(w, "lv-oneimg-5") == ([], {})


def test_cp_of_an_iso_on_gfs2_registers_it_in_place(world):
    """cp of an .isox on GFS2: resolved on node1, no LVM, SOURCE is its path."""
    iso = f"{M}/isos/tools.isox"
    ok(world.run("cp", "42", stdin=ds_input(42, path=iso, ds_template=world.safe)),
       f"{iso} raw\n")
    assert world.worker.sent() == on("node1", ("readlink", "-e", "--", iso))


def test_cp_of_a_local_iso_copies_it_to_the_datastore_directory(world):
    """cp of an .isox on the management node: streamed to <ds dir>/42.isox.part,
    then moved into place; no LVM."""
    iso = world.tmp / "cd.isox"
    iso.write_bytes(b"CD001" * 1000)
    ok(world.run("cp", "42", stdin=ds_input(42, path=str(iso), ds_template=world.safe)),
       f"{DS_DIR}/42.isox raw\n")
    assert world.worker.sent() == on("node1", ("mkdir", "-p", DS_DIR),
                                     receiver("file", f"{DS_DIR}/42.isox.part", "1"),
                                     ("mv", "-f", "--", f"{DS_DIR}/42.isox.part",
                                      f"{DS_DIR}/42.isox"))


def test_cp_rerun_after_success_prints_the_same_source(world):
    """cp when lv-oneimg-42 exists complete with cp's own made tag: the report only."""
    world.worker.vg.add("vg_one", "lv-oneimg-42", GiB, [made("cp")])
    ok(world.run("cp", "42", stdin=ds_input(42, path="vol://5")), "vg_one/lv-oneimg-42 raw\n")
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-oneimg-42"))


def test_cp_refuses_an_lv_another_action_made(world):
    """cp when lv-oneimg-42 was made by mkfs: neither reused nor removed."""
    world.worker.vg.add("vg_one", "lv-oneimg-42", GiB, [made("mkfs")])
    failed(world.run("cp", "42", stdin=ds_input(42, path="vol://5")), 4, "made by mkfs")
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-oneimg-42"))
    assert state(world.worker, "lv-oneimg-42") == ([made("mkfs")], {})


# ================================================================= mkfs

def test_mkfs_creates_and_formats_a_datablock(world):
    """mkfs (FS ext4, SIZE 100): LV created incomplete, one script (activate, mkfs,
    deactivate), mark dropped; prints the SOURCE."""
    ok(world.run("mkfs", "42", stdin=ds_input(42, fs="ext4", size=100)), "vg_one/lv-oneimg-42\n")
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-oneimg-42"),
                                     h("create", "vg_one", "lv-oneimg-42", 100 * MiB, INCOMPLETE,
                                       made("mkfs")),
                                     h("activate", "vg_one", "lv-oneimg-42", "ey"),
                                     ("/sbin/mkfs.ext4", "-F", "-q", dev("lv-oneimg-42")),
                                     h("activate", "vg_one", "lv-oneimg-42", "n"),
                                     retag("lv-oneimg-42", drop=[INCOMPLETE]))
    assert state(world.worker, "lv-oneimg-42") == ([made("mkfs")], {})


@pytest.mark.parametrize("fields", [{"fs": ""}, {"fs": "ext4", "format": "save_as"}],
                         ids=["raw", "save_as"])
def test_mkfs_without_a_filesystem_only_creates(world, fields):
    """mkfs with no FS (or FORMAT save_as, a saveas allocation): no activation at all."""
    ok(world.run("mkfs", "42", stdin=ds_input(42, size=100, **fields)), "vg_one/lv-oneimg-42\n")
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-oneimg-42"),
                                     h("create", "vg_one", "lv-oneimg-42", 100 * MiB, INCOMPLETE,
                                       made("mkfs")),
                                     retag("lv-oneimg-42", drop=[INCOMPLETE]))


def test_mkfs_in_the_old_argv_form_sends_the_same(world):
    """mkfs BASE64 ID (OpenNebula <= 6.6) sends exactly what mkfs ID + stdin sends."""
    payload = ds_input(42, fs="xfs", size=64)
    ok(world.run("mkfs", payload.decode(), "42"))
    old = world.worker.sent()
    world.worker.calls.clear()
    del world.worker.vg.lvs[("vg_one", "lv-oneimg-42")]
    ok(world.run("mkfs", "42", stdin=payload))
    assert world.worker.sent() == old
    assert ("node1", ("/sbin/mkfs.xfs", "-f", "-q", dev("lv-oneimg-42"))) in old


def test_mkfs_failed_mkfs_removes_the_new_lv(world):
    """mkfs, mkfs.ext4 failing: undo removes lv-oneimg-42."""
    w = world.worker
    w.fail("/sbin/mkfs.ext4", host="node1", stderr="mkfs.ext4: Device size reported to be zero\n")
    failed(world.run("mkfs", "42", stdin=ds_input(42, fs="ext4", size=100)), 3, "Device size")
    assert w.after_failure() == removed_new_lv("lv-oneimg-42")
    assert w.lv("lv-oneimg-42") is None


def test_mkfs_on_a_dead_first_bridge_host_runs_on_the_next(world):
    """mkfs with node1 down: every step on node2."""
    world.worker.down.add("node1")
    ok(world.run("mkfs", "42", stdin=ds_input(42, size=100)))
    assert {host for host, _ in world.worker.sent()} == {"node2"}
    assert world.worker.contacted[0] == "node1"


# ================================================================= rm

def test_rm_zeroes_and_removes_the_image_with_its_snapshots_only(world):
    """rm of image 5: one VG report, zeroed, its snapshots 0, 1, 10 and the LV removed
    in one script; lv-oneimg-51 and its snapshot untouched."""
    w = world.worker
    before = w.names()
    ok(world.run("rm", "5", stdin=ds_input(5)), "")
    assert w.sent() == on("node1",
                          h("lvs", "vg_one"),
                          *zero_and_remove("lv-oneimg-5", "lv-oneimg-5-snap-0",
                                           "lv-oneimg-5-snap-1", "lv-oneimg-5-snap-10"))
    assert w.names() == before - {"lv-oneimg-5", "lv-oneimg-5-snap-0", "lv-oneimg-5-snap-1",
                                  "lv-oneimg-5-snap-10"}


def test_rm_of_an_image_in_use_is_refused(world):
    """rm of image 12 (used by VM 7): refused after the report; nothing changed."""
    before = world.worker.names()
    failed(world.run("rm", "12", stdin=ds_input(12)), 4, "in use by VM 7")
    assert world.worker.sent() == on("node1", h("lvs", "vg_one"))
    assert world.worker.names() == before


def test_rm_failed_zeroing_removes_nothing(world):
    """rm of image 5, blkdiscard failing: no LV removed."""
    w = world.worker
    before = w.names()
    w.fail("/sbin/blkdiscard", host="node1", stderr="blkdiscard: Input/output error\n")
    failed(world.run("rm", "5", stdin=ds_input(5)), 3, "Input/output")
    assert w.after_failure() == []
    assert w.names() == before


def test_rm_of_a_missing_image_succeeds(world):
    """rm of image 42 whose LV is gone: the report only (idempotent)."""
    ok(world.run("rm", "42", stdin=ds_input(42)))
    assert world.worker.sent() == on("node1", h("lvs", "vg_one"))


def test_rm_of_a_source_that_is_not_the_images_own_lv_touches_nothing(world):
    """rm of image 5 whose SOURCE names image 51's LV: left alone, nothing sent."""
    ok(world.run("rm", "5", stdin=ds_input(5, source="vg_one/lv-oneimg-51")))
    assert world.worker.sent() == []


def test_rm_of_an_iso_removes_only_the_copy_cp_made(world):
    """rm of an .isox image: <ds dir>/42.isox (cp's copy) is removed on a bridge
    host; an ISO registered in place is left alone."""
    ok(world.run("rm", "42", stdin=ds_input(42, source=f"{DS_DIR}/42.isox")))
    assert world.worker.sent() == on("node1", ("rm", "-f", "--", f"{DS_DIR}/42.isox"))
    world.worker.calls.clear()
    ok(world.run("rm", "42", stdin=ds_input(42, source=f"{M}/isos/tools.isox")))
    assert world.worker.sent() == []


# ================================================================= stat

def test_stat_of_an_image_lv_reports_its_size(world):
    """stat vol://5: one report of lv-oneimg-5, its size in MB."""
    ok(world.run("stat", "42", stdin=ds_input(42, path="vol://5")), "1024\n")
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-oneimg-5"))


def test_stat_of_a_vm_disk_reports_its_size(world):
    """stat lvm://8/0: one report of lv-one-8-0 (on the first bridge host)."""
    world.worker.vg.lvs[("vg_one", "lv-one-8-0")].size = 3 * GiB
    ok(world.run("stat", "42", stdin=ds_input(42, path="lvm://8/0")), "3072\n")
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-one-8-0"))


def test_stat_of_a_gfs2_file_probes_it_on_a_worker(world):
    """stat of a GFS2 image file: resolved and probed on node1."""
    path = f"{DS_DIR}/upload-abcd"
    ok(world.run("stat", "42", stdin=ds_input(42, path=path, ds_template=world.safe)), "1024\n")
    assert world.worker.sent() == on("node1", ("readlink", "-e", "--", path),
                                     ("qemu-img", "info", "--output", "json", path))


def test_stat_of_a_local_file_sends_nothing(world):
    """stat of a local qcow2: its header's virtual size, no remote command."""
    image = world.tmp / "disk.qcow2"
    qcow2_file(image, 3 * GiB + 1)
    ok(world.run("stat", "42", stdin=ds_input(42, path=str(image), ds_template=world.safe)),
       "3073\n")
    assert world.worker.sent() == []


# ================================================================= clone

def test_clone_copies_the_source_image_lv(world):
    """clone of image 5 into 42: one report of both, created incomplete, copied on
    node1 (source read-activated and released), released, mark dropped."""
    ok(world.run("clone", "42", stdin=ds_input(42, path="vg_one/lv-oneimg-5")),
       "vg_one/lv-oneimg-42 raw\n")
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-oneimg-5", "lv-oneimg-42"),
                                     h("create", "vg_one", "lv-oneimg-42", GiB, INCOMPLETE,
                                       made("clone")),
                                     *copy_into("lv-oneimg-5", "lv-oneimg-42"),
                                     h("activate", "vg_one", "lv-oneimg-42", "n"),
                                     h("deltag", "vg_one", "lv-oneimg-42", INCOMPLETE))
    assert state(world.worker, "lv-oneimg-42") == ([made("clone")], {})


def test_clone_failed_copy_releases_source_and_removes_target(world):
    """clone, qemu-img convert failing: source released, the new LV deactivated,
    then removed."""
    w = world.worker
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("clone", "42", stdin=ds_input(42, path="vg_one/lv-oneimg-5")), 3,
           "Input/output")
    assert w.after_failure() == failed_copy_undone("lv-oneimg-5", "lv-oneimg-42")
    assert w.lv("lv-oneimg-42") is None


def test_clone_of_a_missing_source_creates_nothing(world):
    """clone of image 77 whose LV does not exist: NotFound after the report."""
    failed(world.run("clone", "42", stdin=ds_input(42, path="vg_one/lv-oneimg-77")), 4,
           "lv-oneimg-77")
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-oneimg-77", "lv-oneimg-42"))


# ================================================================= monitor

def test_monitor_reports_the_vg_from_the_bridge_list(world):
    """monitor 100 with BRIDGE_LIST node2: one vgs on node2, three lines."""
    outcome = world.run("monitor", "100",
                        stdin=ds_input(None, ds_template={"BRIDGE_LIST": "node2"}))
    ok(outcome)
    assert world.worker.sent() == on("node2", h("vgs", "vg_one"))
    assert outcome.stdout == monitor_output(world.worker)


# ================================================================= image snapshots

def test_snap_delete_removes_exactly_that_snapshot(world):
    """snap_delete 1 of image 5: lv-oneimg-5-snap-1 only (not snap-10, not image
    51's snap-1)."""
    w = world.worker
    before = w.names()
    ok(world.run("snap_delete", "5", stdin=ds_input(5, snapshot=1)))
    assert w.sent() == on("node1", h("lvs", "vg_one", "lv-oneimg-5-snap-1"),
                          h("activate", "vg_one", "lv-oneimg-5-snap-1", "n"),
                          h("remove", "vg_one", "lv-oneimg-5-snap-1"))
    assert w.names() == before - {"lv-oneimg-5-snap-1"}


def test_snap_delete_of_a_missing_snapshot_succeeds(world):
    ok(world.run("snap_delete", "5", stdin=ds_input(5, snapshot=3)))
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-oneimg-5-snap-3"))


def test_snap_revert_copies_the_snapshot_over_the_image(world):
    """snap_revert 1 of image 5: one script -- snapshot read-activated, image
    exclusive, every byte copied, both released."""
    w = world.worker
    ok(world.run("snap_revert", "5", stdin=ds_input(5, snapshot=1)))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-oneimg-5", "lv-oneimg-5-snap-1"),
                          h("activate", "vg_one", "lv-oneimg-5-snap-1", "sy"),
                          h("activate", "vg_one", "lv-oneimg-5", "ey"),
                          convert(dev("lv-oneimg-5-snap-1"), dev("lv-oneimg-5"), progress=False),
                          h("activate", "vg_one", "lv-oneimg-5-snap-1", "n"),
                          h("activate", "vg_one", "lv-oneimg-5", "n"))
    assert state(w, "lv-oneimg-5") == ([], {}) and state(w, "lv-oneimg-5-snap-1") == ([], {})


def test_snap_revert_of_a_grown_image_zeroes_its_tail(world):
    """snap_revert when the image (2 GiB) outgrew the snapshot (1 GiB): the tail
    beyond the snapshot's size is zeroed before the copy."""
    world.worker.vg.lvs[("vg_one", "lv-oneimg-5")].size = 2 * GiB
    ok(world.run("snap_revert", "5", stdin=ds_input(5, snapshot=1)))
    assert world.worker.sent()[3] == ("node1", ("/sbin/blkdiscard", "--zeroout", "--offset",
                                                str(GiB), "--length", str(GiB),
                                                dev("lv-oneimg-5")))


def test_snap_revert_failed_copy_releases_both(world):
    """snap_revert, qemu-img convert failing: the release steps run alone."""
    w = world.worker
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("snap_revert", "5", stdin=ds_input(5, snapshot=1)), 3, "Input/output")
    assert w.after_failure() == on("node1", h("activate", "vg_one", "lv-oneimg-5-snap-1", "n"),
                                   h("activate", "vg_one", "lv-oneimg-5", "n"))
    assert state(w, "lv-oneimg-5") == ([], {}) and state(w, "lv-oneimg-5-snap-1") == ([], {})


def test_snap_revert_of_an_image_in_use_is_refused(world):
    """snap_revert of image 12 (used by VM 7): refused after the report."""
    world.worker.vg.add("vg_one", "lv-oneimg-12-snap-0", GiB)
    failed(world.run("snap_revert", "12", stdin=ds_input(12, snapshot=0)), 4, "in use by VM 7")
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-oneimg-12", "lv-oneimg-12-snap-0"))


def test_snap_flatten_copies_then_removes_every_snapshot_target_last(world):
    """snap_flatten 1 of image 5: snapshot 1 copied over the image, then snapshots
    0 and 10 and finally 1 removed in one script; image 51's untouched."""
    w = world.worker
    before = w.names()
    ok(world.run("snap_flatten", "5", stdin=ds_input(5, snapshot=1)))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one"),
                          h("activate", "vg_one", "lv-oneimg-5-snap-1", "sy"),
                          h("activate", "vg_one", "lv-oneimg-5", "ey"),
                          convert(dev("lv-oneimg-5-snap-1"), dev("lv-oneimg-5"), progress=False),
                          h("activate", "vg_one", "lv-oneimg-5-snap-1", "n"),
                          h("activate", "vg_one", "lv-oneimg-5", "n"),
                          h("activate", "vg_one", "lv-oneimg-5-snap-0", "n"),
                          h("remove", "vg_one", "lv-oneimg-5-snap-0"),
                          h("activate", "vg_one", "lv-oneimg-5-snap-10", "n"),
                          h("remove", "vg_one", "lv-oneimg-5-snap-10"),
                          h("activate", "vg_one", "lv-oneimg-5-snap-1", "n"),
                          h("remove", "vg_one", "lv-oneimg-5-snap-1"))
    assert w.names() == before - {"lv-oneimg-5-snap-0", "lv-oneimg-5-snap-1",
                                  "lv-oneimg-5-snap-10"}


def test_snap_flatten_failed_copy_removes_no_snapshot(world):
    """snap_flatten, qemu-img convert failing: both released, every snapshot kept."""
    w = world.worker
    before = w.names()
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("snap_flatten", "5", stdin=ds_input(5, snapshot=1)), 3, "Input/output")
    assert w.after_failure() == on("node1", h("activate", "vg_one", "lv-oneimg-5-snap-1", "n"),
                                   h("activate", "vg_one", "lv-oneimg-5", "n"))
    assert w.names() == before


# ================================================================= export

EXPORT_RE = re.compile(rf"({re.escape(DS_DIR)}/\.export-5-[0-9a-f]{{8}}\.raw)(\.part)?")


def export_target(worker) -> str:
    """The one export file path the commands name (with or without .part)."""
    paths = {m[1] for _, argv in worker.sent() for m in map(EXPORT_RE.fullmatch, argv) if m}
    assert len(paths) == 1, paths
    return paths.pop()


def test_export_copies_the_image_to_a_file_and_prints_import_info(world):
    """export of image 5: one script on node1 (mkdir, read-activate, convert to
    <file>.part, md5sum, release, mv into place); IMPORT_INFO names that file."""
    w = world.worker
    outcome = world.run("export", "5", stdin=ds_input(5))
    ok(outcome)
    target = export_target(w)
    part = f"{target}.part"
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-oneimg-5"),
                          ("mkdir", "-p", DS_DIR),
                          h("activate", "vg_one", "lv-oneimg-5", "sy"),
                          ("qemu-img", "convert", "-q", "-f", "raw", "-O", "raw", "-t", "none",
                           dev("lv-oneimg-5"), part),
                          ("md5sum", part),
                          h("activate", "vg_one", "lv-oneimg-5", "n"),
                          ("mv", "-f", part, target))
    assert outcome.stdout == (
        f"<IMPORT_INFO><IMPORT_SOURCE>ssh://node1:{target}</IMPORT_SOURCE>"
        f"<MD5>{EMPTY_MD5}</MD5><SIZE>1024</SIZE><FORMAT>raw</FORMAT><DISPOSE>YES</DISPOSE>"
        f"<DISPOSE_CMD>ssh node1 rm -f {target}</DISPOSE_CMD></IMPORT_INFO>\n")
    assert state(w, "lv-oneimg-5") == ([], {})


def test_export_failed_checksum_releases_the_lv_and_removes_the_part_file(world):
    """export, md5sum failing: the cleanup runs step by step -- release the LV,
    remove <file>.part; no export file moved into place."""
    w = world.worker
    w.fail("md5sum", host="node1", stderr="md5sum: read error\n")
    failed(world.run("export", "5", stdin=ds_input(5)), 3, "read error")
    part = f"{export_target(w)}.part"
    assert w.after_failure() == on("node1", h("activate", "vg_one", "lv-oneimg-5", "n"),
                                   ("rm", "-f", part))
    assert state(w, "lv-oneimg-5") == ([], {})


def test_export_of_an_image_a_vm_writes_is_refused(world):
    """export of image 12 (used read-write by VM 7): refused after the report."""
    failed(world.run("export", "12", stdin=ds_input(12)), 4, "in use by VM 7")
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-oneimg-12"))


def test_every_datastore_action_is_covered_here():
    assert set(datastore.ACTIONS) == {"cp", "mkfs", "rm", "stat", "clone", "monitor",
                                      "snap_delete", "snap_revert", "snap_flatten", "export"}

"""Modern TM actions (one_gfs2clvm.opennebula.tm.ACTIONS) against the recording worker.

Each action runs through its argv-level entry (tm.ACTIONS[name] via
testkit.recording.run_action), as oned would call it; the tests assert the
exact remote commands it sends, per host and in order, what it undoes when a
later step fails (ScriptedWorker below fails one chosen command), the live
migration phases (which host activates / deactivates what) and the precision
of delete (VMs 1, 10 and 100 side by side: only the named VM's LVs go).
The recording worker is a stand-in (see testkit/recording.py): the lab keeps
proving the real behaviour.
"""

from __future__ import annotations

import base64
import re
import stat

import pytest

from one_gfs2clvm.opennebula import tm
from testkit.actionkit import (ALICE, FE, INCOMPLETE, M, MOUNT_CHECK, RO, USED, activate_and_link,
                               convert, copy_into, dev, failed, failed_copy_undone, filled_new_lv,
                               h, link_steps, make_config, monitor_output, ok, on, removed_new_lv,
                               retag, state, use, users_api, zero_and_remove, world_of)
from testkit.fakeoned import datastore_doc, image_doc, vm_doc
from testkit.recording import GiB, MiB, FakeApi, ScriptedWorker

VM_DIR = f"{M}/datastores/0/7"            # VM 7's directory in system datastore 0
ISO = f"{M}/datastores/1/tools.isox"


# ----------------------------------------------------------------- the world

def vm7(state: int = 3, lcm: int = 3, host: str = "node1", extra_disks=(),
        disk0_mb: int = 1024) -> str:
    """VM 7 (alice's), on `host` in system datastore 0: disk 0 a clone of image 5,
    1 a volatile ext4, 2 persistent image 12, 3 persistent READONLY image 13,
    4 an .isox CD-ROM (image 14), context disk 5."""
    return vm_doc(7, uid=ALICE, gid=1, uname="alice", gname="users", state=state,
                  lcm_state=lcm, context=True, history=[{"hostname": host, "ds_id": 0}],
                  disks=[{"image_id": 5, "datastore_id": 1, "size": disk0_mb},
                         {"fs": "ext4", "size": 512},
                         {"image_id": 12, "persistent": True, "datastore_id": 1},
                         {"image_id": 13, "persistent": True, "readonly": True,
                          "datastore_id": 1},
                         {"image_id": 14, "clone": False, "readonly": True, "type": "CDROM",
                          "datastore_id": 1, "source": ISO},
                         *extra_disks])


def small_vm(vm_id: int, state: int = 3, lcm: int = 3, host: str = "node1") -> str:
    """VMs 1, 8, 10, 100: disk 0 a clone of image 5, disk 1 volatile raw."""
    return vm_doc(vm_id, uid=ALICE, gid=1, uname="alice", gname="users", state=state,
                  lcm_state=lcm, history=[{"hostname": host, "ds_id": 0}],
                  disks=[{"image_id": 5, "datastore_id": 1}, {"fs": "raw", "size": 256}])


def build_api() -> FakeApi:
    api = users_api()
    api.add_vm(vm7())
    api.add_vm(small_vm(8, state=8, lcm=0, host="node2"))          # powered off on node2
    for vm_id in (1, 10, 100):
        api.add_vm(small_vm(vm_id))
    for image_id in (5, 12, 13, 42):
        api.add_image(image_doc(image_id, uid=ALICE, gid=1, datastore_id=1,
                                persistent=image_id in (12, 13)))
    api.add_image(image_doc(14, uid=ALICE, gid=1, datastore_id=1, type=1, source=ISO))
    api.add_datastore(datastore_doc(0, type=1))
    api.add_datastore(datastore_doc(101, type=1, template={"BRIDGE_LIST": "node2"}))
    api.add_datastore(datastore_doc(1, type=0))
    return api


# VMs 1, 10 and 100 (and 11): LV and directory names that share prefixes with VM 1's.
NEIGHBOUR_LVS = ["lv-one-1-0", "lv-one-1-1", "lv-one-1-1-snap-0", "lv-one-1-10",
                 "lv-one-1-10-snap-1", "lv-one-10-0", "lv-one-10-1", "lv-one-10-1-snap-0",
                 "lv-one-100-0", "lv-one-100-1", "lv-one-11-0"]
NEIGHBOUR_LINKS = {f"{M}/datastores/0/{vm}/disk.{disk}": dev(f"lv-one-{vm}-{disk}")
                   for vm, disks in ((1, (0, 1, 10)), (10, (0, 1)), (100, (0, 1)), (11, (0,)))
                   for disk in disks}
VM7_LINKS = {f"{VM_DIR}/disk.0": dev("lv-one-7-0"), f"{VM_DIR}/disk.1": dev("lv-one-7-1"),
             f"{VM_DIR}/disk.2": dev("lv-oneimg-12"), f"{VM_DIR}/disk.3": dev("lv-oneimg-13"),
             f"{VM_DIR}/disk.4": ISO}


def build_worker(config, running: bool) -> ScriptedWorker:
    """Image LVs 5, 12, 13 and 42; the world' LVs and links; with `running`,
    VM 7 deployed on node1 (its disk LVs active there, use-tagged, linked)."""
    worker = ScriptedWorker(config)
    add = worker.vg.add
    add("vg_one", "lv-oneimg-5", GiB)
    add("vg_one", "lv-oneimg-42", 2 * GiB)
    for name in NEIGHBOUR_LVS:
        vm, disk = name.split("-")[2:4]
        tags = [] if "snap" in name else [f"{USED}={vm}:{disk}:node1"]
        add("vg_one", name, GiB, tags, {} if "snap" in name else {"node1": "ey"})
    worker.gfs.links.update(NEIGHBOUR_LINKS)
    if running:
        add("vg_one", "lv-one-7-0", GiB, [f"{USED}=7:0:node1"], {"node1": "ey"})
        add("vg_one", "lv-one-7-1", 512 * MiB, [f"{USED}=7:1:node1"], {"node1": "ey"})
        add("vg_one", "lv-one-7-0-snap-0", GiB)
        add("vg_one", "lv-one-7-0-snap-10", GiB)
        add("vg_one", "lv-one-7-1-snap-0", 512 * MiB)
        add("vg_one", "lv-oneimg-12", GiB, [f"{USED}=7:2:node1"], {"node1": "ey"})
        add("vg_one", "lv-oneimg-13", GiB, [f"{USED}=7:3:node1", RO], {"node1": "sy"})
        worker.gfs.links.update(VM7_LINKS)
    else:
        add("vg_one", "lv-oneimg-12", GiB)
        add("vg_one", "lv-oneimg-13", GiB)
    return worker


def make_world(tmp_path, running: bool = True, lock_mode: str = "lvmlockd",
               zeroing: str = "on_delete"):
    config = make_config(tmp_path, "test_actions_tm.conf", lock_mode, zeroing)
    return world_of(config, build_worker(config, running), build_api(),
                    lambda action: (tm.ACTIONS[action], action),
                    remotes_dir=str(tmp_path / "remotes"))


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


@pytest.fixture
def fresh(tmp_path):
    """VM 7 not deployed yet: no disk LVs, no links."""
    return make_world(tmp_path, running=False)


# ================================================================= clone

def test_clone_copies_the_image_into_a_new_disk_lv_and_links_it(fresh):
    """clone: one report; one batch that creates the LV (inactive, marked
    incomplete), activates it and read-activates the image; the copy; one batch
    that releases the image and drops the mark, then the link -- all on node1."""
    w = fresh.worker
    ok(fresh.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{VM_DIR}/disk.0", "7", "1"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-one-7-0", "lv-oneimg-5"),
                          *filled_new_lv("lv-oneimg-5", "lv-one-7-0", GiB, [f"{USED}=7:0:node1"],
                                         link=f"{VM_DIR}/disk.0", keep_active=True))
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node1"], {"node1": "ey"})
    assert state(w, "lv-oneimg-5") == ([], {})
    assert w.gfs.links[f"{VM_DIR}/disk.0"] == dev("lv-one-7-0")
    assert w.helper_runs("node1") == 3    # report, the batch before the copy, the one after (was 7)


def test_clone_of_a_disk_bigger_than_the_image_sizes_the_lv_to_the_disk(fresh):
    """clone: the new LV is max(image, DISK SIZE): disk 0 of VM 7 resized to 3 GiB."""
    fresh.api.add_vm(vm7(disk0_mb=3072))
    assert fresh.api.vm(7).disk(0).size_mb == 3072
    ok(fresh.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{VM_DIR}/disk.0", "7", "1"))
    assert fresh.worker.sent()[1] == ("node1", h("create", "vg_one", "lv-one-7-0", 3 * GiB,
                                                 INCOMPLETE, f"{USED}=7:0:node1"))


def test_clone_failed_copy_releases_the_image_and_removes_the_new_lv(fresh):
    """clone, qemu-img convert failing: the image's read activation is released, the
    half-made LV deactivated and removed (undo), no link is made; one error line,
    exit 3."""
    w = fresh.worker
    w.fail("qemu-img", "convert", host="node1")
    outcome = fresh.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{VM_DIR}/disk.0", "7", "1")
    failed(outcome, 3, "Input/output error")
    assert w.after_failure() == failed_copy_undone("lv-oneimg-5", "lv-one-7-0")
    assert w.lv("lv-one-7-0") is None
    assert state(w, "lv-oneimg-5") == ([], {})
    assert f"{VM_DIR}/disk.0" not in w.gfs.links


def test_clone_failed_link_removes_the_copied_lv(fresh):
    """clone, the final script failing at the link (ln): the image released again
    and the copied LV deactivated (best effort, each alone), then removed."""
    w = fresh.worker
    w.fail("ln", "-sfn", host="node1", stderr="ln: Read-only file system\n")
    failed(fresh.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{VM_DIR}/disk.0", "7", "1"),
           3, "Read-only file system")
    assert w.after_failure() == failed_copy_undone("lv-oneimg-5", "lv-one-7-0")
    assert w.lv("lv-one-7-0") is None


def test_clone_whose_create_fails_removes_nothing(fresh):
    """clone, the create step of the first batch failing (an LV of that name appeared
    meanwhile): nothing of the batch after it ran, and the undo removes nothing --
    that LV is not this action's."""
    w = fresh.worker
    w.fail(*h("create", "vg_one", "lv-one-7-0"), host="node1", status=5,
           stderr='  Logical Volume "lv-one-7-0" already exists in volume group "vg_one"\n')
    failed(fresh.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{VM_DIR}/disk.0", "7", "1"),
           4, "already exists")
    assert w.after_failure() == on("node1", h("activate", "vg_one", "lv-oneimg-5", "n"))
    assert not any(argv[3:4] == ("remove",) for _, argv in w.sent())


def test_clone_whose_source_activation_fails_removes_the_new_lv(fresh):
    """clone, the image's read activation failing in the first batch (after the
    create): the new LV is deactivated and removed, the image released."""
    w = fresh.worker
    w.fail(*h("activate", "vg_one", "lv-oneimg-5", "sy"), host="node1", status=5,
           stderr="  LV locked by other host: vg_one/lv-oneimg-5\n")
    failed(fresh.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{VM_DIR}/disk.0", "7", "1"),
           4, "vg_one/lv-oneimg-5")
    assert w.after_failure() == failed_copy_undone("lv-oneimg-5", "lv-one-7-0")
    assert w.lv("lv-one-7-0") is None


def test_clone_rerun_after_success_only_activates_and_links(world):
    """clone of a disk whose LV exists complete: no create, no copy; activated,
    linked, its use tag already right."""
    ok(world.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{VM_DIR}/disk.0", "7", "1"))
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-one-7-0", "lv-oneimg-5"),
                                     *activate_and_link("lv-one-7-0", f"{VM_DIR}/disk.0", "ey",
                                                        [use("lv-one-7-0", 7, 0, "node1")]))


def test_clone_of_an_incomplete_leftover_recreates_it(fresh):
    """clone finding an LV marked incomplete (an interrupted copy): removed (the report
    just read is trusted: no second lvs), then made."""
    fresh.worker.vg.add("vg_one", "lv-one-7-0", GiB, [INCOMPLETE, f"{USED}=7:0:node1"])
    ok(fresh.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{VM_DIR}/disk.0", "7", "1"))
    assert fresh.worker.sent()[:4] == on("node1",
                                         h("lvs", "vg_one", "lv-one-7-0", "lv-oneimg-5"),
                                         h("activate", "vg_one", "lv-one-7-0", "n"),
                                         h("remove", "vg_one", "lv-one-7-0"),
                                         h("create", "vg_one", "lv-one-7-0", GiB, INCOMPLETE,
                                           f"{USED}=7:0:node1"))


def test_clone_of_an_isox_only_links_the_iso(fresh):
    """clone of an .isox SOURCE: the file resolved on the host and linked; no LVM."""
    ok(fresh.run("clone", f"fe:{ISO}", f"node1:{VM_DIR}/disk.4", "7", "1"))
    assert fresh.worker.sent() == on("node1",
                                     ("readlink", "-e", "--", ISO),
                                     MOUNT_CHECK,
                                     *link_steps(ISO, f"{VM_DIR}/disk.4"))
    assert fresh.worker.helper_calls() == []


def test_clone_of_an_image_file_probes_and_converts_it(fresh):
    """clone of an image file in a datastore directory: resolved, probed with
    qemu-img info, converted from its format on the host."""
    path = f"{M}/datastores/1/disk-image"
    ok(fresh.run("clone", f"fe:{path}", f"node1:{VM_DIR}/disk.0", "7", "1"))
    assert fresh.worker.sent() == on("node1",
                                     ("readlink", "-e", "--", path),
                                     h("lvs", "vg_one", "lv-one-7-0"),
                                     ("qemu-img", "info", "--output", "json", path),
                                     *filled_new_lv(None, "lv-one-7-0", GiB,
                                                    [f"{USED}=7:0:node1"], copy_from=path,
                                                    link=f"{VM_DIR}/disk.0", keep_active=True))


def test_clone_from_a_vm_disk_copies_where_that_disk_is_active(fresh):
    """clone lvm://8/0 (VM 8 powered off, its disk active on node2): its report is read
    once; copied on node2
    (no read activation: active there), deactivated there, then activated and
    linked on node1 where VM 7 runs."""
    w = fresh.worker
    w.vg.add("vg_one", "lv-one-8-0", GiB, [f"{USED}=8:0:node2"], {"node2": "ey"})
    ok(fresh.run("clone", "lvm://8/0", f"node1:{VM_DIR}/disk.0", "7", "1"))
    assert w.sent() == [*on("node1", h("lvs", "vg_one", "lv-one-8-0")),
                        *on("node1", h("lvs", "vg_one", "lv-one-7-0"),
                            h("create", "vg_one", "lv-one-7-0", GiB, INCOMPLETE,
                              f"{USED}=7:0:node1")),
                        *on("node2", h("activate", "vg_one", "lv-one-7-0", "ey"),
                            convert(dev("lv-one-8-0"), dev("lv-one-7-0")),
                            h("activate", "vg_one", "lv-one-7-0", "n")),
                        *on("node1", *activate_and_link("lv-one-7-0", f"{VM_DIR}/disk.0", "ey",
                                                        [retag("lv-one-7-0", drop=[INCOMPLETE])]))]
    assert state(w, "lv-one-8-0") == ([f"{USED}=8:0:node2"], {"node2": "ey"})
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node1"], {"node1": "ey"})


def test_clone_of_an_image_file_failed_conversion_deactivates_and_removes_the_new_lv(fresh):
    """clone of an image file, qemu-img convert failing: no LV to release, the new
    LV deactivated on node1, then removed (undo)."""
    w = fresh.worker
    path = f"{M}/datastores/1/disk-image"
    w.fail("qemu-img", "convert", host="node1")
    failed(fresh.run("clone", f"fe:{path}", f"node1:{VM_DIR}/disk.0", "7", "1"), 3,
           "Input/output error")
    assert w.after_failure() == failed_copy_undone(None, "lv-one-7-0")
    assert w.lv("lv-one-7-0") is None and f"{VM_DIR}/disk.0" not in w.gfs.links


def test_clone_from_a_vm_disk_failed_copy_deactivates_the_new_lv_where_it_was_copied(fresh):
    """clone lvm://8/0, the copy on node2 failing: the new LV deactivated on node2
    (where the copy activated it), so the undo removes it on node1; VM 8's disk
    stays as it was."""
    w = fresh.worker
    w.vg.add("vg_one", "lv-one-8-0", GiB, [f"{USED}=8:0:node2"], {"node2": "ey"})
    w.fail("qemu-img", "convert", host="node2")
    failed(fresh.run("clone", "lvm://8/0", f"node1:{VM_DIR}/disk.0", "7", "1"), 3,
           "Input/output error")
    assert w.after_failure() == [
        *failed_copy_undone(None, "lv-one-7-0", host="node2", removed=False),
        *removed_new_lv("lv-one-7-0")]
    assert w.lv("lv-one-7-0") is None
    assert state(w, "lv-one-8-0") == ([f"{USED}=8:0:node2"], {"node2": "ey"})


def test_clone_failed_copy_and_failed_deactivation_logs_it_and_keeps_the_first_error(fresh):
    """clone, qemu-img convert failing and then the new LV's deactivation failing
    too: logged (what stayed), the copy's error is the one reported, the undo
    still removes the LV."""
    w = fresh.worker
    w.fail("qemu-img", "convert", host="node1")
    w.fail(*h("activate", "vg_one", "lv-one-7-0", "n"), host="node1",
           stderr="  LV vg_one/lv-one-7-0 in use: not deactivating\n")
    outcome = fresh.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{VM_DIR}/disk.0", "7", "1")
    failed(outcome, 3, "Input/output error")
    (logged,) = [line for line in outcome.stderr.splitlines()
                 if "could not clean up after copying into vg_one/lv-one-7-0 on node1: " in line]
    assert logged.startswith("INFO: ") and logged.endswith("in use: not deactivating")
    assert w.after_failure() == removed_new_lv("lv-one-7-0")
    assert w.lv("lv-one-7-0") is None and state(w, "lv-oneimg-5") == ([], {})


# ================================================================= ln

def test_ln_activates_the_persistent_image_exclusively_and_tags_its_use(fresh):
    """ln of persistent image 12 as disk 2: activate + link in one script, then the
    use tag one-use=7:2:node1."""
    w = fresh.worker
    ok(fresh.run("ln", "fe:vg_one/lv-oneimg-12", f"node1:{VM_DIR}/disk.2", "7", "1"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-oneimg-12"),
                          *activate_and_link("lv-oneimg-12", f"{VM_DIR}/disk.2"),
                          use("lv-oneimg-12", 7, 2, "node1"))
    assert state(w, "lv-oneimg-12") == ([f"{USED}=7:2:node1"], {"node1": "ey"})


def test_ln_of_a_readonly_disk_activates_shared_and_marks_it_readonly(fresh):
    """ln of READONLY disk 3 (image 13): shared activation, use tag plus one-readonly."""
    w = fresh.worker
    ok(fresh.run("ln", "fe:vg_one/lv-oneimg-13", f"node1:{VM_DIR}/disk.3", "7", "1"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-oneimg-13"),
                          *activate_and_link("lv-oneimg-13", f"{VM_DIR}/disk.3", "sy"),
                          use("lv-oneimg-13", 7, 3, "node1", readonly=True))
    assert state(w, "lv-oneimg-13") == ([RO, f"{USED}=7:3:node1"], {"node1": "sy"})


def test_ln_failed_tagging_unlinks_and_deactivates_the_image_again(fresh):
    """ln, the use-tag step failing: undo removes the disk.2 link, then deactivates
    the image on the host."""
    w = fresh.worker
    w.fail(*h("use"), host="node1", status=5, stderr="  Failed to update VG vg_one.\n")
    failed(fresh.run("ln", "fe:vg_one/lv-oneimg-12", f"node1:{VM_DIR}/disk.2", "7", "1"),
           4, "Failed to update VG")
    assert w.after_failure() == on("node1", ("rm", "-f", f"{VM_DIR}/disk.2"),
                                   h("activate", "vg_one", "lv-oneimg-12", "n"))
    assert state(w, "lv-oneimg-12") == ([], {})
    assert f"{VM_DIR}/disk.2" not in w.gfs.links


def test_ln_refuses_an_image_another_vm_uses(fresh):
    """ln of an image tagged as used by VM 9: refused after the report, nothing
    activated or linked."""
    fresh.worker.vg.add("vg_one", "lv-oneimg-12", GiB, [f"{USED}=9:0:node2"], {"node2": "ey"})
    failed(fresh.run("ln", "fe:vg_one/lv-oneimg-12", f"node1:{VM_DIR}/disk.2", "7", "1"),
           4, "in use by VM 9")
    assert fresh.worker.sent() == on("node1", h("lvs", "vg_one", "lv-oneimg-12"))


def test_ln_of_an_image_file_only_links_it(fresh):
    """ln of an image file in a datastore directory: resolved and linked, no LVM."""
    path = f"{M}/datastores/1/raw-image"
    ok(fresh.run("ln", f"fe:{path}", f"node1:{VM_DIR}/disk.2", "7", "1"))
    assert fresh.worker.sent() == on("node1", ("readlink", "-e", "--", path), MOUNT_CHECK,
                                     *link_steps(path, f"{VM_DIR}/disk.2"))


# ================================================================= mkimage / mkswap

def test_mkimage_creates_formats_and_links_a_volatile_disk(fresh):
    """mkimage 512 raw for disk 1 (FS ext4): LV created incomplete, one script
    (mount check, activate, mkfs.ext4, link), then the mark dropped."""
    w = fresh.worker
    ok(fresh.run("mkimage", "512", "raw", f"node1:{VM_DIR}/disk.1", "7", "0"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-one-7-1"),
                          h("create", "vg_one", "lv-one-7-1", 512 * MiB, INCOMPLETE,
                            f"{USED}=7:1:node1"),
                          MOUNT_CHECK,
                          h("activate", "vg_one", "lv-one-7-1", "ey"),
                          ("/sbin/mkfs.ext4", "-F", "-q", dev("lv-one-7-1")),
                          *link_steps(dev("lv-one-7-1"), f"{VM_DIR}/disk.1"),
                          retag("lv-one-7-1", drop=[INCOMPLETE]))
    assert state(w, "lv-one-7-1") == ([f"{USED}=7:1:node1"], {"node1": "ey"})


def test_mkimage_swap_format_runs_mkswap(fresh):
    """mkimage with FORMAT swap: mkswap instead of the disk's FS."""
    ok(fresh.run("mkimage", "256", "swap", f"node1:{VM_DIR}/disk.1", "7", "0"))
    assert ("node1", ("/sbin/mkswap", dev("lv-one-7-1"))) in fresh.worker.sent()
    assert not any(argv[0].startswith("/sbin/mkfs") for _, argv in fresh.worker.sent())


def test_mkimage_with_zeroing_on_create_zeroes_before_mkfs(tmp_path):
    """zeroing = on_create: blkdiscard --zeroout between activation and mkfs."""
    world = make_world(tmp_path, running=False, zeroing="on_create")
    ok(world.run("mkimage", "512", "raw", f"node1:{VM_DIR}/disk.1", "7", "0"))
    assert world.worker.sent()[3:6] == on("node1",
                                          h("activate", "vg_one", "lv-one-7-1", "ey"),
                                          ("/sbin/blkdiscard", "--zeroout", dev("lv-one-7-1")),
                                          ("/sbin/mkfs.ext4", "-F", "-q", dev("lv-one-7-1")))


def test_mkimage_failed_mkfs_removes_the_new_lv(fresh):
    """mkimage, mkfs failing: undo removes the new LV; no link was made."""
    w = fresh.worker
    w.fail("/sbin/mkfs.ext4", host="node1", stderr="mkfs.ext4: Device size reported to be zero.\n")
    failed(fresh.run("mkimage", "512", "raw", f"node1:{VM_DIR}/disk.1", "7", "0"), 3,
           "Device size reported to be zero")
    assert w.after_failure() == removed_new_lv("lv-one-7-1")
    assert w.lv("lv-one-7-1") is None
    assert f"{VM_DIR}/disk.1" not in w.gfs.links


def test_mkswap_creates_a_swap_disk_and_links_it(fresh):
    """mkswap 256 for disk 6: LV, one script (mount check, activate, mkswap, link)."""
    w = fresh.worker
    ok(fresh.run("mkswap", "256", f"node1:{VM_DIR}/disk.6", "7", "0"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-one-7-6"),
                          h("create", "vg_one", "lv-one-7-6", 256 * MiB, INCOMPLETE,
                            f"{USED}=7:6:node1"),
                          MOUNT_CHECK,
                          h("activate", "vg_one", "lv-one-7-6", "ey"),
                          ("/sbin/mkswap", dev("lv-one-7-6")),
                          *link_steps(dev("lv-one-7-6"), f"{VM_DIR}/disk.6"),
                          retag("lv-one-7-6", drop=[INCOMPLETE]))


def test_mkswap_failed_link_removes_the_new_lv(fresh):
    """mkswap, the link failing: undo removes the LV."""
    w = fresh.worker
    w.fail("ln", host="node1", stderr="ln: Permission denied\n")
    failed(fresh.run("mkswap", "256", f"node1:{VM_DIR}/disk.6", "7", "0"), 3,
           "Permission denied")
    assert w.after_failure() == removed_new_lv("lv-one-7-6")
    assert w.lv("lv-one-7-6") is None


# ================================================================= context

def test_context_builds_the_iso_on_the_host_from_one_tar_stream(fresh, tmp_path):
    """context: one script on the host, fed the files as a tar stream on stdin:
    staging dir, tar -x, xorriso into disk.N.tmp, mv into place, staging removed."""
    ctx = tmp_path / "context.sh"
    ctx.write_text("ETH0_IP=10.0.0.7\n")
    key = tmp_path / "key.pub"
    key.write_text("ssh-ed25519 AAAA test\n")
    disk = f"{VM_DIR}/disk.5"
    ok(fresh.run("context", str(ctx), f"{key}:'id.pub'", f"node1:{disk}", "7", "0"))
    assert fresh.worker.sent() == on("node1",
                                     MOUNT_CHECK,
                                     ("rm", "-rf", f"{disk}.d"),
                                     ("mkdir", "-p", f"{disk}.d"),
                                     ("tar", "-x", "-C", f"{disk}.d", "-f", "-"),
                                     ("xorriso", "-as", "mkisofs", "-quiet", "-o", f"{disk}.tmp",
                                      "-V", "CONTEXT", "-J", "-R", f"{disk}.d"),
                                     ("mv", "-f", f"{disk}.tmp", disk),
                                     ("rm", "-rf", f"{disk}.d"))
    assert all(call.stdin for call in fresh.worker.calls)
    assert fresh.worker.helper_calls() == []


def test_context_failed_iso_build_leaves_the_disk_untouched(fresh, tmp_path):
    """context, xorriso failing: the script stops there (no mv over disk.N); one
    error line."""
    ctx = tmp_path / "context.sh"
    ctx.write_text("X=1\n")
    fresh.worker.fail("xorriso", host="node1", stderr="xorriso : FAILURE : no space\n")
    failed(fresh.run("context", str(ctx), f"node1:{VM_DIR}/disk.5", "7", "0"), 3, "no space")
    assert fresh.worker.after_failure() == []


# ================================================================= mv

def test_mv_of_a_disk_between_hosts_moves_its_activation(world):
    """mv of disk 0 node1 -> node2 (cold migration): deactivated on node1, activated
    and linked on node2, use tag moved to node2."""
    w = world.worker
    ok(world.run("mv", f"node1:{VM_DIR}/disk.0", f"node2:{VM_DIR}/disk.0", "7", "1"))
    assert w.sent() == [*on("node1", h("activate", "vg_one", "lv-one-7-0", "n")),
                        *on("node2", *activate_and_link("lv-one-7-0", f"{VM_DIR}/disk.0", "ey",
                                                        [use("lv-one-7-0", 7, 0, "node2")]))]
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node2"], {"node2": "ey"})
    # activation and the use-tag move: one helper batch, no report first (5 helper
    # runs before batches, 3 before the use step)
    assert (w.helper_runs("node1"), w.helper_runs("node2")) == (1, 1)


def test_mv_of_a_readonly_disk_activates_it_shared(world):
    """mv of READONLY disk 3: shared activation on the destination."""
    ok(world.run("mv", f"node1:{VM_DIR}/disk.3", f"node2:{VM_DIR}/disk.3", "7", "1"))
    assert ("node2", h("activate", "vg_one", "lv-oneimg-13", "sy")) in world.worker.sent()
    assert state(world.worker, "lv-oneimg-13") == ([RO, f"{USED}=7:3:node2"], {"node2": "sy"})


def test_mv_of_a_disk_to_the_frontend_releases_it(world):
    """mv host -> front-end (stop/undeploy): deactivated on node1, its use tag
    dropped (on a bridge host), data kept, no link step."""
    w = world.worker
    ok(world.run("mv", f"node1:{VM_DIR}/disk.0", f"{FE}:{VM_DIR}/disk.0", "7", "1"))
    assert w.sent() == on("node1",
                          h("activate", "vg_one", "lv-one-7-0", "n"),
                          use("lv-one-7-0", 7, 0, None))
    assert FE not in w.contacted
    assert state(w, "lv-one-7-0") == ([], {})


def test_mv_of_a_disk_from_the_frontend_activates_it_on_the_host(world):
    """mv front-end -> host (resume): nothing deactivated, activated and linked on
    node2 with its use tag."""
    w = world.worker
    w.vg.add("vg_one", "lv-one-7-0", GiB)                      # released at stop
    ok(world.run("mv", f"{FE}:{VM_DIR}/disk.0", f"node2:{VM_DIR}/disk.0", "7", "1"))
    assert w.sent() == on("node2", *activate_and_link("lv-one-7-0", f"{VM_DIR}/disk.0", "ey",
                                                      [use("lv-one-7-0", 7, 0, "node2")]))
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node2"], {"node2": "ey"})


def test_mv_of_an_iso_disk_sends_nothing(world):
    """mv of the .isox CD-ROM: a symlink on GFS2, nothing to move."""
    ok(world.run("mv", f"node1:{VM_DIR}/disk.4", f"node2:{VM_DIR}/disk.4", "7", "1"))
    assert world.worker.sent() == []


def test_mv_of_the_vm_directory_to_another_system_datastore(world):
    """mv of the directory to system datastore 101: one guarded mv on the
    destination host; LVs untouched."""
    ok(world.run("mv", f"node1:{VM_DIR}", f"node2:{M}/datastores/101/7", "7", "101"))
    assert world.worker.sent() == on(
        "node2", MOUNT_CHECK,
        ("sh", "-c", 'if [ -e "$1" ] && [ ! -e "$2" ]; then mkdir -p "$(dirname "$2")" && '
         'mv "$1" "$2"; fi', "sh", VM_DIR, f"{M}/datastores/101/7"))
    assert world.worker.helper_calls() == []


def test_mv_of_the_vm_directory_within_gfs2_sends_nothing(world):
    """mv of the directory to the same path (another host) or to the front-end: one
    GFS2, nothing to do."""
    ok(world.run("mv", f"node1:{VM_DIR}", f"node2:{VM_DIR}", "7", "0"))
    ok(world.run("mv", f"node1:{VM_DIR}", f"{FE}:{VM_DIR}", "7", "0"))
    assert world.worker.sent() == []


def test_mv_failed_activation_on_the_destination_stops_there(world):
    """mv node1 -> node2, activation on node2 failing: nothing after it (no link,
    no retag); one error line."""
    w = world.worker
    w.fail(*h("activate", "vg_one", "lv-one-7-0", "ey"), host="node2", status=5,
           stderr="  LV locked by other host: vg_one/lv-one-7-0\n")
    failed(world.run("mv", f"node1:{VM_DIR}/disk.0", f"node2:{VM_DIR}/disk.0", "7", "1"),
           4, "lock")
    assert w.after_failure() == []
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node1"], {})


# ================================================================= mvds / cpds

def test_mvds_releases_the_persistent_image_and_unlinks_the_disk(world):
    """mvds of disk 2: deactivated where used, use tag dropped, link removed; the
    image LV stays."""
    w = world.worker
    ok(world.run("mvds", f"node1:{VM_DIR}/disk.2", "vg_one/lv-oneimg-12", "7", "1"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-oneimg-12"),
                          h("activate", "vg_one", "lv-oneimg-12", "n"),
                          use("lv-oneimg-12", 7, 2, None),
                          ("rm", "-f", f"{VM_DIR}/disk.2"))
    assert state(w, "lv-oneimg-12") == ([], {})
    assert f"{VM_DIR}/disk.2" not in w.gfs.links


def test_mvds_of_a_readonly_image_drops_the_readonly_mark_with_the_last_use(world):
    """mvds of READONLY disk 3: its use tag and the one-readonly mark go."""
    ok(world.run("mvds", f"node1:{VM_DIR}/disk.3", "vg_one/lv-oneimg-13", "7", "1"))
    assert world.worker.sent()[-2:] == [
        *on("node1", use("lv-oneimg-13", 7, 3, None), ("rm", "-f", f"{VM_DIR}/disk.3"))]
    assert state(world.worker, "lv-oneimg-13") == ([], {})


def test_mvds_failed_release_keeps_the_link(world):
    """mvds, the tag change failing: the disk link stays (nothing after the failure)."""
    w = world.worker
    w.fail(*h("use"), host="node1", status=5, stderr="  Failed to update VG vg_one.\n")
    failed(world.run("mvds", f"node1:{VM_DIR}/disk.2", "vg_one/lv-oneimg-12", "7", "1"), 4)
    assert w.after_failure() == []
    assert w.gfs.links[f"{VM_DIR}/disk.2"] == dev("lv-oneimg-12")


def test_cpds_copies_the_disk_into_the_allocated_image_lv(world):
    """cpds of disk 0's current state into image 42's LV (allocated by mkfs): the
    disk is active on node1 already (read as is), the image LV activated for the
    copy and deactivated after."""
    w = world.worker
    ok(world.run("cpds", f"node1:{VM_DIR}/disk.0", "vg_one/lv-oneimg-42", "-1", "7", "1"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-one-7-0"),
                          h("lvs", "vg_one", "lv-oneimg-42"),
                          h("activate", "vg_one", "lv-oneimg-42", "ey"),
                          convert(dev("lv-one-7-0"), dev("lv-oneimg-42")),
                          h("activate", "vg_one", "lv-oneimg-42", "n"))
    assert state(w, "lv-oneimg-42") == ([], {})
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node1"], {"node1": "ey"})


def test_cpds_of_a_snapshot_grows_the_image_and_reads_the_snapshot(world):
    """cpds of snapshot 0 into a smaller image LV: the image LV grown first, the
    (inactive) snapshot read-activated for the copy and released."""
    w = world.worker
    w.vg.add("vg_one", "lv-oneimg-42", 512 * MiB)
    ok(world.run("cpds", f"node1:{VM_DIR}/disk.0", "vg_one/lv-oneimg-42", "0", "7", "1"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-one-7-0-snap-0"),
                          h("lvs", "vg_one", "lv-oneimg-42"),
                          h("extend", "vg_one", "lv-oneimg-42", GiB),
                          *copy_into("lv-one-7-0-snap-0", "lv-oneimg-42"),
                          h("activate", "vg_one", "lv-oneimg-42", "n"))
    assert w.lv("lv-oneimg-42").size == GiB


def test_cpds_failed_copy_releases_the_snapshot_and_keeps_the_image_lv(world):
    """cpds, qemu-img convert failing: the snapshot's read activation is released
    and the image LV deactivated; it (the datastore's, not this action's) is not
    removed."""
    w = world.worker
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("cpds", f"node1:{VM_DIR}/disk.0", "vg_one/lv-oneimg-42", "0", "7", "1"),
           3, "Input/output error")
    assert w.after_failure() == failed_copy_undone("lv-one-7-0-snap-0", "lv-oneimg-42",
                                                   removed=False)
    assert w.lv("lv-oneimg-42") is not None and w.lv("lv-oneimg-42").active == {}


def test_cpds_refuses_a_missing_target_image_lv(world):
    """cpds into an image LV that does not exist: NotFound after the reports."""
    failed(world.run("cpds", f"node1:{VM_DIR}/disk.0", "vg_one/lv-oneimg-77", "-1", "7", "1"),
           4, "lv-oneimg-77")
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-one-7-0"),
                                     h("lvs", "vg_one", "lv-oneimg-77"))


# ================================================================= delete

def test_delete_of_disk_n_removes_only_that_disks_lv_and_its_snapshots(world):
    """delete disk.1 of VM 1: zeroes and removes exactly lv-one-1-1 and its snapshot
    lv-one-1-1-snap-0 -- not lv-one-1-10 (and its snapshot), not VM 10's, 100's or
    11's -- and unlinks exactly disk.1."""
    w = world.worker
    before = w.names()
    links_before = dict(w.gfs.links)
    ok(world.run("delete", f"node1:{M}/datastores/0/1/disk.1", "1", "1"))
    assert w.sent() == on("node1",
                          ("readlink", f"{M}/datastores/0/1/disk.1"),
                          h("lvs", "vg_one"),
                          *zero_and_remove("lv-one-1-1", "lv-one-1-1-snap-0"),
                          ("rm", "-f", f"{M}/datastores/0/1/disk.1"))
    assert w.names() == before - {"lv-one-1-1", "lv-one-1-1-snap-0"}
    del links_before[f"{M}/datastores/0/1/disk.1"]
    assert w.gfs.links == links_before
    assert w.helper_runs("node1") == 3        # report, activate both + zero, remove both (was 6)


def test_delete_of_disk_10_does_not_touch_disk_1(world):
    """delete disk.10 of VM 1: lv-one-1-10 and lv-one-1-10-snap-1 only."""
    w = world.worker
    before = w.names()
    ok(world.run("delete", f"node1:{M}/datastores/0/1/disk.10", "1", "1"))
    assert w.names() == before - {"lv-one-1-10", "lv-one-1-10-snap-1"}
    changed = {args[2] for _, args in w.helper_calls() if args[0] in ("activate", "remove")}
    assert changed == {"lv-one-1-10", "lv-one-1-10-snap-1"}


def test_delete_of_a_persistent_disk_only_releases_the_image(world):
    """delete disk.2 (persistent image 12): deactivated, use tag dropped, unlinked;
    the image LV is neither zeroed nor removed."""
    w = world.worker
    ok(world.run("delete", f"node1:{VM_DIR}/disk.2", "7", "1"))
    assert w.sent() == on("node1",
                          ("readlink", f"{VM_DIR}/disk.2"),
                          h("lvs", "vg_one", "lv-oneimg-12"),
                          h("activate", "vg_one", "lv-oneimg-12", "n"),
                          use("lv-oneimg-12", 7, 2, None),
                          ("rm", "-f", f"{VM_DIR}/disk.2"))
    assert state(w, "lv-oneimg-12") == ([], {})


def test_delete_of_an_iso_disk_only_unlinks_it(world):
    """delete disk.4 (.isox link): the link goes, the ISO file and all LVs stay."""
    w = world.worker
    ok(world.run("delete", f"node1:{VM_DIR}/disk.4", "7", "1"))
    assert w.sent() == on("node1", ("readlink", f"{VM_DIR}/disk.4"),
                          ("rm", "-f", f"{VM_DIR}/disk.4"))


def test_delete_of_a_disk_again_is_idempotent(world):
    """delete disk.1 of VM 1 twice: the second run finds no link and no LV (the
    VM template names lv-one-1-1), removes nothing and succeeds."""
    w = world.worker
    ok(world.run("delete", f"node1:{M}/datastores/0/1/disk.1", "1", "1"))
    start = len(w.calls)
    ok(world.run("delete", f"node1:{M}/datastores/0/1/disk.1", "1", "1"))
    assert w.sent(start) == on("node1",
                               ("readlink", f"{M}/datastores/0/1/disk.1"),
                               h("lvs", "vg_one"),
                               ("rm", "-f", f"{M}/datastores/0/1/disk.1"))


def test_delete_of_a_disk_on_the_frontend_runs_on_a_bridge_host(world):
    """delete with the front-end as host (undeployed VM): on the datastore's first
    bridge host (node1), never on the front-end."""
    w = world.worker
    ok(world.run("delete", f"{FE}:{VM_DIR}/disk.1", "7", "0"))
    assert {host for host, _ in w.sent()} == {"node1"}
    assert FE not in w.contacted
    assert w.lv("lv-one-7-1") is None


def test_delete_of_a_disk_active_on_another_host_deactivates_it_there(world):
    """delete disk.0 asked on node2 while its use tag says node1: deactivated on
    node1 first, then zeroed and removed from node2."""
    w = world.worker
    before = w.names()
    ok(world.run("delete", f"node2:{VM_DIR}/disk.0", "7", "1"))
    assert w.sent() == [*on("node2", ("readlink", f"{VM_DIR}/disk.0"), h("lvs", "vg_one")),
                        *on("node1", h("activate", "vg_one", "lv-one-7-0", "n")),
                        *on("node2", *zero_and_remove("lv-one-7-0", "lv-one-7-0-snap-0",
                                                      "lv-one-7-0-snap-10"),
                            ("rm", "-f", f"{VM_DIR}/disk.0"))]
    assert w.names() == before - {"lv-one-7-0", "lv-one-7-0-snap-0", "lv-one-7-0-snap-10"}


def test_delete_failed_zeroing_removes_nothing(world):
    """delete disk.1 of VM 1, blkdiscard failing: no LV removed, link kept; one
    error line."""
    w = world.worker
    before = w.names()
    w.fail("/sbin/blkdiscard", host="node1", stderr="blkdiscard: Input/output error\n")
    failed(world.run("delete", f"node1:{M}/datastores/0/1/disk.1", "1", "1"), 3,
           "Input/output error")
    assert w.after_failure() == []
    assert w.names() == before
    assert f"{M}/datastores/0/1/disk.1" in w.gfs.links


def test_delete_of_the_vm_directory_removes_only_that_directory(world):
    """delete of VM 1's directory once its LVs are gone: one VG report, then rm -rf
    of exactly <M>/datastores/0/1; VMs 10, 100 and 11 keep every LV and link."""
    w = world.worker
    for name in [n for n in w.names() if n.startswith("lv-one-1-")]:
        del w.vg.lvs[("vg_one", name)]
    before = w.names()
    ok(world.run("delete", f"node1:{M}/datastores/0/1", "1", "0"))
    assert w.sent() == on("node1", h("lvs", "vg_one"), MOUNT_CHECK,
                          ("rm", "-rf", f"{M}/datastores/0/1"))
    assert w.names() == before
    assert {name for name in before if name.startswith(("lv-one-10-", "lv-one-100-"))} == \
        {"lv-one-10-0", "lv-one-10-1", "lv-one-10-1-snap-0", "lv-one-100-0", "lv-one-100-1"}
    assert not any("/datastores/0/1/" in path for path in w.gfs.links)
    for vm in (10, 100, 11):
        assert f"{M}/datastores/0/{vm}/disk.0" in w.gfs.links


def test_delete_of_the_vm_directory_is_refused_while_its_lvs_remain(world):
    """delete of VM 1's directory while lv-one-1-* exist: refused, naming VM 1's LVs
    only (not lv-one-10-*, lv-one-100-*, lv-one-11-*); nothing removed."""
    w = world.worker
    before = w.names()
    line = failed(world.run("delete", f"node1:{M}/datastores/0/1", "1", "0"), 1,
                  "VM 1 still has LVs")
    assert w.sent() == on("node1", h("lvs", "vg_one"))
    assert w.names() == before
    named = re.search(r"\((.*)\)", line)[1].split(", ")
    assert sorted(named) == ["vg_one/lv-one-1-0", "vg_one/lv-one-1-1", "vg_one/lv-one-1-1-snap-0",
                             "vg_one/lv-one-1-10", "vg_one/lv-one-1-10-snap-1"]
    assert "lv-one-10-" not in line and "lv-one-100-" not in line and "lv-one-11-" not in line


# ================================================================= live migration

def vm_b64(doc: str | None = None) -> bytes:
    return base64.b64encode((doc or vm7()).encode())


MIGRATE = ["node1", "node2", VM_DIR, "7", "0"]
VM7_LVS = ["lv-one-7-0", "lv-one-7-1", "lv-oneimg-12", "lv-oneimg-13"]   # disk order


def test_premigrate_shares_every_disk_on_source_and_destination(world):
    """premigrate (lvmlockd): per disk in order, source ex -> sh, destination sh;
    the .isox CD-ROM is skipped; no tags change."""
    w = world.worker
    ok(world.run("premigrate", *MIGRATE, stdin=vm_b64()))
    expected = []
    for lv in VM7_LVS:
        expected += on("node1", h("activate", "vg_one", lv, "sy"))
        expected += on("node2", h("activate", "vg_one", lv, "sy"))
    assert w.sent() == expected
    for lv in VM7_LVS:
        assert w.lv(lv).active == {"node1": "sy", "node2": "sy"}
    assert sorted(w.lv("lv-one-7-0").tags) == [f"{USED}=7:0:node1"]


def test_premigrate_failure_restores_every_disk_to_the_source(world):
    """premigrate, the destination's activation of the second disk failing: undo in
    reverse order -- disk 1 back to exclusive on node1, disk 0 deactivated on node2
    and back to exclusive on node1; disks 2 and 3 never touched."""
    w = world.worker
    w.fail(*h("activate", "vg_one", "lv-one-7-1", "sy"), host="node2", status=5,
           stderr="  LV locked by other host: vg_one/lv-one-7-1\n")
    failed(world.run("premigrate", *MIGRATE, stdin=vm_b64()), 4, "lv-one-7-1")
    assert w.after_failure() == [*on("node1", h("activate", "vg_one", "lv-one-7-1", "ey")),
                                 *on("node2", h("activate", "vg_one", "lv-one-7-0", "n")),
                                 *on("node1", h("activate", "vg_one", "lv-one-7-0", "ey"))]
    assert w.lv("lv-one-7-0").active == {"node1": "ey"}
    assert w.lv("lv-one-7-1").active == {"node1": "ey"}
    assert w.lv("lv-oneimg-12").active == {"node1": "ey"}


def shared_on_both(worker) -> None:
    for lv in VM7_LVS:
        worker.lv(lv).active = {"node1": "sy", "node2": "sy"}


def test_postmigrate_hands_every_disk_to_the_destination(world):
    """postmigrate (lvmlockd): per disk, source off, destination sh -> ex (READONLY
    disk 3 stays shared), use tag moved to node2."""
    w = world.worker
    shared_on_both(w)
    ok(world.run("postmigrate", *MIGRATE, stdin=vm_b64()))
    expected = []
    for disk, lv in enumerate(VM7_LVS):
        expected += on("node1", h("activate", "vg_one", lv, "n"))
        expected += on("node2", h("activate", "vg_one", lv, "sy" if disk == 3 else "ey"),
                       use(lv, 7, disk, "node2", readonly=disk == 3))
    assert w.sent() == expected
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node2"], {"node2": "ey"})
    assert state(w, "lv-oneimg-13") == ([RO, f"{USED}=7:3:node2"], {"node2": "sy"})


def test_postmigrate_with_the_source_down_still_finishes_on_the_destination(world):
    """postmigrate with node1 unreachable (crashed, its locks released): the
    deactivation there is skipped, node2 still takes every disk."""
    w = world.worker
    for lv in VM7_LVS:
        w.lv(lv).active = {"node2": "sy"}
    w.down.add("node1")
    ok(world.run("postmigrate", *MIGRATE, stdin=vm_b64()))
    assert {host for host, _ in w.sent()} == {"node2"}
    assert w.lv("lv-one-7-1").active == {"node2": "ey"}
    assert sorted(w.lv("lv-one-7-1").tags) == [f"{USED}=7:1:node2"]


def test_postmigrate_failure_never_hands_a_disk_back_to_the_source(world):
    """postmigrate, node2's exclusive activation of disk 1 failing: the VM runs on
    node2 now, so nothing is undone towards node1 (disk 0 stays moved, disk 1 is
    no longer active on node1); nothing after the failure; one error line."""
    w = world.worker
    shared_on_both(w)
    w.fail(*h("activate", "vg_one", "lv-one-7-1", "ey"), host="node2", status=5,
           stderr="  LV locked by other host: vg_one/lv-one-7-1\n")
    failed(world.run("postmigrate", *MIGRATE, stdin=vm_b64()), 4, "lv-one-7-1")
    assert w.after_failure() == []
    assert not any(host == "node1" and args[0] == "activate" and args[3] != "n"
                   for host, args in w.helper_calls())
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node2"], {"node2": "ey"})
    assert w.lv("lv-one-7-1").active == {"node2": "sy"}


def test_failmigrate_returns_every_disk_to_the_source(world):
    """failmigrate (lvmlockd): per disk, destination off, source back to ex
    (READONLY disk 3: shared); tags untouched."""
    w = world.worker
    shared_on_both(w)
    ok(world.run("failmigrate", *MIGRATE, stdin=vm_b64()))
    expected = []
    for disk, lv in enumerate(VM7_LVS):
        expected += on("node2", h("activate", "vg_one", lv, "n"))
        expected += on("node1", h("activate", "vg_one", lv, "sy" if disk == 3 else "ey"))
    assert w.sent() == expected
    assert w.lv("lv-one-7-0").active == {"node1": "ey"}
    assert sorted(w.lv("lv-one-7-0").tags) == [f"{USED}=7:0:node1"]


def test_failmigrate_failure_stops_and_leaves_the_destination_off(world):
    """failmigrate, node1's activation of disk 0 failing: nothing after it; disk 0
    is already off on node2 (never re-activated there); one error line."""
    w = world.worker
    shared_on_both(w)
    w.fail(*h("activate", "vg_one", "lv-one-7-0", "ey"), host="node1", status=5,
           stderr="  Failed to lock logical volume vg_one/lv-one-7-0.\n")
    failed(world.run("failmigrate", *MIGRATE, stdin=vm_b64()), 4, "lv-one-7-0")
    assert w.after_failure() == []
    assert w.lv("lv-one-7-0").active == {"node1": "sy"}
    assert w.lv("lv-one-7-1").active == {"node1": "sy", "node2": "sy"}


def test_migration_phases_under_clvmd(tmp_path):
    """clvmd: premigrate only activates cluster-wide (-ay) on the destination, the
    source keeps its activation; postmigrate and failmigrate only move use tags
    (postmigrate) or send nothing (failmigrate)."""
    world = make_world(tmp_path, lock_mode="clvmd")
    w = world.worker
    ok(world.run("premigrate", *MIGRATE, stdin=vm_b64()))
    assert w.sent() == [call for lv in VM7_LVS
                        for call in on("node2", h("activate", "vg_one", lv, "y"))]
    start = len(w.calls)
    ok(world.run("postmigrate", *MIGRATE, stdin=vm_b64()))
    assert w.sent(start) == [call for disk, lv in enumerate(VM7_LVS) for call in on(
        "node2", use(lv, 7, disk, "node2", readonly=disk == 3))]
    start = len(w.calls)
    ok(world.run("failmigrate", *MIGRATE, stdin=vm_b64()))
    assert w.sent(start) == []


def test_migration_refuses_another_vms_document(world):
    """premigrate with VM 1's document on stdin for VM 7: refused, nothing sent."""
    failed(world.run("premigrate", *MIGRATE, stdin=vm_b64(small_vm(1))), 2, "VM 1")
    assert world.worker.sent() == []


def test_migration_passes_other_drivers_disks_to_their_tm(world, tmp_path):
    """premigrate of a VM with a ceph disk: our disks handled here, the ceph TM's
    premigrate called with the same arguments plus CALLING_TM gfs2clvm; with a
    CALLING_TM argument nothing is dispatched (no loop)."""
    script = tmp_path / "remotes" / "tm" / "ceph" / "premigrate"
    script.parent.mkdir(parents=True)
    log = tmp_path / "ceph.log"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    doc = vm7(extra_disks=[{"image_id": 30, "datastore_id": 1, "tm_mad": "ceph",
                            "source": "one/one-30"}])
    w = world.worker
    ok(world.run("premigrate", *MIGRATE, stdin=vm_b64(doc)))
    assert log.read_text() == " ".join(MIGRATE + ["gfs2clvm"]) + "\n"
    assert {args[2] for _, args in w.helper_calls()} == set(VM7_LVS)
    ok(world.run("premigrate", *MIGRATE, "gfs2clvm", stdin=vm_b64(doc)))
    assert log.read_text().count("\n") == 1


# ================================================================= resize

def test_resize_extends_the_lv_where_it_is_active(world):
    """resize disk 0 to 2048 MB on node1 (zeroing on_delete): report, lvextend."""
    w = world.worker
    ok(world.run("resize", f"node1:{VM_DIR}/disk.0", "2048", "7", "1"))
    assert w.sent() == on("node1", h("lvs", "vg_one", "lv-one-7-0"),
                          h("extend", "vg_one", "lv-one-7-0", 2 * GiB))
    assert w.lv("lv-one-7-0").size == 2 * GiB


def test_resize_with_zeroing_on_create_zeroes_the_new_tail(tmp_path):
    """resize under zeroing = on_create: after lvextend, the new tail (offset = old
    size, length = the growth) is zeroed on the host."""
    world = make_world(tmp_path, zeroing="on_create")
    ok(world.run("resize", f"node1:{VM_DIR}/disk.0", "3072", "7", "1"))
    assert world.worker.sent() == on(
        "node1", h("lvs", "vg_one", "lv-one-7-0"), h("extend", "vg_one", "lv-one-7-0", 3 * GiB),
        h("activate", "vg_one", "lv-one-7-0", "ey"),
        ("/sbin/blockdev", "--getsize64", dev("lv-one-7-0")),
        ("/sbin/blkdiscard", "--zeroout", "--offset", str(GiB), "--length", str(2 * GiB),
         dev("lv-one-7-0")))


def test_resize_failed_zeroing_keeps_the_grown_lv(tmp_path):
    """resize under zeroing = on_create, the tail zeroing failing: the LV stays
    grown (an LV is never shrunk back), nothing after the failure."""
    world = make_world(tmp_path, zeroing="on_create")
    w = world.worker
    w.fail("/sbin/blkdiscard", host="node1", stderr="blkdiscard: Input/output error\n")
    failed(world.run("resize", f"node1:{VM_DIR}/disk.0", "3072", "7", "1"), 3,
           "Input/output error")
    assert w.after_failure() == []
    assert w.lv("lv-one-7-0").size == 3 * GiB
    assert not any(args[0] == "remove" for _, args in w.helper_calls())


def test_resize_to_a_smaller_or_equal_size_changes_nothing(world):
    """resize to the current size: only the report."""
    ok(world.run("resize", f"node1:{VM_DIR}/disk.0", "1024", "7", "1"))
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-one-7-0"))


def test_resize_is_refused_while_the_disk_is_active_on_another_host(world):
    """resize asked on node2 while disk 0 is in use on node1: refused, no extend."""
    failed(world.run("resize", f"node2:{VM_DIR}/disk.0", "2048", "7", "1"), 4, "node1")
    assert world.worker.sent() == on("node2", h("lvs", "vg_one", "lv-one-7-0"))
    assert world.worker.lv("lv-one-7-0").size == GiB


# ================================================================= snapshots

def test_snap_create_copies_the_disk_into_a_new_snapshot_lv(world):
    """snap_create 1 of disk 0: snapshot LV created incomplete, disk copied into it
    (disk active here: read as is), snapshot deactivated, mark dropped."""
    w = world.worker
    ok(world.run("snap_create", f"node1:{VM_DIR}/disk.0", "1", "7", "1"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-one-7-0-snap-1"),
                          h("lvs", "vg_one", "lv-one-7-0"),
                          h("create", "vg_one", "lv-one-7-0-snap-1", GiB, INCOMPLETE),
                          h("activate", "vg_one", "lv-one-7-0-snap-1", "ey"),
                          convert(dev("lv-one-7-0"), dev("lv-one-7-0-snap-1")),
                          h("activate", "vg_one", "lv-one-7-0-snap-1", "n"),
                          h("deltag", "vg_one", "lv-one-7-0-snap-1", INCOMPLETE))
    assert state(w, "lv-one-7-0-snap-1") == ([], {})


def test_snap_create_of_an_existing_snapshot_does_nothing(world):
    """snap_create of snapshot 0, which exists complete: only the report."""
    ok(world.run("snap_create", f"node1:{VM_DIR}/disk.0", "0", "7", "1"))
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-one-7-0-snap-0"))


def test_snap_create_failed_copy_removes_the_snapshot_lv(world):
    """snap_create, qemu-img convert failing: the new snapshot LV deactivated (the
    disk, active here, read as it is: nothing to release), then removed (undo)."""
    w = world.worker
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("snap_create", f"node1:{VM_DIR}/disk.0", "1", "7", "1"), 3,
           "Input/output error")
    assert w.after_failure() == failed_copy_undone(None, "lv-one-7-0-snap-1")
    assert w.lv("lv-one-7-0-snap-1") is None
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node1"], {"node1": "ey"})


def test_snap_delete_removes_exactly_that_snapshot(world):
    """snap_delete 0 of disk 0: lv-one-7-0-snap-0 only (not snap-10, not disk 1's
    snap-0)."""
    w = world.worker
    before = w.names()
    ok(world.run("snap_delete", f"node1:{VM_DIR}/disk.0", "0", "7", "1"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-one-7-0-snap-0"),
                          h("activate", "vg_one", "lv-one-7-0-snap-0", "n"),
                          h("remove", "vg_one", "lv-one-7-0-snap-0"))
    assert w.names() == before - {"lv-one-7-0-snap-0"}


def test_snap_delete_of_a_missing_snapshot_succeeds(world):
    """snap_delete of a snapshot that is gone: report only (idempotent)."""
    ok(world.run("snap_delete", f"node1:{VM_DIR}/disk.0", "3", "7", "1"))
    assert world.worker.sent() == on("node1", h("lvs", "vg_one", "lv-one-7-0-snap-3"))


def test_snap_revert_copies_the_snapshot_over_the_disk(world):
    """snap_revert 0 of disk 0: one report of both LVs, then one script -- snapshot
    read-activated, disk activated exclusively, every byte copied (no zero
    skipping), snapshot released; the disk stays active where it was."""
    w = world.worker
    ok(world.run("snap_revert", f"node1:{VM_DIR}/disk.0", "0", "7", "1"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-one-7-0", "lv-one-7-0-snap-0"),
                          h("activate", "vg_one", "lv-one-7-0-snap-0", "sy"),
                          h("activate", "vg_one", "lv-one-7-0", "ey"),
                          convert(dev("lv-one-7-0-snap-0"), dev("lv-one-7-0"), progress=False),
                          h("activate", "vg_one", "lv-one-7-0-snap-0", "n"))
    assert state(w, "lv-one-7-0-snap-0") == ([], {})
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node1"], {"node1": "ey"})


def test_snap_revert_of_a_disk_grown_after_the_snapshot_zeroes_its_tail(world):
    """snap_revert when disk 0 (now 2 GiB) outgrew snapshot 0 (1 GiB): the tail beyond
    the snapshot's size is zeroed before the copy, so every byte reads as the
    snapshot's (the copy alone writes only the first 1 GiB)."""
    w = world.worker
    w.lv("lv-one-7-0").size = 2 * GiB
    ok(world.run("snap_revert", f"node1:{VM_DIR}/disk.0", "0", "7", "1"))
    assert w.sent()[2:5] == on("node1",
                               h("activate", "vg_one", "lv-one-7-0", "ey"),
                               ("/sbin/blkdiscard", "--zeroout", "--offset", str(GiB),
                                "--length", str(GiB), dev("lv-one-7-0")),
                               convert(dev("lv-one-7-0-snap-0"), dev("lv-one-7-0"),
                                       progress=False))


def test_snap_revert_failed_copy_releases_the_snapshot(world):
    """snap_revert, qemu-img convert failing: the snapshot's release runs alone."""
    w = world.worker
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("snap_revert", f"node1:{VM_DIR}/disk.0", "0", "7", "1"), 3,
           "Input/output error")
    assert w.after_failure() == on("node1", h("activate", "vg_one", "lv-one-7-0-snap-0", "n"))
    assert state(w, "lv-one-7-0-snap-0") == ([], {})
    assert w.lv("lv-one-7-0") is not None


def test_snap_revert_of_a_missing_snapshot_is_refused(world):
    """snap_revert of a snapshot that does not exist: NotFound, nothing activated."""
    failed(world.run("snap_revert", f"node1:{VM_DIR}/disk.0", "3", "7", "1"), 4,
           "lv-one-7-0-snap-3")
    assert world.worker.sent() == on("node1",
                                     h("lvs", "vg_one", "lv-one-7-0", "lv-one-7-0-snap-3"))


# ================================================================= monitor

def test_monitor_reports_the_vg_from_the_first_bridge_host(world):
    """monitor 0: one vgs on the datastore's first bridge host, three lines."""
    outcome = world.run("monitor", "0")
    ok(outcome)
    assert world.worker.sent() == on("node1", h("vgs", "vg_one"))
    assert outcome.stdout == monitor_output(world.worker)


def test_monitor_uses_the_datastores_bridge_list_and_skips_dead_hosts(world):
    """monitor 101 (BRIDGE_LIST node2): vgs on node2 only; monitor 0 with node1 down:
    falls back to node2."""
    ok(world.run("monitor", "101"))
    assert world.worker.sent() == on("node2", h("vgs", "vg_one"))
    world.worker.down.add("node1")
    start = len(world.worker.calls)
    ok(world.run("monitor", "0"))
    assert world.worker.sent(start) == on("node2", h("vgs", "vg_one"))
    assert world.worker.contacted[-2:] == ["node1", "node2"]


def test_every_tm_action_is_covered_here():
    """The ACTIONS dict names exactly the actions tested in this file."""
    assert set(tm.ACTIONS) == {
        "clone", "ln", "mkimage", "mkswap", "context", "mv", "mvds", "cpds", "delete",
        "premigrate", "postmigrate", "failmigrate", "resize", "snap_create", "snap_delete",
        "snap_revert", "monitor"}

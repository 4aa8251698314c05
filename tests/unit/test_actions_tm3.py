"""OpenNebula 3.x TM commands (one_gfs2clvm.opennebula.tm3.COMMANDS) against the
recording worker.

Each command runs through its argv-level entry (tm3.COMMANDS[name] via
testkit.recording.run_action, with 3.x error framing), as tm_<name>.sh passes
it; the tests assert the exact remote commands per host and in order, what a
failing later step undoes (ScriptedWorker fails one chosen command), the
moves of a whole VM directory (stop, resume, migrate) and the precision of
delete (VMs 1, 10 and 100 side by side: deleting VM 1 leaves lv-one-10-*,
lv-one-100-* and their links).  The lab keeps proving the real behaviour.
"""

from __future__ import annotations

from functools import partial

import pytest

from one_gfs2clvm.opennebula import tm3
from testkit import actionkit
from testkit.actionkit import (ALICE, FE, INCOMPLETE, M, MOUNT_CHECK, USED, activate_and_link,
                               dev, failed_copy_undone, filled_new_lv, h, link_steps, make_config,
                               ok, on, removed_new_lv, retag, state, use, users_api,
                               zero_and_remove, world_of)
from testkit.fakeoned import image_doc, vm_doc
from testkit.recording import GiB, MiB, FakeApi, ScriptedWorker

# Non-zero exit, exactly one error line (containing `words`) inside the 3.x
# ERROR MESSAGE framing.
failed = partial(actionkit.failed, framed=True)


def vm_dir(vm_id: int) -> str:
    return f"{M}/{vm_id}/images"


D7 = vm_dir(7)


# ----------------------------------------------------------------- argv words

def find_links(directory: str) -> tuple[str, ...]:
    return ("find", directory, "-maxdepth", "1", "-name", "disk.*", "-type", "l",
            "-printf", "%f %l\\n")


def removal(lv: str, *snapshots: str, host: str = "node1") -> list:
    """What deleting a VM's own disk LV sends: the VG report, one zero script, one
    removal script (snapshots first), as _remove_vm_disk does."""
    return on(host, h("lvs", "vg_one"), *zero_and_remove(lv, *snapshots))


# ----------------------------------------------------------------- the world

# VM 1 (to delete) next to VMs 10, 100 and 11, whose names share its prefixes;
# disk.2 of VM 1 is persistent image 12; lv-one-1-5 is VM 1's LV no link names
# (an interrupted deploy).
VM1_LINKS = {f"{vm_dir(1)}/disk.0": dev("lv-one-1-0"), f"{vm_dir(1)}/disk.1": dev("lv-one-1-1"),
             f"{vm_dir(1)}/disk.2": dev("lv-oneimg-12"), f"{vm_dir(1)}/disk.10": dev("lv-one-1-10")}
NEIGHBOUR_LINKS = {f"{vm_dir(vm)}/disk.{disk}": dev(f"lv-one-{vm}-{disk}")
                   for vm, disks in ((10, (0, 1)), (100, (0, 1)), (11, (0,))) for disk in disks}
VM7_LINKS = {f"{D7}/disk.0": dev("lv-one-7-0"), f"{D7}/disk.1": dev("lv-one-7-1"),
             f"{D7}/disk.2": dev("lv-oneimg-13")}


def build_worker(config, running: bool) -> ScriptedWorker:
    """Image LVs 5, 12 (VM 1's persistent disk), 13; VMs 1, 10, 100, 11 on node1;
    with `running`, VM 7 on node1 (disks 0, 1 and persistent image 13 as disk 2)."""
    worker = ScriptedWorker(config)
    add = worker.vg.add
    add("vg_one", "lv-oneimg-5", GiB)
    add("vg_one", "lv-oneimg-12", GiB, [f"{USED}=1:2:node1"], {"node1": "ey"})
    for name in ("lv-one-1-0", "lv-one-1-1", "lv-one-1-10", "lv-one-1-5", "lv-one-10-0",
                 "lv-one-10-1", "lv-one-100-0", "lv-one-100-1", "lv-one-11-0"):
        vm, disk = name.split("-")[2:4]
        add("vg_one", name, GiB, [f"{USED}={vm}:{disk}:node1"], {"node1": "ey"})
    for name in ("lv-one-1-1-snap-0", "lv-one-1-10-snap-1", "lv-one-10-1-snap-0"):
        add("vg_one", name, GiB)
    worker.gfs.links.update(VM1_LINKS)
    worker.gfs.links.update(NEIGHBOUR_LINKS)
    if running:
        add("vg_one", "lv-one-7-0", GiB, [f"{USED}=7:0:node1"], {"node1": "ey"})
        add("vg_one", "lv-one-7-1", 512 * MiB, [f"{USED}=7:1:node1"], {"node1": "ey"})
        add("vg_one", "lv-oneimg-13", GiB, [f"{USED}=7:2:node1"], {"node1": "ey"})
        worker.gfs.links.update(VM7_LINKS)
    else:
        add("vg_one", "lv-oneimg-13", GiB)
    return worker


def build_api() -> FakeApi:
    """3.x actions ask oned only about lvm:// and vol:// sources."""
    api = users_api()
    api.add_vm(vm_doc(7, uid=ALICE, gid=1, uname="alice", gname="users",
                      history=[{"hostname": "node1", "ds_id": 0}],
                      disks=[{"image_id": 5}, {"fs": "raw", "size": 512}]))
    api.add_image(image_doc(5, uid=ALICE, gid=1))
    return api


def make_world(tmp_path, running: bool = True):
    config = make_config(tmp_path, "test_actions_tm3.conf")
    return world_of(config, build_worker(config, running), build_api(),
                    lambda command: (tm3.COMMANDS[command], f"tm_{command}"), legacy=True)


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


@pytest.fixture
def fresh(tmp_path):
    """VM 7 not deployed yet."""
    return make_world(tmp_path, running=False)


# ================================================================= tm_clone

CLONE_7_3 = on("node1",
               h("lvs", "vg_one", "lv-one-7-3", "lv-oneimg-5"),
               *filled_new_lv("lv-oneimg-5", "lv-one-7-3", GiB, [f"{USED}=7:3:node1"],
                              link=f"{D7}/disk.3", keep_active=True))


def test_clone_copies_the_image_into_lv_one_vm_disk_in_the_first_vg(world):
    """tm_clone.sh fe:SOURCE host:<M>/7/images/disk.3: the modern clone's steps."""
    ok(world.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{D7}/disk.3"))
    assert world.worker.sent() == CLONE_7_3
    assert state(world.worker, "lv-one-7-3") == ([f"{USED}=7:3:node1"], {"node1": "ey"})
    assert world.worker.gfs.links[f"{D7}/disk.3"] == dev("lv-one-7-3")


def test_clone_with_a_size_makes_the_lv_that_big(world):
    """tm_clone.sh with SIZE 2048: the LV is 2 GiB (bigger than the 1 GiB image)."""
    ok(world.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{D7}/disk.3", "2048"))
    assert world.worker.sent()[1] == ("node1", h("create", "vg_one", "lv-one-7-3", 2 * GiB,
                                                 INCOMPLETE, f"{USED}=7:3:node1"))
    assert world.worker.lv("lv-one-7-3").size == 2 * GiB


def test_clone_failed_copy_releases_the_image_and_removes_the_lv(world):
    """tm_clone.sh, qemu-img convert failing: image released, new LV deactivated
    and removed, no link; one framed error line."""
    w = world.worker
    w.fail("qemu-img", "convert", host="node1")
    failed(world.run("clone", "fe:vg_one/lv-oneimg-5", f"node1:{D7}/disk.3"), 3,
           "Input/output error")
    assert w.after_failure() == failed_copy_undone("lv-oneimg-5", "lv-one-7-3")
    assert w.lv("lv-one-7-3") is None and f"{D7}/disk.3" not in w.gfs.links


def test_clone_of_an_isox_only_links_it(world):
    """tm_clone.sh of an .isox: resolved and linked, no LVM."""
    iso = f"{M}/images/tools.isox"
    ok(world.run("clone", f"fe:{iso}", f"node1:{D7}/disk.3"))
    assert world.worker.sent() == on("node1", ("readlink", "-e", "--", iso), MOUNT_CHECK,
                                     *link_steps(iso, f"{D7}/disk.3"))


# ================================================================= tm_ln

def test_ln_activates_the_image_lv_and_tags_its_use(fresh):
    """tm_ln.sh of image 13 as disk 2: exclusive activation + link, use tag."""
    w = fresh.worker
    ok(fresh.run("ln", "fe:vg_one/lv-oneimg-13", f"node1:{D7}/disk.2"))
    assert w.sent() == on("node1",
                          h("lvs", "vg_one", "lv-oneimg-13"),
                          *activate_and_link("lv-oneimg-13", f"{D7}/disk.2"),
                          use("lv-oneimg-13", 7, 2, "node1"))
    assert state(w, "lv-oneimg-13") == ([f"{USED}=7:2:node1"], {"node1": "ey"})


def test_ln_failed_tagging_unlinks_and_deactivates_the_image(fresh):
    """tm_ln.sh, the use tag failing: undo removes the link and deactivates the image
    on node1."""
    w = fresh.worker
    w.fail(*h("use"), host="node1", status=5, stderr="  Failed to update VG vg_one.\n")
    failed(fresh.run("ln", "fe:vg_one/lv-oneimg-13", f"node1:{D7}/disk.2"), 4)
    assert w.after_failure() == on("node1", ("rm", "-f", f"{D7}/disk.2"),
                                   h("activate", "vg_one", "lv-oneimg-13", "n"))
    assert state(w, "lv-oneimg-13") == ([], {})
    assert f"{D7}/disk.2" not in w.gfs.links


def test_ln_refuses_an_image_in_use_by_another_vm(world):
    """tm_ln.sh of image 12 (used by VM 1): refused, nothing activated."""
    failed(world.run("ln", "fe:vg_one/lv-oneimg-12", f"node2:{D7}/disk.3"), 4, "VM 1")
    assert world.worker.sent() == on("node2", h("lvs", "vg_one", "lv-oneimg-12"))


# ================================================================= tm_mkswap / tm_mkimage

def volatile(size: int, *middle) -> list:
    return on("node1",
              h("lvs", "vg_one", "lv-one-7-3"),
              h("create", "vg_one", "lv-one-7-3", size, INCOMPLETE, f"{USED}=7:3:node1"),
              MOUNT_CHECK,
              h("activate", "vg_one", "lv-one-7-3", "ey"),
              *middle,
              *link_steps(dev("lv-one-7-3"), f"{D7}/disk.3"),
              retag("lv-one-7-3", drop=[INCOMPLETE]))


def test_mkswap_makes_a_swap_lv_and_links_it(world):
    """tm_mkswap.sh 256: LV, mkswap, link, mark dropped."""
    ok(world.run("mkswap", "256", f"node1:{D7}/disk.3"))
    assert world.worker.sent() == volatile(256 * MiB, ("/sbin/mkswap", dev("lv-one-7-3")))


def test_mkswap_failed_mkswap_removes_the_lv(world):
    """tm_mkswap.sh, mkswap failing: undo removes the LV; no link."""
    w = world.worker
    w.fail("/sbin/mkswap", host="node1", stderr="mkswap: error: swap area needs to be larger\n")
    failed(world.run("mkswap", "256", f"node1:{D7}/disk.3"), 3, "swap area")
    assert w.after_failure() == removed_new_lv("lv-one-7-3")
    assert w.lv("lv-one-7-3") is None and f"{D7}/disk.3" not in w.gfs.links


def test_mkimage_formats_with_the_given_filesystem(world):
    """tm_mkimage.sh 256 ext4: mkfs.ext4 between activation and link."""
    ok(world.run("mkimage", "256", "ext4", f"node1:{D7}/disk.3"))
    assert world.worker.sent() == volatile(256 * MiB,
                                           ("/sbin/mkfs.ext4", "-F", "-q", dev("lv-one-7-3")))


@pytest.mark.parametrize("fstype", ["raw", "-"])
def test_mkimage_raw_makes_no_filesystem(world, fstype):
    """tm_mkimage.sh with FSTYPE raw or -: no mkfs step."""
    ok(world.run("mkimage", "256", fstype, f"node1:{D7}/disk.3"))
    assert world.worker.sent() == volatile(256 * MiB)


def test_mkimage_failed_mkfs_removes_the_lv(world):
    """tm_mkimage.sh, mkfs failing: undo removes the LV."""
    w = world.worker
    w.fail("/sbin/mkfs.xfs", host="node1", stderr="mkfs.xfs: cannot open device\n")
    failed(world.run("mkimage", "256", "xfs", f"node1:{D7}/disk.3"), 3, "cannot open")
    assert w.after_failure() == removed_new_lv("lv-one-7-3")
    assert w.lv("lv-one-7-3") is None


# ================================================================= tm_context

def test_context_builds_the_iso_into_the_vm_dir(world, tmp_path):
    """tm_context.sh FILE... host:disk.N: the tar stream on stdin, one script."""
    ctx = tmp_path / "context.sh"
    ctx.write_text("X=1\n")
    disk = f"{D7}/disk.3"
    ok(world.run("context", str(ctx), f"node1:{disk}"))
    assert world.worker.sent() == on("node1", MOUNT_CHECK, ("rm", "-rf", f"{disk}.d"),
                                     ("mkdir", "-p", f"{disk}.d"),
                                     ("tar", "-x", "-C", f"{disk}.d", "-f", "-"),
                                     ("xorriso", "-as", "mkisofs", "-quiet", "-o",
                                      f"{disk}.tmp", "-V", "CONTEXT", "-J", "-R", f"{disk}.d"),
                                     ("mv", "-f", f"{disk}.tmp", disk),
                                     ("rm", "-rf", f"{disk}.d"))
    assert all(call.stdin for call in world.worker.calls)


def test_context_failed_tar_stops_the_script(world, tmp_path):
    """tm_context.sh, tar failing: nothing after it; one framed error line."""
    ctx = tmp_path / "context.sh"
    ctx.write_text("X=1\n")
    world.worker.fail("tar", host="node1", stderr="tar: Unexpected EOF in archive\n")
    failed(world.run("context", str(ctx), f"node1:{D7}/disk.3"), 3, "Unexpected EOF")
    assert world.worker.after_failure() == []


# ================================================================= tm_mv

def moved_to(host: str, lv: str, disk: int) -> list:
    """A disk arriving on `host`: activated, its use tag moved (the helper reads
    the tags: no report first; one batch) and linked."""
    return on(host, *activate_and_link(lv, f"{D7}/disk.{disk}", "ey", [use(lv, 7, disk, host)]))


VM7_DISKS = [(0, "lv-one-7-0"), (1, "lv-one-7-1"), (2, "lv-oneimg-13")]


def test_mv_of_the_vm_dir_between_hosts_moves_every_linked_disk(world):
    """tm_mv.sh node1:dir node2:dir (migration): the links found on node2, then per
    disk: off on node1, on (and relinked, retagged) on node2."""
    w = world.worker
    ok(world.run("mv", f"node1:{D7}", f"node2:{D7}"))
    expected = on("node2", find_links(D7))
    for disk, lv in VM7_DISKS:
        expected += on("node1", h("activate", "vg_one", lv, "n"))
        expected += moved_to("node2", lv, disk)
    assert w.sent() == expected
    for disk, lv in VM7_DISKS:
        assert state(w, lv) == ([f"{USED}=7:{disk}:node2"], {"node2": "ey"})


def test_mv_of_the_vm_dir_to_the_frontend_releases_every_disk(world):
    """tm_mv.sh node1:dir fe:<M>/7 (stop): per disk off on node1, use tag dropped."""
    w = world.worker
    ok(world.run("mv", f"node1:{D7}", f"{FE}:{M}/7"))
    expected = on("node1", find_links(D7))
    for disk, lv in VM7_DISKS:
        expected += on("node1", h("activate", "vg_one", lv, "n"), use(lv, 7, disk, None))
    assert w.sent() == expected
    assert FE not in w.contacted
    for _, lv in VM7_DISKS:
        assert state(w, lv) == ([], {})


def test_mv_of_the_vm_dir_from_the_frontend_activates_on_the_host(world):
    """tm_mv.sh fe:<M>/7/images node2:dir (resume of a stopped VM): every disk
    activated, linked and tagged on node2; nothing deactivated."""
    w = world.worker
    for _, lv in VM7_DISKS:
        w.lv(lv).active, w.lv(lv).tags = {}, []
    ok(world.run("mv", f"{FE}:{D7}", f"node2:{D7}"))
    expected = on("node2", find_links(D7))
    for disk, lv in VM7_DISKS:
        expected += moved_to("node2", lv, disk)
    assert w.sent() == expected


def test_mv_of_one_disk_to_the_frontend_releases_only_that_disk(world):
    """tm_mv.sh node1:dir/disk.2 fe:<M>/7/disk.2 (persistent disk at shutdown):
    only image 13 is released; disks 0 and 1 untouched."""
    w = world.worker
    ok(world.run("mv", f"node1:{D7}/disk.2", f"{FE}:{M}/7/disk.2"))
    assert w.sent() == on("node1", find_links(D7),
                          h("activate", "vg_one", "lv-oneimg-13", "n"),
                          use("lv-oneimg-13", 7, 2, None))
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node1"], {"node1": "ey"})


def test_mv_failing_on_the_second_disk_stops_there(world):
    """tm_mv.sh migration, activation of disk 1 on node2 failing: disk 0 has moved,
    disk 1 is inactive, disk 2 untouched; nothing after the failure."""
    w = world.worker
    w.fail(*h("activate", "vg_one", "lv-one-7-1", "ey"), host="node2", status=5,
           stderr="  LV locked by other host: vg_one/lv-one-7-1\n")
    failed(world.run("mv", f"node1:{D7}", f"node2:{D7}"), 4, "lv-one-7-1")
    assert w.after_failure() == []
    assert state(w, "lv-one-7-0") == ([f"{USED}=7:0:node2"], {"node2": "ey"})
    assert state(w, "lv-one-7-1") == ([f"{USED}=7:1:node1"], {})
    assert state(w, "lv-oneimg-13") == ([f"{USED}=7:2:node1"], {"node1": "ey"})


# ================================================================= tm_delete

def test_delete_of_vm_1_removes_only_vm_1s_lvs_and_directory(world):
    """tm_delete.sh node1:<M>/1/images: each linked disk of VM 1 (0, 1, 10: zeroed and
    removed with their snapshots; 2: persistent image 12 released), then VM 1's LV
    no link names (lv-one-1-5), then rm -rf of exactly <M>/1/images.  VMs 10, 100
    and 11 keep every LV and link; image 12 is kept."""
    w = world.worker
    before = w.names()
    links_before = dict(w.gfs.links)
    ok(world.run("delete", f"node1:{vm_dir(1)}"))
    assert w.sent() == [
        *on("node1", find_links(vm_dir(1))),
        *removal("lv-one-1-0"),
        *on("node1", ("rm", "-f", f"{vm_dir(1)}/disk.0")),
        *removal("lv-one-1-1", "lv-one-1-1-snap-0"),
        *on("node1", ("rm", "-f", f"{vm_dir(1)}/disk.1")),
        *on("node1", h("lvs", "vg_one", "lv-oneimg-12"),
            h("activate", "vg_one", "lv-oneimg-12", "n"),
            use("lv-oneimg-12", 1, 2, None),
            ("rm", "-f", f"{vm_dir(1)}/disk.2")),
        *removal("lv-one-1-10", "lv-one-1-10-snap-1"),
        *on("node1", ("rm", "-f", f"{vm_dir(1)}/disk.10")),
        *on("node1", h("lvs", "vg_one")),
        *removal("lv-one-1-5"),
        *on("node1", MOUNT_CHECK, ("rm", "-rf", vm_dir(1)))]
    assert w.names() == before - {"lv-one-1-0", "lv-one-1-1", "lv-one-1-1-snap-0",
                                  "lv-one-1-10", "lv-one-1-10-snap-1", "lv-one-1-5"}
    assert {n for n in w.names() if n.startswith(("lv-one-10-", "lv-one-100-"))} == \
        {"lv-one-10-0", "lv-one-10-1", "lv-one-10-1-snap-0", "lv-one-100-0", "lv-one-100-1"}
    assert state(w, "lv-oneimg-12") == ([], {})
    assert w.gfs.links == {path: target for path, target in links_before.items()
                           if not path.startswith(vm_dir(1) + "/")}


def test_delete_of_the_directory_removes_snapshots_whose_disk_is_gone(world):
    """A snapshot LV of VM 1 whose disk LV is gone (lv-one-1-7-snap-0 without
    lv-one-1-7) is zeroed and removed with the rest; VM 10's lv-one-10-7-snap-0
    and VM 11's lv-one-11-7-snap-0 stay."""
    w = world.worker
    for name in ("lv-one-1-7-snap-0", "lv-one-10-7-snap-0", "lv-one-11-7-snap-0"):
        w.vg.add("vg_one", name, GiB)
    ok(world.run("delete", f"node1:{vm_dir(1)}"))
    sent = w.sent()
    assert sent[-len(on("node1", MOUNT_CHECK, ("rm", "-rf", vm_dir(1)))):] == \
        on("node1", MOUNT_CHECK, ("rm", "-rf", vm_dir(1)))
    orphan = on("node1", h("lvs", "vg_one"), *zero_and_remove(None, "lv-one-1-7-snap-0"))
    assert any(sent[i:i + len(orphan)] == orphan for i in range(len(sent)))
    assert "lv-one-1-7-snap-0" not in w.names()
    assert {"lv-one-10-7-snap-0", "lv-one-11-7-snap-0"} <= w.names()


def test_delete_of_one_disk_removes_only_that_disk(world):
    """tm_delete.sh node1:<M>/1/images/disk.1: lv-one-1-1 and its snapshot only
    (not lv-one-1-10, not VM 10's lv-one-10-1 and its snapshot)."""
    w = world.worker
    before = w.names()
    ok(world.run("delete", f"node1:{vm_dir(1)}/disk.1"))
    assert w.sent() == [*on("node1", find_links(vm_dir(1))),
                        *removal("lv-one-1-1", "lv-one-1-1-snap-0"),
                        *on("node1", ("rm", "-f", f"{vm_dir(1)}/disk.1"))]
    assert w.names() == before - {"lv-one-1-1", "lv-one-1-1-snap-0"}


def test_delete_of_a_frontend_dir_runs_on_a_bridge_host(world):
    """tm_delete.sh with the front-end as host: on bridge node1, never the front-end."""
    ok(world.run("delete", f"{FE}:{vm_dir(100)}"))
    assert {host for host, _ in world.worker.sent()} == {"node1"}
    assert FE not in world.worker.contacted
    assert not {n for n in world.worker.names() if n.startswith("lv-one-100-")}
    assert "lv-one-10-0" in world.worker.names()


def test_delete_failing_on_a_disk_keeps_the_directory_and_the_rest(world):
    """tm_delete.sh of VM 1, zeroing lv-one-1-1 failing: disk.0 is gone already,
    nothing after the failure (no further disk, no rm -rf); VMs 10 and 100 intact."""
    w = world.worker
    w.fail("/sbin/blkdiscard", "--zeroout", dev("lv-one-1-1"), host="node1",
           stderr="blkdiscard: Input/output error\n")
    failed(world.run("delete", f"node1:{vm_dir(1)}"), 3, "Input/output error")
    assert w.after_failure() == []
    assert "lv-one-1-0" not in w.names()
    assert {"lv-one-1-1", "lv-one-1-10", "lv-one-1-5", "lv-one-10-1", "lv-one-100-1"} <= w.names()
    assert f"{vm_dir(1)}/disk.1" in w.gfs.links
    assert not any(argv[:2] == ("rm", "-rf") for _, argv in w.sent())


def test_every_tm3_command_is_covered_here():
    assert set(tm3.COMMANDS) == {"clone", "ln", "mkswap", "mkimage", "mv", "delete", "context"}

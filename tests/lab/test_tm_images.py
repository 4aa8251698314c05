"""TM scenarios around images and data: persistence, saveas, lvm:// and vol://
sources with their permission and state checks, import from a file on GFS2,
disk snapshots across migration, resize, monitor, context, a dead source host.
"""

from __future__ import annotations

import pytest

from testkit.frontend import FE, IMAGE_DS, MiB, SYSTEM_DS, FrontEnd, digest, pattern
from lab.vmlab import VG
from one_gfs2clvm.names import lv_device_path

DATA = pattern(11, 4 * MiB)
POWEROFF, SUSPENDED, ACTIVE, RUNNING = 8, 5, 3, 3


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend"))
    frontend.make_image_lv(510, 16, DATA)
    frontend.image(510, size=16)
    yield frontend
    frontend.close()




def clone(fe, vm_id, host, source, disk_id=0, expect_ok=True):
    return fe.tm("clone", source, f"{host}:{fe.disk_path(vm_id, disk_id)}", vm_id, IMAGE_DS,
                 expect_ok=expect_ok)


def test_persistent_image_keeps_data_across_deployments(fe, vm_ids, lab):
    vm_ids.append(7401)
    image = fe.make_image_lv(511, 16, DATA)
    fe.image(511, size=16, persistent=True)
    first, second = lab.node_names[0], lab.node_names[1]
    fe.vm(7401, [{"image_id": 511, "persistent": True, "size": 16}], host=first)
    path = fe.disk_path(7401, 0)
    fe.tm("ln", f"{FE}:{VG}/{image}", f"{first}:{path}", 7401, IMAGE_DS)
    assert fe.active_on(image) == [first] and fe.link(path) == lv_device_path(VG, image)
    assert fe.lv(image).tags == (f"one-use=7401:0:{first}",)
    # a second VM cannot take the same persistent image meanwhile
    fe.vm(7402, [{"image_id": 511, "persistent": True, "size": 16}], host=second)
    vm_ids.append(7402)
    failed = fe.tm("ln", f"{FE}:{VG}/{image}", f"{second}:{fe.disk_path(7402, 0)}", 7402,
                   IMAGE_DS, expect_ok=False)
    assert "in use by VM 7401" in failed.failure_message
    fe.write(first, image, pattern(12, MiB))
    # shutdown: mvds gives the disk back to its image; delete of the dir
    fe.tm("mvds", f"{first}:{path}", f"{VG}/{image}", 7401, IMAGE_DS)
    fe.tm("delete", f"{first}:{fe.sysdir(7401)}", 7401, SYSTEM_DS)
    assert fe.lv(image) is not None and fe.active_on(image) == [] and fe.lv(image).tags == ()
    # next deployment, another host: the data is there
    fe.tm("ln", f"{FE}:{VG}/{image}", f"{second}:{fe.disk_path(7402, 0)}", 7402, IMAGE_DS)
    assert fe.sha(second, image, MiB) == digest(pattern(12, MiB))
    fe.tm("mvds", f"{second}:{fe.disk_path(7402, 0)}", f"{VG}/{image}", 7402, IMAGE_DS)


def test_saveas_gives_a_usable_image(fe, vm_ids, lab):
    vm_ids.append(7403)
    node = lab.node_names[1]
    fe.vm(7403, [{"image_id": 510, "size": 16}], host=node)
    clone(fe, 7403, node, f"{FE}:{VG}/lv-oneimg-510")
    fe.write(node, "lv-one-7403-0", pattern(13, 2 * MiB))
    # the datastore allocated the new image (mkfs FORMAT=save_as): an empty LV
    target = fe.make_image_lv(512, 8)
    fe.tm("cpds", f"{node}:{fe.disk_path(7403, 0)}", f"{VG}/{target}", -1, 7403, IMAGE_DS)
    saved = fe.lv(target)
    assert saved.size_bytes == 16 * MiB and fe.active_on(target) == []   # grown, released
    # use it: a new VM clones the saved image and reads the same bytes
    vm_ids.append(7404)
    fe.vm(7404, [{"image_id": 512, "size": 16}], host=lab.node_names[0])
    clone(fe, 7404, lab.node_names[0], f"{FE}:{VG}/{target}")
    assert fe.sha(lab.node_names[0], "lv-one-7404-0", 16 * MiB) == \
        fe.sha(node, "lv-one-7403-0", 16 * MiB)


def test_lvm_source_needs_a_quiescent_vm_and_use_rights(fe, vm_ids, lab):
    node, other = lab.node_names[0], lab.node_names[-1]
    vm_ids.extend([7405, 7406])
    fe.vm(7405, [{"image_id": 510, "size": 16}], host=node, uid=5, gid=100, uname="alice")
    clone(fe, 7405, node, f"{FE}:{VG}/lv-oneimg-510")
    fe.write(node, "lv-one-7405-0", pattern(15, MiB))
    # alice's second VM copies the first one's disk: refused while it runs
    fe.vm(7406, [{"image_id": 510, "size": 16}], host=other, uid=5, gid=100, uname="alice")
    failed = clone(fe, 7406, other, "lvm://7405/0", expect_ok=False)
    assert "not suspended, stopped, powered off or undeployed" in failed.failure_message
    # suspended: allowed (copied where the disk is active, then handed over)
    fe.vm(7405, [{"image_id": 510, "size": 16}], host=node, uid=5, gid=100, uname="alice",
          state=SUSPENDED, lcm_state=0)
    clone(fe, 7406, other, "lvm://7405/0")
    assert fe.active_on("lv-one-7406-0") == [other]
    assert fe.active_on("lv-one-7405-0") == [node]           # the source is where it was
    assert fe.sha(other, "lv-one-7406-0", MiB) == digest(pattern(15, MiB))
    # bob may not manage alice's VM (permissions 600): lvm:// is disk-saveas, MANAGE
    vm_ids.append(7407)
    fe.vm(7407, [{"image_id": 510, "size": 16}], host=other, uid=6, gid=101, uname="bob")
    failed = clone(fe, 7407, other, "lvm://7405/0", expect_ok=False)
    assert "may not manage VM 7405" in failed.failure_message
    assert fe.lv("lv-one-7407-0") is None                     # nothing left behind
    # USE for everyone (604) is not enough: copying a VM's disk needs MANAGE
    fe.vm(7405, [{"image_id": 510, "size": 16}], host=node, uid=5, gid=100, uname="alice",
          state=SUSPENDED, lcm_state=0, permissions="604")
    failed = clone(fe, 7407, other, "lvm://7405/0", expect_ok=False)
    assert "may not manage VM 7405" in failed.failure_message
    assert fe.lv("lv-one-7407-0") is None


def test_vol_source_checks_image_rights(fe, vm_ids, lab):
    node = lab.node_names[1]
    fe.image(513, uid=5, gid=100, uname="alice", permissions="600", source=f"{VG}/lv-oneimg-510",
             size=16)
    vm_ids.extend([7408, 7409])
    fe.vm(7408, [{"image_id": 510, "size": 16}], host=node, uid=6, gid=101, uname="bob")
    failed = clone(fe, 7408, node, "vol://513", expect_ok=False)
    assert "may not use image 513" in failed.failure_message
    fe.vm(7409, [{"image_id": 510, "size": 16}], host=node, uid=5, gid=100, uname="alice")
    clone(fe, 7409, node, "vol://513")                     # new OS image from another image
    assert fe.sha(node, "lv-one-7409-0", len(DATA)) == digest(DATA)


def test_import_from_a_qcow2_file_on_gfs2(fe, vm_ids, lab):
    node = lab.node_names[0]
    ds_dir = f"/var/lib/one/datastores/{IMAGE_DS}"
    path = f"{ds_dir}/import-test.qcow2"
    raw = pattern(16, 3 * MiB)
    remote = fe.cluster.remote(node)
    remote.run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1.raw" && '
                'qemu-img convert -q -f raw -O qcow2 "$1.raw" "$1" && '
                # an overlay whose backing file is another file; a link out of the datastore
                'qemu-img create -q -f qcow2 -F qcow2 -b "$1" "$1.overlay" && '
                'ln -sfn /etc/hostname "$2/escape" && rm -f "$1.raw"', "sh", path, ds_dir],
               stdin=raw)
    try:
        vm_ids.extend([7410, 7412])
        fe.vm(7410, [{"image_id": 510, "size": 8}], host=node)
        clone(fe, 7410, node, f"{FE}:{path}")
        assert fe.lv("lv-one-7410-0").size_bytes == 8 * MiB
        assert fe.sha(node, "lv-one-7410-0", len(raw)) == digest(raw)   # converted to raw
        # refused, and nothing made: a backing file, a file outside a datastore
        # directory (also through a symlink), a missing ISO
        fe.vm(7412, [{"image_id": 510, "size": 8}], host=node)
        for source, says in [(f"{path}.overlay", "backing file"),
                             ("/var/lib/one/elsewhere.qcow2", "datastore directory"),
                             (f"{ds_dir}/escape", "resolves to '/etc/hostname'"),
                             ("/var/lib/one/isos/missing.isox", "does not exist")]:
            failed = clone(fe, 7412, node, f"{FE}:{source}", expect_ok=False)
            assert says in failed.failure_message, failed.failure_message
            assert fe.lv("lv-one-7412-0") is None and not fe.exists(fe.disk_path(7412, 0))
        failed = fe.tm("ln", f"{FE}:{ds_dir}/escape", f"{node}:{fe.disk_path(7412, 0)}", 7412,
                       IMAGE_DS, expect_ok=False)
        assert "resolves to '/etc/hostname'" in failed.failure_message
        assert not fe.exists(fe.disk_path(7412, 0))
    finally:
        remote.run(["rm", "-f", path, f"{path}.overlay", f"{ds_dir}/escape"])


def test_disk_snapshots_survive_migration(fe, vm_ids, lab):
    vm_ids.append(7411)
    first, second = lab.node_names[0], lab.node_names[1]
    fe.vm(7411, [{"image_id": 510, "size": 16}], host=first, state=POWEROFF, lcm_state=0)
    clone(fe, 7411, first, f"{FE}:{VG}/lv-oneimg-510")
    disk = f"{first}:{fe.disk_path(7411, 0)}"
    fe.tm("snap_create", disk, 0, 7411, IMAGE_DS)
    assert fe.lv("lv-one-7411-0-snap-0") is not None
    assert fe.active_on("lv-one-7411-0-snap-0") == []
    fe.write(first, "lv-one-7411-0", pattern(17, 4 * MiB))    # changes after the snapshot
    # cold migration to another host, then revert there
    fe.tm("mv", disk, f"{second}:{fe.disk_path(7411, 0)}", 7411, IMAGE_DS)
    moved = f"{second}:{fe.disk_path(7411, 0)}"
    fe.tm("snap_revert", moved, 0, 7411, IMAGE_DS)
    assert fe.sha(second, "lv-one-7411-0", len(DATA)) == digest(DATA)
    assert fe.active_on("lv-one-7411-0") == [second]
    fe.tm("snap_delete", moved, 0, 7411, IMAGE_DS)
    assert fe.lv("lv-one-7411-0-snap-0") is None
    fe.tm("snap_delete", moved, 0, 7411, IMAGE_DS)           # idempotent


def test_resize_grows_the_lv(fe, vm_ids, lab):
    vm_ids.append(7412)
    node = lab.node_names[-1]
    fe.vm(7412, [{"image_id": 510, "size": 16}], host=node)
    clone(fe, 7412, node, f"{FE}:{VG}/lv-oneimg-510")
    fe.tm("resize", f"{node}:{fe.disk_path(7412, 0)}", 40, 7412, IMAGE_DS)
    assert fe.lv("lv-one-7412-0").size_bytes == 40 * MiB
    assert fe.sha(node, "lv-one-7412-0", len(DATA)) == digest(DATA)
    size = fe.cluster.remote(node).run(["/sbin/blockdev", "--getsize64",
                                        lv_device_path(VG, "lv-one-7412-0")]).stdout.strip()
    assert int(size) == 40 * MiB


def test_monitor_reports_the_vg(fe, lab):
    from testkit import oneclient
    from testkit.fakeoned import datastore_doc, driver_action_b64
    payload = driver_action_b64(datastore=datastore_doc(
        SYSTEM_DS, type=1, template={"BRIDGE_LIST": " ".join(lab.node_names), "VG_NAME": VG}))
    result = fe.tm("monitor", SYSTEM_DS, stdin=payload)
    values = dict(line.split("=") for line in result.stdout.split())
    vgs = lab.sh(lab.node_names[0], f"vgs --noheadings --units m --nosuffix -o vg_size,vg_free {VG}")
    total, free = (int(float(v)) for v in vgs.stdout.split())
    assert int(values["TOTAL_MB"]) == total and int(values["FREE_MB"]) == free
    assert int(values["USED_MB"]) == total - free
    assert oneclient  # the monitor ran through the same protocol client


def test_context_iso(fe, vm_ids, lab, tmp_path):
    vm_ids.append(7413)
    node = lab.node_names[1]
    context_sh = tmp_path / "context.sh"
    context_sh.write_text("HOSTNAME='vm-7413'\n")
    extra = tmp_path / "script.txt"
    extra.write_text("hello\n")
    fe.vm(7413, [{"image_id": 510, "size": 16}], host=node)
    iso = fe.disk_path(7413, 1)
    fe.tm("context", str(context_sh), f"{extra}:'init.sh'", f"{node}:{iso}", 7413, SYSTEM_DS)
    listing = fe.cluster.remote(lab.node_names[0]).run(
        ["xorriso", "-indev", iso, "-find", "/", "-type", "f"], check=False)
    assert "'/context.sh'" in listing.stdout and "'/init.sh'" in listing.stdout
    extracted = fe.cluster.remote(lab.node_names[0]).run(
        ["sh", "-c", 'd=$(mktemp -d) && xorriso -osirrox on -indev "$1" -extract /context.sh '
         '"$d/c" >/dev/null 2>&1 && cat "$d/c"; rc=$?; rm -rf "$d"; exit $rc', "sh", iso])
    assert "HOSTNAME='vm-7413'" in extracted.stdout


def test_failed_clone_undoes_what_it_made(fe, vm_ids, lab):
    """The image is busy elsewhere (exclusively active on another node): the copy
    step fails after the target LV was created -> the target is removed again."""
    vm_ids.append(7414)
    busy = fe.make_image_lv(514, 16, DATA)
    holder, node = lab.node_names[-1], lab.node_names[0]
    fe.cluster.lvm(holder).activate(VG, busy, "exclusive")
    try:
        fe.vm(7414, [{"image_id": 514, "size": 16}], host=node)
        failed = clone(fe, 7414, node, f"{FE}:{VG}/{busy}", expect_ok=False)
    finally:
        fe.cluster.lvm(holder).deactivate(VG, busy)
    assert fe.lv("lv-one-7414-0") is None                      # undone
    assert "undone: remove vg_one/lv-one-7414-0" in failed.stderr
    assert len(failed.failure_lines) == 1                      # one clear line for oned
    assert "held by another host" in failed.failure_message


def test_live_migration_passes_other_drivers_disks_on(fe, vm_ids, lab, tmp_path):
    """A VM with a disk of another TM: premigrate calls that TM's premigrate with
    the same arguments, stdin and us as the 6th argument; a callee does not."""
    vm_ids.append(7415)
    src, dst = lab.node_names[0], lab.node_names[1]
    other = fe.remotes / "tm" / "othertm"
    other.mkdir(parents=True, exist_ok=True)
    record = tmp_path / "othertm.calls"
    (other / "premigrate").write_text(
        f'#!/bin/sh\necho "$@" >> {record}\ncat >> {record}\necho >> {record}\n')
    (other / "premigrate").chmod(0o755)
    fe.vm(7415, [{"image_id": 510, "size": 16},
                 {"image_id": 999, "size": 16, "tm_mad": "othertm", "datastore_id": 300}],
          host=src)
    clone(fe, 7415, src, f"{FE}:{VG}/lv-oneimg-510")
    stdin = fe.vm_xml_b64(7415)
    args = (src, dst, fe.sysdir(7415), 7415, SYSTEM_DS)
    fe.tm("premigrate", *args, stdin=stdin)
    calls = record.read_text().splitlines()
    assert calls[0] == " ".join(map(str, args)) + " gfs2clvm" and calls[1] == stdin
    assert sorted(fe.active_on("lv-one-7415-0")) == sorted([src, dst])
    fe.tm("failmigrate", *args, stdin=stdin)
    record.unlink()
    fe.tm("premigrate", *args, "othertm", stdin=stdin)           # called by othertm itself
    assert not record.exists()
    fe.tm("failmigrate", *args, "othertm", stdin=stdin)
    assert fe.active_on("lv-one-7415-0") == [src]

"""Real VMs on the driver's disks: libvirt + qemu as oneadmin in the lab guests.

The disks are made by the installed TM actions, as oned orders them; the
domain is what OpenNebula's KVM driver writes for them (testkit/kvmdomain.py,
from the shipped oned.conf and datastore templates), started with virsh as
oneadmin; the VM reads and writes its disks from inside its own qemu
(testkit/libvirtvm.py).  Disks 0 and 1 carry SHAREABLE=YES (OpenNebula's own
disk attribute, rendered as <shareable/>): qemu-io may then write through the
block node the VM's device holds.  Nothing else differs from OpenNebula's
deployment file.
"""

from __future__ import annotations

import threading

import pytest
from lxml import etree

from lab.vmlab import VG
from one_gfs2clvm.errors import LockContention
from testkit import kvmdomain as kd
from testkit.frontend import FE, IMAGE_DS, MiB, SYSTEM_DS, FrontEnd
from testkit.libvirtvm import LabVM, VmError, deployment_xml, image_disk

IMAGE, ISO_IMAGE = 600, 601
IMAGE_BYTE, ISO_BYTE = 0x5A, 0xC5
ISO = "/var/lib/one/isos/lab-601.isox"
VM_MEMORY_MIB = 32


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend"))
    frontend.make_image_lv(IMAGE, 16, bytes([IMAGE_BYTE]) * (4 * MiB))
    frontend.image(IMAGE, size=16)
    # an .isox CD-ROM image: a file on GFS2, linked as it is (no LV)
    lab.sh(lab.node_names[0], 'mkdir -p "$(dirname "$1")" && head -c 2097152 /dev/zero | '
                              'tr "\\000" "\\305" > "$1"', ISO, user="oneadmin")
    yield frontend
    frontend.close()


@pytest.fixture
def vms(lab, vm_ids):
    """LabVMs a test started; destroyed (on every node) before vm_ids removes
    their disks."""
    started: list[LabVM] = []
    yield started
    for vm in started:
        for node in lab.node_names:
            vm.destroy(host=node)


def deployment(vm_id: int) -> str:
    """The domain OpenNebula's KVM driver would write for the VM prolog() makes:
    disk 0 a clone of image 600, disk 1 a volatile fs disk, disk 2 the .isox
    CD-ROM, then the context CD-ROM (disk 3)."""
    return deployment_xml(vm_id, [
        {"image": IMAGE, "source": f"{VG}/lv-oneimg-{IMAGE}", "shareable": True},
        {"volatile": 16, "shareable": True}, {"isox": ISO_IMAGE, "path": ISO}],
        memory_mib=VM_MEMORY_MIB)


def prolog(fe: FrontEnd, vm_id: int, host: str, tmp_path) -> None:
    """The VM's disks through the installed TM actions, in oned's order: clone,
    mkimage, clone of the .isox, context."""
    fe.vm(vm_id, [{"image_id": IMAGE, "size": 16}, {"type": "fs", "fs": "ext4", "size": 16},
                  {"image_id": ISO_IMAGE, "type": "CDROM", "disk_type": "FILE", "source": ISO,
                   "clone": False, "readonly": True}], host=host)
    fe.tm("clone", f"{FE}:{VG}/lv-oneimg-{IMAGE}", f"{host}:{fe.disk_path(vm_id, 0)}", vm_id,
          IMAGE_DS)
    fe.tm("mkimage", 16, "raw", f"{host}:{fe.disk_path(vm_id, 1)}", vm_id, SYSTEM_DS)
    fe.tm("clone", f"{FE}:{ISO}", f"{host}:{fe.disk_path(vm_id, 2)}", vm_id, IMAGE_DS)
    context = tmp_path / f"context-{vm_id}.sh"
    context.write_text(f"HOSTNAME='vm-{vm_id}'\n")
    fe.tm("context", str(context), f"{host}:{fe.disk_path(vm_id, 3)}", vm_id, SYSTEM_DS)


def start(fe: FrontEnd, lab, vm_id: int, host: str) -> LabVM:
    """The VMM's deploy: the deployment file in the VM directory, `virsh create`
    as oneadmin."""
    vm = LabVM(lab, f"one-{vm_id}", host)
    vm.create(f"{fe.sysdir(vm_id)}/deployment.0", deployment(vm_id))
    return vm


def running_vm(fe: FrontEnd, lab, vm_ids: list, vms: list, vm_id: int, host: str,
               tmp_path) -> LabVM:
    """VM `vm_id` deployed (prolog) and started on `host`, cleaned up after the test."""
    vm_ids.append(vm_id)
    prolog(fe, vm_id, host, tmp_path)
    vm = start(fe, lab, vm_id, host)
    vms.append(vm)
    return vm


def sudo_runs(lab, node: str) -> int:
    return int(lab.sh(node, "journalctl -q --no-pager -t sudo | wc -l").stdout)


EXT4_MAGIC = "53 ef"            # s_magic, 1080 bytes into an ext4 filesystem


def test_deployed_vm_runs_as_oneadmin_and_reads_its_disks(fe, lab, vm_ids, vms, tmp_path):
    """Scenario 1: the VM's qemu runs as oneadmin, sees the image's bytes on
    disk.0, the volatile disk's fresh ext4 on disk.1, the ISO's bytes on its
    CD-ROM and an ISO 9660 context CD-ROM; starting and using it runs no sudo."""
    vm_ids.append(7601)
    node = lab.node_names[0]
    prolog(fe, 7601, node, tmp_path)
    sudo_before = sudo_runs(lab, node)
    vm = start(fe, lab, 7601, node)
    vms.append(vm)
    assert vm.state() == "running"
    assert vm.qemu_user() == "oneadmin"
    disk = lambda n: fe.disk_path(7601, n)
    assert vm.reads(disk(0), 0, 4 * MiB, IMAGE_BYTE)
    assert not vm.reads(disk(2), 0, 2 * MiB, IMAGE_BYTE)     # the check can fail
    assert vm.reads(disk(2), 0, 2 * MiB, ISO_BYTE)
    assert EXT4_MAGIC in vm.dump(disk(1), 1080, 2)
    assert "CD001" in vm.dump(disk(3), 32768, 16)             # ISO 9660 volume descriptor
    vm.write(disk(0), 8 * MiB, MiB, 0x42)
    assert vm.reads(disk(0), 8 * MiB, MiB, 0x42)
    assert sudo_runs(lab, node) == sudo_before


def test_live_migration_carries_a_running_vms_writes(fe, lab, vm_ids, vms, tmp_path):
    """Scenario 2: premigrate -> `virsh migrate --live` (oneadmin, qemu+ssh over
    the lab network) -> postmigrate, as OpenNebula's VMM orders them, while the
    VM writes before, during and after.  Afterwards disk.0 is exclusive on the
    destination only, the VM there reads every write, the source qemu is gone
    and the source cannot take the disk back."""
    src, dst = lab.node_names[0], lab.node_names[1]
    vm = running_vm(fe, lab, vm_ids, vms, 7602, src, tmp_path)
    disk0, lv = fe.disk_path(7602, 0), "lv-one-7602-0"
    vm.write(disk0, 1 * MiB, MiB, 0x11)                       # before
    on_source = LabVM(lab, vm.name, src)                      # writes while migrating
    stdin, args = fe.vm_xml_b64(7602), (src, dst, fe.sysdir(7602), 7602, SYSTEM_DS)
    fe.tm("premigrate", *args, stdin=stdin)
    assert sorted(fe.active_on(lv)) == sorted([src, dst])
    outcome: dict = {}

    def migrate():
        try:
            outcome["seconds"] = vm.migrate(dst)
        except Exception as exc:            # reported below, in the test's thread
            outcome["error"] = exc
    mover = threading.Thread(target=migrate)
    mover.start()
    during = []
    while mover.is_alive() and len(during) < 64:
        offset = 4 * MiB + len(during) * 64 * 1024
        try:
            on_source.write(disk0, offset, 64 * 1024, 0x22)
        except VmError:                     # the source handed over: no more writes
            break
        during.append(offset)
    mover.join()
    assert "error" not in outcome, outcome.get("error")
    fe.tm("postmigrate", *args, stdin=stdin)
    assert during, "no write landed while the migration ran"
    assert vm.host == dst and vm.state() == "running"
    assert on_source.state() == "absent"                      # the source qemu is gone
    assert fe.active_on(lv) == [dst]
    assert fe.lv(lv).tags == (f"one-use=7602:0:{dst}",)
    with pytest.raises(LockContention):
        fe.cluster.lvm(src).activate(VG, lv, "exclusive")
    vm.write(disk0, 6 * MiB, MiB, 0x33)                       # after
    assert vm.reads(disk0, 0, MiB, IMAGE_BYTE)
    assert vm.reads(disk0, 1 * MiB, MiB, 0x11)
    assert all(vm.reads(disk0, offset, 64 * 1024, 0x22) for offset in during)
    assert vm.reads(disk0, 6 * MiB, MiB, 0x33)
    print(f"live migration: {outcome['seconds']:.1f} s in virsh migrate, "
          f"{len(during)} writes during it")


def test_failed_live_migration_leaves_the_vm_running_on_the_source(fe, lab, vm_ids, vms,
                                                                   tmp_path):
    """Scenario 3: the destination refuses the migration (a domain of that name
    is already defined there), so OpenNebula runs failmigrate: the VM keeps
    running on the source with its disk exclusive there and writable, nothing
    is active on the destination."""
    src, dst = lab.node_names[0], lab.node_names[2]
    vm = running_vm(fe, lab, vm_ids, vms, 7603, src, tmp_path)
    disk0, lv = fe.disk_path(7603, 0), "lv-one-7603-0"
    squatter = LabVM(lab, vm.name, dst)
    squatter.put("/tmp/squatter.xml", kd.domain_xml(vm.name, VM_MEMORY_MIB, []))
    squatter.virsh("define", "/tmp/squatter.xml")
    try:
        stdin, args = fe.vm_xml_b64(7603), (src, dst, fe.sysdir(7603), 7603, SYSTEM_DS)
        fe.tm("premigrate", *args, stdin=stdin)
        with pytest.raises(VmError, match="already exists"):
            vm.migrate(dst)
        fe.tm("failmigrate", *args, stdin=stdin)
    finally:
        squatter.virsh("undefine", vm.name)
    assert vm.host == src and vm.state() == "running"
    assert fe.active_on(lv) == [src]
    assert fe.lv(lv).tags == (f"one-use=7603:0:{src}",)
    with pytest.raises(LockContention):                       # exclusive again on src
        fe.cluster.lvm(dst).activate(VG, lv, "shared")
    vm.write(disk0, 2 * MiB, MiB, 0x44)
    assert vm.reads(disk0, 2 * MiB, MiB, 0x44) and vm.reads(disk0, 0, MiB, IMAGE_BYTE)


def test_a_second_vm_elsewhere_cannot_open_a_running_vms_disk(fe, lab, vm_ids, vms,
                                                              tmp_path):
    """Scenario 6: with VM 7604 running on node1, a second VM on node2 whose
    deployment names the same disk cannot start: lvmlockd refuses to activate
    the LV there (exclusive or shared), so libvirt finds no device; the first
    VM keeps its disk."""
    first, second = lab.node_names[0], lab.node_names[1]
    running_vm(fe, lab, vm_ids, vms, 7604, first, tmp_path)
    vm_ids.append(7605)
    lv = "lv-one-7604-0"
    for intent in ("exclusive", "shared"):
        with pytest.raises(LockContention):
            fe.cluster.lvm(second).activate(VG, lv, intent)
    intruder = LabVM(lab, "one-7605", second)
    vms.append(intruder)
    disk = etree.fromstring(
        f"<disk type='block' device='disk'><source dev='/dev/{VG}/{lv}'/>"
        f"<target dev='sda'/><driver name='qemu' type='raw' cache='none'/></disk>")
    lab.sh(second, 'mkdir -p "$1"', fe.sysdir(7605), user="oneadmin")
    with pytest.raises(VmError, match=lv):
        intruder.create(f"{fe.sysdir(7605)}/deployment.0",
                        kd.domain_xml("one-7605", VM_MEMORY_MIB, [disk]))
    assert intruder.state() == "absent"
    assert fe.active_on(lv) == [first]


def test_worker_libvirt_settings_come_from_the_installer(lab):
    """The installer's worker files at work: qemu.conf has exactly our keys set
    beside Debian's commented defaults, and oneadmin (in no libvirt group)
    manages qemu:///system because of the shipped polkit rule -- without it,
    polkit refuses."""
    node = lab.node_names[2]
    conf = lab.sh(node, "cat /etc/libvirt/qemu.conf").stdout.splitlines()
    active = [line for line in conf if line.strip() and not line.startswith("#")]
    assert active == ['user = "oneadmin"', 'group = "oneadmin"', "dynamic_ownership = 0"]
    assert conf[conf.index('user = "oneadmin"') - 1].startswith("#user = ")
    assert "libvirt" not in lab.sh(node, "id -nG oneadmin").stdout.split()
    rule = "/etc/polkit-1/rules.d/50-one-gfs2clvm-libvirt.rules"
    list_vms = 'virsh -c qemu:///system list --all >/dev/null 2>&1; echo $?'
    assert lab.sh(node, list_vms, user="oneadmin").stdout.strip() == "0"
    lab.sh(node, 'mv "$1" /root/held.rules', rule)
    try:
        refused = lab.sh(node, 'sleep 1; virsh -c qemu:///system list 2>&1; true',
                         user="oneadmin").stdout
    finally:
        lab.sh(node, 'mv /root/held.rules "$1" && sleep 1', rule)
    assert "org.libvirt.unix.manage" in refused
    assert lab.sh(node, list_vms, user="oneadmin").stdout.strip() == "0"


def test_vm_bytes_survive_suspend_stop_undeploy_and_poweroff(fe, lab, vm_ids, vms, tmp_path):
    """Scenario 4: one VM through OpenNebula's state changes, each as the VMM
    commands plus the TM actions oned runs for it, writing a new mark before
    each; after every resume the VM reads all its marks and the image's bytes:
      suspend (virsh save to the checkpoint on GFS2), cold migration (mv),
        resume there (virsh restore);
      stop (save, mv to the front-end), resume on a third node (mv, restore);
      undeploy (destroy, mv to the front-end), resume (mv, virsh create);
      poweroff (destroy), resume (create: no TM action)."""
    a, b, c = lab.node_names[:3]
    vm = running_vm(fe, lab, vm_ids, vms, 7606, a, tmp_path)
    disk0, lv = fe.disk_path(7606, 0), "lv-one-7606-0"
    checkpoint = f"{fe.sysdir(7606)}/checkpoint"
    marks: list[tuple[int, int]] = []

    def mark(byte: int) -> None:
        offset = (len(marks) + 1) * MiB
        vm.write(disk0, offset, MiB, byte)
        marks.append((offset, byte))

    def sees_every_mark() -> bool:
        return vm.reads(disk0, 0, MiB, IMAGE_BYTE) and \
            all(vm.reads(disk0, offset, MiB, byte) for offset, byte in marks)

    def move(src: str, dst: str) -> None:
        for disk_id, ds in ((0, IMAGE_DS), (1, SYSTEM_DS), (2, IMAGE_DS)):
            fe.tm("mv", f"{src}:{fe.disk_path(7606, disk_id)}",
                  f"{dst}:{fe.disk_path(7606, disk_id)}", 7606, ds)
        fe.tm("mv", f"{src}:{fe.sysdir(7606)}", f"{dst}:{fe.sysdir(7606)}", 7606, SYSTEM_DS)

    mark(0x61)                                              # suspend, migrate, resume
    vm.save(checkpoint)
    assert vm.state() == "absent"
    move(a, b)
    vm.host = b
    vm.restore(checkpoint)
    assert fe.active_on(lv) == [b] and sees_every_mark()

    mark(0x62)                                              # stop, resume elsewhere
    vm.save(checkpoint)
    move(b, FE)
    assert fe.active_on(lv) == [] and fe.lv(lv).tags == ()
    move(FE, c)
    vm.host = c
    vm.restore(checkpoint)
    assert fe.active_on(lv) == [c] and sees_every_mark()

    mark(0x63)                                              # undeploy, resume
    vm.destroy()
    move(c, FE)
    move(FE, a)
    vm.host = a
    vm.create(f"{fe.sysdir(7606)}/deployment.1", deployment(7606))
    assert fe.active_on(lv) == [a] and sees_every_mark()

    mark(0x64)                                              # poweroff, resume
    vm.destroy()
    vm.create(f"{fe.sysdir(7606)}/deployment.2", deployment(7606))
    assert vm.qemu_user() == "oneadmin" and sees_every_mark()


def attachment(vm_id: int, disk_id: int, target: str) -> str:
    """The <disk> OpenNebula's attach_disk hands libvirt for a new non-persistent
    disk of image 600 as DISK_ID `disk_id` (oned picks the next free TARGET;
    given here)."""
    disk = image_disk(IMAGE, f"{VG}/lv-oneimg-{IMAGE}", SHAREABLE="YES", TARGET=target)
    disk["DISK_ID"] = str(disk_id)
    return etree.tostring(kd.render_disk(disk, kd.vm_dir(SYSTEM_DS, vm_id)), encoding="unicode")


def test_hot_attach_resize_and_detach_of_a_running_vms_disk(fe, lab, vm_ids, vms, tmp_path):
    """Scenario 5, on a running VM: attach (TM clone of image 600 as disk.4,
    then `virsh attach-device`): the VM reads the image on it; resize (TM
    resize 16 -> 32 MiB, then `virsh blockresize`): a write past the old end
    fails before and works after; detach (`virsh detach-device`, then TM
    delete): the LV is gone, the VM runs on with its other disks."""
    node = lab.node_names[1]
    vm = running_vm(fe, lab, vm_ids, vms, 7607, node, tmp_path)
    disks = [{"image_id": IMAGE, "size": 16}, {"type": "fs", "fs": "ext4", "size": 16},
             {"image_id": ISO_IMAGE, "type": "CDROM", "disk_type": "FILE", "source": ISO,
              "clone": False, "readonly": True}]
    fe.vm(7607, [*disks, {"image_id": IMAGE, "size": 16, "disk_id": 4}], host=node)
    disk4, lv, xml = fe.disk_path(7607, 4), "lv-one-7607-4", f"{fe.sysdir(7607)}/attach.4.xml"
    fe.tm("clone", f"{FE}:{VG}/lv-oneimg-{IMAGE}", f"{node}:{disk4}", 7607, IMAGE_DS)
    vm.attach(xml, attachment(7607, 4, "sdf"))
    assert vm.reads(disk4, 0, 4 * MiB, IMAGE_BYTE)
    vm.write(disk4, 8 * MiB, MiB, 0x55)

    with pytest.raises(VmError):                              # past the end: refused
        vm.write(disk4, 24 * MiB, MiB, 0x56)
    fe.vm(7607, [*disks, {"image_id": IMAGE, "size": 32, "disk_id": 4}], host=node)
    fe.tm("resize", f"{node}:{disk4}", 32, 7607, IMAGE_DS)
    vm.blockresize("sdf", 32)
    vm.write(disk4, 24 * MiB, MiB, 0x56)
    assert vm.reads(disk4, 24 * MiB, MiB, 0x56) and vm.reads(disk4, 8 * MiB, MiB, 0x55)
    assert fe.lv(lv).size_bytes == 32 * MiB

    vm.detach(xml)
    assert disk4 not in vm.sources() and fe.disk_path(7607, 0) in vm.sources()
    fe.vm(7607, disks, host=node)
    fe.tm("delete", f"{node}:{disk4}", 7607, IMAGE_DS)
    assert fe.lv(lv) is None and not fe.exists(disk4)
    assert vm.state() == "running" and vm.reads(fe.disk_path(7607, 0), 0, MiB, IMAGE_BYTE)

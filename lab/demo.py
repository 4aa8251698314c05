"""The main job: boot the lab on first use and drive a VM's whole life through
the driver's installed datastore and TM actions and a real VM under libvirt,
as OpenNebula would call them: import (qcow2 upload), deploy (the disks, then
`virsh create` as oneadmin), live migrate (premigrate, `virsh migrate --live`,
postmigrate), stop (virsh save, mv), resume elsewhere (mv, virsh restore),
saveas, terminate, image delete.  The VM reads and writes its disks from
inside its own qemu (testkit/libvirtvm.py) and the table says what it saw.

This host plays the front-end: the driver is installed with its own
installer into a scratch root, oned is the test suite's schema-validated
stand-in (testkit/fakeoned.py; oned itself cannot run here), and every action
runs through testkit/oneclient.py exactly as one_tm.rb runs it.  After each
step the workers are asked what is true (activation per node, bytes).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.vmlab import VG, lab_session

VM, IMAGE, SAVED = 4242, 4242, 4243
MiB = 1 << 20


class Steps:
    def __init__(self):
        self.rows: list[tuple[str, float, str]] = []

    def run(self, title: str, action, check=None):
        started = time.monotonic()
        print(f"-> {title} ...", flush=True)
        result = action()
        elapsed = time.monotonic() - started
        note = check(result) if check else ""
        self.rows.append((title, elapsed, note))
        print(f"   {elapsed:.2f} s  {note}", flush=True)
        return result

    def table(self) -> str:
        width = max(len(title) for title, _, _ in self.rows)
        lines = [f"{'step':<{width}}  {'seconds':>8}  verified on the workers",
                 "-" * (width + 60)]
        lines += [f"{title:<{width}}  {secs:8.2f}  {note}" for title, secs, note in self.rows]
        total = sum(secs for _, secs, _ in self.rows)
        lines += ["-" * (width + 60), f"{'total':<{width}}  {total:8.2f}"]
        return "\n".join(lines)


def image_bytes_ok(fe, node, image, data, digest) -> bool:
    lvm = fe.cluster.lvm(node)
    lvm.activate(VG, f"lv-oneimg-{image}", "shared")
    try:
        return fe.sha(node, f"lv-oneimg-{image}", len(data)) == digest(data)
    finally:
        lvm.deactivate(VG, f"lv-oneimg-{image}")


def main(keep: bool = False) -> int:
    from testkit.frontend import FE, IMAGE_DS, SYSTEM_DS, FrontEnd, digest, pattern
    from testkit.libvirtvm import LabVM, deployment_xml
    steps = Steps()
    nodes = int(os.environ.get("LAB_NODES", "3"))
    lock = os.environ.get("LAB_LOCK", "dlm")
    with contextlib.ExitStack() as stack:
        lab = steps.run(f"lab: reuse or boot ({nodes} nodes, lock {lock})",
                        lambda: stack.enter_context(lab_session(nodes, lock, keep=keep)))
        names = lab.node_names
        a, b, c = names[0], names[1 % len(names)], names[2 % len(names)]
        fe = FrontEnd(lab, Path(stack.enter_context(tempfile.TemporaryDirectory())))
        stack.callback(fe.close)
        image_data, vm_data = pattern(4242, 16 * MiB), bytes([0x42]) * (8 * MiB)
        disk0, disk1 = f"lv-one-{VM}-0", f"lv-one-{VM}-1"

        def where(lv):
            return lambda _: f"{lv} active on {fe.active_on(lv) or 'no node'}"

        vm = LabVM(lab, f"one-{VM}", a)
        disk_0 = fe.disk_path(VM, 0)

        def clean():
            for node in names:
                vm.destroy(host=node)
            fe.cleanup_vms([VM])
            for image in (IMAGE, SAVED):
                fe.ds("rm", image, source=f"{VG}/lv-oneimg-{image}")
        steps.run("clean leftovers of an earlier run (idempotent start)", clean)

        upload = Path(fe.workdir) / "upload"
        upload.mkdir(exist_ok=True)
        (upload / "image.raw").write_bytes(image_data + bytes(16 * MiB))
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
                        str(upload / "image.raw"), str(upload / "image.qcow2")], check=True)
        steps.run(f"import a 32 MiB qcow2 upload as image {IMAGE} (datastore cp)",
                  lambda: fe.ds("cp", IMAGE, path=str(upload / "image.qcow2"),
                                ds_template={"SAFE_DIRS": str(upload)}),
                  lambda r: f"{r.stdout.strip()}; bytes identical: "
                            f"{image_bytes_ok(fe, a, IMAGE, image_data, digest)}")
        fe.image(IMAGE, size=32)
        fe.vm(VM, [{"image_id": IMAGE, "size": 64}, {"type": "fs", "fs": "ext4", "size": 16}],
              host=a)
        context = Path(fe.workdir) / "context.sh"
        context.write_text(f"HOSTNAME='vm-{VM}'\n")

        steps.run(f"deploy: clone image {IMAGE} -> disk.0 on {a}",
                  lambda: fe.tm("clone", f"{FE}:{VG}/lv-oneimg-{IMAGE}",
                                f"{a}:{fe.disk_path(VM, 0)}", VM, IMAGE_DS),
                  lambda _: f"{where(disk0)(_)}; image bytes identical: "
                            f"{fe.sha(a, disk0, len(image_data)) == digest(image_data)}")
        steps.run(f"deploy: volatile ext4 disk.1 on {a}",
                  lambda: fe.tm("mkimage", 16, "raw", f"{a}:{fe.disk_path(VM, 1)}", VM, SYSTEM_DS),
                  where(disk1))
        steps.run("deploy: context ISO disk.2 (file on GFS2)",
                  lambda: fe.tm("context", str(context), f"{a}:{fe.disk_path(VM, 2)}", VM,
                                SYSTEM_DS),
                  lambda _: f"ISO present: {fe.exists(fe.disk_path(VM, 2))}")
        steps.run(f"start the VM on {a}: virsh create as oneadmin",
                  lambda: vm.create(f"{fe.sysdir(VM)}/deployment.0", deployment_xml(VM, [
                      {"image": IMAGE, "source": f"{VG}/lv-oneimg-{IMAGE}", "shareable": True},
                      {"volatile": 16}])),
                  lambda _: f"qemu runs as {vm.qemu_user()}; the VM reads the image's first "
                            f"bytes: {vm.read_bytes(disk_0, 0, 16) == image_data[:16]}")
        steps.run("the VM writes 8 MiB (qemu-io inside its qemu)",
                  lambda: vm.write(disk_0, 0, len(vm_data), 0x42),
                  lambda _: f"on the LV: {fe.sha(a, disk0, len(vm_data)) == digest(vm_data)}")

        migrate = (a, b, fe.sysdir(VM), VM, SYSTEM_DS)
        stdin = fe.vm_xml_b64(VM)
        steps.run(f"live migrate {a} -> {b}: premigrate",
                  lambda: fe.tm("premigrate", *migrate, stdin=stdin),
                  lambda _: f"{disk0} shared on {sorted(fe.active_on(disk0))}")
        steps.run(f"live migrate {a} -> {b}: virsh migrate --live (qemu+ssh, oneadmin)",
                  lambda: vm.migrate(b),
                  lambda _: f"VM {vm.state()} on {vm.host}, gone from {a}: "
                            f"{LabVM(lab, vm.name, a).state() == 'absent'}")
        steps.run(f"live migrate {a} -> {b}: postmigrate",
                  lambda: fe.tm("postmigrate", *migrate, stdin=stdin),
                  lambda _: f"{where(disk0)(_)}; the VM reads its 8 MiB: "
                            f"{vm.reads(disk_0, 0, len(vm_data), 0x42)}")
        checkpoint = f"{fe.sysdir(VM)}/checkpoint"

        def stop():
            vm.save(checkpoint)
            for disk_id, ds in ((0, IMAGE_DS), (1, SYSTEM_DS)):
                fe.tm("mv", f"{b}:{fe.disk_path(VM, disk_id)}", f"{FE}:{fe.disk_path(VM, disk_id)}",
                      VM, ds)
            fe.tm("mv", f"{b}:{fe.sysdir(VM)}", f"{FE}:{fe.sysdir(VM)}", VM, SYSTEM_DS)
        steps.run(f"stop on {b} (virsh save to the checkpoint, mv x3)", stop, where(disk0))

        def resume():
            for disk_id, ds in ((0, IMAGE_DS), (1, SYSTEM_DS)):
                fe.tm("mv", f"{FE}:{fe.disk_path(VM, disk_id)}", f"{c}:{fe.disk_path(VM, disk_id)}",
                      VM, ds)
            fe.tm("mv", f"{FE}:{fe.sysdir(VM)}", f"{c}:{fe.sysdir(VM)}", VM, SYSTEM_DS)
            vm.host = c
            vm.restore(checkpoint)
        steps.run(f"resume on {c} (mv x3, virsh restore)", resume,
                  lambda _: f"{where(disk0)(_)}; VM {vm.state()}, reads its 8 MiB: "
                            f"{vm.reads(disk_0, 0, len(vm_data), 0x42)}")
        steps.run(f"saveas: allocate image {SAVED} (datastore mkfs FORMAT=save_as)",
                  lambda: fe.ds("mkfs", SAVED, size=8, format="save_as"),
                  lambda r: r.stdout.strip())
        steps.run(f"saveas disk.0 -> image {SAVED} (cpds)",
                  lambda: fe.tm("cpds", f"{c}:{fe.disk_path(VM, 0)}", f"{VG}/lv-oneimg-{SAVED}",
                                -1, VM, IMAGE_DS),
                  lambda _: f"saved image {fe.lv(f'lv-oneimg-{SAVED}').size_bytes // MiB} MiB")

        def terminate():
            vm.destroy()
            fe.tm("delete", f"{c}:{fe.disk_path(VM, 0)}", VM, IMAGE_DS)
            fe.tm("delete", f"{c}:{fe.disk_path(VM, 1)}", VM, SYSTEM_DS)
            fe.tm("delete", f"{c}:{fe.disk_path(VM, 2)}", VM, SYSTEM_DS)
            fe.tm("delete", f"{c}:{fe.sysdir(VM)}", VM, SYSTEM_DS)
        steps.run(f"terminate on {c} (virsh destroy, delete x4)", terminate,
                  lambda _: f"VM LVs left: {[n for n in (disk0, disk1) if fe.lv(n)]}; "
                            f"dir left: {fe.exists(fe.sysdir(VM))}")

        def check_saved():
            lvm = fe.cluster.lvm(a)
            lvm.activate(VG, f"lv-oneimg-{SAVED}", "exclusive")
            same = fe.sha(a, f"lv-oneimg-{SAVED}", len(vm_data)) == digest(vm_data)
            lvm.deactivate(VG, f"lv-oneimg-{SAVED}")
            return same
        same = steps.run(f"read the saved image on {a}", check_saved,
                         lambda ok: f"the VM's bytes: {ok}")
        steps.run("delete both images (datastore rm)",
                  lambda: [fe.ds("rm", image, source=f"{VG}/lv-oneimg-{image}")
                           for image in (IMAGE, SAVED)],
                  lambda _: f"image LVs left: "
                            f"{[i for i in (IMAGE, SAVED) if fe.lv(f'lv-oneimg-{i}')]}")
        print()
        print(steps.table())
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(keep="--keep" in sys.argv))

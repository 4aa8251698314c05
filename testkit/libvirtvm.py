"""A VM under libvirt in a lab guest, driven as OpenNebula's KVM driver drives it.

Everything runs as `oneadmin` on the worker with `virsh -c qemu:///system`
(polkit lets oneadmin manage libvirt: etc-polkit-1-rules-d/), the way
OpenNebula's VMM scripts do: the deployment file is written into the VM
directory on GFS2 and started with `virsh create`; a live migration is
`virsh migrate --live DOM qemu+ssh://<dest>/system` run on the source host.

The test VM has no OS.  What it sees of its disks is read and written from
INSIDE its own qemu with the HMP command `qemu-io` (through `virsh
qemu-monitor-command --hmp`), on the block node libvirt opened for the disk:
those reads and writes go through the same open file descriptor, cache mode
and block layer as a guest's I/O would, and a live migration must carry them.
qemu-io prints its result into the domain's log, so each call reads the tail
of /var/log/libvirt/qemu/<domain>.log (root-readable: read as root).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from testkit import kvmdomain as kd
from testkit.onetemplate import shipped_datastores


class VmError(AssertionError):
    pass


# $1 domain, $2 disk source path, $3 qemu-io command.  `info block` lines look
# like `libvirt-1-format: /var/lib/one/.../disk.0 (raw)`; the result line lands
# in the log just after the monitor command returns.
_QEMU_IO = r"""
log=/var/log/libvirt/qemu/$1.log
before=$(stat -c %s "$log") || exit 3
node=$(virsh -q -c qemu:///system qemu-monitor-command --hmp "$1" 'info block' |
       awk -v path="$2" '$2 == path { sub(/:$/, "", $1); print $1; exit }')
[ -n "$node" ] || { echo "no block node for $2" >&2; exit 4; }
virsh -q -c qemu:///system qemu-monitor-command --hmp "$1" "qemu-io $node \"$3\"" >/dev/null ||
  exit 5
i=0
while [ $i -lt 100 ]; do
  out=$(tail -c +$((before + 1)) "$log")
  case "$out" in *" bytes"*|*ailed*|*rror*) printf '%s\n' "$out"; exit 0 ;; esac
  sleep 0.1; i=$((i + 1))
done
echo "no qemu-io result in $log" >&2; exit 6
"""


@dataclass
class LabVM:
    lab: object               # lab.vmlab.Lab
    name: str                 # libvirt domain name (OpenNebula: one-<vmid>)
    host: str                 # the node it runs on (updated by migrate)

    # -- virsh as oneadmin --------------------------------------------------------
    def virsh(self, *args: str, host: str | None = None, check: bool = True,
              timeout: float = 300):
        result = self.lab.sh(host or self.host, 'exec virsh -q -c qemu:///system "$@"', *args,
                             user="oneadmin", check=False, timeout=timeout)
        if check and result.exit_status != 0:
            raise VmError(f"virsh {' '.join(args)} on {host or self.host} failed "
                          f"({result.exit_status}): {result.stderr.strip()}")
        return result

    def put(self, path: str, text: str, host: str | None = None) -> None:
        """Write a file libvirt reads (deployment, attach XML) as oneadmin, the
        way OpenNebula's VMM drivers leave them in the VM directory."""
        self.lab.sh(host or self.host, 'umask 027 && cat > "$1"', path, user="oneadmin",
                    stdin=text.encode())

    def create(self, deployment_path: str, xml: str) -> None:
        """Write the deployment file (on GFS2, as oneadmin) and `virsh create` it."""
        self.put(deployment_path, xml)
        self.virsh("create", deployment_path)

    def state(self, host: str | None = None) -> str:
        result = self.virsh("domstate", self.name, host=host, check=False)
        return result.stdout.strip() if result.exit_status == 0 else "absent"

    def sources(self) -> list[str]:
        """The source path of each disk the running domain has (domblklist)."""
        lines = self.virsh("domblklist", self.name).stdout.splitlines()
        return [line.split(None, 1)[1].strip() for line in lines if len(line.split()) > 1]

    def qemu_user(self) -> str:
        """The user the domain's qemu process runs as on its host."""
        pid = self.lab.sh(self.host, 'cat "/run/libvirt/qemu/$1.pid"', self.name).stdout.strip()
        return self.lab.sh(self.host, 'ps -o user= -p "$1"', pid).stdout.strip()

    def save(self, checkpoint: str) -> None:
        """OpenNebula's VMM save (suspend, stop): the memory to the checkpoint
        file in the VM directory on GFS2; the domain is gone afterwards."""
        self.virsh("save", self.name, checkpoint)

    def restore(self, checkpoint: str) -> None:
        """OpenNebula's VMM restore, on this LabVM's host."""
        self.virsh("restore", checkpoint)

    def attach(self, xml_path: str, xml: str) -> None:
        """OpenNebula's VMM attach_disk: the <disk> to a file, `virsh attach-device`."""
        self.put(xml_path, xml)
        self.virsh("attach-device", self.name, xml_path)

    def detach(self, xml_path: str) -> None:
        """OpenNebula's VMM detach_disk, with the file attach() wrote."""
        self.virsh("detach-device", self.name, xml_path)

    def blockresize(self, target: str, size_mib: int) -> None:
        """OpenNebula's VMM resize_disk."""
        self.virsh("blockresize", self.name, target, f"{size_mib}M")

    def destroy(self, host: str | None = None) -> None:
        if self.state(host) != "absent":
            self.virsh("destroy", self.name, host=host)

    # -- the VM's own view of its disks (qemu-io inside its qemu) -------------------
    def qemu_io(self, disk_path: str, command: str) -> str:
        """Run one qemu-io command on the block node whose source is `disk_path`
        (from HMP `info block`); its output, which qemu-io writes to the domain
        log.  One remote script, as root: test instrumentation, not the VM's
        management path (that stays oneadmin's)."""
        result = self.lab.sh(self.host, _QEMU_IO, self.name, disk_path, command, check=False)
        if result.exit_status != 0:
            raise VmError(f"qemu-io {command!r} on {self.name} ({disk_path}) on {self.host}: "
                          f"{(result.stderr or result.stdout).strip()}")
        return result.stdout

    def write(self, disk_path: str, offset: int, length: int, byte: int) -> None:
        out = self.qemu_io(disk_path, f"write -P {byte:#04x} {offset} {length}")
        if f"wrote {length}/{length} bytes" not in out:
            raise VmError(f"{self.name}: write to {disk_path} failed: {out.strip()}")

    def reads(self, disk_path: str, offset: int, length: int, byte: int) -> bool:
        """Whether the VM reads `length` bytes of value `byte` at `offset`."""
        out = self.qemu_io(disk_path, f"read -P {byte:#04x} {offset} {length}")
        if "Pattern verification failed" in out:
            return False
        if f"read {length}/{length} bytes" not in out:
            raise VmError(f"{self.name}: read of {disk_path} failed: {out.strip()}")
        return True

    def dump(self, disk_path: str, offset: int, length: int) -> str:
        """qemu-io's hex and ASCII dump of `length` bytes at `offset`."""
        out = self.qemu_io(disk_path, f"read -v {offset} {length}")
        if f"read {length}/{length} bytes" not in out:
            raise VmError(f"{self.name}: read of {disk_path} failed: {out.strip()}")
        return out

    def read_bytes(self, disk_path: str, offset: int, length: int) -> bytes:
        """The bytes the VM reads, from qemu-io's hex dump (small lengths)."""
        dump = self.dump(disk_path, offset, length)
        found = bytearray()
        for line in dump.splitlines():
            head, colon, rest = line.partition(":")
            if colon and len(head) == 8 and all(ch in "0123456789abcdef" for ch in head):
                found += bytes.fromhex(rest[2:50])     # "  " + 16 x "xx ", then ASCII
        return bytes(found[:length])

    # -- live migration, as OpenNebula's VMM `migrate` ------------------------------
    def migrate(self, destination: str, timeout: float = 600) -> float:
        """`virsh migrate --live` to `destination` over qemu+ssh as oneadmin;
        the seconds it took."""
        started = time.monotonic()
        self.virsh("migrate", "--live", self.name, f"qemu+ssh://{destination}/system",
                   timeout=timeout)
        self.host = destination
        return time.monotonic() - started


def deployment_xml(vm_id: int, disks: list[dict], memory_mib: int = 32,
                   system_ds: int = 0) -> str:
    """The deployment file OpenNebula's KVM driver writes for VM `vm_id`, built
    with the stand-in of oned (testkit/kvmdomain.py) from the shipped oned.conf
    and datastore templates.  `disks`, in DISK_ID order, each one of
      {"image": ID, "source": "vg/lv"}      an image of the image datastore
      {"volatile": SIZE_MB}                  a volatile fs disk (system datastore)
      {"isox": ID, "path": FILE}             a CD-ROM image of the ISO datastore
    with optional "shareable": True (OpenNebula's SHAREABLE=YES, <shareable/>);
    the context CD-ROM comes last."""
    tm_conf, _, iso_ds, system = shipped_datastores()
    rendered = []
    for spec in disks:
        extra = {"SHAREABLE": "YES"} if spec.get("shareable") else {}
        if "image" in spec:
            rendered.append(("OS" if not rendered else "DATABLOCK",
                             image_disk(spec["image"], spec["source"], **extra)))
        elif "volatile" in spec:
            rendered.append(("DATABLOCK", kd.vm_disk(
                {"TYPE": "fs", "SIZE": str(spec["volatile"]), **extra}, system,
                tm_mad_conf=tm_conf)))
        else:
            iso = kd.image_as_registered({"TYPE": "CDROM", "PATH": spec["path"]}, iso_ds,
                                         source=spec["path"])
            rendered.append(("CDROM", kd.vm_disk({"IMAGE_ID": str(spec["isox"])}, iso_ds,
                                                 image=iso)))
    context: dict[str, str] = {}
    kd.assign_ids_and_targets(rendered, context)
    vm_dir = kd.vm_dir(system_ds, vm_id)
    elements = [kd.render_disk(disk, vm_dir) for _, disk in rendered]
    elements.append(kd.render_context(context, vm_dir, system))
    return kd.domain_xml(f"one-{vm_id}", memory_mib, elements)


def image_disk(image_id: int, source: str, **attributes: str) -> dict:
    """The VM DISK oned makes from image `image_id` of the shipped image
    datastore (LV `source`, "vg/lv"), with the VM template's DISK `attributes`
    (e.g. SHAREABLE="YES", TARGET="sdf")."""
    _, image_ds, _, _ = shipped_datastores()
    image = kd.image_as_registered({"PATH": "/var/tmp/upload"}, image_ds, source=source)
    return kd.vm_disk({"IMAGE_ID": str(image_id), **attributes}, image_ds, image=image)

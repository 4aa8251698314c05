"""This host as an OpenNebula front-end driving the lab's workers.

The driver is installed with its own installer into a scratch root, oned is
the schema-validated stand-in (tests/fakeoned.py: oned cannot run here), and
actions run through tests/oneclient.py exactly as OpenNebula's TM driver
runs them (argv, cwd, closed stdin, environment, stderr -> error message).
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path

from fakeoned import FakeOned, datastore_doc, image_doc, vm_doc
from lab.vmlab import VG
from one_gfs2clvm import config as config_mod
from one_gfs2clvm.cluster import Cluster
from one_gfs2clvm.names import lv_device_path
import oneclient

MiB = 1 << 20
SYSTEM_DS, IMAGE_DS = 0, 100
FE = socket.gethostname()        # what oned would write for "the front-end"


class ActionFailed(AssertionError):
    pass


class FrontEnd:
    def __init__(self, lab, workdir: Path, driver_conf: Path | None = None):
        self.lab = lab
        self.workdir = workdir
        self.root = workdir / "root"
        subprocess.run([sys.executable, "-m", "one_gfs2clvm.cli", "install", "--root",
                        str(self.root), "--layout", "all", "--role", "frontend"],
                       check=True, capture_output=True)
        self.remotes = self.root / "var/lib/one/remotes"
        self.tm_commands = self.root / "usr/lib/one/tm_commands"
        self.tm3_conf = self.root / "etc/one/tm_gfs2clvm/tm_gfs2clvm.conf"
        (workdir / "oned").mkdir(exist_ok=True)
        self.oned = FakeOned(workdir / "oned").start()
        self.driver_conf = driver_conf or lab.driver_conf
        self.config = config_mod.load(str(self.driver_conf))
        self.cluster = Cluster(self.config)
        self.env = {**self.oned.env(), "ONE_GFS2CLVM_CONF": str(self.driver_conf),
                    "ONE_REMOTES_DIR": str(self.remotes)}
        self.var_lib_one = workdir / "var_lib_one"
        self.var_lib_one.mkdir(exist_ok=True)
        bridges = " ".join(lab.node_names)
        self.oned.add_user(5, "alice", "alice-pw", gid=100)
        self.oned.add_user(6, "bob", "bob-pw", gid=101)
        self.oned.put_datastore(datastore_doc(SYSTEM_DS, type=1, template={
            "BRIDGE_LIST": bridges, "VG_NAME": VG}))
        self.oned.put_datastore(datastore_doc(IMAGE_DS, type=0, template={
            "BRIDGE_LIST": bridges, "VG_NAME": VG}))
        self.log: list[tuple[str, float]] = []
        self.vm_docs: dict[int, str] = {}

    def close(self) -> None:
        self.oned.stop()

    # -- running actions as OpenNebula does ---------------------------------
    def tm(self, action: str, *args, stdin=None, expect_ok: bool = True):
        result = oneclient.run_tm(str(self.remotes), "gfs2clvm", action, [str(a) for a in args],
                                  stdin=stdin, env=self.env, cwd=str(self.var_lib_one),
                                  timeout=600)
        self.log.append((f"{action} {' '.join(map(str, args))}", result.duration))
        return self._check(result, action, expect_ok)

    def tm3(self, command: str, *args, expect_ok: bool = True):
        result = oneclient.run_tm3(str(self.tm_commands), str(self.tm3_conf), command,
                                   [str(a) for a in args], env=self.env,
                                   cwd=str(self.var_lib_one), timeout=600)
        self.log.append((f"3.x {command} {' '.join(map(str, args))}", result.duration))
        return self._check(result, command, expect_ok)

    def ds(self, action: str, image_id: int, expect_ok: bool = True, template=None,
           ds_template=None, **image):
        """A datastore action as one_datastore.rb runs it (stdin base64 + id) for
        image `image_id` (image_doc keywords) in the image datastore."""
        from fakeoned import driver_action_b64
        image.setdefault("source", "")             # before cp, oned has no SOURCE yet
        payload = driver_action_b64(
            image=image_doc(image_id, template=template, **image),
            datastore=datastore_doc(IMAGE_DS, template={
                "BRIDGE_LIST": " ".join(self.lab.node_names), "VG_NAME": VG,
                **(ds_template or {})}))
        result = oneclient.run_ds(str(self.remotes), "gfs2clvm", action, image_id, payload,
                                  env=self.env, cwd=str(self.var_lib_one), timeout=600)
        self.log.append((f"datastore {action} {image_id}", result.duration))
        return self._check(result, action, expect_ok)

    @staticmethod
    def _check(result, action, expect_ok):
        if expect_ok and not result.success:
            raise ActionFailed(f"{action} failed (exit {result.exit_code}): "
                               f"{result.failure_message}\n{result.stderr}")
        if not expect_ok and result.success:
            raise ActionFailed(f"{action} succeeded but should have failed:\n{result.stderr}")
        return result

    # -- oned state -----------------------------------------------------------
    def vm(self, vm_id: int, disks, host: str | None = None, state: int = 3,
           lcm_state: int = 3, uid: int = 0, gid: int = 0, uname: str = "oneadmin",
           permissions: str = "600", history=None) -> None:
        if history is None:
            history = [{"hostname": host, "ds_id": SYSTEM_DS, "tm_mad": "gfs2clvm"}] if host else []
        doc = vm_doc(vm_id, uid=uid, gid=gid, uname=uname, state=state, lcm_state=lcm_state,
                     disks=disks, history=history, permissions=permissions)
        self.oned.put_vm(doc)
        self.vm_docs[vm_id] = doc

    def image(self, image_id: int, **kwargs) -> None:
        self.oned.put_image(image_doc(image_id, **kwargs))

    def vm_xml_b64(self, vm_id: int) -> str:
        return oneclient.b64(self.vm_docs[vm_id])

    # -- paths ------------------------------------------------------------------
    @staticmethod
    def sysdir(vm_id: int) -> str:
        return f"/var/lib/one/datastores/{SYSTEM_DS}/{vm_id}"

    def disk_path(self, vm_id: int, disk_id: int) -> str:
        return f"{self.sysdir(vm_id)}/disk.{disk_id}"

    # -- what is true on the workers ---------------------------------------------
    def lv(self, name: str, node: str | None = None):
        return self.cluster.lvm(node or self.lab.node_names[0]).lv(VG, name)

    def active_on(self, name: str) -> list[str]:
        return [node for node in self.lab.node_names
                if (lv := self.cluster.lvm(node).lv(VG, name)) is not None and lv.active_locally]

    def link(self, path: str) -> str | None:
        result = self.lab.sh(self.lab.node_names[0], 'readlink "$1" || true', path)
        return result.stdout.strip() or None

    def exists(self, path: str) -> bool:
        return self.lab.sh(self.lab.node_names[0], 'test -e "$1"', path,
                           check=False).exit_status == 0

    def sha(self, node: str, lv: str, length: int) -> str:
        result = self.cluster.remote(node).run(
            ["sh", "-c", 'head -c "$1" "$2" | sha256sum', "sh", str(length),
             lv_device_path(VG, lv)])
        return result.stdout.split()[0]

    def write(self, node: str, lv: str, data: bytes, offset_mib: int = 0) -> None:
        self.cluster.remote(node).run(
            ["dd", f"of={lv_device_path(VG, lv)}", "bs=1M", f"seek={offset_mib}",
             "iflag=fullblock", "oflag=direct", "conv=fsync,nocreat", "status=none"],
            stdin=data)

    def make_image_lv(self, image_id: int, size_mib: int = 32, data: bytes | None = None,
                      node: str | None = None) -> str:
        """An image LV as the datastore driver leaves it: filled, inactive everywhere."""
        node = node or self.lab.node_names[0]
        name = f"lv-oneimg-{image_id}"
        lvm = self.cluster.lvm(node)
        if lvm.lv(VG, name) is not None:
            for other in self.lab.node_names:
                self.cluster.lvm(other).deactivate(VG, name)
            lvm.remove(VG, name)
        lvm.create(VG, name, size_mib * MiB)
        if data:
            lvm.activate(VG, name, "exclusive")
            self.write(node, name, data)
            lvm.deactivate(VG, name)
        return name

    def remove_image_lvs(self, image_ids) -> None:
        """Remove the image LVs lv-oneimg-<id> (and their snapshots) a test made:
        one report, exact names."""
        node = self.lab.node_names[0]
        wanted = {f"lv-oneimg-{image}" for image in image_ids}
        for lv in self.cluster.lvm(node).lvs(VG):
            if lv.name in wanted or lv.name.split("-snap-")[0] in wanted:
                for other in self.lab.node_names:
                    self.cluster.lvm(other).deactivate(VG, lv.name)
                self.cluster.lvm(node).remove(VG, lv.name)

    def cleanup_vm(self, vm_id: int) -> None:
        """Remove what a test left of VM vm_id (LVs by exact name, its dir)."""
        for lv in self.cluster.lvm(self.lab.node_names[0]).lvs(VG):
            parts = lv.name.split("-")
            if lv.name.startswith("lv-one-") and len(parts) >= 4 and parts[2] == str(vm_id):
                for node in self.lab.node_names:
                    self.cluster.lvm(node).deactivate(VG, lv.name)
                self.cluster.lvm(self.lab.node_names[0]).remove(VG, lv.name)
        # the modern and the 3.x VM directory
        self.lab.sh(self.lab.node_names[0], 'rm -rf "$1" "$2"', self.sysdir(vm_id),
                    f"/var/lib/one/{vm_id}")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pattern(seed: int, size: int) -> bytes:
    """Reproducible non-zero test data (so sparse copies cannot fake it)."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    return (block * (size // MiB + 1))[:size]



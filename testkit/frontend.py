"""This host as an OpenNebula front-end driving the lab's workers.

The driver is installed with its own installer into a scratch root, oned is
the schema-validated stand-in (testkit/fakeoned.py: oned cannot run here), and
actions run through testkit/oneclient.py exactly as OpenNebula's TM driver
runs them (argv, cwd, closed stdin, environment, stderr -> error message).
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path

from testkit.fakeoned import FakeOned, datastore_doc, image_doc, vm_doc
from lab.vmlab import VG
from one_gfs2clvm import config as config_mod
from one_gfs2clvm.cluster import Cluster
from one_gfs2clvm.names import lv_device_path
from testkit import oneclient

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
        from testkit.fakeoned import driver_action_b64
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
        wanted = {f"lv-oneimg-{image}" for image in image_ids}
        self._remove_lvs(lambda name: name in wanted or name.split("-snap-")[0] in wanted)

    def cleanup_vms(self, vm_ids) -> None:
        """Remove what a test left of these VMs (LVs by exact name, their modern
        and 3.x dirs): one LV report, one deactivation per node (in parallel),
        one lvremove, one rm however many LVs -- each round trip costs in the
        emulated lab."""
        wanted = {str(vm_id) for vm_id in vm_ids}
        if not wanted:
            return

        def of_these_vms(name: str) -> bool:
            parts = name.split("-")
            return name.startswith("lv-one-") and len(parts) >= 4 and parts[2] in wanted
        self._remove_lvs(of_these_vms)
        # the modern and the 3.x VM directories
        self.lab.sh(self.lab.node_names[0], 'rm -rf "$@"', "--",
                    *(path for vm_id in sorted(wanted, key=int)
                      for path in (self.sysdir(int(vm_id)), f"/var/lib/one/{vm_id}")))

    def _remove_lvs(self, selected) -> None:
        """Deactivate everywhere, then remove, the LVs whose names `selected` picks
        (exact names from one report; test clean-up, not the driver's path)."""
        first = self.lab.node_names[0]
        names = sorted(lv.name for lv in self.cluster.lvm(first).lvs(VG) if selected(lv.name))
        if not names:
            return
        paths = [f"{VG}/{name}" for name in names]
        self.lab.on_all('lvchange -q -an "$@"', *paths)
        self.lab.sh(first, 'lvremove -q -f "$@"', *paths)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pattern(seed: int, size: int) -> bytes:
    """Reproducible non-zero test data (so sparse copies cannot fake it)."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    return (block * (size // MiB + 1))[:size]




# -- added for the fault matrix and the concurrency test (tests/lab/test_faults.py,
#    tests/lab/test_concurrency.py) -------------------------------------------------

class RunningAction:
    """A driver action started in the background as its own process (like one
    slot of oned's TM driver pool); its pipes are served by a thread at once,
    so stdin is written and stderr drained exactly as oneclient.run_script does."""

    def __init__(self, proc, command: list[str], command_line: str, cwd: str, env: dict,
                 data: bytes):
        import threading
        import time
        self.proc = proc
        self.command, self.command_line, self.cwd, self.env = command, command_line, cwd, env
        self._started = time.monotonic()
        self._outcome: dict = {}
        self._thread = threading.Thread(target=self._serve, args=(data,), daemon=True)
        self._thread.start()

    def _serve(self, data: bytes) -> None:
        import time
        out, err, timed_out = oneclient._communicate(self.proc, data, 900)
        self._outcome["result"] = oneclient.ActionResult(
            self.command, self.command_line, self.proc.returncode, out, err, cwd=self.cwd,
            env=self.env, timed_out=timed_out, duration=time.monotonic() - self._started)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = 9) -> None:
        """Signal the action's process group (start_new_session: pgid == pid)."""
        import os
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float = 900) -> "oneclient.ActionResult":
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.kill()
            self._thread.join(30)
            raise AssertionError(f"{self.command_line}: still running after {timeout:g} s")
        return self._outcome["result"]


def _spawn_tm(self, action: str, *args, stdin=None) -> RunningAction:
    """Start `remotes/tm/gfs2clvm/<action> args...` as one_tm.rb runs it (argv, cwd,
    environment, nice, own session, stdin written then closed), without waiting."""
    import os
    path, error = oneclient.tm_script_path(str(self.remotes), "gfs2clvm", action)
    assert error is None, error
    words = [str(a) for a in args]
    cwd = str(self.var_lib_one)
    env = oneclient.base_env(cwd, oneclient.DEFAULT_PRIORITY, self.env)
    data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
    proc = subprocess.Popen([path, *words], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True,
                            preexec_fn=lambda: os.nice(oneclient.DEFAULT_PRIORITY),
                            close_fds=True)
    line = path + " " + " ".join(oneclient.shellwords_escape(w) for w in words)
    return RunningAction(proc, [path, *words], line, cwd, env, data)


def _variant(self, driver_conf: Path) -> "FrontEnd":
    """The same front-end (installed remotes, oned, VMs) with another driver
    configuration file: what the actions it runs (and its cluster) use."""
    import copy
    other = copy.copy(self)
    other.driver_conf = driver_conf
    other.config = config_mod.load(str(driver_conf))
    other.cluster = Cluster(other.config)
    other.env = {**self.env, "ONE_GFS2CLVM_CONF": str(driver_conf)}
    return other


def _conf_variant(self, path: Path, changes: dict) -> Path:
    """A copy of this front-end's driver config with {section: {key: value}}
    changed (value None: key removed); written to `path`."""
    import configparser
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(self.driver_conf)
    for section, values in changes.items():
        if not parser.has_section(section):
            parser.add_section(section)
        for key, value in values.items():
            if value is None:
                parser.remove_option(section, key)
            else:
                parser.set(section, key, str(value))
    with open(path, "w") as handle:
        parser.write(handle)
    return path


def _lv_report(self, nodes: list[str] | None = None, keep=lambda name: True) -> dict:
    """{lv name: (size, tags, nodes where active, nodes where active exclusively)}
    for every LV of the VG that `keep(name)` accepts, from `lvs` on each node."""
    from concurrent.futures import ThreadPoolExecutor
    nodes = nodes or self.lab.node_names
    with ThreadPoolExecutor(len(nodes)) as pool:
        per_node = list(pool.map(lambda node: self.cluster.lvm(node).lvs(VG), nodes))
    report: dict[str, list] = {}
    for node, lvs in zip(nodes, per_node):
        for lv in lvs:
            if not keep(lv.name):
                continue
            entry = report.setdefault(lv.name, [lv.size_bytes, tuple(sorted(lv.tags)), [], []])
            if lv.active_locally:
                entry[2].append(node)
                if lv.active_exclusively:
                    entry[3].append(node)
    return {name: (size, tags, tuple(active), tuple(exclusive))
            for name, (size, tags, active, exclusive) in sorted(report.items())}


FrontEnd.spawn_tm = _spawn_tm
FrontEnd.variant = _variant
FrontEnd.conf_variant = _conf_variant
FrontEnd.lv_report = _lv_report

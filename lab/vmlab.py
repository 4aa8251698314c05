"""The lab: real clustered LVM in qemu guests, booted by the tests themselves.

    python -m lab up [--nodes 3] [--lock dlm|sanlock|none]   boot (or reuse) and print status
    python -m lab down                                        stop what the lab started, by PID
    python -m lab status | ssh NODE [CMD...]

Layout (all under $GFS2CLVM_LAB_DIR, default /var/tmp/gfs2clvm-lab):
    image-<hash>/   cached guest image, keyed on lab/build-image.sh + lab/guest/*
    run-<lock><N>/  one running lab: hub + node sockets, overlays, pidfiles,
                    consoles, shared.raw, known_hosts, ssh_config, state.json,
                    driver.conf (the front-end config the driver uses)

Guests: TCG by default (this host's /dev/kvm is PVM and cannot run a stock
Debian kernel), KVM when a real kvm_intel/kvm_amd module is loaded or
LAB_ACCEL=kvm.  Under TCG the guest CPU is `qemu64` (LAB_CPU overrides it),
and the guest kernel always boots with mitigations=off: with `-cpu max` glibc
picks AVX2 memcpy/string paths and the kernel its speculation mitigations, all
of which TCG emulates slowly.  Measured on the 2-core machine: test_tm_modern
396 s against 487 s, a 256 MiB pipe copy in a guest 1.3 s against 4.7 s.  The
guests are throw-away test machines: dropping the mitigations costs nothing
real.  The cluster net is a UNIX-socket hub (lab/hub.py): the host never sends a packet outside 127.0.0.0/8; ssh arrives through qemu user-net
hostfwd on 127.0.0.1 with restrict=on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from one_gfs2clvm.config import HostAddress, SshConfig
from one_gfs2clvm.errors import RemoteError

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
VG = "vg_one"
GFS2_LV = "gfs2_one"          # outside the driver's LV patterns on purpose
GFS2_MOUNT = "/var/lib/one"
HELPER_PATH = "/usr/sbin/one-gfs2clvm-helper"
LOCK_MODES = ("dlm", "sanlock", "none")
GUEST_MEMORY_MIB = 1536       # libvirt + a test VM fit beside the cluster stack
CLUSTER_NET = "192.168.77"    # node N is .10+N on the hub (lab/guest/lab-setup sets it)


def log(message: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def lab_dir() -> Path:
    return Path(os.environ.get("GFS2CLVM_LAB_DIR", "/var/tmp/gfs2clvm-lab"))


def run_dir(nodes: int, lock: str) -> Path:
    """One run dir per lab shape, so a 2-node sanlock lab can run beside the main one."""
    return lab_dir() / f"run-{lock}{nodes}"


# ---------------------------------------------------------------- image cache

def image_key() -> str:
    digest = hashlib.sha256()
    for path in [HERE / "build-image.sh", *sorted((HERE / "guest").iterdir())]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_image() -> Path:
    """Build the guest image unless the cache already holds this recipe's."""
    image = lab_dir() / f"image-{image_key()}"
    if (image / "base.qcow2").exists():
        return image
    lab_dir().mkdir(parents=True, exist_ok=True)
    build_log = lab_dir() / "build.log"
    log(f"building guest image {image.name} (log: {build_log})")
    started = time.monotonic()
    with open(build_log, "w") as handle:
        proc = subprocess.run(["bash", str(HERE / "build-image.sh"), str(image)],
                              stdout=handle, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = build_log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError("guest image build failed:\n" + "\n".join(tail))
    log(f"image built in {time.monotonic() - started:.0f} s")
    for old in lab_dir().glob("image-*"):
        if old != image:
            shutil.rmtree(old, ignore_errors=True)
    return image


# ---------------------------------------------------------------- processes

def guest_memory_mib() -> str:
    """MiB per guest: LAB_MEM, else GUEST_MEMORY_MIB."""
    return os.environ.get("LAB_MEM", str(GUEST_MEMORY_MIB))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int, marker: str) -> bool:
    """True if pid runs and its command line mentions marker (so it is ours)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return marker.encode() in cmdline


def kill_pid(pid: int, marker: str, timeout: float = 10.0) -> None:
    if not pid_alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid, marker):
        time.sleep(0.1)
    if pid_alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kvm_usable() -> bool:
    if os.environ.get("LAB_ACCEL") in ("kvm", "tcg"):
        return os.environ["LAB_ACCEL"] == "kvm"
    return os.path.exists("/dev/kvm") and any(
        os.path.isdir(f"/sys/module/{mod}") for mod in ("kvm_intel", "kvm_amd"))


# ---------------------------------------------------------------- the lab

@dataclass
class Node:
    index: int
    ssh_port: int
    pid: int = 0

    @property
    def name(self) -> str:
        return f"node{self.index}"


@dataclass
class Lab:
    nodes: int = 3
    lock: str = "dlm"
    run: Path | None = None       # default: run_dir(nodes, lock)
    members: list[Node] = field(default_factory=list)
    hub_pid: int = 0
    image: Path | None = None
    started_here: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.run is None:
            self.run = run_dir(self.nodes, self.lock)

    # -- paths and configs
    @property
    def gfs2(self) -> bool:
        return self.lock == "dlm"

    @property
    def key(self) -> Path:
        assert self.image is not None
        return self.image / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.run / "known_hosts"

    @property
    def driver_conf(self) -> Path:
        return self.run / "driver.conf"

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self.members]

    def ssh_config(self, user: str = "root", known_hosts: Path | None = None) -> SshConfig:
        return SshConfig(
            user=user, identity_file=str(self.key),
            known_hosts=str(known_hosts or self.known_hosts),
            connect_timeout=10.0, command_timeout=600.0,
            hosts={n.name: HostAddress("127.0.0.1", n.ssh_port) for n in self.members})

    # -- state file: lets a later process (or pytest run) reuse a running lab
    def save_state(self) -> None:
        state = {"nodes": self.nodes, "lock": self.lock, "image": str(self.image),
                 "hub_pid": self.hub_pid, "ready": True, "provisioned": self.provision_key(),
                 "members": [{"index": n.index, "ssh_port": n.ssh_port, "pid": n.pid}
                             for n in self.members]}
        (self.run / "state.json").write_text(json.dumps(state, indent=1))

    @classmethod
    def attach(cls, nodes: int | None = None, lock: str | None = None) -> "Lab | None":
        """A running lab matching (nodes, lock) -- any running one if both are None."""
        if nodes and lock:
            candidates = [run_dir(nodes, lock)]
        else:
            candidates = sorted(lab_dir().glob("run-*"))
        for run in candidates:
            try:
                state = json.loads((run / "state.json").read_text())
            except (OSError, ValueError):
                continue
            if (nodes and state["nodes"] != nodes) or (lock and state["lock"] != lock):
                continue
            lab = cls(nodes=state["nodes"], lock=state["lock"], run=run,
                      image=Path(state["image"]), hub_pid=state["hub_pid"],
                      members=[Node(**m) for m in state["members"]])
            if state.get("ready") and lab.alive():
                return lab
        return None

    @classmethod
    def all_run_dirs(cls) -> list[Path]:
        return sorted(lab_dir().glob("run-*"))

    def alive(self) -> bool:
        return pid_alive(self.hub_pid, "hub.py") and all(
            pid_alive(n.pid, str(self.run)) for n in self.members)

    # -- lifecycle
    def up(self) -> "Lab":
        if self.lock not in LOCK_MODES:
            raise ValueError(f"lock must be one of {LOCK_MODES}")
        total = time.monotonic()
        self.image = ensure_image()
        self.timings["image"] = time.monotonic() - total
        self.down()   # anything stale in the run dir (only processes it records)
        self.run.mkdir(parents=True, exist_ok=True)
        self.started_here = True
        try:
            step = time.monotonic()
            self._start_hub()
            self._start_guests()
            self._write_access_files()
            self._wait_ssh()
            self.timings["boot"] = time.monotonic() - step
            step = time.monotonic()
            self._cluster_up()
            self.timings["cluster"] = time.monotonic() - step
            step = time.monotonic()
            self._provision_driver()
            self.timings["provision"] = time.monotonic() - step
            self.save_state()
        except BaseException:
            if os.environ.get("LAB_KEEP_FAILED"):
                log(f"lab start failed; left running for inspection in {self.run}")
            else:
                self._keep_consoles()
                self.down()
            raise
        self.timings["total"] = time.monotonic() - total
        log("lab ready: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        return self

    def _keep_consoles(self) -> None:
        """Copy guest consoles next to the run dir before it is removed."""
        for console in self.run.glob("node*.console"):
            shutil.copy(console, lab_dir() / f"last-failed-{self.run.name}-{console.name}")

    def down(self) -> None:
        """Stop exactly the processes recorded for this run dir, then clean it."""
        from one_gfs2clvm import remote
        remote.close_all()
        state_file = self.run / "state.json"
        members, hub_pid = list(self.members), self.hub_pid
        if state_file.exists():
            with contextlib.suppress(ValueError, KeyError, OSError):
                state = json.loads(state_file.read_text())
                members = [Node(**m) for m in state["members"]]
                hub_pid = state["hub_pid"]
        for pidfile in self.run.glob("node*.pid") if self.run.exists() else []:
            with contextlib.suppress(ValueError, OSError):
                members.append(Node(index=0, ssh_port=0, pid=int(pidfile.read_text())))
        for node in members:
            kill_pid(node.pid, str(self.run))
        hubpid_file = self.run / "hub.pid"
        if hubpid_file.exists():
            with contextlib.suppress(ValueError, OSError):
                hub_pid = hub_pid or int(hubpid_file.read_text())
        kill_pid(hub_pid, "hub.py")
        # the driver's connection keepers for this lab (keeper_dir = the run dir)
        for lock in self.run.glob("gfs2clvm-keeper-*/lock") if self.run.exists() else []:
            with contextlib.suppress(ValueError, OSError):
                kill_pid(int(lock.read_text()), str(lock.parent))
        if self.run.exists():
            shutil.rmtree(self.run, ignore_errors=True)

    # -- steps
    def _start_hub(self) -> None:
        sock, pidfile = self.run / "hub.sock", self.run / "hub.pid"
        with open(self.run / "hub.log", "w") as handle:
            subprocess.Popen([sys.executable, str(HERE / "hub.py"), str(sock), str(pidfile)],
                             stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while not pidfile.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("lab hub did not start (see hub.log)")
            time.sleep(0.05)
        self.hub_pid = int(pidfile.read_text())

    def _qemu_argv(self, node: Node) -> list[str]:
        assert self.image is not None
        run, i = self.run, node.index
        accel = ["-accel", "kvm", "-cpu", "host"] if kvm_usable() else \
            ["-accel", "tcg,thread=multi", "-cpu", os.environ.get("LAB_CPU", "qemu64")]
        append = (f"root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet mitigations=off "
                  f"lab.id={i} lab.n={self.nodes} lab.lock={self.lock}")
        return [
            "qemu-system-x86_64", "-name", node.name, *accel,
            "-smp", "1", "-m", guest_memory_mib(), "-display", "none",
            "-serial", f"file:{run}/{node.name}.console", "-daemonize",
            "-pidfile", f"{run}/{node.name}.pid", "-no-reboot",
            "-kernel", str(self.image / "vmlinuz"), "-initrd", str(self.image / "initrd.img"),
            "-append", append,
            "-drive", f"file={run}/{node.name}.qcow2,if=none,id=root,format=qcow2,cache=unsafe",
            "-device", "virtio-blk-pci,drive=root",
            "-drive", f"file={run}/shared.raw,if=none,id=shared,format=raw,cache=none,"
                      "aio=threads,file.locking=off",
            "-device", "virtio-blk-pci,drive=shared,share-rw=on,serial=SANDISK0",
            "-netdev", f"user,id=u0,restrict=on,hostfwd=tcp:127.0.0.1:{node.ssh_port}-:22",
            "-device", "virtio-net-pci,netdev=u0",
            "-netdev", f"dgram,id=c0,local.type=unix,local.path={run}/{node.name}.sock,"
                       f"remote.type=unix,remote.path={run}/hub.sock",
            "-device", f"virtio-net-pci,netdev=c0,mac=52:54:00:77:00:{i:02x}",
            "-object", "rng-random,id=rng0,filename=/dev/urandom",
            "-device", "virtio-rng-pci,rng=rng0",
        ]

    def _start_guests(self) -> None:
        assert self.image is not None
        shared = self.run / "shared.raw"
        with open(shared, "wb") as handle:
            handle.truncate(int(os.environ.get("LAB_SHARED_GB", "8")) << 30)
        self.members = [Node(index=i, ssh_port=free_port()) for i in range(1, self.nodes + 1)]
        for node in self.members:
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                            "-b", str(self.image / "base.qcow2"),
                            str(self.run / f"{node.name}.qcow2")], check=True)
            subprocess.run(self._qemu_argv(node), check=True)
            node.pid = int((self.run / f"{node.name}.pid").read_text())

    def _write_access_files(self) -> None:
        assert self.image is not None
        lines, ssh_lines = [], []
        for node in self.members:
            pub = (self.image / "hostkeys" / f"{node.name}.pub").read_text().split()
            lines.append(f"[127.0.0.1]:{node.ssh_port} {pub[0]} {pub[1]}")
            ssh_lines += [f"Host {node.name}", "  HostName 127.0.0.1",
                          f"  Port {node.ssh_port}", "  User root",
                          f"  IdentityFile {self.key}", f"  UserKnownHostsFile {self.known_hosts}",
                          "  StrictHostKeyChecking yes", ""]
        self.known_hosts.write_text("\n".join(lines) + "\n")
        (self.run / "ssh_config").write_text("\n".join(ssh_lines))
        self.driver_conf.write_text(self.render_driver_conf(self.lock_mode_for_driver()))

    def lock_mode_for_driver(self) -> str:
        return "none" if self.lock == "none" else "lvmlockd"

    def render_driver_conf(self, lock_mode: str) -> str:
        hosts = "\n".join(f"{n.name} = 127.0.0.1:{n.ssh_port}" for n in self.members)
        return (f"# written by lab/vmlab.py for the lab in {self.run}\n"
                f"[storage]\nvolume_groups = {VG}\nlock_mode = {lock_mode}\n"
                f"gfs2_mount = {GFS2_MOUNT}\nzeroing = on_delete\n"
                f"bridge_hosts = {', '.join(self.node_names)}\n"
                f"[ssh]\nuser = oneadmin\nidentity_file = {self.key}\n"
                f"known_hosts = {self.known_hosts}\nconnect_timeout = 10\ncommand_timeout = 600\n"
                f"keeper = on\nkeeper_dir = {self.run}\nkeeper_idle = 60\n"
                f"[ssh.hosts]\n{hosts}\n"
                f"[node]\nhelper = {HELPER_PATH}\nsudo = /usr/bin/sudo\n"
                f"[locking]\nlock_dir = {self.run / 'locks'}\nlock_timeout = 120\n"
                f"lvm_retries = 6\nlvm_retry_delay = 0.5\n")

    def _wait_ssh(self, timeout: float = 240.0) -> None:
        from one_gfs2clvm.remote import Remote
        deadline = time.monotonic() + timeout
        pending = list(self.members)
        while pending:
            for node in list(pending):
                if not pid_alive(node.pid, str(self.run)):
                    raise RuntimeError(f"{node.name}: qemu exited (see {node.name}.console)")
                probe = Remote(node.name, self.ssh_config())
                try:
                    probe.run(["true"], timeout=10)
                    pending.remove(node)
                except RemoteError:
                    pass
                finally:
                    probe.close()
            if pending and time.monotonic() > deadline:
                raise RuntimeError("guests not reachable by ssh: " +
                                   ", ".join(n.name for n in pending))
            if pending:
                time.sleep(1)

    # -- remote helpers (root)
    def sh(self, node: str, script: str, *args: str, user: str = "root",
           check: bool = True, stdin: bytes | None = None, timeout: float | None = None):
        """Run one of the lab's own fixed shell snippets (args passed as $1...)."""
        from one_gfs2clvm.remote import get_remote
        remote = get_remote(node, self.ssh_config(user))
        return remote.run(["sh", "-c", script, "sh", *args], stdin=stdin, check=check,
                          timeout=timeout)

    def on_all(self, script: str, *args: str, nodes: list[str] | None = None) -> list:
        """Run one of the lab's snippets on several nodes (default: all) in parallel."""
        nodes = nodes or self.node_names
        with ThreadPoolExecutor(len(nodes)) as pool:
            return list(pool.map(lambda n: self.sh(n, script, *args), nodes))

    def _cluster_up(self) -> None:
        first, everyone = self.node_names[0], self.node_names
        self._start_daemons(everyone)
        shared_flags = {"dlm": "--shared --lock-type dlm", "sanlock": "--shared --lock-type sanlock",
                        "none": ""}[self.lock]
        # no separate pvcreate: it needs the global lock, which for sanlock
        # only exists once the first shared VG does
        self.sh(first, f"vgcreate -q {shared_flags} --metadatasize 32m {VG} /dev/vdb")
        self._lock_start(everyone)
        if self.gfs2:
            self.sh(first, f"lvcreate -q -an -L 1G -n {GFS2_LV} {VG}")
            self.on_all(f"lvchange -asy {VG}/{GFS2_LV}")
            self.sh(first, f"mkfs.gfs2 -q -O -p lock_dlm -t lab:one -j {self.nodes} -J 16 "
                           f"/dev/{VG}/{GFS2_LV}")
        self._mount(everyone)
        self.sh(first, f"chown oneadmin:oneadmin {GFS2_MOUNT}")

    # The per-node steps, shared by the first start and by restart_node().
    def _start_daemons(self, nodes: list[str]) -> None:
        self.on_all(nodes=nodes, script="modprobe -a dm_mod" + (" dlm gfs2" if self.gfs2 else ""))
        if self.lock == "dlm":
            self.on_all(nodes=nodes, script="systemctl start corosync")
            for node in nodes:
                self._wait(node, "corosync-quorumtool -s | grep -q 'Quorate:.*Yes'", 90, "quorum")
            self.on_all(nodes=nodes, script="systemctl start dlm lvmlockd")
        elif self.lock == "sanlock":
            # --gl-type sanlock: the first sanlock VG must also host the global
            # lock, and the stock unit has no way to pass that option
            self.on_all(nodes=nodes, script="systemctl start wdmd sanlock && systemd-run --quiet "
                            "--unit=lvmlockd-sanlock /sbin/lvmlockd --foreground --gl-type sanlock")
        if self.lock != "none":
            for node in nodes:
                self._wait(node, "lvmlockctl --info >/dev/null 2>&1", 60, "lvmlockd running")

    def _lock_start(self, nodes: list[str]) -> None:
        if self.lock == "none":
            return
        self.on_all(nodes=nodes, script=f"vgchange -q --lock-start {VG}")
        # sanlock lock-start returns before the lockspace is joined
        for node in nodes:
            self._wait(node, f"lvmlockctl -i | grep -q 'VG {VG}'", 240, "lock-start")

    def _mount(self, nodes: list[str]) -> None:
        if self.gfs2:
            self.on_all(nodes=nodes, script=f"lvchange -asy {VG}/{GFS2_LV} && mkdir -p {GFS2_MOUNT} && "
                            f"mount -t gfs2 -o noatime /dev/{VG}/{GFS2_LV} {GFS2_MOUNT}")
        else:
            self.on_all(nodes=nodes, script=f"mkdir -p {GFS2_MOUNT} && chown oneadmin:oneadmin {GFS2_MOUNT}")

    def restart_node(self, name: str) -> None:
        """Crash a node (its qemu killed, no clean shutdown) and boot it again:
        the overlay disk keeps its state, it rejoins corosync/dlm/lvmlockd and
        mounts GFS2 -- but no LV of ours is active, as after a real power cut."""
        self.crash_node(name)
        self.boot_node(name)

    def crash_node(self, name: str) -> None:
        """Kill a node's qemu (a power cut) and wait until the others notice."""
        from one_gfs2clvm import remote
        node = next(n for n in self.members if n.name == name)
        kill_pid(node.pid, str(self.run), timeout=5)
        remote.close_all()
        survivor = next(n for n in self.node_names if n != name)
        if self.lock == "dlm":   # the others notice the node is gone (no fencing here)
            self._wait(survivor, f"! corosync-quorumtool -l | grep -qw {name}", 60,
                       f"{name} leaving the membership")

    def boot_node(self, name: str) -> None:
        """Boot a crashed node again and bring its cluster stack back."""
        from one_gfs2clvm import remote
        node = next(n for n in self.members if n.name == name)
        subprocess.run(self._qemu_argv(node), check=True)
        node.pid = int((self.run / f"{name}.pid").read_text())
        self.save_state()
        deadline = time.monotonic() + 240
        while True:
            try:
                self.sh(name, "true", timeout=10)
                break
            except RemoteError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not come back") from None
                remote.close_all()
                time.sleep(1)
        self._start_daemons([name])
        self._lock_start([name])
        self._mount([name])

    def _wait(self, node: str, check: str, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while self.sh(node, check, check=False).exit_status != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node}: {what} not reached in {timeout:.0f} s")
            time.sleep(0.5)

    def _stage_node_files(self) -> Path:
        """The worker-side files exactly as the project's installer lays them out
        (`one-gfs2clvm install --role node`), with the lab's node config."""
        staging = self.run / "node-root"
        shutil.rmtree(staging, ignore_errors=True)
        # the guests' own qemu.conf (one image: the same on every node), so the
        # installer sets its keys in that file as it would on a real worker
        qemu_conf = self.sh(self.node_names[0], "cat /etc/libvirt/qemu.conf 2>/dev/null",
                            check=False).stdout
        if qemu_conf:
            (staging / "etc/libvirt").mkdir(parents=True)
            (staging / "etc/libvirt/qemu.conf").write_text(qemu_conf)
            (staging / "etc/libvirt/qemu.conf").chmod(0o600)
        subprocess.run([sys.executable, "-m", "one_gfs2clvm.cli", "install", "--root",
                        str(staging), "--role", "node", "--layout", "all"],
                       check=True, capture_output=True, cwd=PROJECT)
        (staging / "etc/one/gfs2clvm.conf").write_text(self.render_node_conf())
        for leftover in staging.rglob("*.new"):
            leftover.unlink()
        return staging

    def provision_key(self) -> str:
        staging = self._stage_node_files()
        digest = hashlib.sha256()
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            digest.update(f"{path.relative_to(staging)} {path.stat().st_mode:o}\0".encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def ensure_provisioned(self) -> None:
        """A reused lab gets the checkout's front-end config, and its worker
        files if they changed since."""
        self.driver_conf.write_text(self.render_driver_conf(self.lock_mode_for_driver()))
        state = json.loads((self.run / "state.json").read_text())
        if state.get("provisioned") != self.provision_key():
            log("worker-side driver files changed: installing them again")
            self._provision_driver()
            self.save_state()

    def _provision_driver(self) -> None:
        """Copy the installer's node tree to every worker (root-owned), then check it."""
        import io
        import tarfile
        staging = self._stage_node_files()
        payload = io.BytesIO()
        with tarfile.open(fileobj=payload, mode="w") as tar:
            def as_root(info):
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                return info
            for top in sorted(staging.iterdir()):
                tar.add(top, arcname=top.name, filter=as_root)
        for node in self.node_names:
            # libvirtd reads qemu.conf only at start (socket-activated: usually
            # not running yet)
            self.sh(node, "tar -x -C / --no-overwrite-dir -f - && "
                          "visudo -cqf /etc/sudoers.d/one-gfs2clvm && udevadm control --reload && "
                          "systemctl try-restart libvirtd.service",
                    stdin=payload.getvalue())
        self._oneadmin_ssh()

    def _oneadmin_ssh(self) -> None:
        """oneadmin's ssh key and known hosts in its home on GFS2, as an
        OpenNebula cluster shares them: libvirt's live migration runs
        `qemu+ssh://<node>/system` as oneadmin between the workers, over the
        lab network (node names resolve to 192.168.77.x in /etc/hosts)."""
        if not self.gfs2:
            return
        assert self.image is not None
        hosts = "".join(
            f"{name},{CLUSTER_NET}.{10 + index} "
            f"{' '.join((self.image / 'hostkeys' / f'{name}.pub').read_text().split()[:2])}\n"
            for index, name in enumerate(self.node_names, 1))
        self.sh(self.node_names[0],
                f'umask 077 && mkdir -p {GFS2_MOUNT}/.ssh && cat > {GFS2_MOUNT}/.ssh/id_ed25519 && '
                f'printf "%s" "$1" > {GFS2_MOUNT}/.ssh/known_hosts && '
                f'chown -R oneadmin:oneadmin {GFS2_MOUNT}/.ssh', hosts,
                stdin=self.key.read_bytes())

    def render_node_conf(self) -> str:
        return (f"# worker copy, written by lab/vmlab.py\n[storage]\nvolume_groups = {VG}\n"
                f"lock_mode = {self.lock_mode_for_driver()}\n"
                f"[locking]\nlvm_retries = 6\nlvm_retry_delay = 0.5\n")


@contextlib.contextmanager
def lab_session(nodes: int, lock: str, keep: bool = False):
    """Yield a running lab of this shape: reuse one that is up, else boot one.

    Only a lab booted here is stopped afterwards (by PID), unless `keep` or
    LAB_KEEP=1.
    """
    running = Lab.attach(nodes, lock)
    if running is not None:
        log(f"reusing the running lab in {running.run}")
        running.ensure_provisioned()
        yield running
        return
    started = Lab(nodes=nodes, lock=lock).up()
    try:
        yield started
    finally:
        if not (keep or os.environ.get("LAB_KEEP")):
            started.down()

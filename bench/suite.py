"""`./run bench`: what the driver's TM actions cost, all in ONE lab run, written
to docs/benchmarks.md.

    ./run bench [--rounds 3] [--quick] [--output docs/benchmarks.md]

Against what (one 3-node dlm lab, so every column ran on the same emulated
hardware at the same time):
  * the driver's clone / mv (cold migration) / delete / monitor, with the
    connection keeper on and off ([ssh] keeper);
  * bare LVM over one ssh command on a warm connection: root dd of the image
    LV (clone), lvchange -an + lvchange -aey (mv), vgs (monitor);
  * the peer: OpenNebula's own fs_lvm TM (bench/peer_fs_lvm.sh, bench/peer.py)
    with OpenNebula's ssh ControlMaster settings and sudoers allow-list;
  * remote commands per action (ONE_GFS2CLVM_TRACE) and node-helper runs
    (sudo's journal on the guests);
  * the same actions again with 1,000 foreign LVs in the VG;
  * 20 clones at once against the same 20 one after another;
  * how much slower the emulated guests are than this host at CPU-bound work;
  * real VMs under libvirt (testkit/libvirtvm.py): deploy and `virsh create`
    on the driver's disks against the same domain on an LV made by hand, and
    the live-migration hand-over (premigrate + `virsh migrate --live` +
    postmigrate) against a bare `virsh migrate` of the same VM with its LV
    activated shared on both nodes by hand.

Each variant first opens its connections (keeper / ControlMaster), then runs
its rounds back to back: the numbers are a busy front-end's steady state.
Targets are printed next to the ratios; nothing here fails on a number.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.peer import Peer
from lab.vmlab import PROJECT, VG, guest_memory_mib, kvm_usable, lab_session
from one_gfs2clvm.errors import ConfigError
from one_gfs2clvm.remote import TRACE_ENV
from testkit.fakeoned import datastore_doc, driver_action_b64
from testkit.frontend import FE, IMAGE_DS, SYSTEM_DS, FrontEnd, pattern
from testkit.libvirtvm import LabVM, deployment_xml

MiB = 1 << 20
IMAGE, CONCURRENT_IMAGE = 4900, 4901
FIRST_VM = 5000
FILLER_PREFIX = "bench-filler-"
SUDO_CURSOR = "/run/gfs2clvm-bench-sudo.cursor"
ACTIONS = ("clone", "mv", "delete", "monitor")
KEEPER_ON, KEEPER_OFF, DRIVER = "driver, keeper on", "driver, keeper off", "driver"
PEER, BARE = "fs_lvm peer", "bare LVM"
BARE_FOR = {"clone": "root dd of the image LV", "mv": "lvchange -an + lvchange -aey",
            "monitor": "vgs"}
# The real-VM phase: what is timed, in report order.
VM_STEPS = ("driver prolog", "bare prolog", "driver create", "bare create", "premigrate",
            "hand-over migrate", "postmigrate", "bare shared activation", "bare migrate")
VM_MEMORY_MIB = 32
TARGETS = {"peer": 0.7, "clone": 1.3, "mv": 1.5, "monitor": 2.0, "growth": 20.0}
# What a lvm command line needs for the fillers: no activation (a shared VG
# would take an LV lock per LV), no zeroing (needs activation), no metadata
# archive/backup copies (a thousand ~300 KB files in /etc/lvm otherwise).
LVM_QUIET = '--config "backup/archive=0 backup/backup=0"'


# The twin VM's deploy by hand, as root in one ssh command: the image LV read
# shared, a new LV filled with dd, the VM directory with the same disk.0 link
# and a copy of the driver VM's context ISO (cheaper than making one: this is
# a lower bound).  $1 VG, $2 image LV, $3 new LV, $4 MiB, $5 twin's dir,
# $6 the driver VM's dir.
BARE_PROLOG = r"""
set -e
lvchange -asy "$1/$2"
lvcreate -q -an -Zn -Wn -L"$4"m -n "$3" "$1"
lvchange -aey "$1/$3"
dd if="/dev/$1/$2" of="/dev/$1/$3" bs=4M iflag=direct oflag=direct status=none
lvchange -an "$1/$2"
install -d -o oneadmin -g oneadmin "$5"
ln -sfn "/dev/$1/$3" "$5/disk.0"
cp "$6/disk.1" "$5/disk.1"
chown -h oneadmin:oneadmin "$5/disk.0" "$5/disk.1"
"""


@dataclass(frozen=True)
class Settings:
    rounds: int = 3
    size_mib: int = 256             # the image cloned / moved / deleted
    fillers: int = 1000             # foreign LVs for the scale run
    concurrent: int = 20            # clones started at once (over 2 nodes)
    concurrent_size_mib: int = 16


QUICK = Settings(rounds=1, size_mib=64, fillers=200, concurrent=6, concurrent_size_mib=16)


def children_cpu() -> float:
    """CPU seconds (user + sys) of this process's finished children: an action's
    front-end cost, whatever it waited for remotely."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Results:
    """Everything measured; the report is rendered from this alone."""
    settings: Settings
    seconds: dict = field(default_factory=dict)      # (phase, who, action) -> [s]
    remote_calls: dict = field(default_factory=dict)  # (who, action) -> [count | None]
    cpu: dict = field(default_factory=dict)           # (who, action) -> [front-end CPU s]
    call_modes: dict = field(default_factory=dict)    # (who, action) -> {mode: count}
    sudo_runs: dict = field(default_factory=dict)     # (who, action) -> int
    who: list = field(default_factory=list)           # driver variants measured
    notes: list = field(default_factory=list)
    fillers_seconds: float = 0.0
    fillers_removal_seconds: float = 0.0
    concurrency: dict = field(default_factory=dict)
    emulation: list = field(default_factory=list)     # (probe, host s, guest s)
    vm_seconds: dict = field(default_factory=dict)    # VM_STEPS item -> [s]
    machine: dict = field(default_factory=dict)

    def add(self, phase: str, who: str, action: str, seconds: float) -> None:
        self.seconds.setdefault((phase, who, action), []).append(seconds)

    def median(self, phase: str, who: str, action: str) -> float | None:
        values = self.seconds.get((phase, who, action))
        return statistics.median(values) if values else None


class Bench:
    def __init__(self, lab, scratch: Path, settings: Settings):
        self.lab, self.scratch, self.settings = lab, scratch, settings
        self.results = Results(settings)
        self.a, self.b = lab.node_names[0], lab.node_names[1]
        self.fe = FrontEnd(lab, scratch / "frontend")
        self.drivers = self._keeper_variants()
        self.peer = Peer(lab, scratch / "peer")
        self.vm_ids = itertools.count(FIRST_VM)
        self.used_vms: list[int] = []
        self.domains: list[LabVM] = []
        self.record_vm_steps = True
        self.image = ""
        self.fillers = 0

    # -- set up / take down ------------------------------------------------------
    def _keeper_variants(self) -> dict:
        """{label: FrontEnd}: keeper on and off, or the plain driver when this
        checkout's config does not know [ssh] keeper yet."""
        try:
            return {label: self.fe.variant(self.fe.conf_variant(
                        self.scratch / f"keeper-{value}.conf", {"ssh": {"keeper": value}}))
                    for label, value in ((KEEPER_ON, "on"), (KEEPER_OFF, "off"))}
        except ConfigError as exc:
            self.results.notes.append(f"keeper on/off not measured: the driver config does "
                                      f"not accept `[ssh] keeper` ({exc.one_line()})")
            return {DRIVER: self.fe}

    def setup(self) -> None:
        size = self.settings.size_mib
        log(f"image LV lv-oneimg-{IMAGE} ({size} MiB) and the peer's user and image file")
        self.image = self.fe.make_image_lv(
            IMAGE, size, pattern(IMAGE, 16 * MiB) * (size * MiB // (16 * MiB) or 1))
        self.fe.image(IMAGE, size=size)
        self.peer.setup(self.image)
        self.sudo_runs()            # starts the journal cursors

    def teardown(self) -> None:
        """Leave the lab as found: VMs, image LVs, fillers, the peer, cursors."""
        steps = [self.destroy_domains, lambda: self.fe.cleanup_vms(self.used_vms),
                 lambda: self.fe.remove_image_lvs([IMAGE, CONCURRENT_IMAGE]),
                 self.remove_fillers, self.peer.teardown,
                 lambda: self.lab.on_all(f"rm -f {SUDO_CURSOR}"), self.fe.close]
        for step in steps:
            try:
                step()
            except Exception as exc:        # clean up the rest; report what failed
                log(f"clean-up step failed: {exc}")

    def new_vm(self) -> int:
        vm = next(self.vm_ids)
        self.used_vms.append(vm)
        return vm

    # -- what ran where --------------------------------------------------------------
    def sudo_runs(self) -> tuple[int, int]:
        """(node-helper runs, peer sudo runs) on all guests since the last call,
        from sudo's journal lines (one per sudo run) after a per-node cursor."""
        script = (f"journalctl --sync 2>/dev/null; journalctl -q --no-pager -t sudo -o cat "
                  f"--cursor-file={SUDO_CURSOR} | awk '/COMMAND=\\/usr\\/sbin\\/one-gfs2clvm-"
                  f"helper/ {{h++}} /^ *onepeer :.*COMMAND=/ {{p++}} END {{print h+0, p+0}}'")
        counts = [tuple(map(int, result.stdout.split())) for result in self.lab.on_all(script)]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def monitor_payload(self, bridges) -> str:
        return driver_action_b64(datastore=datastore_doc(SYSTEM_DS, type=1, template={
            "BRIDGE_LIST": " ".join(bridges), "VG_NAME": VG}))

    # -- the driver ----------------------------------------------------------------
    def drive(self, frontend, action: str, *args,
              stdin=None) -> tuple[float, float, list | None]:
        """Run one TM action; (wall seconds, front-end CPU seconds, its trace
        lines or None: no trace written)."""
        trace = self.scratch / "trace"
        trace.unlink(missing_ok=True)
        frontend.env[TRACE_ENV] = str(trace)
        try:
            cpu, started = children_cpu(), time.monotonic()
            frontend.tm(action, *args, stdin=stdin)
            seconds, cpu = time.monotonic() - started, children_cpu() - cpu
        finally:
            del frontend.env[TRACE_ENV]
        return seconds, cpu, trace.read_text().splitlines() if trace.exists() else None

    def warm_driver(self, frontend) -> None:
        """One monitor per node: starts the keeper and its connections (keeper
        on), warms caches (keeper off)."""
        for node in self.lab.node_names:
            frontend.tm("monitor", SYSTEM_DS, stdin=self.monitor_payload([node]))

    def driver_cycle(self, phase: str, who: str, frontend, count_runs: bool) -> None:
        """clone on A, cold migrate A -> B, delete on B, monitor; one new VM."""
        vm, a, b = self.new_vm(), self.a, self.b
        disk = frontend.disk_path(vm, 0)
        disks = [{"image_id": IMAGE, "size": self.settings.size_mib}]
        frontend.vm(vm, disks, host=a)
        steps = [("clone", (f"{FE}:{VG}/{self.image}", f"{a}:{disk}", vm, IMAGE_DS), None),
                 ("mv", (f"{a}:{disk}", f"{b}:{disk}", vm, IMAGE_DS), None),
                 ("delete", (f"{b}:{disk}", vm, IMAGE_DS), None),
                 ("monitor", (SYSTEM_DS,), self.monitor_payload(self.lab.node_names))]
        if count_runs:
            self.sudo_runs()        # what ran before (warm-up, other variants) is not ours
        for action, args, stdin in steps:
            if action == "delete":
                frontend.vm(vm, disks, host=b)          # oned: the VM now lives on B
            seconds, cpu, trace = self.drive(frontend, action, *args, stdin=stdin)
            self.results.add(phase, who, action, seconds)
            if phase == "base":
                self.results.cpu.setdefault((who, action), []).append(cpu)
                self.results.remote_calls.setdefault((who, action), []).append(
                    None if trace is None else len(trace))
                if trace is not None:
                    modes = self.results.call_modes.setdefault((who, action), {})
                    for line in trace:
                        mode = line.split("\t")[1] if line.count("\t") >= 3 else "?"
                        modes[mode] = modes.get(mode, 0) + 1
            if count_runs:
                self.results.sudo_runs[(who, action)] = self.sudo_runs()[0]

    # -- the fs_lvm peer ---------------------------------------------------------
    def peer_cycle(self, phase: str, count_runs: bool) -> None:
        vm, a, b = self.new_vm(), self.a, self.b
        disk = self.peer.disk_path(vm)
        steps = [("clone", (self.peer.image_file, f"{a}:{disk}", vm, self.settings.size_mib)),
                 ("mv", (f"{a}:{disk}", f"{b}:{disk}")),
                 ("delete", (f"{b}:{disk}",)),
                 ("monitor", (self.peer.base_path, *self.lab.node_names))]
        if count_runs:
            self.sudo_runs()
        for action, args in steps:
            cpu = children_cpu()
            seconds, calls = self.peer.run(action, *args)
            self.results.add(phase, PEER, action, seconds)
            if phase == "base":
                self.results.cpu.setdefault((PEER, action), []).append(children_cpu() - cpu)
                self.results.remote_calls.setdefault((PEER, action), []).append(calls)
            if count_runs:
                self.results.sudo_runs[(PEER, action)] = self.sudo_runs()[1]

    # -- bare LVM ------------------------------------------------------------------
    def bare_cycle(self, phase: str) -> None:
        """What the least of each action costs: root LVM over one ssh command each
        (a warm connection), on a fresh LV the size of the image."""
        a, b, lab = self.a, self.b, self.lab
        name = f"lv-one-{self.new_vm()}-0"
        lab.sh(a, f"lvcreate -q -an -Zn -Wn -L{self.settings.size_mib}m -n {name} {VG}")

        def timed(node, script):
            started = time.monotonic()
            lab.sh(node, script)
            return time.monotonic() - started
        self.results.add(phase, BARE, "clone", timed(
            a, f"lvchange -aey {VG}/{self.image} && lvchange -aey {VG}/{name} && "
               f"dd if=/dev/{VG}/{self.image} of=/dev/{VG}/{name} bs=4M iflag=direct "
               f"oflag=direct status=none && lvchange -an {VG}/{self.image}"))
        self.results.add(phase, BARE, "mv", timed(a, f"lvchange -an {VG}/{name}") +
                         timed(b, f"lvchange -aey {VG}/{name}"))
        self.results.add(phase, BARE, "monitor", timed(
            a, f"vgs --noheadings --units m --nosuffix -o vg_size,vg_free {VG}"))
        lab.sh(b, f"lvchange -an {VG}/{name} && lvremove -q -f {VG}/{name}")

    # -- the phases ----------------------------------------------------------------
    def run_phase(self, phase: str, drivers: dict, count_runs: bool) -> None:
        rounds = self.settings.rounds
        for who, frontend in drivers.items():
            log(f"{phase}: {who}, {rounds} round(s) of {', '.join(ACTIONS)}")
            self.warm_driver(frontend)
            for index in range(rounds):
                self.driver_cycle(phase, who, frontend, count_runs and index == 0)
        log(f"{phase}: {PEER}, {rounds} round(s)")
        self.peer.warm(self.lab.node_names)
        for index in range(rounds):
            self.peer_cycle(phase, count_runs and index == 0)
        log(f"{phase}: {BARE}, {rounds} round(s)")
        self.lab.on_all("true")
        for _ in range(rounds):
            self.bare_cycle(phase)

    def add_fillers(self) -> None:
        """N foreign 4 MiB LVs, inactive: one lvm shell reading N lvcreate lines."""
        count = self.settings.fillers
        log(f"creating {count} filler LVs ({FILLER_PREFIX}NNNN) in {VG}")
        started = time.monotonic()
        self.fillers = count     # from here on, teardown removes them
        line = f"lvcreate {LVM_QUIET} -q -an -Zn -Wn -L4m -n {FILLER_PREFIX}%04d {VG}"
        self.lab.sh(self.a, 'i=1; while [ "$i" -le "$2" ]; do printf "$1\\n" "$i"; '
                            'i=$((i + 1)); done | lvm >/dev/null 2>&1; true',
                    line, str(count), timeout=3600)
        self.results.fillers_seconds = time.monotonic() - started
        made = int(self.lab.sh(self.a, f"lvs --noheadings -o lv_name {VG} | "
                                       f"grep -c '^ *{FILLER_PREFIX}' || true").stdout)
        if made != count:
            raise RuntimeError(f"{made} of {count} filler LVs were created")

    def remove_fillers(self) -> None:
        if not self.fillers:
            return
        started = time.monotonic()
        self.lab.sh(self.a, f"lvremove {LVM_QUIET} -q -y -S 'lv_name=~^{FILLER_PREFIX}' "
                            f"{VG} >/dev/null 2>&1", timeout=3600)
        self.results.fillers_removal_seconds = time.monotonic() - started
        self.fillers = 0

    def concurrency(self) -> None:
        """N clones started at once (each its own process, like oned's TM pool)
        over two nodes, then N more one after another: wall times."""
        count, size = self.settings.concurrent, self.settings.concurrent_size_mib
        frontend = next(iter(self.drivers.values()))
        log(f"concurrency: {count} clones of {size} MiB at once, then one after another")
        image = self.fe.make_image_lv(CONCURRENT_IMAGE, size,
                                      pattern(CONCURRENT_IMAGE, size * MiB))
        self.fe.image(CONCURRENT_IMAGE, size=size)
        nodes = [self.a, self.b]
        together = [self.new_vm() for _ in range(count)]
        apart = [self.new_vm() for _ in range(count)]
        host = {vm: nodes[index % 2] for index, vm in enumerate(together + apart)}
        for vm in together + apart:
            frontend.vm(vm, [{"image_id": CONCURRENT_IMAGE, "size": size}], host=host[vm])

        def clone_args(vm):
            return ("clone", f"{FE}:{VG}/{image}", f"{host[vm]}:{frontend.disk_path(vm, 0)}",
                    vm, IMAGE_DS)
        self.warm_driver(frontend)
        started = time.monotonic()
        running = [frontend.spawn_tm(*clone_args(vm)) for vm in together]
        outcomes = [action.wait() for action in running]
        wall_together = time.monotonic() - started
        started = time.monotonic()
        for vm in apart:
            frontend.tm(*clone_args(vm))
        wall_apart = time.monotonic() - started
        durations = sorted(outcome.duration for outcome in outcomes)
        self.results.concurrency = {
            "count": count, "size_mib": size, "who": next(iter(self.drivers)),
            "together": wall_together, "apart": wall_apart,
            "each_min": durations[0], "each_median": statistics.median(durations),
            "each_max": durations[-1],
            "failures": [f"{o.command_line}: exit {o.exit_code}: {o.failure_message}"
                         for o in outcomes if not o.success]}
        self.fe.cleanup_vms(together + apart)
        self.fe.remove_image_lvs([CONCURRENT_IMAGE])

    def emulation(self) -> None:
        """CPU-bound work on this host and in a guest, timed where it runs."""
        probes = [
            ("sha256 of 64 MiB (hashlib)",
             "import hashlib,time;t=time.perf_counter();hashlib.sha256(bytes(64<<20))"
             ".digest();print(time.perf_counter()-t)"),
            ("Python loop, 10^6 multiplications",
             "import time;t=time.perf_counter();sum(i*i for i in range(10**6));"
             "print(time.perf_counter()-t)"),
        ]
        start_probe = ('s=$(date +%s%N); python3 -c pass; e=$(date +%s%N); '
                       'echo "$(( (e - s) / 1000 ))"')
        for label, code in probes:
            host = min(float(subprocess.run(["python3", "-c", code], capture_output=True,
                                            text=True, check=True).stdout) for _ in range(3))
            guest = min(float(self.lab.sh(self.a, 'python3 -c "$1"', code).stdout)
                        for _ in range(3))
            self.results.emulation.append((label, host, guest))
        host = min(int(subprocess.run(["sh", "-c", start_probe], capture_output=True,
                                      text=True, check=True).stdout) for _ in range(3)) / 1e6
        guest = min(int(self.lab.sh(self.a, start_probe).stdout) for _ in range(3)) / 1e6
        self.results.emulation.append(("start of a python3 process (`python3 -c pass`)",
                                       host, guest))

    # -- real VMs --------------------------------------------------------------------
    def vms(self) -> None:
        """Each round: a VM deployed by the driver (clone of the image, context)
        and started with `virsh create` as oneadmin on A; its twin deployed by
        hand (root lvcreate + dd, the same links and context ISO) and started
        the same way; then the driver VM's live migration A -> B with the
        hand-over, and back B -> A bare, its LV activated shared on both nodes
        by hand first (the directions differ; the guests are identical).
        One more round first, not recorded: the first qemu start and the first
        incoming migration on a node page in qemu and libvirt's caches."""
        frontend = next(iter(self.drivers.values()))
        a, b, size = self.a, self.b, self.settings.size_mib
        log(f"real VMs: {self.settings.rounds} round(s) of deploy + start, driver and bare, "
            f"and live migration with the hand-over and bare")
        self.warm_driver(frontend)
        for index in range(self.settings.rounds + 1):
            # round 0 warms up (first qemu start and migration on each node) and
            # is not recorded
            self.record_vm_steps = index > 0
            # libvirtd is socket-activated and exits after 120 s idle; a KVM
            # host's monitoring keeps it up, so the bench does too (untimed)
            self.lab.on_all("virsh -q -c qemu:///system version >/dev/null", nodes=[a, b])
            vm, twin = self.new_vm(), self.new_vm()
            disks = [{"image_id": IMAGE, "size": size}]
            frontend.vm(vm, disks, host=a)
            context = self.scratch / f"context-{vm}.sh"
            context.write_text(f"HOSTNAME='vm-{vm}'\n")
            self.timed_vm_step("driver prolog", lambda: (
                frontend.tm("clone", f"{FE}:{VG}/{self.image}", f"{a}:{frontend.disk_path(vm, 0)}",
                            vm, IMAGE_DS),
                frontend.tm("context", str(context), f"{a}:{frontend.disk_path(vm, 1)}", vm,
                            SYSTEM_DS)))
            self.timed_vm_step("bare prolog", lambda: self.lab.sh(a, BARE_PROLOG, VG, self.image,
                f"lv-one-{twin}-0", str(size), frontend.sysdir(twin), frontend.sysdir(vm)))
            # the twin first and gone again, so neither start shares host A's
            # emulated CPU with a running VM
            self.stop_vm(self.start_vm(frontend, "bare create", twin, a))
            domain = self.start_vm(frontend, "driver create", vm, a)
            # live migration A -> B, as OpenNebula's VMM orders it
            stdin, args = frontend.vm_xml_b64(vm), (a, b, frontend.sysdir(vm), vm, SYSTEM_DS)
            self.timed_vm_step("premigrate", lambda: frontend.tm("premigrate", *args, stdin=stdin))
            self.timed_vm_step("hand-over migrate", lambda: domain.migrate(b))
            self.timed_vm_step("postmigrate", lambda: frontend.tm("postmigrate", *args,
                                                                  stdin=stdin))
            if domain.state() != "running" or domain.state(host=a) != "absent":
                raise RuntimeError(f"{domain.name} is not running on {b} alone after the hand-over")
            # back B -> A, bare: the LV shared on both nodes by hand, then virsh migrate
            lv = f"{VG}/lv-one-{vm}-0"
            self.timed_vm_step("bare shared activation", lambda: (
                self.lab.sh(b, f"lvchange -asy {lv}"), self.lab.sh(a, f"lvchange -asy {lv}")))
            self.timed_vm_step("bare migrate", lambda: domain.migrate(a))
            if domain.state() != "running":
                raise RuntimeError(f"{domain.name} is not running on {a} after the bare migration")
            self.stop_vm(domain)
            self.fe.cleanup_vms([vm, twin])

    def timed_vm_step(self, step: str, run) -> None:
        started = time.monotonic()
        run()
        if self.record_vm_steps:
            self.results.vm_seconds.setdefault(step, []).append(time.monotonic() - started)

    def start_vm(self, frontend, step: str, vm: int, host: str) -> LabVM:
        """OpenNebula's VMM deploy: the deployment file (written first, not
        timed), then `virsh create` as oneadmin (timed: until the domain runs)."""
        domain = LabVM(self.lab, f"one-{vm}", host)
        self.domains.append(domain)
        path = f"{frontend.sysdir(vm)}/deployment.0"
        xml = deployment_xml(vm, [{"image": IMAGE, "source": f"{VG}/{self.image}"}],
                             memory_mib=VM_MEMORY_MIB)
        domain.put(path, xml)
        self.timed_vm_step(step, lambda: domain.virsh("create", path))
        if domain.state() != "running":
            raise RuntimeError(f"{domain.name} is not running after virsh create")
        return domain

    def stop_vm(self, domain: LabVM) -> None:
        domain.destroy()
        self.domains.remove(domain)     # teardown need not look for it

    def destroy_domains(self) -> None:
        """Domains a failed round left running, wherever they are."""
        for domain in self.domains:
            for node in self.lab.node_names:
                domain.destroy(host=node)

    def run(self) -> Results:
        self.results.who = list(self.drivers)
        self.results.machine = machine_facts(self.lab)
        self.emulation()
        self.setup()
        self.run_phase("base", self.drivers, count_runs=True)
        self.add_fillers()
        first = next(iter(self.drivers))
        self.run_phase("scale", {first: self.drivers[first]}, count_runs=False)
        self.remove_fillers()
        self.concurrency()
        self.vms()
        return self.results


# ----------------------------------------------------------------- the report

def machine_facts(lab) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT,
                              capture_output=True, text=True).stdout.strip() or "unknown"
    accel = "KVM" if kvm_usable() else "TCG (software emulation)"
    guest_cpu = "host" if kvm_usable() else os.environ.get("LAB_CPU", "qemu64")
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": mem_kib / (1 << 20),
            "kernel": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "revision": revision,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "accel": accel, "guest": f"{lab.nodes} guests, 1 vCPU ({guest_cpu}), "
                                     f"{guest_memory_mib()} MiB each",
            "load": "%.2f %.2f %.2f" % os.getloadavg()}


def seconds_cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def ratio_cell(top: float | None, bottom: float | None) -> str:
    return "–" if top is None or not bottom else f"{top / bottom:.2f}"


def render(results: Results, elapsed: float) -> str:
    s, m = results.settings, results.machine
    who = results.who
    lines = [
        "# Benchmarks",
        "",
        "What the driver's TM actions cost, measured by `bench/suite.py` in one lab run "
        "(3 nodes, lvmlockd + dlm, GFS2) against bare LVM and OpenNebula's own `fs_lvm` TM "
        "driver on the same emulated hardware at the same time. Generated file: rerun to "
        "update.",
        "",
        "## How to rerun",
        "",
        "```sh",
        "./run bench            # defaults: " f"{Settings().rounds} rounds, {Settings().size_mib} "
        f"MiB image, {Settings().fillers} filler LVs, {Settings().concurrent} concurrent clones",
        f"./run bench --quick    # {QUICK.rounds} round, {QUICK.size_mib} MiB, {QUICK.fillers} "
        f"fillers, {QUICK.concurrent} clones (development)",
        "./run bench --rounds 5 --output /tmp/bench.md",
        "```",
        "",
        f"This run: {s.rounds} round(s), image {s.size_mib} MiB, {s.fillers} filler LVs, "
        f"{s.concurrent} concurrent clones of {s.concurrent_size_mib} MiB; took "
        f"{elapsed / 60:.1f} min including the lab.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        f"| date | {m['date']} |",
        f"| revision | `{m['revision']}` |",
        f"| CPU | {m['cpu']}, {m['cores']} cores |",
        f"| RAM | {m['ram_gib']:.1f} GiB |",
        f"| kernel | {m['kernel']}, Python {m['python']} |",
        f"| lab | {m['accel']}; {m['guest']} |",
        f"| load average at start | {m['load']} |",
        "",
        "## TM actions",
        "",
        f"Seconds per action (wall time of the action as oned runs it), {s.rounds} round(s): "
        "median (min–max). Driver and peer actions run at nice 19 like every OpenNebula "
        "driver action; bare LVM is root over one ssh command per step.",
        "",
        "| action | " + " | ".join(who + [PEER, BARE]) + " |",
        "| --- | " + " | ".join("---:" for _ in who + [PEER, BARE]) + " |",
    ]
    for action in ACTIONS:
        cells = []
        for name in who + [PEER, BARE]:
            values = results.seconds.get(("base", name, action))
            cells.append("–" if not values else
                         f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})")
        lines.append(f"| {action} | " + " | ".join(cells) + " |")
    lines += ["", "Bare LVM per action: " + "; ".join(
        f"{action}: {what}" for action, what in BARE_FOR.items()) + ".", "",
              "### Ratios (medians; targets are goals, not pass/fail)", "",
              "| ratio | " + " | ".join(who) + " | target |",
              "| --- | " + " | ".join("---:" for _ in who) + " | ---: |"]
    for action in ACTIONS:
        lines.append(f"| {action} / fs_lvm {action} | " + " | ".join(
            ratio_cell(results.median("base", name, action), results.median("base", PEER, action))
            for name in who) + f" | ≤ {TARGETS['peer']} |")
    for action, what in BARE_FOR.items():
        lines.append(f"| {action} / {what} | " + " | ".join(
            ratio_cell(results.median("base", name, action), results.median("base", BARE, action))
            for name in who) + f" | ≤ {TARGETS[action]} |")
    lines += ["", "Front-end CPU seconds per action (user + sys of the action's processes, "
              "median): the part this host pays, which the emulation does not slow down.", "",
              "| action | " + " | ".join(who + [PEER]) + " |",
              "| --- | " + " | ".join("---:" for _ in who + [PEER]) + " |"]
    for action in ACTIONS:
        lines.append(f"| {action} | " + " | ".join(
            seconds_cell(statistics.median(results.cpu[(name, action)])
                         if results.cpu.get((name, action)) else None)
            for name in who + [PEER]) + " |")
    lines += [""] + [f"Note: {note}" for note in results.notes] + ([""] if results.notes else [])
    lines += render_calls(results) + render_scale(results) + render_concurrency(results) + \
        render_vms(results) + render_emulation(results) + render_method()
    return "\n".join(lines) + "\n"


def render_calls(results: Results) -> list[str]:
    who = results.who
    lines = ["## Remote calls and helper runs per action", "",
             "Driver: remote commands from `ONE_GFS2CLVM_TRACE` (median over the rounds; "
             "in brackets how they went: through the keeper or a direct connection), node-helper "
             "runs from sudo's journal on all guests (first round). Peer: ssh round trips and "
             "sudo runs the same way.", "",
             "| action | " + " | ".join(f"{name}: remote commands | {name}: helper runs"
                                        for name in who) +
             f" | {PEER}: ssh round trips | {PEER}: sudo runs |",
             "| --- | " + " | ".join("---: | ---:" for _ in who) + " | ---: | ---: |"]
    for action in ACTIONS:
        cells = []
        for name in who + [PEER]:
            counts = results.remote_calls.get((name, action), [])
            if not counts or any(count is None for count in counts):
                calls = "n/a (no trace written)"
            else:
                calls = f"{statistics.median(counts):g}"
                modes = results.call_modes.get((name, action))
                if modes:
                    calls += " (" + ", ".join(f"{mode} {round(count / len(counts))}"
                                             for mode, count in sorted(modes.items())) + ")"
            runs = results.sudo_runs.get((name, action))
            cells += [calls, "–" if runs is None else str(runs)]
        lines.append(f"| {action} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_scale(results: Results) -> list[str]:
    s = results.settings
    if not any(key[0] == "scale" for key in results.seconds):
        return []
    names = [name for name in results.who + [PEER, BARE]
             if any(key[:2] == ("scale", name) for key in results.seconds)]
    lines = [f"## Scale: {s.fillers} foreign LVs in the VG", "",
             f"The same actions with {s.fillers} extra inactive 4 MiB LVs (`{FILLER_PREFIX}NNNN`, "
             f"not the driver's) in `{VG}`: medians at 0 and at {s.fillers}, and the growth. "
             f"Creating them took {results.fillers_seconds:.0f} s (one `lvm` shell, "
             f"{results.fillers_seconds / max(s.fillers, 1) * 1000:.0f} ms per lvcreate), "
             f"removing them {results.fillers_removal_seconds:.0f} s (one `lvremove -S`).", "",
             "| action | who | at 0 s | at " + str(s.fillers) + " s | growth | target |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for action in ACTIONS:
        for name in names:
            before, after = results.median("base", name, action), results.median("scale", name, action)
            if before is None or after is None:
                continue
            target = f"≤ {TARGETS['growth']:g} %" if name not in (PEER, BARE) else "–"
            lines.append(f"| {action} | {name} | {before:.2f} | {after:.2f} | "
                         f"{(after / before - 1) * 100:+.0f} % | {target} |")
    return lines + [""]


def render_concurrency(results: Results) -> list[str]:
    c = results.concurrency
    if not c:
        return []
    lines = [f"## Concurrency: {c['count']} clones at once", "",
             f"{c['count']} clones of a {c['size_mib']} MiB image LV, half on each of two nodes, "
             f"each its own process started together (like oned's TM driver pool), against "
             f"{c['count']} more run one after another ({c['who']}). This host has "
             f"{results.machine.get('cores', '?')} cores for the three emulated guests and the "
             f"front-end, which bounds what running at once can gain.", "",
             "| | seconds |", "| --- | ---: |",
             f"| {c['count']} at once, wall time | {c['together']:.1f} |",
             f"| {c['count']} one after another, wall time | {c['apart']:.1f} |",
             f"| speed-up | {c['apart'] / c['together']:.2f}× |",
             f"| one clone while all ran: min / median / max | {c['each_min']:.1f} / "
             f"{c['each_median']:.1f} / {c['each_max']:.1f} |",
             f"| failed clones | {len(c['failures'])} |", ""]
    lines += [f"    {failure}" for failure in c["failures"][:5]]
    return lines + ([""] if c["failures"] else [])


def render_vms(results: Results) -> list[str]:
    seconds = results.vm_seconds
    if not seconds:
        return []

    def median(*steps: str) -> float | None:
        if not all(seconds.get(step) for step in steps):
            return None
        return sum(statistics.median(seconds[step]) for step in steps)

    def cell(*steps: str) -> str:
        return seconds_cell(median(*steps))
    rounds = len(seconds.get("driver create", []))
    handover = ("premigrate", "hand-over migrate", "postmigrate")
    lines = ["## Real VMs: start and live migration", "",
             f"A {VM_MEMORY_MIB} MiB no-OS VM under libvirt as oneadmin (the deployment file "
             "OpenNebula's KVM driver writes: disk.0 a clone of the image as a raw block disk "
             "with cache='none', disk.1 the context CD-ROM), "
             f"{rounds} round(s) after one unrecorded warm-up round, seconds: median (min–max). Driver: the TM actions through the "
             "installed driver (keeper on). Bare: the twin VM deployed by hand as root in one ssh "
             "command (lvcreate + dd of the image LV, the same links, a copy of the context "
             "ISO); the driver VM migrated back with its LV made shared on both nodes by hand "
             "(`lvchange -asy`, not timed in the bare migrate).", "",
             "| step | seconds |", "| --- | ---: |"]
    for step in VM_STEPS:
        values = seconds.get(step)
        if values:
            lines.append(f"| {step} | {statistics.median(values):.2f} "
                         f"({min(values):.2f}–{max(values):.2f}) |")
    lines += ["", "| | driver | bare | ratio |", "| --- | ---: | ---: | ---: |",
              f"| VM start: `virsh create` until running | {cell('driver create')} | "
              f"{cell('bare create')} | "
              f"{ratio_cell(median('driver create'), median('bare create'))} |",
              f"| deploy: prolog + `virsh create` | {cell('driver prolog', 'driver create')} | "
              f"{cell('bare prolog', 'bare create')} | "
              f"{ratio_cell(median('driver prolog', 'driver create'), median('bare prolog', 'bare create'))} |",
              f"| live migration: premigrate + `virsh migrate --live` + postmigrate vs bare "
              f"`virsh migrate --live` | {cell(*handover)} | {cell('bare migrate')} | "
              f"{ratio_cell(median(*handover), median('bare migrate'))} |",
              f"| live migration: the same, bare including its by-hand `lvchange -asy` on both "
              f"nodes | {cell(*handover)} | {cell('bare shared activation', 'bare migrate')} | "
              f"{ratio_cell(median(*handover), median('bare shared activation', 'bare migrate'))} |",
              "", "The bare migration leaves the LV shared on both nodes and its use tag naming "
              "the old host: the hand-over's postmigrate is what makes it exclusive on the "
              "destination again and records where the VM runs.", ""]
    return lines


def render_emulation(results: Results) -> list[str]:
    lines = ["## How much the emulated lab inflates CPU-bound steps", "",
             "The same work timed where it runs, best of 3, on this host and in a lab guest:", "",
             "| probe | host s | guest s | factor |", "| --- | ---: | ---: | ---: |"]
    for label, host, guest in results.emulation:
        factor = guest / host
        shown = f"{factor:.0f}" if factor >= 10 else f"{factor:.1f}"
        lines.append(f"| {label} | {host:.4f} | {guest:.4f} | {shown}× |")
    accel = results.machine.get("accel", "")
    lines += ["", f"The lab runs under {accel}: CPU-bound work in a guest (LVM parsing and "
              "writing its metadata, the node helper's Python code, sshd's crypto, copies) is "
              "slowed by roughly the factors of the first rows, starting a process (mostly "
              "page-ins) much less; this host's side of an action (the driver's Python, the ssh "
              "client) is not slowed at all. Absolute seconds therefore overstate what a real "
              "cluster would see, most for LVM-heavy steps; the ratios between columns, which "
              "all pay the same emulation, are what to compare.", ""]
    return lines


def render_method() -> list[str]:
    return ["## Method", "",
            "* One lab run: `lab.vmlab.lab_session(3, \"dlm\")`, the driver installed by its own "
            "installer, oned the test suite's stand-in (`testkit/fakeoned.py`), actions run "
            "through `testkit/oneclient.py` as `one_tm.rb` runs them.",
            "* Each action gets a new VM: clone of `lv-oneimg-4900` to host A, cold migration "
            "(`mv`) A → B, `delete` of the disk on B, then the system datastore `monitor`.",
            "* Before its rounds each variant opens its connections (driver: one monitor per "
            "node; peer: one `ssh true` per node, ControlMaster; bare: the bench's own ssh "
            "connections), so the numbers are a busy front-end's steady state, not first "
            "contact.",
            "* The fs_lvm peer (`bench/peer_fs_lvm.sh`) runs OpenNebula's fs_lvm remote command "
            "sequence for each action as its own user `onepeer` with OpenNebula's LVM sudoers "
            "allow-list and ssh ControlMaster/ControlPersist settings, in the same shared VG. "
            "Its front-end-local work (oned queries through `onevm show` and friends, "
            "`qemu-img info` of the image) is left out, so it is a lower bound on fs_lvm's cost. "
            "fs_lvm copies images from files on the shared filesystem (GFS2 here), the driver "
            "from image LVs.",
            "* Zeroing: the lab's driver config zeroes on delete (`zeroing = on_delete`), as "
            "fs_lvm does by default (`ZERO_LVM_ON_DELETE=yes`); fs_lvm also zeroes the tail of "
            "a new LV on clone (`ZERO_LVM_ON_CREATE=yes`, here 1 MiB).",
            "* Real VMs: the domain is `testkit/libvirtvm.deployment_xml` (oned's disk "
            "attributes and the KVM driver's rendering, from the shipped oned.conf and datastore "
            "templates), started and migrated with virsh as oneadmin (`qemu+ssh://` over the "
            "lab network) as OpenNebula's VMM scripts do; the timed steps are the VMM's and "
            "TM's commands as the front-end issues them.",
            "* No thresholds: targets are printed next to the ratios and never fail the run.",
            ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK.rounds} round, {QUICK.size_mib} MiB image, {QUICK.fillers} "
                             f"fillers, {QUICK.concurrent} concurrent clones")
    parser.add_argument("--rounds", type=int, help="rounds per action (default 3)")
    parser.add_argument("--output", type=Path, default=PROJECT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.rounds:
        settings = dataclasses.replace(settings, rounds=args.rounds)
    started = time.monotonic()
    with lab_session(3, "dlm") as lab, \
            tempfile.TemporaryDirectory(prefix="gfs2clvm-bench-") as scratch:
        bench = Bench(lab, Path(scratch), settings)
        try:
            results = bench.run()
        finally:
            bench.teardown()
    report = render(results, time.monotonic() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

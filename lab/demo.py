"""The main job: boot the lab on first use and drive a volume through the driver.

From the host acting as OpenNebula front-end: create an LV in the shared VG,
activate it exclusively on node A, write data there, hand it to node B
(deactivate on A, activate on B), read the same bytes back, remove it.
Every step goes through the driver's own code (config, SSH transport, node
helper, LVM layer); each step and its time is printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time

from lab.vmlab import VG, lab_session
from one_gfs2clvm import config as config_mod
from one_gfs2clvm.cluster import Cluster
from one_gfs2clvm.errors import DriverError
from one_gfs2clvm.names import lv_device_path, vm_disk_lv

DEMO_VM, DEMO_DISK = 4242, 0
SIZE = 256 << 20          # LV size
DATA = 64 << 20           # bytes written and read back


class Steps:
    def __init__(self):
        self.rows: list[tuple[str, float, str]] = []

    def run(self, title: str, action, note: str = ""):
        started = time.monotonic()
        print(f"-> {title} ...", flush=True)
        result = action()
        elapsed = time.monotonic() - started
        self.rows.append((title, elapsed, note if not callable(note) else note(result)))
        print(f"   done in {elapsed:.2f} s", flush=True)
        return result

    def table(self) -> str:
        width = max(len(title) for title, _, _ in self.rows)
        lines = [f"{'step':<{width}}  {'seconds':>8}  note", "-" * (width + 30)]
        lines += [f"{title:<{width}}  {secs:8.2f}  {note}" for title, secs, note in self.rows]
        return "\n".join(lines)


def main(keep: bool = False) -> int:
    steps = Steps()
    stack = contextlib.ExitStack()
    nodes = int(os.environ.get("LAB_NODES", "3"))
    lock = os.environ.get("LAB_LOCK", "dlm")
    lab = steps.run(f"lab: reuse or boot ({nodes} nodes, lock {lock})",
                    lambda: stack.enter_context(lab_session(nodes, lock, keep=keep)))
    try:
        config = config_mod.load(str(lab.driver_conf))
        cluster = Cluster(config)
        node_a, node_b = lab.node_names[-2], lab.node_names[-1]
        lv = vm_disk_lv(DEMO_VM, DEMO_DISK)
        device = lv_device_path(VG, lv)
        payload = os.urandom(DATA)
        digest = hashlib.sha256(payload).hexdigest()

        def leftover_cleanup():
            def clean(host):
                client = cluster.lvm(host)
                if client.lv(VG, lv) is None:
                    return "nothing to clean"
                for node in lab.node_names:
                    cluster.lvm(node).deactivate(VG, lv)
                with cluster.locked(VG):
                    client.remove(VG, lv)
                return "removed a leftover from an earlier run"
            return cluster.on_bridge(clean)

        steps.run("clean up leftovers (idempotent start)", leftover_cleanup, lambda r: r)

        def create():
            def on(host):
                with cluster.locked(VG):
                    cluster.lvm(host).create(VG, lv, SIZE, tags=[f"one-vm={DEMO_VM}"])
                return host
            return cluster.on_bridge(on)
        steps.run(f"create {VG}/{lv} ({SIZE >> 20} MiB, inactive)", create,
                  lambda host: f"on bridge {host}")
        steps.run(f"activate exclusively on {node_a}",
                  lambda: cluster.lvm(node_a).activate(VG, lv, "exclusive"))

        def refused_on_b():
            try:
                cluster.lvm(node_b).activate(VG, lv, "exclusive")
            except DriverError as exc:
                return exc.one_line()
            raise SystemExit(f"{node_b} could activate {lv} while {node_a} holds it")
        if config.lock_mode == "lvmlockd":
            steps.run(f"activation on {node_b} is refused while {node_a} holds it",
                      refused_on_b, lambda msg: msg.split(": ", 1)[-1][:70])

        def write():
            cluster.remote(node_a).run(
                ["dd", f"of={device}", "bs=4M", "iflag=fullblock", "oflag=direct",
                 "conv=fsync,nocreat", "status=none"], stdin=payload)
        steps.run(f"write {DATA >> 20} MiB as oneadmin on {node_a} (no sudo)", write,
                  f"sha256 {digest[:16]}…")
        steps.run(f"deactivate on {node_a}", lambda: cluster.lvm(node_a).deactivate(VG, lv))
        steps.run(f"activate exclusively on {node_b}",
                  lambda: cluster.lvm(node_b).activate(VG, lv, "exclusive"))

        def read_back():
            result = cluster.remote(node_b).run(
                ["sh", "-c", 'head -c "$1" "$2" | sha256sum', "sh", str(DATA), device])
            seen = result.stdout.split()[0]
            if seen != digest:
                raise SystemExit(f"data mismatch on {node_b}: {seen} != {digest}")
            return seen
        steps.run(f"read back on {node_b}, compare sha256", read_back,
                  lambda seen: f"sha256 {seen[:16]}… identical")
        steps.run(f"deactivate on {node_b}", lambda: cluster.lvm(node_b).deactivate(VG, lv))

        def remove():
            def on(host):
                with cluster.locked(VG):
                    cluster.lvm(host).remove(VG, lv)
                if cluster.lvm(host).lv(VG, lv) is not None:
                    raise SystemExit(f"{lv} still listed after removal")
                return host
            return cluster.on_bridge(on)
        steps.run(f"remove {VG}/{lv}", remove, lambda host: f"on bridge {host}; gone from lvs")
    except DriverError as exc:
        print(f"FAILED: {exc.one_line()}", file=sys.stderr)
        return 1
    finally:
        print()
        print(steps.table())
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(keep="--keep" in sys.argv))

"""What the fault cases (test_faults.py, test_node_crash.py) assert about an
action and the LVs it made, through the installed actions and `lvs` on the
nodes."""

from __future__ import annotations

import time

from testkit.frontend import FE, IMAGE_DS, FrontEnd
from lab.vmlab import VG
from one_gfs2clvm.names import lv_device_path


def one_line(result, *needles: str) -> str:
    """The action failed with exactly one failure line containing every needle."""
    assert not result.success
    assert len(result.failure_lines) == 1, \
        f"expected one failure line, got {result.failure_lines}\n{result.stderr}"
    message = result.failure_message
    for needle in needles:
        assert needle in message, f"{needle!r} not in the failure line: {message!r}"
    return message


def clone_args(fe: FrontEnd, vm_id: int, host: str, image: int, ds: int = IMAGE_DS):
    return (f"{FE}:{VG}/lv-oneimg-{image}", f"{host}:{fe.disk_path(vm_id, 0)}", vm_id, ds)


def assert_deployed(fe: FrontEnd, vm_id: int, host: str, size: int, sha: str,
                    length: int | None = None) -> None:
    """lv-one-<vm>-0: complete, active exclusively on `host` only (lvs on every
    node), tagged for it, linked as disk.0, holding the image's bytes."""
    lv = f"lv-one-{vm_id}-0"
    report = fe.lv_report(keep=lambda name: name == lv)
    assert report == {lv: (size, (f"one-use={vm_id}:0:{host}",), (host,), (host,))}, report
    assert fe.link(fe.disk_path(vm_id, 0)) == lv_device_path(VG, lv)
    assert fe.sha(host, lv, length or size) == sha


def assert_gone(fe: FrontEnd, vm_id: int) -> None:
    assert fe.lv_report(nodes=[fe.lab.node_names[0]],
                        keep=lambda name: name.startswith(f"lv-one-{vm_id}-")) == {}


def remote_pids(lab, node: str, needle: str) -> list[str]:
    """PIDs of processes on `node` whose command line contains `needle`."""
    result = lab.sh(node, 'pgrep -f -- "$1" || true', needle)
    return result.stdout.split()


# Stops the copy on the node the moment it starts (SIGSTOP), so a test acts
# "mid-copy" whatever the copy's speed: polling over ssh from the management
# node missed whole 9 s copies on a busy TCG guest.  The pattern reaches the
# watcher as an argument after "sh -c", and is anchored with ^, so pgrep never
# matches the watcher itself.
_FREEZE_WATCHER = """
pattern=$1 pidfile=$2 end=$(( $(date +%s) + $3 ))
rm -f "$pidfile"
while [ "$(date +%s)" -lt "$end" ]; do
    pid=$(pgrep -f -- "$pattern" | head -n 1)
    if [ -n "$pid" ]; then kill -STOP "$pid" && echo "$pid" > "$pidfile"; exit 0; fi
    sleep 0.05
done
"""


class CopyFreeze:
    """Start before the action: freezes the first `qemu-img convert` into `lv`
    on `node`; `wait` returns once it is frozen mid-copy, `release` lets it go
    on (SIGCONT), so the action then behaves as it would have."""

    def __init__(self, lab, node: str, lv: str, timeout: float = 300):
        self.lab, self.node, self.timeout = lab, node, timeout
        # the qemu-img process itself, not a shell or sudo around it
        self.pattern = f"^(\\S*/)?qemu-img convert .*/{lv}$"
        self.pidfile = f"/run/faultkit-freeze-{lv}.pid"
        self.pid: str | None = None
        lab.sh(node, 'nohup sh -c "$1" sh "$2" "$3" "$4" </dev/null >/dev/null 2>&1 &',
               _FREEZE_WATCHER, self.pattern, self.pidfile, str(int(timeout)))

    def wait(self, running) -> str:
        """Until the copy is frozen; fails if the action ends first."""
        deadline = time.monotonic() + self.timeout
        while True:
            pid = self.lab.sh(self.node, 'cat "$1" 2>/dev/null || true', self.pidfile).stdout.strip()
            if pid:
                self.pid = pid
                return pid
            assert running.running(), running.wait(5).stderr
            assert time.monotonic() < deadline, "the copy did not start"
            time.sleep(0.2)

    def release(self) -> None:
        if self.pid:
            self.lab.sh(self.node, 'kill -CONT "$1" 2>/dev/null; rm -f "$2"', self.pid, self.pidfile)
            self.pid = None

"""What the fault cases (test_faults.py, test_node_crash.py) assert about an
action and the LVs it made, through the installed actions and `lvs` on the
nodes."""

from __future__ import annotations

import time

from frontend import FE, IMAGE_DS, FrontEnd
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


def wait_copying(lab, node: str, lv: str, running, timeout: float = 180) -> None:
    """Until qemu-img copies into `lv` on `node` (the action is mid-copy)."""
    deadline = time.monotonic() + timeout
    while not remote_pids(lab, node, f"qemu-img convert .*/{lv}$"):
        assert running.running(), running.wait(5).stderr
        assert time.monotonic() < deadline, "the copy did not start"
        time.sleep(0.2)

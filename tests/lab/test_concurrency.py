"""Concurrency: 20 deployments of one image at once, as oned's TM driver pool
runs them (each action its own process, all started together), spread over
two nodes; then 20 terminations at once.

Asserts 0 failures, 20 correct LVs (the image's bytes, its size), exactly one
activation each -- exclusive, on its own host, per `lvs` on every node -- the
use tags and the disk.0 links; afterwards no LV and no VM directory is left.
"""

from __future__ import annotations

import time

import pytest

from testkit.frontend import FE, IMAGE_DS, MiB, SYSTEM_DS, FrontEnd, digest, pattern
from lab.vmlab import VG
from one_gfs2clvm.names import lv_device_path

IMAGE = 610
SIZE = 16 * MiB
DATA = pattern(IMAGE, SIZE)
VMS = range(7801, 7821)


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend-concurrency"))
    frontend.make_image_lv(IMAGE, SIZE // MiB, DATA)
    frontend.image(IMAGE, size=SIZE // MiB)
    yield frontend
    frontend.remove_image_lvs([IMAGE])
    frontend.close()


@pytest.fixture
def cleanup(fe):
    """Whatever the test left of its 20 VMs: LVs by exact name, dirs."""
    yield
    fe.cleanup_vms(VMS)


def run_all(fe: FrontEnd, calls: list[tuple]) -> list:
    """Start every (action, args...) at once as separate processes, wait for all."""
    running = [fe.spawn_tm(action, *args) for action, *args in calls]
    return [action.wait() for action in running]


def failures(results) -> list[str]:
    return [f"{r.command_line}: exit {r.exit_code}: {r.failure_message}"
            for r in results if not r.success]


def test_20_clones_at_once_then_20_deletes(fe, cleanup, lab):
    nodes = lab.node_names[:2]
    host = {vm: nodes[i % 2] for i, vm in enumerate(VMS)}
    for vm in VMS:
        fe.vm(vm, [{"image_id": IMAGE, "size": SIZE // MiB}], host=host[vm])

    started = time.monotonic()
    results = run_all(fe, [("clone", f"{FE}:{VG}/lv-oneimg-{IMAGE}",
                            f"{host[vm]}:{fe.disk_path(vm, 0)}", vm, IMAGE_DS) for vm in VMS])
    took = time.monotonic() - started
    assert failures(results) == [], "\n".join(failures(results))
    durations = sorted(r.duration for r in results)
    print(f"20 clones at once: {took:.1f} s (each {durations[0]:.1f}-{durations[-1]:.1f} s)")

    # lvs on every node: each LV active on exactly its own host, exclusively
    mine = {f"lv-one-{vm}-0": vm for vm in VMS}
    report = fe.lv_report(keep=mine.__contains__)
    expected = {lv: (SIZE, (f"one-use={vm}:0:{host[vm]}",), (host[vm],), (host[vm],))
                for lv, vm in mine.items()}
    assert report == dict(sorted(expected.items()))
    assert fe.active_on(f"lv-oneimg-{IMAGE}") == []            # the image is released
    # the bytes, read where each disk is active (one round trip per node)
    for node in nodes:
        lvs = [lv for lv, vm in mine.items() if host[vm] == node]
        sums = fe.cluster.remote(node).run(
            ["sha256sum", *[lv_device_path(VG, lv) for lv in lvs]]).stdout.split("\n")
        got = {line.split()[1]: line.split()[0] for line in sums if line.strip()}
        assert got == {lv_device_path(VG, lv): digest(DATA) for lv in lvs}
    # the disk.0 links on GFS2
    links = fe.cluster.remote(nodes[0]).run(
        ["readlink", *[fe.disk_path(vm, 0) for vm in VMS]]).stdout.split()
    assert links == [lv_device_path(VG, f"lv-one-{vm}-0") for vm in VMS]

    # terminate all 20 at once: per disk, then the directories
    started = time.monotonic()
    results = run_all(fe, [("delete", f"{host[vm]}:{fe.disk_path(vm, 0)}", vm, IMAGE_DS)
                           for vm in VMS])
    assert failures(results) == [], "\n".join(failures(results))
    results = run_all(fe, [("delete", f"{host[vm]}:{fe.sysdir(vm)}", vm, SYSTEM_DS)
                           for vm in VMS])
    assert failures(results) == [], "\n".join(failures(results))
    print(f"20 deletes at once: {time.monotonic() - started:.1f} s")
    assert fe.lv_report(nodes=[nodes[0]], keep=mine.__contains__) == {}
    left = fe.cluster.remote(nodes[0]).run(
        ["sh", "-c", 'for d; do [ -e "$d" ] && echo "$d"; done; true', "sh",
         *[fe.sysdir(vm) for vm in VMS]]).stdout.split()
    assert left == []

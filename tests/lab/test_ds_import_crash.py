"""A worker dies (qemu killed) in the middle of a datastore import: the import
fails with a clear error naming that worker, and no LV is left -- the undo
removes it from another bridge host once the lock manager has released the
dead node's lock."""

from __future__ import annotations

import threading
import time

import pytest

import oneclient
from fakeoned import datastore_doc, driver_action_b64, image_doc
from frontend import IMAGE_DS, MiB, FrontEnd, pattern
from lab.vmlab import VG

pytestmark = pytest.mark.disruptive     # crashes a node: runs last (conftest)
IMAGE = 586
LV = f"lv-oneimg-{IMAGE}"


@pytest.fixture(scope="module")
def fe(lab, tmp_path_factory):
    frontend = FrontEnd(lab, tmp_path_factory.mktemp("frontend-crash"))
    frontend.files = tmp_path_factory.mktemp("crash-uploads")
    yield frontend
    survivor = lab.node_names[-1]
    if frontend.cluster.lvm(survivor).lv(VG, LV) is not None:
        frontend.cluster.lvm(survivor).remove(VG, LV)
    frontend.close()


def test_worker_killed_mid_import_leaves_no_lv(fe, lab):
    if len(lab.node_names) < 3:
        pytest.skip("needs a surviving node besides the crashed one")
    importer, survivor = lab.node_names[1], lab.node_names[2]
    upload = fe.files / "big.raw"
    upload.write_bytes(pattern(60, 256 * MiB))          # no zeroes: every byte travels
    payload = driver_action_b64(
        image=image_doc(IMAGE, source="", path=str(upload)),
        datastore=datastore_doc(IMAGE_DS, template={
            "BRIDGE_LIST": f"{importer} {survivor}", "VG_NAME": VG,
            "RESTRICTED_DIRS": "/", "SAFE_DIRS": str(fe.files)}))
    outcome = {}

    def run():
        outcome["result"] = oneclient.run_ds(str(fe.remotes), "gfs2clvm", "cp", IMAGE, payload,
                                             env=fe.env, cwd=str(fe.var_lib_one), timeout=900)
    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 300
    while fe.cluster.lvm(survivor).lv(VG, LV) is None:     # the copy has begun
        assert thread.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.5)
    time.sleep(3)
    assert thread.is_alive(), "the import finished before the crash: make it bigger"
    try:
        lab.crash_node(importer)
        thread.join(600)
        result = outcome["result"]
        assert not result.success
        assert importer in result.failure_message, result.failure_message
        assert "\n" not in result.failure_message
        assert f"undone: remove {VG}/{LV}" in result.stderr, result.stderr
        assert fe.cluster.lvm(survivor).lv(VG, LV) is None
    finally:
        lab.boot_node(importer)
    # the node is back: a re-run imports cleanly
    small = fe.files / "small.raw"
    small.write_bytes(pattern(61, 3 * MiB))
    again = oneclient.run_ds(str(fe.remotes), "gfs2clvm", "cp", IMAGE, driver_action_b64(
        image=image_doc(IMAGE, source="", path=str(small)),
        datastore=datastore_doc(IMAGE_DS, template={
            "BRIDGE_LIST": f"{importer} {survivor}", "VG_NAME": VG,
            "RESTRICTED_DIRS": "/", "SAFE_DIRS": str(fe.files)})),
        env=fe.env, cwd=str(fe.var_lib_one), timeout=600)
    assert again.success, again.stderr
    assert again.stdout == f"{VG}/{LV} raw\n"
